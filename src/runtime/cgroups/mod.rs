//! cgroups: v2 (unified) first, v1 / hybrid as the fallback.
//!
//! Interface contract (the runtime core calls exactly this): the parent creates the cgroup from
//! `linux.cgroupsPath` and `linux.resources` before the container's init runs, adds the init pid,
//! and later reads stats, OOM state and member pids.
//!
//! Paths are always taken relative to the *root* of each hierarchy, not to the caller's own
//! cgroup: the runtime itself may live in some supervisor's cgroup (this host puts it in
//! `memory:/process_api/<id>`), and a container must not inherit that placement.
//!
//! Layout of the module: [`layout`] finds where the hierarchies are mounted, [`v2`] and [`v1`]
//! translate resources into each hierarchy's files, [`convert`] holds the value conversions
//! between the two (shares to weight, swap semantics), [`stats`] parses what is read back and
//! [`fs`] wraps the file operations so that every error names the file involved.

mod convert;
mod detail;
mod devices;
mod fs;
mod layout;
mod stats;
mod sub;
mod v1;
mod v2;

use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

pub use convert::{blkio_to_io_weight, shares_to_weight, weight_to_shares};
pub use detail::Detailed;
pub use layout::{cgroup_mounts, CgroupMount};
pub use stats::Stats;
pub use sub::{v2_dir_of, SubCgroups};

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The cgroupsPath cannot name a container cgroup (empty, the root itself, or with "..").
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// No usable cgroup hierarchy is mounted (neither cgroup2 nor any v1 controller).
    #[error("no cgroup hierarchy mounted: {0}")]
    NotMounted(String),
    /// `open` found no directory for the cgroup in any hierarchy.
    #[error("cgroup {0:?} does not exist")]
    NotFound(String),
    /// The resources ask for a controller this host does not offer to the cgroup.
    #[error("cgroup controller {controller:?} is not available for {path} (needed by {field})")]
    ControllerMissing {
        controller: &'static str,
        path: PathBuf,
        field: &'static str,
    },
    /// A resource value cannot be applied (e.g. swap below the memory limit).
    #[error("{field}: {reason}")]
    InvalidResource { field: String, reason: String },
    /// Reading, writing or creating a cgroup file or directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file held something that is not in the format the kernel documents.
    #[error("cannot parse {path}: {content:?}")]
    Parse { path: PathBuf, content: String },
    /// The cgroup still holds processes, so it cannot be removed.
    #[error("cgroup {path} still has processes {pids:?}")]
    Busy { path: PathBuf, pids: Vec<i32> },
    /// The cgroup a container is to be created in is frozen (by a pause, or an ancestor's):
    /// its init would freeze on joining it and `create` would wait for it forever.
    #[error("container's cgroup unexpectedly frozen: {0} (thaw it or use another cgroupsPath)")]
    Frozen(PathBuf),
    /// The kernel did not finish freezing the cgroup in time (v1 can stay FREEZING while
    /// processes keep forking); it was thawed again.
    #[error("unable to freeze {path}: still freezing after {secs} s, thawed again")]
    FreezeTimeout { path: PathBuf, secs: u64 },
    /// `--systemd-cgroup` on a host where systemd is not the init (no /run/systemd/system),
    /// in runc's words.
    #[error("systemd not running on this host, cannot use systemd cgroups manager")]
    SystemdNotRunning,
    /// `--systemd-cgroup` on a host running systemd: the transient-scope path through
    /// systemd's D-Bus API is not implemented, and cgroupfs must not be used behind
    /// systemd's back for a slice it manages.
    #[error("--systemd-cgroup: placing containers through systemd (a transient scope over D-Bus) is not supported by nanokube; use a cgroupfs cgroupsPath without --systemd-cgroup")]
    SystemdUnsupported,
    /// A cgroupsPath in systemd's "slice:prefix:name" form without `--systemd-cgroup` (it
    /// would otherwise become a directory literally named so).
    #[error(
        "cgroupsPath {0:?} is a systemd \"slice:prefix:name\" path: it needs --systemd-cgroup"
    )]
    SystemdPathWithoutFlag(String),
    /// `--systemd-cgroup` with a cgroupsPath that is not "slice:prefix:name".
    #[error("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {0:?} instead")]
    InvalidSystemdPath(String),
    /// An `exec --cgroup` path climbs out of the container's cgroup.
    #[error("{0} is not a sub cgroup path")]
    NotSubCgroup(String),
    /// An `exec --cgroup` controller that has no hierarchy of the container's.
    #[error("unknown controller {0} in --cgroup")]
    UnknownController(String),
    /// `kill_all` was given a number that is not a signal.
    #[error("{0} is not a signal number")]
    InvalidSignal(i32),
    /// Sending the signal to a member process failed for a reason other than it being gone.
    #[error("signal {signal} to pid {pid}: {source}")]
    Signal {
        pid: i32,
        signal: i32,
        #[source]
        source: nix::Error,
    },
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

