//! `kubectl exec` and `attach` as kubectl before 1.30 speaks them: an upgrade to SPDY/3.1 with
//! protocol `v4.channel.k8s.io`, where the client opens one stream per purpose, named by its
//! `streamType` header: `error` (the final Status, as JSON), `stdin`, `stdout`, `stderr` (not
//! with a terminal) and `resize` (JSON sizes, one after another). Once every stream the query
//! asks for is open, the process's stdio is pumped as in the websocket protocol (exec.rs).

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use super::exec::{self, Asked, Kind};
use super::fdio;
use super::server::{header_list, text, Body};
use super::spdy::{self, Frame};
use super::spdy_conn;

pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// How long the client has to open the streams its query asks for (upstream waits as long).
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn serve(
    kind: Kind,
    a: Asked,
    dir: PathBuf,
    id: String,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let upgrade = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        return text(
            StatusCode::BAD_REQUEST,
            "exec and attach need an upgrade to websocket or SPDY/3.1",
        );
    }
    let offered = header_list(req.headers(), "x-stream-protocol-version");
    if !offered.iter().any(|p| p == PROTOCOL) {
        return text(
            StatusCode::FORBIDDEN,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{PROTOCOL}]"),
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on_upgrade.await else { return };
        let (frames, sender) = spdy_conn::over_upgraded(up);
        session(frames, sender, kind, a, dir, id).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "SPDY/3.1")
        .header("connection", "Upgrade")
        .header("x-stream-protocol-version", PROTOCOL)
        .body(Empty::new().boxed())
        .expect("valid response")
}

/// The stream ids the client opened, by purpose.
#[derive(Debug, Default)]
struct Opened {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Opened {
    /// Whether every stream the query asks for is there (stderr is not sent with a terminal).
    fn complete(&self, a: &Asked) -> bool {
        self.error.is_some()
            && (!a.stdin || self.stdin.is_some())
            && (!a.stdout || self.stdout.is_some())
            && (!a.stderr || a.tty || self.stderr.is_some())
            && (!a.tty || self.resize.is_some())
    }
}

async fn session(
    mut input: spdy_conn::Frames,
    frames: spdy_conn::Sender,
    kind: Kind,
    a: Asked,
    dir: PathBuf,
    id: String,
) {
    let mut opened = Opened::default();
    let deadline = tokio::time::Instant::now() + STREAMS_TIMEOUT;
    while !opened.complete(&a) {
        let next = tokio::time::timeout_at(deadline, input.next()).await;
        let Ok(Some(Ok(frame))) = next else { return };
        match frame {
            Frame::SynStream {
                stream, headers, ..
            } => {
                let slot = match spdy::header(&headers, "streamtype") {
                    Some("error") => &mut opened.error,
                    Some("stdin") => &mut opened.stdin,
                    Some("stdout") => &mut opened.stdout,
                    Some("stderr") => &mut opened.stderr,
                    Some("resize") => &mut opened.resize,
                    _ => {
                        spdy_conn::refuse(&frames, stream).await;
                        continue;
                    }
                };
                *slot = Some(stream);
                spdy_conn::accept(&frames, stream).await;
            }
            Frame::Ping { id } => spdy_conn::answer_ping(&frames, id).await,
            Frame::GoAway { .. } => return,
            _ => {}
        }
    }
    let error = opened.error.expect("complete");
    let asked = a.clone();
    let opened_fds =
        tokio::task::spawn_blocking(move || exec::open_streams(kind, &dir, &id, &asked)).await;
    let streams = match opened_fds {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(&frames, error, &opened, &e.to_string()).await,
        Err(e) => return fail(&frames, error, &opened, &e.to_string()).await,
    };
    let mut input_fd = match streams.input.map(fdio::writer).transpose() {
        Ok(i) => i,
        Err(e) => return fail(&frames, error, &opened, &e.to_string()).await,
    };
    // Output: each descriptor to its stream (a terminal's goes to stdout).
    let mut readers = Vec::new();
    for (chan, fd) in streams.outputs {
        let target = if chan == exec::STDERR {
            opened.stderr
        } else {
            opened.stdout
        };
        let (Some(stream), Ok(mut pipe)) = (target, fdio::reader(fd)) else {
            continue;
        };
        let frames = frames.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            while let Ok(n @ 1..) = fdio::read(&mut pipe, &mut buf).await {
                if frames.send(Frame::data(stream, &buf[..n])).await.is_err() {
                    break;
                }
            }
            let _ = frames.send(Frame::fin(stream)).await;
        }));
    }
    // Input: stdin and resizes, until the client goes (an attach then detaches).
    let (stdin, resize, tty) = (opened.stdin, opened.resize, a.tty);
    let client = async {
        let mut sizes = Vec::new();
        while let Some(Ok(frame)) = input.next().await {
            match frame {
                Frame::Data { stream, fin, data } if Some(stream) == stdin => {
                    if let Some(w) = &mut input_fd {
                        if w.write_all(&data).await.is_err() {
                            input_fd = None;
                        }
                    }
                    // The client's stdin ended: so does the process's (a terminal stays).
                    if fin && !tty {
                        input_fd = None;
                    }
                }
                Frame::Data { stream, data, .. } if Some(stream) == resize => {
                    sizes.extend_from_slice(&data);
                    let mut values = serde_json::Deserializer::from_slice(&sizes)
                        .into_iter::<serde_json::Value>();
                    let mut used = 0;
                    while let Some(Ok(size)) = values.next() {
                        used = values.byte_offset();
                        if let Some(w) = &input_fd {
                            let cols = size["Width"].as_u64().unwrap_or(80) as u16;
                            let rows = size["Height"].as_u64().unwrap_or(24) as u16;
                            crate::runtime::console::set_size(
                                std::os::fd::AsRawFd::as_raw_fd(w),
                                rows,
                                cols,
                            );
                        }
                    }
                    sizes.drain(..used);
                }
                Frame::Ping { id } => spdy_conn::answer_ping(&frames, id).await,
                Frame::GoAway { .. } => break,
                _ => {}
            }
        }
    };
    let outputs = futures::future::join_all(readers);
    tokio::pin!(outputs);
    tokio::select! {
        _ = &mut outputs => {}
        // A client that leaves an attach detaches; an exec'd process keeps running, as
        // upstream, and its exit is still collected below.
        _ = client => {
            if kind == Kind::Attach {
                return;
            }
            outputs.await;
        }
    }
    let status = exec::end_status(streams.exit, &a.command).await;
    let _ = frames.send(Frame::data(error, status.as_bytes())).await;
    let _ = frames.send(Frame::fin(error)).await;
}

/// The process could not be started: the reason on the error stream, every stream ended.
async fn fail(frames: &spdy_conn::Sender, error: u32, opened: &Opened, message: &str) {
    let _ = frames
        .send(Frame::data(error, exec::failure(message).as_bytes()))
        .await;
    for s in [Some(error), opened.stdout, opened.stderr]
        .into_iter()
        .flatten()
    {
        let _ = frames.send(Frame::fin(s)).await;
    }
}
