//! Handing a seccomp listener to its agent (SCMP_ACT_NOTIFY, `linux.seccomp.listenerPath`).
//!
//! The OCI runtime spec fixes the exchange: the runtime connects to the agent's unix socket
//! and sends one message whose bytes are the container process state (JSON: `ociVersion`,
//! `fds` naming the attached descriptors, `pid`, `metadata` from listenerMetadata and the
//! container's `state`) and whose SCM_RIGHTS carry the listener. The agent then answers the
//! filtered syscalls on that listener; the runtime is out of the loop.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// The name of the listener in `fds`, as the runtime spec spells it.
const SECCOMP_FD_NAME: &str = "seccompFd";

/// The container process state for the agent. `state` is the container's state document
/// (as hooks get it); `pid` is the process whose filter the listener belongs to.
pub fn process_state(state: &str, pid: i32, metadata: Option<&str>) -> String {
    let state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    let mut doc = serde_json::json!({
        "ociVersion": state["ociVersion"],
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": state,
    });
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        doc["metadata"] = m.into();
    }
    doc.to_string()
}

/// Sends `process_state` with `listener` to the agent listening at `path`.
pub fn deliver(path: &Path, process_state: &str, listener: &OwnedFd) -> Result<(), super::Error> {
    let failed = |source: std::io::Error| super::Error::Agent {
        path: path.display().to_string(),
        source,
    };
    let stream = UnixStream::connect(path).map_err(|e| super::Error::AgentUnreachable {
        path: path.display().to_string(),
        reason: crate::runtime::process::errno_text(&e),
    })?;
    let bytes = process_state.as_bytes();
    let sent = crate::runtime::sync::send_fds(stream.as_raw_fd(), bytes, &[listener.as_raw_fd()])
        .map_err(failed)?;
    if sent != bytes.len() {
        // The agent reads the state in one recvmsg: a part of it would not parse.
        return Err(failed(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes of the state", bytes.len()),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_state_wraps_the_container_state() {
        let state =
            r#"{"ociVersion":"1.0.2","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#;
        let doc: serde_json::Value =
            serde_json::from_str(&process_state(state, 43, Some("bar"))).unwrap();
        assert_eq!(doc["ociVersion"], "1.0.2");
        assert_eq!(doc["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(doc["pid"], 43);
        assert_eq!(doc["metadata"], "bar");
        assert_eq!(doc["state"]["id"], "c1");
        assert_eq!(doc["state"]["pid"], 42);
        let doc: serde_json::Value =
            serde_json::from_str(&process_state(state, 43, Some(""))).unwrap();
        assert!(doc.get("metadata").is_none());
    }

    #[test]
    fn an_absent_agent_is_an_error_naming_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = OwnedFd::from(a);
        let path = dir.path().join("agent.sock");
        let e = deliver(&path, "{}", &fd).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
    }
}
