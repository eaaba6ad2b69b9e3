//! `kubectl port-forward` at the kubelet: SPDY/3.1 (protocol `portforward.k8s.io`), either on
//! the upgraded connection itself (kubectl before 1.31) or tunnelled through a websocket whose
//! binary messages carry the SPDY bytes (`SPDY/3.1+portforward.k8s.io`, kubectl 1.31 and
//! later). For each forwarded connection the client opens two streams with the same
//! `requestID` header: an error stream (it only reads) and a data stream. The kubelet connects
//! to `localhost:<port>` inside the pod's network namespace, copies both ways, and ends the
//! data stream then the error stream when the pod's side closes; a failure to connect is
//! written to the error stream, which kubectl prints.

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::server::{header_list, text, Body};
use super::spdy::{self, Frame};
use super::spdy_conn;
use super::Kubelet;

pub const PROTOCOL: &str = "portforward.k8s.io";
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The network namespace of the newest running pod `ns/pod` on this node: its shim's.
fn pod_netns(k: &Kubelet, ns: &str, pod: &str) -> Option<(PathBuf, String)> {
    let (_, uid) = super::server::pod_log_dir(k, ns, pod)?;
    let pid = std::fs::read_to_string(k.pod_dir(&uid).join(crate::shim::PID_FILE)).ok()?;
    let path = PathBuf::from(format!("/proc/{}/ns/net", pid.trim()));
    path.exists().then_some((path, uid))
}

/// GET (websocket) or POST (SPDY upgrade) /portForward/<ns>/<pod>.
pub async fn serve(
    k: &Arc<Kubelet>,
    ns: &str,
    pod: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let Some((netns, uid)) = pod_netns(k, ns, pod) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{pod} is not running on this node"),
        );
    };
    let target = Target {
        netns,
        pod: format!("{ns}/{pod}"),
        uid,
    };
    let upgrade = header_list(req.headers(), "upgrade");
    let websocket = upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket"));
    let on_upgrade = hyper::upgrade::on(&mut req);
    if websocket {
        let offered = header_list(req.headers(), "sec-websocket-protocol");
        if !offered.iter().any(|p| p == WEBSOCKET_PROTOCOL) {
            return text(
                StatusCode::BAD_REQUEST,
                format!("port-forward over websocket needs subprotocol {WEBSOCKET_PROTOCOL}; offered {offered:?}"),
            );
        }
        let Some(key) = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        tokio::spawn(async move {
            let Ok(up) = on_upgrade.await else { return };
            let (frames, sender) = spdy_conn::over_websocket(up).await;
            session(frames, sender, target).await;
        });
        return Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header(
                "sec-websocket-accept",
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
            )
            .header("sec-websocket-protocol", WEBSOCKET_PROTOCOL)
            .body(Empty::new().boxed())
            .expect("valid response");
    }
    if !upgrade.iter().any(|u| u.eq_ignore_ascii_case("SPDY/3.1")) {
        return text(
            StatusCode::BAD_REQUEST,
            "port-forward needs an upgrade to SPDY/3.1 or websocket",
        );
    }
    let offered = header_list(req.headers(), "x-stream-protocol-version");
    if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) {
        return text(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{PROTOCOL}]"),
        );
    }
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let (frames, sender) = spdy_conn::over_upgraded(up);
        session(frames, sender, target).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "SPDY/3.1")
        .header("connection", "Upgrade")
        .header("x-stream-protocol-version", PROTOCOL)
        .body(Empty::new().boxed())
        .expect("valid response")
}

/// Where forwarded connections go.
#[derive(Debug, Clone)]
struct Target {
    netns: PathBuf,
    pod: String,
    uid: String,
}

