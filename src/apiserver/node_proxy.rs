//! The API server as a client of kubelets: `pods/log` is answered by the kubelet of the pod's
//! node over its HTTPS port, reached at the node's InternalIP with the API server's own kubelet
//! client certificate, and its body streamed through as it comes.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};

use super::handler::{Api, Resp};
use super::status::ApiError;

/// The TLS the API server uses towards kubelets (client certificate, cluster CA), set once at
/// start by the server; without it node-proxied requests are refused with a clear error.
static KUBELET_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

pub fn install_kubelet_tls(cfg: Arc<rustls::ClientConfig>) {
    let _ = KUBELET_TLS.set(cfg);
}

/// Query parameters of pods/log that the kubelet understands.
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "timestamps",
    "limitBytes",
];

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// The node's address and kubelet port from its status.
async fn kubelet_of(api: &Api, node: &str) -> Result<(String, u16), ApiError> {
    let snap = api.registry.snapshot();
    let nodes = snap
        .lookup("", "v1", "nodes")
        .ok_or_else(|| ApiError::Internal("nodes are not served".into()))?;
    let (n, _) = api
        .get_object(&nodes, None, node)
        .await?
        .ok_or_else(|| ApiError::not_found("", "nodes", node))?;
    let addrs = n["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ip = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|t| {
            addrs
                .iter()
                .find(|a| a["type"] == *t)
                .and_then(|a| a["address"].as_str())
        })
        .ok_or_else(|| bad(format!("node {node} has no address")))?
        .to_string();
    let port = n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap_or(10250) as u16;
    Ok((ip, port))
}

/// GET pods/<name>/log: checks the container as upstream does, then streams the kubelet's answer.
pub async fn pod_log(api: &Arc<Api>, ns: &str, name: &str, query: &str) -> Result<Resp, ApiError> {
    let snap = api.registry.snapshot();
    let pods = snap
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::Internal("pods are not served".into()))?;
    let (pod, _) = api
        .get_object(&pods, Some(ns), name)
        .await?
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    let params = super::encoding::parse_query(Some(query));
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let apps = names("containers");
    let all: Vec<String> = names("initContainers")
        .into_iter()
        .chain(apps.iter().cloned())
        .chain(names("ephemeralContainers"))
        .collect();
    let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .map(str::to_string);
    let container = match params.get("container") {
        Some(c) if !c.is_empty() => c.clone(),
        _ => match (default, apps.as_slice()) {
            (Some(d), _) => d,
            (None, [one]) => one.clone(),
            _ => {
                return Err(bad(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    all.join(" ")
                )))
            }
        },
    };
    if !all.contains(&container) {
        return Err(bad(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() {
        // A pod nobody has placed has no logs yet.
        return Err(bad(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
        )));
    }
    let (ip, port) = kubelet_of(api, node).await?;
    let mut q: Vec<String> = Vec::new();
    for k in LOG_PARAMS {
        if let Some(v) = params.get(*k) {
            q.push(format!("{k}={}", encode(v)));
        }
    }
    let path = format!("/containerLogs/{ns}/{name}/{container}?{}", q.join("&"));
    let resp = get(&ip, port, &path).await?;
    let status = resp.status();
    if status != StatusCode::OK {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        return Err(bad(text));
    }
    // Frames are passed on as they come (a followed log never ends on its own); an error from
    // the kubelet's side ends the stream.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
    let mut incoming = resp.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = incoming.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
        }
    });
    let body = http_body_util::StreamBody::new(futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b))))
    }));
    Ok(http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/plain")
        .body(BodyExt::boxed(body))
        .expect("valid response"))
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One GET to a kubelet.
async fn get(
    ip: &str,
    port: u16,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
    let tls = KUBELET_TLS.get().cloned().ok_or_else(|| {
        ApiError::Internal("the API server has no kubelet client credentials".into())
    })?;
    let unreachable = |e: String| ApiError::Internal(format!("error dialing backend: {e}"));
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .map_err(|e| unreachable(format!("dial tcp {ip}:{port}: {e}")))?;
    let server_name = rustls::pki_types::ServerName::try_from(ip.to_string())
        .map_err(|e| unreachable(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| unreachable(format!("tls: {e}")))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", format!("{ip}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    send.send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))
}
