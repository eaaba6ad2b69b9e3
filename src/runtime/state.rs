//! Container state on disk: one directory per container under the root dir, holding
//! `state.json` (what `state` reports plus what we need to find the container again), the
//! spec it was created from (`config.json`, used by exec) and the exec fifo while the
//! container is created but not started. Any process can read it, so a restarted caller
//! finds containers it did not start.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or writing container state.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id is empty or has characters that could escape the root dir.
    #[error("invalid container id {0:?}: use letters, digits, '_', '-' and '.'")]
    InvalidId(String),
    /// No state dir for this id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// A state dir for this id is already there.
    #[error("container {0} already exists")]
    Exists(String),
    /// Reading or writing the state dir failed.
    #[error("state of container {id}: {source}")]
    Io {
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// state.json exists but cannot be decoded.
    #[error("state of container {id}: {source}")]
    Decode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

pub const DEFAULT_ROOT: &str = "/run/nanokube/runtime";
pub const FIFO: &str = "exec.fifo";
const STATE: &str = "state.json";
pub const CONFIG: &str = "config.json";

/// Status as the OCI runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    /// Running, but its cgroup is frozen (`pause`).
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What we persist about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub oci_version: String,
    pub id: String,
    /// The init's pid in the host pid namespace.
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Field 22 of /proc/<pid>/stat when the init started: a pid reused by another process
    /// has a different start time, so we never signal a stranger.
    pub init_start_time: u64,
    pub cgroup_path: Option<String>,
    /// Whether seccomp came from the built-in default profile (exec applies the same).
    #[serde(default)]
    pub default_seccomp: bool,
    /// The spec's hooks, when it has poststart or poststop ones (`start` and `delete` run them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// The OCI state document `state` and `list --format json` print, in runc's field order
/// (pid before status: scripts match the text).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    /// As runc reports it (empty: the container runs as root of the host's user namespace).
    #[serde(default)]
    pub owner: String,
    /// Set once the container stopped after the kernel OOM-killed one of its processes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.into()))
    }
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

fn io(id: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        id: id.into(),
        source,
    }
}

/// Creates the state dir; fails if the id is taken.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf, Error> {
    check_id(id)?;
    std::fs::create_dir_all(root).map_err(io(id))?;
    let dir = dir(root, id);
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::Exists(id.into())),
        Err(e) => Err(io(id)(e)),
    }
}

pub fn save(root: &Path, saved: &Saved) -> Result<(), Error> {
    let dir = dir(root, &saved.id);
    let tmp = dir.join(".state.json.tmp");
    let text = serde_json::to_vec(saved).map_err(|source| Error::Decode {
        id: saved.id.clone(),
        source,
    })?;
    std::fs::write(&tmp, text).map_err(io(&saved.id))?;
    // Rename so a reader never sees half a file.
    std::fs::rename(&tmp, dir.join(STATE)).map_err(io(&saved.id))
}

pub fn load(root: &Path, id: &str) -> Result<Saved, Error> {
    check_id(id)?;
    let path = dir(root, id).join(STATE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound(id.into()))
        }
        Err(e) => return Err(io(id)(e)),
    };
    serde_json::from_slice(&text).map_err(|source| Error::Decode {
        id: id.into(),
        source,
    })
}

/// Ids of every container with a state dir, sorted.
pub fn list(root: &Path) -> Result<Vec<String>, Error> {
    let mut ids = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(io("(list)")(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if check_id(&name).is_ok() && entry.path().join(STATE).exists() {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

pub fn remove_dir(root: &Path, id: &str) -> Result<(), Error> {
    match std::fs::remove_dir_all(dir(root, id)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(id)(e)),
    }
}

/// Start time (clock ticks since boot) and state letter of a process, from /proc/<pid>/stat.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    if pid <= 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state); start time is field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// True while the init recorded in `saved` is alive (not a zombie and not a reused pid).
pub fn init_alive(saved: &Saved) -> bool {
    match proc_stat(saved.pid) {
        Some((start, state)) => start == saved.init_start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

pub fn status(root: &Path, saved: &Saved) -> Status {
    if !init_alive(saved) {
        Status::Stopped
    } else if frozen(saved) {
        // Before "created", as runc decides: a frozen init is paused whatever it waits for.
        Status::Paused
    } else if dir(root, &saved.id).join(FIFO).exists() {
        Status::Created
    } else {
        Status::Running
    }
}

fn frozen(saved: &Saved) -> bool {
    saved
        .cgroup_path
        .as_deref()
        .and_then(|p| super::cgroups::Cgroup::open(p).ok())
        .is_some_and(|cg| cg.is_frozen().unwrap_or(false))
}

/// Now as RFC 3339 (UTC, nanoseconds), as runc writes `created`.
pub fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_the_root() {
        assert!(check_id("abc-1.2_x").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_start_time_is_readable() {
        let (start, state) = proc_stat(std::process::id() as i32).unwrap();
        assert!(start > 0);
        // The main thread may be asleep while this test runs on another one.
        assert!(matches!(state, 'R' | 'S'), "state {state}");
    }
}
