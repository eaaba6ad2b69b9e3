//! The API server as a client of kubelets: `pods/log` is answered by the kubelet of the pod's
//! node over its HTTPS port, reached at the node's InternalIP with the API server's own kubelet
//! client certificate, and its body streamed through as it comes; `pods/exec`, `attach` and
//! `portforward` upgrades are spliced to it. [`NodeConnector`] is the pipeline's connector.

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
pub async fn pod_log(api: &Api, ns: &str, name: &str, query: &str) -> Result<Resp, ApiError> {
    let pod = pod_of(api, ns, name).await?;
    let params = super::encoding::parse_query(Some(query));
    let container = pick_container(&pod, name, &params)?;
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
    let req = Request::get(&path)
        .header("host", format!("{ip}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = send(&ip, port, req).await?;
    if resp.status() != StatusCode::OK {
        return Err(kubelet_error(resp).await);
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

/// GET nodes/<name>/proxy/<path>: the node's kubelet API (`stats/summary`, `healthz`, ...),
/// its answer passed on whole with its status and content type. Only GET: what the kubelet
/// serves through other verbs (exec, port-forward) has its own pod subresources.
pub async fn node_get(api: &Api, node: &str, path: &str, query: &str) -> Result<Resp, ApiError> {
    let (ip, port) = kubelet_of(api, node).await?;
    let target = if query.is_empty() {
        format!("/{path}")
    } else {
        format!("/{path}?{query}")
    };
    let req = Request::get(&target)
        .header("host", format!("{ip}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let resp = send(&ip, port, req).await?;
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_string();
    // The answer is passed on whole: bounded in time and size, so that a streaming path
    // (a followed log) cannot hold the request or grow without end; pods/log streams those.
    let limited = http_body_util::Limited::new(resp.into_body(), 64 << 20);
    let body = tokio::time::timeout(std::time::Duration::from_secs(60), limited.collect())
        .await
        .map_err(|_| ApiError::Internal("the kubelet did not answer within 60 s".into()))?
        .map_err(|e| ApiError::Internal(format!("reading the kubelet's answer: {e}")))?
        .to_bytes();
    Ok(http::Response::builder()
        .status(status)
        .header("content-type", kind)
        .body(BodyExt::boxed(
            http_body_util::Full::new(body).map_err(|never| match never {}),
        ))
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

/// The pod object, or upstream's NotFound.
async fn pod_of(api: &Api, ns: &str, name: &str) -> Result<serde_json::Value, ApiError> {
    let snap = api.registry.snapshot();
    let pods = snap
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::Internal("pods are not served".into()))?;
    let (pod, _) = api
        .get_object(&pods, Some(ns), name)
        .await?
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    Ok(pod)
}

/// Sends one request to the kubelet at `ip:port` over a fresh mutual-TLS connection that may
/// be upgraded afterwards.
async fn send(
    ip: &str,
    port: u16,
    req: Request<Empty<Bytes>>,
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
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn.with_upgrades());
    sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(e.to_string()))
}

/// A kubelet's refusal as the client should see it: its text, NotFound for a 404.
async fn kubelet_error(resp: http::Response<hyper::body::Incoming>) -> ApiError {
    let code = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    if code == StatusCode::NOT_FOUND {
        ApiError::NotFound {
            message: text,
            target: Default::default(),
        }
    } else {
        bad(text)
    }
}

/// The container a request names, or the pod's only (or default) one, checked as upstream.
fn pick_container(
    pod: &serde_json::Value,
    name: &str,
    params: &std::collections::HashMap<String, String>,
) -> Result<String, ApiError> {
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
    Ok(container)
}

/// Hands an upgraded request (exec, attach, port-forward: websocket or SPDY) to the pod's
/// kubelet and, once the kubelet switches protocols, splices the two connections together.
pub async fn pod_upgrade<B>(
    api: &Api,
    ns: &str,
    name: &str,
    subresource: &str,
    mut req: http::Request<B>,
) -> Result<Resp, ApiError> {
    let pod = pod_of(api, ns, name).await?;
    let query = req.uri().query().unwrap_or("").to_string();
    let params = super::encoding::parse_query(Some(&query));
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(bad(format!("pod {name} does not have a host assigned")));
    }
    let path = match subresource {
        "portforward" => format!("/portForward/{ns}/{name}?{query}"),
        _ => {
            let container = pick_container(&pod, name, &params)?;
            let phase = pod["status"]["phase"].as_str().unwrap_or("");
            if matches!(phase, "Succeeded" | "Failed") {
                return Err(bad(format!(
                    "cannot exec into a container in a completed pod; current phase is {phase}"
                )));
            }
            format!("/{subresource}/{ns}/{name}/{container}?{query}")
        }
    };
    let (ip, port) = kubelet_of(api, &node).await?;
    let mut out = Request::builder()
        .method(req.method().clone())
        .uri(&path)
        .header("host", format!("{ip}:{port}"));
    for (k, v) in req.headers() {
        let n = k.as_str();
        if n.starts_with("sec-websocket-")
            || n == "upgrade"
            || n == "connection"
            || n.starts_with("x-stream-protocol")
        {
            out = out.header(k, v);
        }
    }
    let out = out
        .body(Empty::<Bytes>::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = send(&ip, port, out).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let mut answer = http::Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        answer = answer.header(k, v);
    }
    let backend = hyper::upgrade::on(&mut resp);
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (Ok(b), Ok(c)) = (backend.await, client.await) else {
            return;
        };
        let (mut b, mut c) = (TokioIo::new(b), TokioIo::new(c));
        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
    });
    Ok(answer
        .body(BodyExt::boxed(
            http_body_util::Empty::<Bytes>::new().map_err(|never| match never {}),
        ))
        .expect("valid response"))
}

/// The connector of a cluster with node agents: pod logs and upgrades go to the pod's kubelet;
/// what no agent serves yet (the proxies) is answered as without agents.
pub struct NodeConnector;

impl super::connect::Connector for NodeConnector {
    fn connect<'a>(
        &'a self,
        api: &'a Api,
        req: super::connect::ConnectRequest,
    ) -> futures::future::BoxFuture<'a, Result<Resp, ApiError>> {
        Box::pin(async move {
            let sub = req.info.subresource.clone();
            if req.resource.plural == "nodes"
                && sub == "proxy"
                && req.parts.method == http::Method::GET
            {
                let path = req.parts.uri.path();
                let rest = path
                    .split_once("/proxy/")
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_default();
                let query = req.parts.uri.query().unwrap_or("").to_string();
                let node = req.object_name().to_string();
                return node_get(api, &node, &rest, &query).await;
            }
            if req.resource.plural != "pods"
                || !matches!(sub.as_str(), "log" | "exec" | "attach" | "portforward")
            {
                return super::connect::NoNodeAgent.connect(api, req).await;
            }
            let ns = req.info.namespace.clone();
            let name = req.object_name().to_string();
            if sub == "log" {
                let query = req.parts.uri.query().unwrap_or("").to_string();
                return pod_log(api, &ns, &name, &query).await;
            }
            let http_req = http::Request::from_parts(req.parts, req.body);
            pod_upgrade(api, &ns, &name, &sub, http_req).await
        })
    }
}
