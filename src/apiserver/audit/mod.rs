//! Audit logging, as kube-apiserver's `--audit-log-*` and `--audit-policy-file`: each request is
//! matched against the Policy (`policy`), and at a level above None its audit.k8s.io/v1 Events
//! (`event`) go, one JSON line each, to a file rotated by size (`rotate`) or to stdout.
//!
//! A request's events, in order: RequestReceived (before it is handled), for long-running
//! requests (watches, logs, exec) ResponseStarted when the headers go out, and ResponseComplete
//! when the answer is whole (for a stream: when it ends or the client leaves); Panic instead of
//! the last if a handler panicked. Stages the policy omits are not written.
//!
//! Events reach the file through one writer thread and a bounded queue (`QUEUE` events). When
//! the queue is full the request waits for room, as upstream's default "blocking" log mode
//! makes a request wait for its write: a slow disk slows the API down, but no event is lost
//! while the server runs. (The one exception: a stream's ResponseComplete, sent from the
//! response body's drop, which cannot wait; it is handed to a task that does.)
//!
//! Without `--audit-log-path` and `--audit-policy-file` there is no `Log`: the handler skips all
//! of this, and only the `Audit-Id` response header (a random UUID) is left.

pub mod event;
pub mod policy;
pub mod rotate;

use crate::apiserver::admission::recorder::Recorded;
use crate::apiserver::handler::{Body, Resp};
use bytes::Bytes;
use event::{micro_time, Event, RequestFacts};
use http_body_util::BodyExt;
use policy::{Level, Policy, Stage};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events waiting for the writer thread.
pub const QUEUE: usize = 10_000;

/// The response header naming the request's audit ID, on every answer, as upstream.
pub const AUDIT_ID_HEADER: &str = "Audit-Id";

#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// Write the API server's audit log here (kube-apiserver's flag): a file, or `-` for
    /// standard output. Nothing is logged without it and --audit-policy-file.
    #[arg(long)]
    pub audit_log_path: Option<String>,
    /// The audit.k8s.io/v1 Policy: which requests are logged, at which level.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Megabytes the audit log file may reach before it is rotated (0: 100, as upstream).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// Rotated audit log files kept (0: all).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxbackup: usize,
    /// Days a rotated audit log file is kept (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub audit_log_maxage: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The sources carry the detail: shown after these as the error's chain.
    #[error("--audit-policy-file")]
    Policy(#[from] policy::Error),
    #[error("--audit-log-path {path}")]
    Open {
        path: String,
        source: std::io::Error,
    },
}

enum Sink {
    Stdout,
    File(rotate::RotatingFile),
}

impl Sink {
    fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match self {
            Sink::Stdout => std::io::stdout().lock().write_all(line),
            Sink::File(f) => f.write_line(line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        match self {
            Sink::Stdout => std::io::stdout().flush(),
            Sink::File(f) => f.flush(),
        }
    }
}

/// The audit log of a running server: its policy and the queue to the writer thread.
pub struct Log {
    policy: Policy,
    tx: mpsc::Sender<Event>,
}

impl Log {
    /// The log the flags ask for; None when they ask for none (a path without a policy, as
    /// upstream, logs nothing).
    pub fn from_flags(flags: &Flags) -> Result<Option<Arc<Log>>, Error> {
        let (Some(path), Some(policy_file)) = (&flags.audit_log_path, &flags.audit_policy_file)
        else {
            if flags.audit_log_path.is_some() {
                tracing::warn!("--audit-log-path without --audit-policy-file: nothing is audited");
            }
            return Ok(None);
        };
        let policy = Policy::load(policy_file)?;
        let sink = if path == "-" {
            Sink::Stdout
        } else {
            let limits = rotate::Limits {
                max_bytes: match flags.audit_log_maxsize {
                    0 => rotate::DEFAULT_MAX_BYTES,
                    mb => mb.saturating_mul(1024 * 1024),
                },
                max_backups: flags.audit_log_maxbackup,
                max_age: (flags.audit_log_maxage > 0)
                    .then(|| std::time::Duration::from_secs(flags.audit_log_maxage * 86400)),
            };
            Sink::File(
                rotate::RotatingFile::open(PathBuf::from(path), limits).map_err(|source| {
                    Error::Open {
                        path: path.clone(),
                        source,
                    }
                })?,
            )
        };
        tracing::info!(path = %path, "audit log on");
        Ok(Some(Log::start(policy, sink)))
    }

