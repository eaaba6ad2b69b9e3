//! Watch: a chunked response of one JSON event per line, fed from the store's watch stream.
//!
//! Without a resourceVersion (or "0", or sendInitialEvents=true) the watch starts with one ADDED
//! event per existing object, read at one revision, and continues from that revision. With a
//! resourceVersion it replays the log after it; one older than the compacted history gets an
//! in-stream ERROR 410 Expired (an HTTP 410 would make clients retry instead of relisting).
//! Label and field selectors are applied to the old and new object of each change, so an
//! object leaving the selection is seen as DELETED and one entering it as ADDED.

use super::handler::{Api, Output, ResourceRequest, Resp, TABLE_CONTENT_TYPE};
use super::registry::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::{conversion, table_output};
use crate::store::{self, Event, KeyValue, WatchItem};
use bytes::Bytes;
use futures::StreamExt;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a watch that allows bookmarks is told how far it has come.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);
/// Watches without timeoutSeconds end after this long (clients re-watch from their last event).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Turns store events into watch lines for one request.
struct Encoder {
    info: Arc<ResourceInfo>,
    output: Output,
    label: LabelSelector,
    field: FieldSelector,
    columns_sent: bool,
}

impl Encoder {
    fn filtering(&self) -> bool {
        !self.label.is_empty() || !self.field.is_empty()
    }

    fn matches(&self, v: &Value) -> bool {
        self.label.matches(v) && self.field.matches(v)
    }

    fn line(&mut self, kind: &str, stored: &[u8], rv: i64, parsed: Option<Value>) -> Option<Bytes> {
        let mut out = Vec::with_capacity(stored.len() + 64);
        out.extend_from_slice(b"{\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"object\":");
        match self.output {
            Output::Json => conversion::write_with_rv(&self.info, &mut out, stored, rv),
            Output::Metadata => {
                let v = match parsed {
                    Some(v) => v,
                    None => conversion::decode(&self.info, stored, rv).ok()?,
                };
                serde_json::to_writer(&mut out, &super::reads::partial_metadata(&v)).ok()?;
            }
            Output::Table(include) => {
                let v = match parsed {
                    Some(v) => v,
                    None => conversion::decode(&self.info, stored, rv).ok()?,
                };
                let row = table_output::row(&self.info, &v, include, chrono::Utc::now());
                let t = table_output::table(&self.info, vec![row], rv, None, !self.columns_sent);
                self.columns_sent = true;
                serde_json::to_writer(&mut out, &t).ok()?;
            }
        }
        out.extend_from_slice(b"}\n");
        Some(Bytes::from(out))
    }

    /// The line for one stored object at watch start.
    fn initial(&mut self, kv: &KeyValue) -> Option<Bytes> {
        let parsed = if self.filtering() || matches!(self.output, Output::Table(_)) {
            let v = conversion::decode(&self.info, &kv.value, kv.mod_revision).ok()?;
            if !self.matches(&v) {
                return None;
            }
            Some(v)
        } else {
            None
        };
        self.line("ADDED", &kv.value, kv.mod_revision, parsed)
    }

    fn event(&mut self, ev: &Event) -> Option<Bytes> {
        match ev {
            Event::Put { kv, prev } => {
                if !self.filtering() {
                    let kind = if prev.is_some() { "MODIFIED" } else { "ADDED" };
                    return self.line(kind, &kv.value, kv.mod_revision, None);
                }
                let new = conversion::decode(&self.info, &kv.value, kv.mod_revision).ok()?;
                let now_in = self.matches(&new);
                let was_in = prev
                    .as_ref()
                    .and_then(|p| conversion::decode(&self.info, &p.value, p.mod_revision).ok())
                    .is_some_and(|old| self.matches(&old));
                match (was_in, now_in) {
                    (false, true) => self.line("ADDED", &kv.value, kv.mod_revision, Some(new)),
                    (true, true) => self.line("MODIFIED", &kv.value, kv.mod_revision, Some(new)),
                    (true, false) => self.line("DELETED", &kv.value, kv.mod_revision, Some(new)),
                    (false, false) => None,
                }
            }
            Event::Delete { prev, revision } => {
                let parsed = if self.filtering() {
                    let old = conversion::decode(&self.info, &prev.value, *revision).ok()?;
                    if !self.matches(&old) {
                        return None;
                    }
                    Some(old)
                } else {
                    None
                };
                self.line("DELETED", &prev.value, *revision, parsed)
            }
        }
    }

