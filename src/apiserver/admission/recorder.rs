//! What handling a request says about it besides the answer: warnings (sent back as
//! `Warning: 299 - "..."` headers, which kubectl prints), audit annotations (for the audit
//! log's event of the request: authorization's decision, admission's e.g.
//! `pod-security.kubernetes.io/audit-violations`) and the request body the audit log's
//! requestObject is made of. Plugins call `warn` and `annotate` from inside the request; the
//! handler runs the request in `record` and gets all back. Outside `record` (a test calling a
//! plugin directly) they are dropped.

use std::cell::RefCell;
use std::future::Future;

#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub warnings: Vec<String>,
    /// Audit annotations, in the order they were added (key, value).
    pub annotations: Vec<(String, String)>,
    /// The request body as read (a clone of the same buffer, so it costs no copy).
    pub request_body: Option<bytes::Bytes>,
    /// Whom the request acts as when its user impersonates someone (audit's impersonatedUser).
    pub impersonated_user: Option<serde_json::Value>,
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

/// The user an impersonating request acts as (authentication.k8s.io UserInfo).
pub fn impersonated(user: serde_json::Value) {
    let _ = CURRENT.try_with(|r| r.borrow_mut().impersonated_user = Some(user));
}

/// The request's body, once read.
pub fn request_body(body: &bytes::Bytes) {
    let _ = CURRENT.try_with(|r| r.borrow_mut().request_body = Some(body.clone()));
}
