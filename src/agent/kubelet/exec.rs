//! `kubectl exec` at the kubelet: a websocket in the channel protocol kubectl speaks
//! (v5.channel.k8s.io, v4 as fallback): every binary message starts with its channel, 0 stdin,
//! 1 stdout, 2 stderr, 3 the final Status, 4 terminal resizes, and (v5) 255 to close a channel.
//! The process itself is started by the pod's shim, which hands over its stdio.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

use super::Kubelet;

pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

type Body = BoxBody<Bytes, Infallible>;

fn plain(code: StatusCode, msg: String) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(Bytes::from(msg)).boxed())
        .expect("valid response")
}

/// What the query asks for: the command, and which streams.
#[derive(Debug, Default)]
struct Asked {
    command: Vec<String>,
    stdin: bool,
    tty: bool,
}

fn asked(query: &str) -> Asked {
    let mut a = Asked::default();
    for (k, v) in super::logs::form_pairs(query) {
        let on = v == "1" || v == "true";
        match k.as_str() {
            "command" => a.command.push(v),
            "stdin" | "input" => a.stdin = on,
            "tty" => a.tty = on,
            _ => {}
        }
    }
    a
}

/// The Status kubectl reads on channel 3: success, or the exit code the way upstream reports it.
fn final_status(code: i32, command: &[String]) -> String {
    if code == 0 {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    }
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", command.join(" ")),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
    .to_string()
}

fn failure(message: &str) -> String {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}).to_string()
}

/// GET /exec/<ns>/<pod>/<container>?command=..&stdin=..&tty=.. with a websocket upgrade.
pub async fn serve(
    k: &Arc<Kubelet>,
    ns: &str,
    pod: &str,
    container: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let a = asked(&query);
    if a.command.is_empty() {
        return plain(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command".into(),
        );
    }
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return plain(
            StatusCode::BAD_REQUEST,
            "exec needs a websocket upgrade (SPDY is not served)".into(),
        );
    };
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "none of the offered subprotocols {offered:?} is served; want one of {PROTOCOLS:?}"
            ),
        );
    };
    let v5 = *protocol == "v5.channel.k8s.io";
    // The running container of that name in the newest pod of that name.
    let found = super::server::running_container(k, ns, pod, container);
    let Some((dir, id)) = found else {
        return plain(
            StatusCode::NOT_FOUND,
            format!("container {container} is not running in pod {ns}/{pod}"),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let command = a.command.clone();
    let (tty, stdin) = (a.tty, a.stdin);
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            Role::Server,
            None,
        )
        .await;
        session(ws, dir, id, command, tty, stdin, v5).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()),
        )
        .header("sec-websocket-protocol", *protocol)
        .body(Empty::new().boxed())
        .expect("valid response")
}

async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    dir: std::path::PathBuf,
    id: String,
    command: Vec<String>,
    tty: bool,
    stdin: bool,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = ws.split();
    let (d, i, c) = (dir.clone(), id.clone(), command.clone());
    let started =
        tokio::task::spawn_blocking(move || crate::shim::client::exec(&d, &i, c, tty, stdin)).await;
    let exec = match started {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            let _ = tx
                .send(frame(ERROR, failure(&e.to_string()).as_bytes()))
                .await;
            let _ = tx.send(normal_close()).await;
            return;
        }
        Err(e) => {
            let _ = tx
                .send(frame(ERROR, failure(&e.to_string()).as_bytes()))
                .await;
            return;
        }
    };
    let crate::shim::client::Exec { fds, conn, .. } = exec;
    let mut fds = fds.into_iter();
    // With a terminal one descriptor carries everything; else stdin (if asked), stdout, stderr.
    let (input, outputs): (Option<OwnedFd>, Vec<(u8, OwnedFd)>) = if tty {
        let master = fds.next();
        let copy = master.as_ref().and_then(|m| m.try_clone().ok());
        (copy, master.into_iter().map(|m| (STDOUT, m)).collect())
    } else {
        let input = if stdin { fds.next() } else { None };
        let outs = [STDOUT, STDERR].into_iter().zip(fds).collect();
        (input, outs)
    };
    let master_fd = if tty {
        input.as_ref().map(|f| f.as_raw_fd())
    } else {
        None
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(32);
    let mut readers = Vec::new();
    for (chan, fd) in outputs {
        let out_tx = out_tx.clone();
        readers.push(std::thread::spawn(move || {
            let mut f = std::fs::File::from(fd);
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out_tx.blocking_send((chan, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(out_tx);
    // The client's side: stdin and resizes.
    let writer_fd = input.map(std::fs::File::from);
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    let writer = writer_fd.map(|mut f| {
        std::thread::spawn(move || {
            while let Ok(Some(data)) = in_rx.recv() {
                if f.write_all(&data).is_err() {
                    break;
                }
            }
        })
    });
    let reading = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(data) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match data.first() {
                Some(&STDIN) => {
                    let _ = in_tx.send(Some(data[1..].to_vec()));
                }
                Some(&RESIZE) => {
                    if let (Some(fd), Ok(size)) = (
                        master_fd,
                        serde_json::from_slice::<serde_json::Value>(&data[1..]),
                    ) {
                        let w = size["Width"].as_u64().unwrap_or(80) as u16;
                        let h = size["Height"].as_u64().unwrap_or(24) as u16;
                        crate::runtime::console::set_size(fd, h, w);
                    }
                }
                // stdin closed: the process sees end of file (not with a terminal, whose
                // master carries its output too).
                Some(&CLOSE) if v5 && !tty && data.get(1) == Some(&STDIN) => {
                    let _ = in_tx.send(None);
                }
                _ => {}
            }
        }
    });
    while let Some((chan, data)) = out_rx.recv().await {
        if tx.send(frame(chan, &data)).await.is_err() {
            break;
        }
    }
    let code = tokio::task::spawn_blocking(move || crate::shim::client::wait_exit(&conn).ok())
        .await
        .ok()
        .flatten();
    let status = match code {
        Some(c) => final_status(c, &command),
        None => failure("the process's exit was not recorded"),
    };
    let _ = tx.send(frame(ERROR, status.as_bytes())).await;
    // A normal close (1000): kubectl takes any other ending as a broken stream.
    let _ = tx.send(normal_close()).await;
    let _ = tx.close().await;
    reading.abort();
    if let Some(w) = writer {
        drop(w);
    }
    for r in readers {
        let _ = r.join();
    }
}

fn frame(chan: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(chan);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

fn normal_close() -> Message {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}
