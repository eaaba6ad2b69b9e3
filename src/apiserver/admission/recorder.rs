//! What admission says about a request besides yes or no: warnings (sent back as
//! `Warning: 299 - "..."` headers, which kubectl prints) and audit annotations (for the audit
//! log's event of the request, e.g. `pod-security.kubernetes.io/audit-violations`). Plugins call
//! `warn` and `annotate` from inside the request; the handler runs the request in `record` and
//! gets both back. Outside `record` (a test calling a plugin directly) they are dropped.

use std::cell::RefCell;
use std::future::Future;

#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub warnings: Vec<String>,
    /// Audit annotations, in the order they were added (key, value).
    pub annotations: Vec<(String, String)>,
}

tokio::task_local! {
    static CURRENT: RefCell<Recorded>;
}

/// Runs `fut` (one request) and returns what admission recorded during it.
pub async fn record<F: Future>(fut: F) -> (F::Output, Recorded) {
    CURRENT
        .scope(RefCell::new(Recorded::default()), async move {
            let out = fut.await;
            let rec = CURRENT.with(|r| r.take());
            (out, rec)
        })
        .await
}

/// A warning for the client (duplicates are sent once).
pub fn warn(text: String) {
    let _ = CURRENT.try_with(|r| {
        let mut r = r.borrow_mut();
        if !r.warnings.contains(&text) {
            r.warnings.push(text);
        }
    });
}

/// An audit annotation on this request's audit event.
pub fn annotate(key: &str, value: String) {
    let _ = CURRENT.try_with(|r| r.borrow_mut().annotations.push((key.into(), value)));
}
