//! The kubelet's HTTPS port (10250), which only the API server uses (client certificates from
//! the cluster CA): `/healthz`, `/pods` and `/containerLogs/<ns>/<pod>/<container>`, the far end
//! of `kubectl logs`. Exec, attach and port-forward arrive here the same way once the API
//! server hands their upgraded connections through.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use super::{logs, Kubelet};

pub const PORT: u16 = 10250;

pub(super) type Body = BoxBody<Bytes, Infallible>;

/// Every value of a header, comma lists split (several `Sec-WebSocket-Protocol`,
/// `X-Stream-Protocol-Version` or `Upgrade` values may come either way).
pub(super) fn header_list(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect()
}

/// A plain-text answer (errors of the streaming endpoints included).
pub(super) fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body.into())).boxed())
        .expect("valid response")
}

/// A JSON answer.
fn json(code: StatusCode, v: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .expect("valid response")
}

/// Serves the kubelet API on `listener` until the process ends.
pub async fn serve(
    k: Arc<Kubelet>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let (acceptor, k) = (acceptor.clone(), k.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let svc = hyper::service::service_fn(move |req| {
                let k = k.clone();
                async move { Ok::<_, Infallible>(route(k, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(k: Arc<Kubelet>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["healthz"]) => text(StatusCode::OK, "ok"),
        (&Method::GET, ["stats", "summary"]) => {
            let k2 = k.clone();
            match tokio::task::spawn_blocking(move || super::stats::summary(&k2)).await {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (&Method::GET, ["containerLogs", ns, pod, container]) => {
            container_logs(&k, ns, pod, container, &query).await
        }
        (&Method::GET | &Method::POST, ["exec", ns, pod, container]) => {
            super::exec::serve(&k, super::exec::Kind::Exec, ns, pod, container, req).await
        }
        (&Method::GET | &Method::POST, ["portForward", ns, pod]) => {
            super::portforward::serve(&k, ns, pod, req).await
        }
        (&Method::GET | &Method::POST, ["attach", ns, pod, container]) => {
            super::exec::serve(&k, super::exec::Kind::Attach, ns, pod, container, req).await
        }
        (m, _) => {
            tracing::debug!(method = %m, path, "kubelet API: no such path");
            text(StatusCode::NOT_FOUND, "404 page not found\n")
        }
    }
}

/// The log directory of the newest pod named `ns/pod` on this node.
pub fn pod_log_dir(k: &Kubelet, ns: &str, pod: &str) -> Option<(PathBuf, String)> {
    let prefix = format!("{ns}_{pod}_");
    std::fs::read_dir(&k.cfg.pod_logs_dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name.strip_prefix(&prefix)?.to_string();
            let mtime = e.metadata().and_then(|m| m.modified()).ok()?;
            Some((mtime, e.path(), uid))
        })
        .max_by_key(|(t, _, _)| *t)
        .map(|(_, p, uid)| (p, uid))
}

async fn container_logs(
    k: &Arc<Kubelet>,
    ns: &str,
    pod: &str,
    container: &str,
    query: &str,
) -> Response<Body> {
    let opts = match logs::Options::from_query(query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let Some((dir, uid)) = pod_log_dir(k, ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} has no logs on this node"),
        );
    };
    let Some(file) = logs::file_for(&dir.join(container), opts.previous) else {
        let msg = if opts.previous {
            format!("previous terminated container \"{container}\" in pod \"{pod}\" not found")
        } else {
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )
        };
        return text(StatusCode::BAD_REQUEST, msg);
    };
    let attempt: u32 = file
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let pod_dir = k.pod_dir(&uid);
    let name = container.to_string();
    let running = move || {
        crate::shim::read_records(&pod_dir)
            .iter()
            .any(|r| r.name == name && r.attempt == attempt && r.running())
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(logs::stream(file, opts, running, tx));
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, Infallible>(Frame::data(Bytes::from(b)))))
    }));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(body))
        .expect("valid response")
}

/// The pod directory and runtime id of the running container `container` of the newest pod
/// `ns/pod` on this node.
pub fn running_container(
    k: &Kubelet,
    ns: &str,
    pod: &str,
    container: &str,
) -> Option<(PathBuf, String)> {
    let (_, uid) = pod_log_dir(k, ns, pod)?;
    let dir = k.pod_dir(&uid);
    let id = crate::shim::read_records(&dir)
        .into_iter()
        .filter(|r| r.name == container && r.running())
        .max_by_key(|r| r.attempt)?
        .id;
    Some((dir, id))
}