    fn start(policy: Policy, sink: Sink) -> Arc<Log> {
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_events(rx, sink))
            .expect("starting the audit writer thread");
        Arc::new(Log { policy, tx })
    }

    /// The request's audit, or None when the policy says None for it.
    pub fn begin(self: &Arc<Self>, facts: &RequestFacts) -> Option<Pending> {
        let info = facts.info;
        let (user, groups) = facts
            .user
            .map_or(("", &[][..]), |u| (u.name.as_str(), &u.groups[..]));
        let decision = self.policy.decide(&policy::Attributes {
            user,
            groups,
            verb: info.api_verb,
            is_resource: info.is_resource,
            group: &info.group,
            resource: &info.resource,
            subresource: &info.subresource,
            name: &info.name,
            namespace: &info.namespace,
            path: facts.uri.path(),
        });
        if decision.level == Level::None {
            return None;
        }
        Some(Pending {
            log: self.clone(),
            event: Event::new(facts, decision.level),
            omit: decision.omit_stages,
            omit_managed_fields: decision.omit_managed_fields,
        })
    }
}

/// The writer thread: one JSON line per event, flushed whenever the queue runs empty. A write
/// error is logged once (and again after the log recovers), not per event.
fn write_events(mut rx: mpsc::Receiver<Event>, mut sink: Sink) {
    let mut failing = false;
    let mut report = |r: std::io::Result<()>| match r {
        Err(e) if !failing => {
            failing = true;
            tracing::error!(error = %e, "writing the audit log");
        }
        Err(_) => {}
        Ok(()) if failing => {
            failing = false;
            tracing::info!("the audit log is written again");
        }
        Ok(()) => {}
    };
    while let Some(first) = rx.blocking_recv() {
        let mut next = Some(first);
        while let Some(ev) = next {
            let mut line = serde_json::to_vec(&ev).expect("an Event always serializes");
            line.push(b'\n');
            report(sink.write_line(&line));
            next = rx.try_recv().ok();
        }
        report(sink.flush());
    }
}

/// The client's Audit-ID when it sent one (as upstream keeps it), else a new UUID.
pub fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(AUDIT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string)
}

/// One request's audit event while the request runs.
pub struct Pending {
    log: Arc<Log>,
    event: Event,
    omit: Vec<Stage>,
    omit_managed_fields: bool,
}

impl Pending {
    fn stamped(&self, stage: Stage) -> Option<Event> {
        if self.omit.contains(&stage) {
            return None;
        }
        let mut ev = self.event.clone();
        ev.stage = stage;
        ev.stage_timestamp = micro_time(jiff::Timestamp::now());
        Some(ev)
    }

    async fn emit(&self, stage: Stage) {
        if let Some(ev) = self.stamped(stage) {
            // Fails only once the writer thread is gone, at exit.
            let _ = self.log.tx.send(ev).await;
        }
    }

    pub async fn received(&self) {
        self.emit(Stage::RequestReceived).await;
    }

    /// What handling the request recorded: audit annotations (authorization's decision,
    /// admission's), and the request body.
    pub fn recorded(&mut self, recorded: &Recorded) {
        for (k, v) in &recorded.annotations {
            self.event.annotations.insert(k.clone(), v.clone());
        }
        if let Some(body) = &recorded.request_body {
            self.event.set_request_body(body, self.omit_managed_fields);
        }
        if recorded.impersonated_user.is_some() {
            self.event.impersonated_user = recorded.impersonated_user.clone();
        }
    }

    /// A handler panicked: the Panic event, with the 500 the client gets.
    pub async fn panicked(mut self, message: &str) {
        self.event.response_status = Some(serde_json::json!({
            "metadata": {}, "status": "Failure", "message": message, "code": 500}));
        self.emit(Stage::Panic).await;
    }

    /// Writes ResponseComplete for a whole answer; for a stream ResponseStarted now and
    /// ResponseComplete when the body ends or is dropped.
    pub async fn respond(mut self, resp: Resp, long_running: bool) -> Resp {
        let code = resp.status().as_u16();
        if long_running && resp.status().is_success() {
            self.event
                .set_response(code, None, self.omit_managed_fields);
            self.emit(Stage::ResponseStarted).await;
            return resp.map(|inner| {
                CompleteOnDrop {
                    inner,
                    pending: Some(self),
                }
                .boxed()
            });
        }
        let wants_body = code >= 400 || self.event.level >= Level::RequestResponse;
        let (resp, body) = if wants_body {
            whole_json_body(resp).await
        } else {
            (resp, None)
        };
        self.event
            .set_response(code, body.as_deref(), self.omit_managed_fields);
        self.emit(Stage::ResponseComplete).await;
        resp
    }
}