/// One container's cgroup (one directory in v2, one per controller in v1).
#[derive(Debug)]
pub struct Cgroup {
    path: String,
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    V2(v2::V2Cgroup),
    V1(v1::V1Cgroup),
}

/// The hierarchy mounted at /sys/fs/cgroup: `Unified` when it is a cgroup2 filesystem,
/// `Legacy` otherwise (v1 controllers, with or without an empty v2 mount beside them).
pub fn detect() -> Hierarchy {
    layout::get().hierarchy
}

/// Splits an OCI cgroupsPath into its directory components, refusing anything that could
/// escape the hierarchy or name its root. Relative paths are taken from the root as well.
fn components(path: &str) -> Result<Vec<&str>> {
    let invalid = |reason| Error::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" => continue,
            "." | ".." => return Err(invalid("\".\" and \"..\" are not allowed")),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(invalid("it names the root cgroup"));
    }
    Ok(parts)
}

/// True for systemd's "slice:prefix:name" form: three colon-separated parts and no '/'
/// (a cgroupfs path may hold colons in a directory name, but always has a '/').
fn is_systemd_form(path: &str) -> bool {
    !path.contains('/') && path.split(':').count() == 3
}

/// Where directory `/run/systemd/system` exists, systemd is the init (sd_booted(3)).
const SYSTEMD_RUNNING_MARK: &str = "/run/systemd/system";

/// The cgroupsPath to create, given the spec's `linux.cgroupsPath` and whether the caller
/// passed `--systemd-cgroup`. Without the flag a plain path is returned unchanged and a
/// "slice:prefix:name" path is refused (runc 1.1.5 would make a directory of that name). With
/// it, the path must be "slice:prefix:name" and systemd must be running; as nanokube does not
/// talk to systemd over D-Bus yet, a host running systemd is refused too, with a message that
/// says so.
pub fn resolve_cgroup_path(path: &str, systemd: bool) -> Result<String> {
    if !systemd {
        if is_systemd_form(path) {
            return Err(Error::SystemdPathWithoutFlag(path.to_string()));
        }
        return Ok(path.to_string());
    }
    if !std::path::Path::new(SYSTEMD_RUNNING_MARK).is_dir() {
        return Err(Error::SystemdNotRunning);
    }
    if !is_systemd_form(path) {
        return Err(Error::InvalidSystemdPath(path.to_string()));
    }
    Err(Error::SystemdUnsupported)
}

