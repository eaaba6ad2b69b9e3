//! The agent's side of a shim's socket: one request, one answer.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::protocol::{Request, Response};
use super::{Error, SOCKET};

/// Sends `req` to the shim of the pod directory `dir` and returns its answer; an answer that
/// carries an error becomes `Err`.
pub fn call(dir: &Path, req: &Request) -> Result<Response, Error> {
    let path = dir.join(SOCKET);
    let conn = super::at_socket(dir, |p| UnixStream::connect(p))
        .map_err(|e| Error::Protocol(format!("connect {}: {e}", path.display())))?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| Error::Protocol(e.to_string()))?;
    let mut line = serde_json::to_vec(req).map_err(|e| Error::Protocol(e.to_string()))?;
    line.push(b'\n');
    (&conn)
        .write_all(&line)
        .map_err(|e| Error::Protocol(format!("send: {e}")))?;
    let mut answer = String::new();
    BufReader::new(&conn)
        .read_line(&mut answer)
        .map_err(|e| Error::Protocol(format!("receive: {e}")))?;
    let resp: Response = serde_json::from_str(&answer)
        .map_err(|e| Error::Protocol(format!("bad answer {answer:?}: {e}")))?;
    match resp.error {
        Some(e) => Err(Error::Protocol(e)),
        None => Ok(resp),
    }
}

/// Whether a shim answers on `dir`'s socket.
pub fn alive(dir: &Path) -> bool {
    call(dir, &Request::List).is_ok()
}

/// A process exec'd through the shim: its pid, its stdio (pty master, or stdin when asked for,
/// stdout, stderr), and the connection whose next line is its exit.
#[derive(Debug)]
pub struct Exec {
    pub pid: i32,
    pub fds: Vec<std::os::fd::OwnedFd>,
    pub conn: UnixStream,
}

/// Starts `args` in container `id` of the pod at `dir`.
pub fn exec(
    dir: &Path,
    id: &str,
    args: Vec<String>,
    tty: bool,
    stdin: bool,
) -> Result<Exec, Error> {
    let path = dir.join(SOCKET);
    let conn = super::at_socket(dir, |p| UnixStream::connect(p))
        .map_err(|e| Error::Protocol(format!("connect {}: {e}", path.display())))?;
    let mut line = serde_json::to_vec(&Request::Exec {
        id: id.to_string(),
        args,
        tty,
        stdin,
    })
    .map_err(|e| Error::Protocol(e.to_string()))?;
    line.push(b'\n');
    let (resp, fds) = answer_with_fds(&conn, &line)?;
    Ok(Exec {
        pid: resp.pid.unwrap_or(0),
        fds,
        conn,
    })
}

/// A client attached to a running container's stdio: its stdin (when asked for and the
/// container keeps one), then the read ends of its output (one with a terminal, else stdout
/// and stderr), which end when the container does.
#[derive(Debug)]
pub struct Attach {
    pub stdin: Option<std::os::fd::OwnedFd>,
    pub outputs: Vec<std::os::fd::OwnedFd>,
}

/// Attaches to container `id` of the pod at `dir`.
pub fn attach(dir: &Path, id: &str, stdin: bool) -> Result<Attach, Error> {
    let path = dir.join(SOCKET);
    let conn = super::at_socket(dir, |p| UnixStream::connect(p))
        .map_err(|e| Error::Protocol(format!("connect {}: {e}", path.display())))?;
    let mut line = serde_json::to_vec(&Request::Attach {
        id: id.to_string(),
        stdin,
    })
    .map_err(|e| Error::Protocol(e.to_string()))?;
    line.push(b'\n');
    let (resp, fds) = answer_with_fds(&conn, &line)?;
    let mut fds = fds.into_iter();
    let stdin = if resp.stdin { fds.next() } else { None };
    Ok(Attach {
        stdin,
        outputs: fds.collect(),
    })
}

/// Sends a request line and reads its answer, which comes in one message with descriptors.
fn answer_with_fds(
    conn: &UnixStream,
    line: &[u8],
) -> Result<(Response, Vec<std::os::fd::OwnedFd>), Error> {
    let mut w = conn;
    w.write_all(line)
        .map_err(|e| Error::Protocol(format!("send: {e}")))?;
    let mut buf = vec![0u8; 4096];
    let (n, fds) = crate::runtime::sys::recv_with_fds(conn, &mut buf)
        .map_err(|e| Error::Protocol(format!("receive: {e}")))?;
    let text = String::from_utf8_lossy(&buf[..n]);
    let resp: Response = serde_json::from_str(text.trim())
        .map_err(|e| Error::Protocol(format!("bad answer {text:?}: {e}")))?;
    if let Some(e) = resp.error {
        return Err(Error::Protocol(e));
    }
    Ok((resp, fds))
}

/// Waits (blocking) for the exit code of an exec'd process, the second line on its connection.
pub fn wait_exit(conn: &UnixStream) -> Result<i32, Error> {
    {
        conn.set_read_timeout(None)
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let mut line = String::new();
        BufReader::new(conn)
            .read_line(&mut line)
            .map_err(|e| Error::Protocol(format!("receive: {e}")))?;
        let resp: Response = serde_json::from_str(&line)
            .map_err(|e| Error::Protocol(format!("bad answer {line:?}: {e}")))?;
        resp.exit_code
            .ok_or_else(|| Error::Protocol("the shim ended before the process".into()))
    }
}
