//! What the agent and a pod's shim say to each other: one JSON request per connection on the
//! shim's unix socket, answered by one JSON line. Exits are also written to files (see
//! [`Record`]) so that they outlive any conversation.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Request {
    /// Create and start a container from a full OCI spec.
    Run(RunRequest),
    /// Send a signal to a container's init.
    Kill { id: String, signal: i32 },
    /// Delete a stopped container (its log and record stay until the pod goes).
    Remove { id: String },
    /// Every container the shim knows.
    List,
    /// Run a process in a running container. The answer carries its pid and, as SCM_RIGHTS,
    /// its stdio: a pty master when `tty`, else stdin (when asked for), stdout and stderr pipes.
    /// The connection stays open; a second line `{"exitCode":N}` comes when the process ends.
    Exec {
        id: String,
        args: Vec<String>,
        #[serde(default)]
        tty: bool,
        #[serde(default)]
        stdin: bool,
    },
    /// Join a running container's own stdio (`kubectl attach`, `kubectl run -it`). The answer
    /// carries, as SCM_RIGHTS, the container's stdin (when asked for and the container has
    /// one: a dup of the pty master or of the pipe's write end) followed by read ends that get
    /// a copy of its output from now on: one with a terminal, else stdout and stderr.
    Attach {
        id: String,
        #[serde(default)]
        stdin: bool,
    },
    /// Kill what still runs, delete every container and exit.
    Shutdown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub id: String,
    /// The container's name in its pod, and which start of it this is.
    pub name: String,
    pub attempt: u32,
    pub bundle: PathBuf,
    pub spec: serde_json::Value,
    pub log_path: PathBuf,
    /// Keep the container's stdin open for attaching (a pipe, or the terminal with
    /// process.terminal); `stdin_once` closes it when the first attached stdin closes.
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdin_once: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<Record>,
    /// An exec'd process's end, on the exec connection's second line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// An attach answer: whether the first descriptor is the container's stdin.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            error: None,
            pid: None,
            containers: Vec::new(),
            exit_code: None,
            stdin: false,
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            error: Some(message.into()),
            ..Response::ok()
        }
    }
}

/// One container as the shim knows it, also kept at `<pod dir>/containers/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub pid: i32,
    pub log_path: PathBuf,
    /// RFC 3339 times.
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// As a shell reports it: the exit code, or 128+N for signal N.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    /// Whether the container has a terminal, and a stdin one can attach to.
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub stdin: bool,
}

impl Record {
    pub fn running(&self) -> bool {
        self.finished_at.is_none()
    }
}