/// Resources nanokube does not apply yet; said once per cgroup so a spec that asks for them
/// is not silently half-honoured.
fn log_unsupported(r: &LinuxResources) {
    let ignored = [
        (
            "blockIO (all but weight)",
            r.block_io().as_ref().is_some_and(|b| {
                b.leaf_weight().is_some()
                    || b.weight_device().as_ref().is_some_and(|d| !d.is_empty())
                    || b.throttle_read_bps_device()
                        .as_ref()
                        .is_some_and(|d| !d.is_empty())
                    || b.throttle_write_bps_device()
                        .as_ref()
                        .is_some_and(|d| !d.is_empty())
                    || b.throttle_read_iops_device()
                        .as_ref()
                        .is_some_and(|d| !d.is_empty())
                    || b.throttle_write_iops_device()
                        .as_ref()
                        .is_some_and(|d| !d.is_empty())
            }),
        ),
        (
            "hugepageLimits",
            r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()),
        ),
        ("network", r.network().is_some()),
        ("rdma", r.rdma().as_ref().is_some_and(|m| !m.is_empty())),
    ];
    for (field, present) in ignored {
        if present {
            tracing::warn!("linux.resources.{field} is not supported; ignored");
        }
    }
}

impl Cgroup {
    /// Creates (or reuses) the cgroup at `path` (an OCI cgroupsPath, absolute under the cgroup
    /// root, e.g. "/nanokube/<id>") and applies `resources`. On error nothing that this call
    /// created is left behind.
    pub fn create(path: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
        // Whatever the caller: a systemd path never becomes a literal directory.
        if is_systemd_form(path) {
            return Err(Error::SystemdPathWithoutFlag(path.to_string()));
        }
        let parts = components(path)?;
        let layout = layout::get();
        let backend = match layout.hierarchy {
            Hierarchy::Unified => Backend::V2(v2::V2Cgroup::create(layout, &parts, resources)?),
            Hierarchy::Legacy => Backend::V1(v1::V1Cgroup::create(layout, &parts, resources)?),
        };
        Ok(Cgroup {
            path: path.to_string(),
            backend,
        })
    }

    /// Opens an existing cgroup (a restarted caller inspecting a container it did not start).
    pub fn open(path: &str) -> Result<Cgroup> {
        let parts = components(path)?;
        let layout = layout::get();
        let backend = match layout.hierarchy {
            Hierarchy::Unified => v2::V2Cgroup::open(layout, &parts).map(Backend::V2),
            Hierarchy::Legacy => v1::V1Cgroup::open(layout, &parts).map(Backend::V1),
        }
        .ok_or_else(|| Error::NotFound(path.to_string()))?;
        Ok(Cgroup {
            path: path.to_string(),
            backend,
        })
    }

    /// The cgroupsPath this cgroup was created or opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The hierarchy this cgroup lives in.
    pub fn hierarchy(&self) -> Hierarchy {
        match self.backend {
            Backend::V2(_) => Hierarchy::Unified,
            Backend::V1(_) => Hierarchy::Legacy,
        }
    }

