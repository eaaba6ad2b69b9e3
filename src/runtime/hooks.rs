//! OCI lifecycle hooks: programs the bundle asks the runtime to run at fixed points of a
//! container's life, each given the container's state as JSON on its stdin.
//!
//! | hook | run by | namespaces | when | a failure |
//! | --- | --- | --- | --- | --- |
//! | `prestart`, `createRuntime` | the runtime (`create`) | the host's | after the clone, before pivot_root | fails `create` |
//! | `createContainer` | the init | the container's, path resolved on the host | before pivot_root | fails `create` |
//! | `startContainer` | the init | the container's | after `start`, before the program's execve | the container exits 1 |
//! | `poststart` | the runtime (`start`) | the host's | once the program is released | a warning |
//! | `poststop` | the runtime (`delete`) | the host's | after the container is gone | a warning |
//!
//! The init holds still before pivot_root while the runtime runs `createRuntime`
//! (`InitConfig::hooks`), then gets the state its own hooks need (`Message::HookState`).

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// Errors running a hook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hook could not be started.
    #[error("{stage} hook {path}: {source}")]
    Start {
        stage: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The hook exited unsuccessfully; `output` is the end of what it wrote. Worded as runc
    /// words it ("error running hook", Go's "exit status 3" and "signal: bad system call"),
    /// which tools and runc's tests look for.
    #[error("{stage}: error running hook {path}: {status}{output}")]
    Failed {
        stage: &'static str,
        path: String,
        status: String,
        output: String,
    },
    /// The hook ran longer than its `timeout` and was killed.
    #[error("{stage} hook {path} timed out after {seconds} s")]
    TimedOut {
        stage: &'static str,
        path: String,
        seconds: i64,
    },
}

/// The state document hooks read on stdin (the OCI runtime spec's "state").
pub fn state_json(
    oci_version: &str,
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    annotations: &std::collections::HashMap<String, String>,
) -> String {
    let mut state = serde_json::json!({
        "ociVersion": oci_version,
        "id": id,
        "status": status,
        "bundle": bundle,
    });
    if pid > 0 {
        state["pid"] = pid.into();
    }
    if !annotations.is_empty() {
        state["annotations"] = serde_json::json!(annotations);
    }
    state.to_string()
}

/// `state` (from `state_json`) with another status.
pub fn with_status(state: &str, status: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = status.into();
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}

/// Runs `hooks` of `stage` one after the other, each with `state` on stdin; stops at the first
/// that fails.
pub fn run(stage: &'static str, hooks: &[Hook], state: &str) -> Result<(), Error> {
    hooks
        .iter()
        .try_for_each(|h| run_one(stage, h, state, None))
}

/// As [`run`], with `dir` as the hooks' working directory (createContainer hooks start in
/// the container's root filesystem, as runc runs them, so `./lib` is the container's).
pub fn run_in(
    stage: &'static str,
    hooks: &[Hook],
    state: &str,
    dir: &std::path::Path,
) -> Result<(), Error> {
    hooks
        .iter()
        .try_for_each(|h| run_one(stage, h, state, Some(dir)))
}

/// Runs `hooks` of `stage` and turns a failure into a warning on stderr (poststart and
/// poststop: the lifecycle goes on, as the spec asks).
pub fn run_warning(stage: &'static str, hooks: &[Hook], state: &str) {
    if let Err(e) = run(stage, hooks, state) {
        super::warn(&e.to_string());
    }
}

