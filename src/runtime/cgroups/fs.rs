//! File operations on cgroupfs, each error naming the file it concerns.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long freezing may take, and how long destroy waits for killed processes to leave.
pub(super) const SETTLE: Duration = Duration::from_millis(500);

/// How long `freeze` may take before it gives up: a busy forking workload (or a slow VM) can
/// keep a v1 cgroup FREEZING for a while, but a pause must not hang its caller.
pub(super) const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

use super::{Error, Result};

fn io(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` to `dir/file` in one write(2): cgroupfs parses each write on its own, so a
/// value must never be split.
pub(super) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| io("open", &path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| io("write", &path, e))
}

pub(super) fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| io("read", &path, e))
}

/// Reads a file if it exists; `None` when this kernel does not provide it.
pub(super) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>> {
    let path = dir.join(file);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("read", &path, e)),
    }
}

pub(super) fn parse_u64(dir: &Path, file: &str, content: &str) -> Result<u64> {
    content.trim().parse().map_err(|_| Error::Parse {
        path: dir.join(file),
        content: content.to_string(),
    })
}

/// Pids listed in `dir/cgroup.procs`.
/// Pids listed in `dir/cgroup.procs` and in every cgroup below it (a container may make
/// child cgroups of its own; their processes are still the container's), sorted.
pub(super) fn read_procs(dir: &Path) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    collect_procs(dir, &mut pids)?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn collect_procs(dir: &Path, pids: &mut Vec<i32>) -> Result<()> {
    let content = read(dir, "cgroup.procs")?;
    pids.extend(content.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                match collect_procs(&entry.path(), pids) {
                    // A child cgroup removed while we walk has no processes left.
                    Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                    other => other?,
                }
            }
        }
    }
    Ok(())
}

/// Creates `root/parts[0]/parts[1]/...`, calling `prepare(parent)` before each directory this
/// call creates (v2 enables controllers there, v1 cpuset copies cpus/mems into it). Returns the
/// leaf and whether the leaf was created by this call.
pub(super) fn create_dirs(
    root: &Path,
    parts: &[&str],
    mut prepare: impl FnMut(&Path, &Path) -> Result<()>,
) -> Result<(PathBuf, bool)> {
    let mut dir = root.to_path_buf();
    let mut created_leaf = false;
    for part in parts {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                created_leaf = true;
                if let Err(e) = prepare(&parent, &dir) {
                    // Only the directory of this call goes: parents may be shared by
                    // containers being created concurrently.
                    let _ = std::fs::remove_dir(&dir);
                    return Err(e);
                }
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                created_leaf = false;
                prepare(&parent, &dir)?;
            }
            Err(e) => return Err(io("mkdir", &dir, e)),
        }
    }
    Ok((dir, created_leaf))
}

/// Removes a cgroup directory. A process that was just killed can keep the cgroup busy until
/// the kernel finishes its exit, so EBUSY is retried for a short while; after that the
/// remaining pids are reported. A missing directory counts as removed.
pub(super) fn remove_dir(dir: &Path) -> Result<()> {
    // A container may have made child cgroups of its own (it can, with a cgroup namespace);
    // those go first, deepest first, or the kernel refuses to remove the parent.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_dir(&entry.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if Instant::now() >= deadline {
                    let pids = read_procs(dir).unwrap_or_default();
                    return Err(Error::Busy {
                        path: dir.to_path_buf(),
                        pids,
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(io("rmdir", dir, e)),
        }
    }
}

/// Waits briefly for `pids` to report no process (killed ones need a moment to exit), then
/// reports the ones that remain as Busy.
pub(super) fn wait_empty(dir: &Path, mut pids: impl FnMut() -> Result<Vec<i32>>) -> Result<()> {
    let mut last = Vec::new();
    let empty = wait_until(SETTLE, || {
        last = pids()?;
        Ok(last.is_empty())
    })?;
    if empty {
        Ok(())
    } else {
        Err(Error::Busy {
            path: dir.to_path_buf(),
            pids: last,
        })
    }
}

/// Sends `signal` to each pid; a process that exited meanwhile is not an error.
pub(super) fn signal_all(pids: &[i32], signal: i32) -> Result<()> {
    // Signal 0 checks that the processes exist (`kill --all ID 0`).
    let sig = match signal {
        0 => None,
        n => Some(nix::sys::signal::Signal::try_from(n).map_err(|_| Error::InvalidSignal(n))?),
    };
    for &pid in pids {
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig) {
            Ok(()) | Err(nix::Error::ESRCH) => {}
            Err(source) => {
                return Err(Error::Signal {
                    pid,
                    signal,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Polls `check` until it returns true or `timeout` passes.
pub(super) fn wait_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool>,
) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