/// What the client sends on a data stream.
enum Inbound {
    Data(Vec<u8>),
    Fin,
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// One port-forward connection: stream pairs open, each is forwarded until it ends.
async fn session(mut input: spdy_conn::Frames, frames: spdy_conn::Sender, target: Target) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut data_streams: HashMap<u32, mpsc::Sender<Inbound>> = HashMap::new();
    while let Some(frame) = input.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(pod = %target.pod, error = %e, "port-forward: bad frame");
                let _ = frames
                    .send(Frame::GoAway {
                        last_good: 0,
                        status: spdy::PROTOCOL_ERROR,
                    })
                    .await;
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let kind = spdy::header(&headers, "streamtype").unwrap_or("");
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                let (Some(port @ 1..), "error" | "data") = (port, kind) else {
                    spdy_conn::refuse(&frames, stream).await;
                    continue;
                };
                spdy_conn::accept(&frames, stream).await;
                // Clients older than the requestID header open the error stream, then the
                // data stream right after it (ids two apart).
                let request = spdy::header(&headers, "requestid")
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        let first = if kind == "data" {
                            stream.saturating_sub(2)
                        } else {
                            stream
                        };
                        format!("stream-{first}")
                    });
                let pair = pairs.entry(request.clone()).or_default();
                pair.port = port;
                if kind == "error" {
                    pair.error = Some(stream);
                } else {
                    pair.data = Some(stream);
                }
                if let (Some(error), Some(data)) = (pair.error, pair.data) {
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel(16);
                    data_streams.insert(data, tx);
                    tokio::spawn(forward(
                        target.clone(),
                        port,
                        data,
                        error,
                        frames.clone(),
                        rx,
                    ));
                }
            }
            Frame::Data { stream, fin, data } => {
                let Some(tx) = data_streams.get(&stream) else {
                    continue;
                };
                if !data.is_empty() && tx.send(Inbound::Data(data)).await.is_err() {
                    data_streams.remove(&stream);
                    continue;
                }
                if fin {
                    let _ = tx.send(Inbound::Fin).await;
                    data_streams.remove(&stream);
                }
            }
            Frame::RstStream { stream, .. } => {
                // Dropping the sender tells the forwarder to give up.
                data_streams.remove(&stream);
            }
            Frame::Ping { id } => spdy_conn::answer_ping(&frames, id).await,
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
}

/// Copies one forwarded connection between its data stream and the pod's `localhost:port`.
async fn forward(
    target: Target,
    port: u16,
    data: u32,
    error: u32,
    frames: mpsc::Sender<Frame>,
    mut inbound: mpsc::Receiver<Inbound>,
) {
    let netns = target.netns.clone();
    let connected = tokio::task::spawn_blocking(move || {
        crate::network::netns::connect_localhost(&netns, port, Duration::from_secs(10))
            .and_then(|s| s.set_nonblocking(true).map(|_| s))
            .and_then(tokio::net::TcpStream::from_std)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    let tcp = match connected {
        Ok(t) => t,
        Err(e) => {
            let msg = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                target.pod, target.uid
            );
            tracing::debug!(%msg, "port-forward");
            let _ = frames.send(Frame::data(error, msg.as_bytes())).await;
            let _ = frames.send(Frame::fin(error)).await;
            let _ = frames.send(Frame::fin(data)).await;
            return;
        }
    };
    let (mut rd, mut wr) = tcp.into_split();
    // The pod's side, in its own task so that a client slow to read never stops writes to
    // the pod (and the other way round).
    let down_frames = frames.clone();
    let mut down = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n @ 1..) = rd.read(&mut buf).await {
            if down_frames
                .send(Frame::data(data, &buf[..n]))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut client_done = false;
    loop {
        tokio::select! {
            _ = &mut down => break,
            got = inbound.recv(), if !client_done => match got {
                Some(Inbound::Data(b)) => {
                    if wr.write_all(&b).await.is_err() {
                        client_done = true;
                    }
                }
                Some(Inbound::Fin) => {
                    let _ = wr.shutdown().await;
                    client_done = true;
                }
                // Reset by the client, or the connection is gone.
                None => {
                    down.abort();
                    return;
                }
            },
        }
    }
    // The pod closed its side: end the data stream, then the error stream (kubectl waits for
    // both before it closes the local connection).
    let _ = frames.send(Frame::fin(data)).await;
    let _ = frames.send(Frame::fin(error)).await;
}
