//! The container runtime: an OCI runtime spec and a bundle in, a running container out.
//! Synchronous, owns its `unsafe`, and knows nothing of Kubernetes API types.
//!
//! How a container is born (see docs/runtime.md): `container::Runtime::create` validates the
//! spec (`spec`), compiles seccomp, creates the cgroup and the state dir (`state`), then
//! `spawn` clones a child into new namespaces that immediately execs a sealed in-memory copy
//! of this binary (`exe`) as `nanokube runtime init` (`init`). The init builds the filesystem
//! (`mounts`), prepares the process (`process`) and waits on the exec fifo for `start`.

// The runtime meets the kernel directly: namespaces, mounts, fds, fork and exec.
#![allow(unsafe_code)]

pub mod args;
pub mod cgroups;
pub mod cli;
pub mod console;
pub mod container;
pub mod copyup;
pub mod events;
pub mod exe;
pub mod features;
pub mod freeze;
pub mod hooks;
pub mod init;
pub mod mounts;
pub mod process;
pub mod seccomp;
pub mod signal;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod sync;
pub mod sys;
pub mod template;
pub mod trampoline;
pub mod update;

pub use container::{
    CreateOptions, Created, Error, ExecOptions, ExecProcess, ExitStatus, Runtime, Stdio,
};
pub use state::{OciState, Status};

type WarningSink = Box<dyn Fn(&str) + Send + Sync>;

static WARNING_SINK: std::sync::OnceLock<WarningSink> = std::sync::OnceLock::new();

/// Sends the runtime's warnings (unknown capabilities, failed poststop hooks, ...) to `sink`
/// instead of stderr: the CLI's `--log` file, as runc logs them. Set once per process.
pub fn set_warning_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = WARNING_SINK.set(Box::new(sink));
}

/// A warning: to the installed sink, else one line on stderr.
pub fn warn(message: &str) {
    match WARNING_SINK.get() {
        Some(sink) => sink(message),
        None => eprintln!("nanokube: warning: {message}"),
    }
}

static DEBUG_SINK: std::sync::OnceLock<WarningSink> = std::sync::OnceLock::new();

/// Sends the runtime's step-by-step account (`--debug`) to `sink`. Without one, [`debug`]
/// says nothing. Set once per process.
pub fn set_debug_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = DEBUG_SINK.set(Box::new(sink));
}

/// One step of building or entering a container, for `--debug`. The steps carry runc's
/// names for the same moments first ("nsexec container setup", "child process in init()",
/// ...), which people and tools that read runc's debug output look for, then ours.
pub fn debug(message: impl FnOnce() -> String) {
    if let Some(sink) = DEBUG_SINK.get() {
        sink(&message());
    }
}
