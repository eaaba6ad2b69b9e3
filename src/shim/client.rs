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
    let conn = UnixStream::connect(&path)
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