fn run_one(
    stage: &'static str,
    hook: &Hook,
    state: &str,
    dir: Option<&std::path::Path>,
) -> Result<(), Error> {
    let path = hook.path().display().to_string();
    let start_err = |source| Error::Start {
        stage,
        path: path.clone(),
        source,
    };
    let mut cmd = Command::new(hook.path());
    if let Some((argv0, rest)) = hook.args().as_deref().and_then(|a| a.split_first()) {
        cmd.arg0(argv0).args(rest);
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or(&[]) {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // What the hook writes goes to a memfd, never a pipe it could fill while we wait.
    let output = output_file().map_err(start_err)?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(output.try_clone().map_err(start_err)?)
        .stderr(output.try_clone().map_err(start_err)?)
        .spawn()
        .map_err(start_err)?;
    // A hook that does not read its state must not fail the write: ignore a broken pipe.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook
        .timeout()
        .map(|s| Instant::now() + Duration::from_secs(s.max(1) as u64));
    let status = loop {
        if let Some(status) = child.try_wait().map_err(start_err)? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::TimedOut {
                stage,
                path,
                seconds: hook.timeout().unwrap_or_default(),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    Err(Error::Failed {
        stage,
        path,
        status: status_text(status),
        output: tail(output),
    })
}

/// How a failed hook ended, in Go's words: `exit status 3`, `signal: bad system call (core
/// dumped)`.
fn status_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => {
            // SAFETY: strsignal returns a pointer to a NUL-terminated string that stays valid
            // until the next call; it is copied at once.
            let name = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(sig)) }
                .to_string_lossy()
                .into_owned();
            let mut chars = name.chars();
            let name: String = match chars.next() {
                Some(c) => c.to_lowercase().chain(chars).collect(),
                None => format!("signal {sig}"),
            };
            let core = if status.core_dumped() {
                " (core dumped)"
            } else {
                ""
            };
            format!("signal: {name}{core}")
        }
        (None, None) => status.to_string(),
    }
}

/// An anonymous file for a hook's stdout and stderr.
fn output_file() -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create with a valid C string and flags; returns a new fd or -1.
    let fd = unsafe { libc::memfd_create(c"nanokube-hook".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// The last lines a failed hook wrote, as ": text" for its error (empty when it wrote nothing).
fn tail(mut output: std::fs::File) -> String {
    let mut text = Vec::new();
    let _ = output.seek(SeekFrom::Start(0));
    let _ = output.read_to_end(&mut text);
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(2048)..]);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn state_on_stdin_args_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", "cat > \"$OUT\"; echo \"$0 $1\" >> \"$OUT\"", "zero", "one"],
            "env": [format!("OUT={}", out.display())],
        }));
        let state = state_json(
            "1.2.0",
            "c1",
            "creating",
            42,
            dir.path(),
            &Default::default(),
        );
        run("createRuntime", &[h], &state).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let (json, argv) = text.split_once('}').unwrap();
        let got: serde_json::Value = serde_json::from_str(&format!("{json}}}")).unwrap();
        assert_eq!(got["id"], "c1");
        assert_eq!(got["status"], "creating");
        assert_eq!(got["pid"], 42);
        assert_eq!(argv.trim(), "zero one");
    }

    #[test]
    fn a_failure_names_the_stage_the_path_and_what_the_hook_said() {
        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "echo no GPU here >&2; exit 3"],
        }));
        let err = run("createContainer", &[h], "{}").unwrap_err().to_string();
        assert_eq!(
            err,
            "createContainer: error running hook /bin/sh: exit status 3: no GPU here"
        );
        let killed =
            hook(serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "kill -SYS $$"]}));
        let err = run("startContainer", &[killed], "{}")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("startContainer: error running hook /bin/sh: signal: bad system call"),
            "{err}"
        );
        let missing = hook(serde_json::json!({"path": "/nonexistent/hook"}));
        let err = run("prestart", &[missing], "{}").unwrap_err().to_string();
        assert!(
            err.starts_with("prestart hook /nonexistent/hook: "),
            "{err}"
        );
    }

    #[test]
    fn a_hook_past_its_timeout_is_killed() {
        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", "exec sleep 30"], "timeout": 1,
        }));
        let started = Instant::now();
        let err = run("createRuntime", &[h], "{}").unwrap_err();
        assert!(matches!(err, Error::TimedOut { seconds: 1, .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