    fn bookmark(&self, rv: i64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": &self.info.kind, "apiVersion": &self.info.api_version, "metadata": meta});
        let mut out =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        out.push(b'\n');
        Bytes::from(out)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut out =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

impl Api {
    pub async fn watch(self: &Arc<Self>, r: ResourceRequest) -> Result<Resp, ApiError> {
        let (label, field) = super::resources::selectors_of(&r)?;
        let timeout = match r.param("timeoutSeconds") {
            Some(t) => Duration::from_secs(
                t.parse()
                    .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {t}")))?,
            ),
            None => DEFAULT_TIMEOUT,
        };
        let bookmarks = r.param("allowWatchBookmarks") == Some("true");
        let send_initial = match r.param("sendInitialEvents") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid sendInitialEvents: {other}"
                )))
            }
            None => None,
        };
        if send_initial.is_some() && r.param("resourceVersionMatch") != Some("NotOlderThan") {
            return Err(ApiError::Invalid {
                message: "sendInitialEvents requires resourceVersionMatch=NotOlderThan".into(),
                target: Default::default(),
                causes: Vec::new(),
            });
        }
        let rv = r.param("resourceVersion");
        let prefix = r.info.list_prefix(r.namespace.as_deref());
        let from_state = send_initial == Some(true)
            || (send_initial.is_none() && matches!(rv, None | Some("0")));

        let (initial, start) = if from_state {
            let page = self.store.list(&prefix, None, 0, None).await?;
            (page.items, page.revision)
        } else {
            let start = match rv {
                Some(v) => v
                    .parse::<i64>()
                    .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion: {v}")))?,
                None => self.store.current_revision().await?,
            };
            (Vec::new(), start)
        };
        // With bookmarks, the store also says how far a quiet watch has come (progress marks),
        // so the bookmarks keep the client's resourceVersion moving with the store.
        let opened = if bookmarks {
            self.store
                .watch_with_progress(&prefix, start, BOOKMARK_INTERVAL)
                .await
        } else {
            self.store
                .watch(&prefix, start)
                .await
                .map(|s| s.map(|item| item.map(WatchItem::Event)).boxed())
        };
        let stream = match opened {
            Ok(s) => Ok(s),
            Err(store::Error::Compacted {
                requested,
                compacted,
            }) => {
                tracing::info!(
                    resource = &r.info.plural,
                    requested,
                    compacted,
                    "watch from a compacted revision: 410 Expired in the stream"
                );
                Err(ApiError::Expired(format!(
                    "too old resource version: {requested} ({compacted})"
                )))
            }
            Err(e) => return Err(e.into()),
        };

        let mut enc = Encoder {
            info: r.info.clone(),
            output: r.output,
            label,
            field,
            columns_sent: false,
        };
        let (tx, rx) = mpsc::channel::<Bytes>(512);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(error_line(&e)).await;
                    return;
                }
            };
            for kv in &initial {
                if let Some(line) = enc.initial(kv) {
                    if tx.send(line).await.is_err() {
                        return;
                    }
                }
            }
            drop(initial);
            if send_initial == Some(true)
                && bookmarks
                && tx.send(enc.bookmark(start, true)).await.is_err()
            {
                return;
            }
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + BOOKMARK_INTERVAL,
                BOOKMARK_INTERVAL,
            );
            let mut last = start;
            let mut bookmarked = start;
            loop {
                tokio::select! {
                    _ = &mut deadline => {
                        if bookmarks {
                            let _ = tx.send(enc.bookmark(last, false)).await;
                        }
                        break;
                    }
                    _ = shutdown.changed() => break,
                    _ = tx.closed() => break,
                    _ = tick.tick(), if bookmarks && last > bookmarked => {
                        bookmarked = last;
                        if tx.send(enc.bookmark(last, false)).await.is_err() {
                            break;
                        }
                    }
                    ev = stream.next() => match ev {
                        None => break,
                        Some(Err(store::Error::Compacted { requested, compacted })) => {
                            let e = ApiError::Expired(format!("too old resource version: {requested} ({compacted})"));
                            let _ = tx.send(error_line(&e)).await;
                            break;
                        }
                        Some(Err(e)) => {
                            let _ = tx.send(error_line(&ApiError::Internal(e.to_string()))).await;
                            break;
                        }
                        Some(Ok(WatchItem::Progress(rev))) => {
                            last = last.max(rev);
                            if bookmarks && last > bookmarked {
                                bookmarked = last;
                                if tx.send(enc.bookmark(last, false)).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Some(Ok(WatchItem::Event(ev))) => {
                            last = ev.revision();
                            if let Some(line) = enc.event(&ev) {
                                if tx.send(line).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
            }
        });

        let body = StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx).map(|b| Ok(Frame::data(b))),
        );
        let ct = match r.output {
            Output::Table(_) => TABLE_CONTENT_TYPE,
            Output::Json | Output::Metadata => "application/json",
        };
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, ct)
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(BodyExt::boxed(body))
            .expect("static response parts are valid"))
    }
}