/// A JSON answer's bytes, when the answer is whole (streams and other encodings are not read).
async fn whole_json_body(resp: Resp) -> (Resp, Option<Bytes>) {
    use hyper::body::Body as _;
    let json = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json || resp.body().size_hint().exact().is_none() {
        return (resp, None);
    }
    let (parts, body) = resp.into_parts();
    let Ok(collected) = body.collect().await;
    let raw = collected.to_bytes();
    let resp = http::Response::from_parts(parts, http_body_util::Full::new(raw.clone()).boxed());
    (resp, Some(raw))
}

/// A streamed answer that writes its request's ResponseComplete when it ends or the client goes
/// away (either way the body is dropped).
struct CompleteOnDrop {
    inner: Body,
    pending: Option<Pending>,
}

impl Drop for CompleteOnDrop {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let Some(ev) = p.stamped(Stage::ResponseComplete) else {
            return;
        };
        if let Err(mpsc::error::TrySendError::Full(ev)) = p.log.tx.try_send(ev) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let tx = p.log.tx.clone();
                rt.spawn(async move {
                    let _ = tx.send(ev).await;
                });
            }
        }
    }
}

impl hyper::body::Body for CompleteOnDrop {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::auth::User;
    use http::Method;

    fn log_to(path: &std::path::Path, policy: &str) -> Arc<Log> {
        let file = rotate::RotatingFile::open(
            path.to_path_buf(),
            rotate::Limits {
                max_bytes: rotate::DEFAULT_MAX_BYTES,
                max_backups: 0,
                max_age: None,
            },
        )
        .unwrap();
        Log::start(Policy::parse(policy).unwrap(), Sink::File(file))
    }

    fn lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(path).unwrap();
            if text.lines().count() >= n {
                return text
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("fewer than {n} lines in {}", path.display());
    }

    #[tokio::test]
    async fn stages_annotations_and_omitted_stages_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = log_to(
            &path,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources: [{group: \"\", resources: [pods]}]\n- level: Request\n  omitStages: [RequestReceived]\n",
        );
        let uri: http::Uri = "/api/v1/namespaces/ns/configmaps".parse().unwrap();
        let headers = http::HeaderMap::new();
        let user = User::new("alice", &["system:authenticated"]);
        let info = crate::apiserver::request_info::classify(
            &Method::POST,
            uri.path(),
            None,
            "application/json",
        );
        let facts = RequestFacts {
            info: &info,
            uri: &uri,
            headers: &headers,
            peer: None,
            user: Some(&user),
            audit_id: "a1",
            received: jiff::Timestamp::now(),
        };
        let mut pending = log.begin(&facts).expect("Request level");
        pending.received().await;
        pending.recorded(&Recorded {
            annotations: vec![("authorization.k8s.io/decision".into(), "allow".into())],
            request_body: Some(Bytes::from_static(br#"{"metadata":{"name":"c"}}"#)),
            ..Default::default()
        });
        let resp = crate::apiserver::handler::json(
            http::StatusCode::CREATED,
            &serde_json::json!({"metadata": {"name": "c"}}),
        );
        let resp = pending.respond(resp, false).await;
        assert_eq!(resp.status(), 201);
        let pods: http::Uri = "/api/v1/pods".parse().unwrap();
        let pods_info =
            crate::apiserver::request_info::classify(&Method::GET, "/api/v1/pods", None, "");
        let none = RequestFacts {
            info: &pods_info,
            uri: &pods,
            ..facts
        };
        assert!(log.begin(&none).is_none());
        let got = lines(&path, 1);
        assert_eq!(got.len(), 1, "{got:?}");
        let ev = &got[0];
        assert_eq!(ev["stage"], "ResponseComplete");
        assert_eq!(ev["level"], "Request");
        assert_eq!(ev["objectRef"]["name"], "c");
        assert_eq!(ev["requestObject"]["metadata"]["name"], "c");
        assert!(ev.get("responseObject").is_none());
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "allow");
        assert_eq!(ev["responseStatus"]["code"], 201);
    }

    #[test]
    fn audit_id_is_the_clients_or_new() {
        let mut h = http::HeaderMap::new();
        let a = request_id(&h);
        assert_eq!(a.len(), 36);
        assert_ne!(a, request_id(&h));
        h.insert("audit-id", "from-aggregator".parse().unwrap());
        assert_eq!(request_id(&h), "from-aggregator");
    }
}
