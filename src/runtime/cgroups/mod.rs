//! cgroups: v2 (unified) first, v1 / hybrid as the fallback.
//!
//! Interface contract (the runtime core calls exactly this; the cgroups work fills it in):
//! the parent creates the cgroup from `linux.cgroupsPath` and `linux.resources` before the
//! container's init runs, adds the init pid, and later reads stats, OOM state and member pids.

use oci_spec::runtime::LinuxResources;

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not implemented yet (placeholder until the cgroups work lands).
    #[error("cgroups are not implemented yet")]
    NotImplemented,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Which hierarchy the host mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v2 only, with controllers.
    Unified,
    /// cgroup v1 controllers (possibly with an empty v2 mount beside them: hybrid).
    Legacy,
}

/// Usage read back from a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub memory_usage_bytes: u64,
    pub memory_limit_bytes: Option<u64>,
    pub cpu_usage_nanos: u64,
    pub pids_current: u64,
    pub oom_kills: u64,
}

/// One container's cgroup (one directory in v2, one per controller in v1).
#[derive(Debug)]
pub struct Cgroup {
    _private: (),
}

/// The hierarchy mounted at /sys/fs/cgroup.
pub fn detect() -> Hierarchy {
    Hierarchy::Legacy
}

impl Cgroup {
    /// Creates (or reuses) the cgroup at `path` (an OCI cgroupsPath, absolute under the cgroup
    /// root, e.g. "/nanokube/<id>") and applies `resources`.
    pub fn create(_path: &str, _resources: Option<&LinuxResources>) -> Result<Cgroup> {
        Err(Error::NotImplemented)
    }
    /// Opens an existing cgroup (a restarted caller inspecting a container it did not start).
    pub fn open(_path: &str) -> Result<Cgroup> {
        Err(Error::NotImplemented)
    }
    /// Moves a process into the cgroup.
    pub fn add_pid(&self, _pid: i32) -> Result<()> {
        Err(Error::NotImplemented)
    }
    /// Changes the limits of a live cgroup.
    pub fn update(&self, _resources: &LinuxResources) -> Result<()> {
        Err(Error::NotImplemented)
    }
    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        Err(Error::NotImplemented)
    }
    pub fn stats(&self) -> Result<Stats> {
        Err(Error::NotImplemented)
    }
    /// True once the kernel OOM-killed a process in this cgroup.
    pub fn oom_killed(&self) -> Result<bool> {
        Err(Error::NotImplemented)
    }
    /// Sends `signal` to every process in the cgroup (freezing it first so none escapes by forking).
    pub fn kill_all(&self, _signal: i32) -> Result<()> {
        Err(Error::NotImplemented)
    }
    /// Removes the cgroup directories; fails if processes remain.
    pub fn destroy(self) -> Result<()> {
        Err(Error::NotImplemented)
    }
}
