//! `kubectl exec` and `kubectl attach` at the kubelet: a websocket in the channel protocol
//! kubectl speaks (v5.channel.k8s.io, v4 as fallback): every binary message starts with its
//! channel, 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 terminal resizes, and (v5) 255 to
//! close a channel. The pod's shim starts an exec'd process and hands over its stdio; for an
//! attach it hands over the container's stdin and a copy of its output.

use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::protocol::{Message, Role};

use super::fdio;
use super::server::{header_list, text, Body};
use super::Kubelet;
use tokio::io::AsyncWriteExt;

pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
pub(super) const STDOUT: u8 = 1;
pub(super) const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Which of the two a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

/// What the query asks for: the command, and which streams.
#[derive(Debug, Default, Clone)]
pub(super) struct Asked {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

fn asked(query: &str) -> Asked {
    let mut a = Asked::default();
    for (k, v) in super::logs::form_pairs(query) {
        let on = v == "1" || v == "true";
        match k.as_str() {
            "command" => a.command.push(v),
            "stdin" | "input" => a.stdin = on,
            "stdout" | "output" => a.stdout = on,
            "stderr" | "error" => a.stderr = on,
            "tty" => a.tty = on,
            _ => {}
        }
    }
    a
}

/// The Status kubectl reads on channel 3: success, or the exit code the way upstream reports it.
pub(super) fn final_status(code: i32, command: &[String]) -> String {
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

pub(super) fn failure(message: &str) -> String {
    serde_json::json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}).to_string()
}

/// GET /exec/<ns>/<pod>/<container>?command=..&stdin=..&tty=.. (or /attach/... without a
/// command) with a websocket upgrade.
pub async fn serve(
    k: &Arc<Kubelet>,
    kind: Kind,
    ns: &str,
    pod: &str,
    container: &str,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let query = req.uri().query().unwrap_or("").to_string();
    let a = asked(&query);
    if kind == Kind::Exec && a.command.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        // kubectl before 1.30 speaks SPDY.
        let Some((dir, id)) = super::server::running_container(k, ns, pod, container) else {
            return text(
                StatusCode::NOT_FOUND,
                format!("container {container} is not running in pod {ns}/{pod}"),
            );
        };
        return super::exec_spdy::serve(kind, a, dir, id, req);
    };
    let offered = header_list(req.headers(), "sec-websocket-protocol");
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
        return text(
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
        return text(
            StatusCode::NOT_FOUND,
            format!("container {container} is not running in pod {ns}/{pod}"),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            Role::Server,
            None,
        )
        .await;
        session(ws, kind, dir, id, a, v5).await;
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

/// The descriptors a session pumps: where the client's stdin goes, which channel each output
/// comes out on, and (exec) the shim connection that tells the exit.
pub(super) struct Streams {
    pub input: Option<OwnedFd>,
    pub outputs: Vec<(u8, OwnedFd)>,
    pub exit: Option<UnixStream>,
}

/// Asks the shim for the process's stdio (blocking: run it off the reactor).
pub(super) fn open_streams(
    kind: Kind,
    dir: &std::path::Path,
    id: &str,
    a: &Asked,
) -> Result<Streams, crate::shim::Error> {
    match kind {
        Kind::Exec => {
            let e = crate::shim::client::exec(dir, id, a.command.clone(), a.tty, a.stdin)?;
            let mut fds = e.fds.into_iter();
            // With a terminal one descriptor carries everything; else stdin (if asked),
            // stdout, stderr.
            let (input, outputs) = if a.tty {
                let master = fds.next();
                let input = master.as_ref().and_then(|m| m.try_clone().ok());
                (input, master.into_iter().map(|m| (STDOUT, m)).collect())
            } else {
                let input = if a.stdin { fds.next() } else { None };
                (input, [STDOUT, STDERR].into_iter().zip(fds).collect())
            };
            Ok(Streams {
                input,
                outputs,
                exit: Some(e.conn),
            })
        }
        Kind::Attach => {
            let at = crate::shim::client::attach(dir, id, a.stdin)?;
            Ok(Streams {
                input: at.stdin,
                outputs: [STDOUT, STDERR].into_iter().zip(at.outputs).collect(),
                exit: None,
            })
        }
    }
}

async fn session<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    kind: Kind,
    dir: std::path::PathBuf,
    id: String,
    a: Asked,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, mut rx) = ws.split();
    let asked = a.clone();
    let opened = tokio::task::spawn_blocking(move || open_streams(kind, &dir, &id, &asked)).await;
    let streams = match opened
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(frame(ERROR, failure(&e).as_bytes())).await;
            let _ = tx.send(normal_close()).await;
            return;
        }
    };
    let input = match streams.input.map(fdio::writer).transpose() {
        Ok(i) => i,
        Err(e) => {
            let _ = tx
                .send(frame(ERROR, failure(&e.to_string()).as_bytes()))
                .await;
            return;
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(32);
    let mut readers = Vec::new();
    for (chan, fd) in streams.outputs {
        let Ok(mut pipe) = fdio::reader(fd) else {
            continue;
        };
        let out_tx = out_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n @ 1..) = fdio::read(&mut pipe, &mut buf).await {
                if out_tx.send((chan, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(out_tx);
    // The client's side: stdin and resizes. It ends when the client closes or goes away.
    let tty = a.tty;
    let mut client = tokio::spawn(async move {
        let mut input = input;
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(data) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match data.first() {
                Some(&STDIN) => {
                    if let Some(i) = &mut input {
                        if i.write_all(&data[1..]).await.is_err() {
                            input = None;
                        }
                    }
                }
                Some(&RESIZE) if tty => {
                    if let (Some(i), Ok(size)) = (
                        &input,
                        serde_json::from_slice::<serde_json::Value>(&data[1..]),
                    ) {
                        let w = size["Width"].as_u64().unwrap_or(80) as u16;
                        let h = size["Height"].as_u64().unwrap_or(24) as u16;
                        crate::runtime::console::set_size(std::os::fd::AsRawFd::as_raw_fd(i), h, w);
                    }
                }
                // stdin closed: the process sees end of file (not with a terminal, whose
                // master carries its output too).
                Some(&CLOSE) if v5 && !tty && data.get(1) == Some(&STDIN) => input = None,
                _ => {}
            }
        }
    });
    let mut client_gone = false;
    loop {
        tokio::select! {
            got = out_rx.recv() => match got {
                Some((chan, data)) => {
                    if tx.send(frame(chan, &data)).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            // A client that leaves an attach detaches; an exec'd process keeps its output
            // until it ends (as upstream, the process is not killed).
            _ = &mut client, if !client_gone => {
                client_gone = true;
                if kind == Kind::Attach {
                    break;
                }
            }
        }
    }
    for r in readers {
        r.abort();
    }
    let status = end_status(streams.exit, &a.command).await;
    let _ = tx.send(frame(ERROR, status.as_bytes())).await;
    // A normal close (1000): kubectl takes any other ending as a broken stream.
    let _ = tx.send(normal_close()).await;
    let _ = tx.close().await;
    client.abort();
}

/// How the session ended, as the Status kubectl reads: an exec'd process's exit (waited for on
/// the shim connection), or success for an attach whose streams ended.
pub(super) async fn end_status(exit: Option<UnixStream>, command: &[String]) -> String {
    let Some(conn) = exit else {
        return r#"{"metadata":{},"status":"Success"}"#.to_string();
    };
    let code = tokio::task::spawn_blocking(move || crate::shim::client::wait_exit(&conn).ok())
        .await
        .ok()
        .flatten();
    match code {
        Some(c) => final_status(c, command),
        None => failure("the process's exit was not recorded"),
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