    /// Every directory that makes up this cgroup (one in v2; one per mounted v1 controller
    /// plus the hybrid v2 directory). Tests use it to check that nothing is left behind.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.backend {
            Backend::V2(c) => vec![c.dir().to_path_buf()],
            Backend::V1(c) => c.dirs(),
        }
    }

    /// Moves a process into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        match &self.backend {
            Backend::V2(c) => c.add_pid(pid),
            Backend::V1(c) => c.add_pid(pid),
        }
    }

    /// Changes the limits of a live cgroup. Only the values present in `resources` change.
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        match &self.backend {
            Backend::V2(c) => c.apply(resources),
            Backend::V1(c) => c.apply(resources),
        }
    }

    /// Pids of every process in the cgroup, sorted.
    pub fn pids(&self) -> Result<Vec<i32>> {
        match &self.backend {
            Backend::V2(c) => c.pids(),
            Backend::V1(c) => c.pids(),
        }
    }

    /// Usage and limits read back from the kernel.
    pub fn stats(&self) -> Result<Stats> {
        match &self.backend {
            Backend::V2(c) => c.stats(),
            Backend::V1(c) => c.stats(),
        }
    }

    /// Everything `runc events` reports (cpu, cpuset, memory with memory.stat, pids, block
    /// I/O, hugetlb), in its JSON shape.
    pub fn detailed_stats(&self) -> Result<Detailed> {
        match &self.backend {
            Backend::V2(c) => detail::v2(c.dir()),
            Backend::V1(c) => detail::v1(|controller| c.controller_dir(controller)),
        }
    }

    /// True once the kernel OOM-killed a process in this cgroup.
    pub fn oom_killed(&self) -> Result<bool> {
        match &self.backend {
            Backend::V2(c) => c.oom_killed(),
            Backend::V1(c) => c.oom_killed(),
        }
    }

    /// Freezes every process in the cgroup (`pause`) and returns once the kernel reports the
    /// cgroup frozen: v2 `cgroup.freeze` until cgroup.events says `frozen 1`, v1
    /// `freezer.state` until it reads FROZEN. If that does not happen in time the cgroup is
    /// thawed again and [`Error::FreezeTimeout`] returned, so it is never left half-frozen.
    pub fn freeze(&self) -> Result<()> {
        match &self.backend {
            Backend::V2(c) => c.freeze(),
            Backend::V1(c) => c.freeze(),
        }
    }

    /// Undoes [`Cgroup::freeze`] (`resume`).
    pub fn thaw(&self) -> Result<()> {
        match &self.backend {
            Backend::V2(c) => c.thaw(),
            Backend::V1(c) => c.thaw(),
        }
    }

    /// True when this cgroup itself was frozen (what `pause` does), as runc decides "paused":
    /// v2 `cgroup.freeze` is 1, v1 `freezer.self_freezing` is 1. A cgroup frozen only through
    /// an ancestor does not count; a cgroup without a freezer is never frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        match &self.backend {
            Backend::V2(c) => c.is_frozen(),
            Backend::V1(c) => c.is_frozen(),
        }
    }

    /// Sends `signal` to every process in the cgroup (freezing it first so none escapes by forking).
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        match &self.backend {
            Backend::V2(c) => c.kill_all(signal),
            Backend::V1(c) => c.kill_all(signal),
        }
    }

    /// Removes the cgroup directories; fails with [`Error::Busy`] if processes remain.
    /// Removing a cgroup that is already gone succeeds. Parent directories (e.g. "/nanokube")
    /// are shared with other containers and stay.
    pub fn destroy(self) -> Result<()> {
        match self.backend {
            Backend::V2(c) => c.destroy(),
            Backend::V1(c) => c.destroy(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_are_never_cgroupfs_paths() {
        assert_eq!(
            resolve_cgroup_path("/nanokube/x", false).unwrap(),
            "/nanokube/x"
        );
        assert_eq!(
            resolve_cgroup_path("nanokube/a:b:c", false).unwrap(),
            "nanokube/a:b:c"
        );
        let err = resolve_cgroup_path("system.slice:nk:x", false).unwrap_err();
        assert!(matches!(err, Error::SystemdPathWithoutFlag(_)), "{err}");
        assert!(matches!(
            Cgroup::create("system.slice:nk:x", None),
            Err(Error::SystemdPathWithoutFlag(_))
        ));
        // With the flag: refused, and for the reason that holds on this host.
        let err = resolve_cgroup_path("system.slice:nk:x", true).unwrap_err();
        if std::path::Path::new(SYSTEMD_RUNNING_MARK).is_dir() {
            assert!(matches!(err, Error::SystemdUnsupported), "{err}");
        } else {
            assert_eq!(
                err.to_string(),
                "systemd not running on this host, cannot use systemd cgroups manager"
            );
        }
        assert!(is_systemd_form(":runc:x"));
        assert!(!is_systemd_form("a:b"));
    }

    #[test]
    fn components_reject_escapes_and_root() {
        assert_eq!(components("/nanokube/abc").unwrap(), ["nanokube", "abc"]);
        assert_eq!(components("nanokube//abc/").unwrap(), ["nanokube", "abc"]);
        assert!(matches!(components("/"), Err(Error::InvalidPath { .. })));
        assert!(matches!(components(""), Err(Error::InvalidPath { .. })));
        assert!(matches!(
            components("/nanokube/../etc"),
            Err(Error::InvalidPath { .. })
        ));
    }
}
