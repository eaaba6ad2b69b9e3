//! cgroup v2: one directory per container under the unified mount.
//!
//! Resource files: memory.max, memory.swap.max, memory.low, cpu.weight, cpu.max,
//! cpu.max.burst, cpu.idle, cpuset.cpus, cpuset.mems, pids.max, io.bfq.weight or io.weight,
//! plus any `unified` entry;
//! device rules become an eBPF program attached to the directory (see `devices`).
//! A controller's files only appear in a child once every ancestor lists the controller in
//! its cgroup.subtree_control, so creation enables them level by level on the way down.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::layout::Layout;
use super::stats::{keyed, limit, Stats};
use super::{convert, devices, fs, Error, Result};

#[derive(Debug)]
pub(super) struct V2Cgroup {
    dir: PathBuf,
}

/// Enables in `parent` every container controller it has available but not yet enabled.
/// Each is written on its own: one unavailable name would make a combined write fail whole.
/// A controller the kernel refuses to enable (e.g. `cpu` while realtime tasks run in the
/// parent on kernels with RT group scheduling) is only logged: a spec that needs it then fails
/// with `ControllerMissing` naming the field, and one that does not still works.
fn enable_controllers(parent: &Path) -> Result<()> {
    let available = fs::read(parent, "cgroup.controllers")?;
    let enabled = fs::read(parent, "cgroup.subtree_control")?;
    // Every controller the parent has, as runc enables them (hugetlb and rdma stats come
    // from their files too).
    for controller in available.split_whitespace() {
        if !enabled.split_whitespace().any(|c| c == controller) {
            if let Err(e) = fs::write(parent, "cgroup.subtree_control", &format!("+{controller}")) {
                tracing::warn!(%e, "cannot enable the {controller} controller");
            }
        }
    }
    Ok(())
}

impl V2Cgroup {
    pub(super) fn create(
        layout: &Layout,
        parts: &[&str],
        resources: Option<&LinuxResources>,
    ) -> Result<V2Cgroup> {
        let root = layout
            .unified
            .clone()
            .ok_or_else(|| Error::NotMounted("no cgroup2 mount found".into()))?;
        let (dir, created) = fs::create_dirs(&root, parts, |parent, _| enable_controllers(parent))?;
        let cgroup = V2Cgroup { dir };
        // A process born into a frozen cgroup freezes at once, and the caller would wait for
        // its init forever: refuse before anything is written.
        match cgroup.frozen_effective() {
            Ok(false) => {}
            frozen => {
                if created {
                    let _ = fs::remove_dir(&cgroup.dir);
                }
                frozen?;
                return Err(Error::Frozen(cgroup.dir));
            }
        }
        // Device rules apply even without resources: the defaults are never "everything".
        let devices = resources.and_then(|r| r.devices().as_deref());
        let applied = devices::rules(devices)
            .and_then(|rules| devices::apply_v2(&cgroup.dir, &rules))
            .and_then(|()| resources.map_or(Ok(()), |r| cgroup.apply_limits(r)));
        if let Err(e) = applied {
            if created {
                let _ = fs::remove_dir(&cgroup.dir);
            }
            return Err(e);
        }
        Ok(cgroup)
    }

    pub(super) fn open(layout: &Layout, parts: &[&str]) -> Option<V2Cgroup> {
        let mut dir = layout.unified.clone()?;
        dir.extend(parts);
        dir.is_dir().then_some(V2Cgroup { dir })
    }

    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes one resource file; a missing file means the controller is not enabled here.
    fn set(
        &self,
        controller: &'static str,
        field: &'static str,
        file: &str,
        value: &str,
    ) -> Result<()> {
        match fs::write(&self.dir, file, value) {
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Err(Error::ControllerMissing {
                    controller,
                    path: self.dir.clone(),
                    field,
                })
            }
            other => other,
        }
    }

    /// Applies what `r` mentions: an update.
    pub(super) fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(devices) = r.devices() {
            devices::apply_v2(&self.dir, &devices::rules(Some(devices))?)?;
        }
        self.apply_limits(r)
    }

    fn apply_limits(&self, r: &LinuxResources) -> Result<()> {
        super::log_unsupported(r);
        if let Some(m) = r.memory() {
            let field = "linux.resources.memory";
            if let Some(l) = m.limit() {
                self.set("memory", field, "memory.max", &convert::v2_limit(l))?;
            }
            // An update may change swap alone: the memory limit then is the current one.
            let mem_limit = match m.limit() {
                Some(l) => Some(l),
                None if m.swap().is_some() => {
                    let current = fs::read_optional(&self.dir, "memory.max")?;
                    current.map(|c| limit(&c).map_or(-1, |v| v as i64))
                }
                None => None,
            };
            if let Some(swap) = convert::v2_swap(m.swap(), mem_limit)? {
                match self.set("memory", field, "memory.swap.max", &swap) {
                    // Kernels without swap accounting have no swap file: "no swap limit" is
                    // then already true, anything else cannot be honoured.
                    Err(Error::ControllerMissing { .. }) if swap == "max" => {}
                    other => other?,
                }
            }
            if let Some(reservation) = m.reservation() {
                self.set(
                    "memory",
                    field,
                    "memory.low",
                    &convert::v2_limit(reservation),
                )?;
            }
            if m.swappiness().is_some() {
                tracing::debug!("memory.swappiness has no cgroup v2 equivalent; ignored");
            }
            if m.disable_oom_killer() == Some(true) {
                tracing::debug!("disableOOMKiller has no cgroup v2 equivalent; ignored");
            }
        }
        if let Some(c) = r.cpu() {
            let field = "linux.resources.cpu";
            if let Some(shares) = c.shares().filter(|&s| s != 0) {
                let weight = convert::shares_to_weight(shares);
                self.set("cpu", field, "cpu.weight", &weight.to_string())?;
            }
            if c.quota().is_some() || c.period().is_some() {
                // cpu.max holds both values: keep the one this update does not mention.
                let current = fs::read_optional(&self.dir, "cpu.max")?.unwrap_or_default();
                let mut current = current.split_whitespace();
                let cur_quota = current.next().unwrap_or("max").to_string();
                let cur_period = current.next().unwrap_or("100000").to_string();
                let quota = match c.quota() {
                    Some(q) if q > 0 => q.to_string(),
                    Some(_) => "max".to_string(),
                    None => cur_quota,
                };
                let period = c
                    .period()
                    .filter(|&p| p > 0)
                    .map_or(cur_period, |p| p.to_string());
                self.set("cpu", field, "cpu.max", &format!("{quota} {period}"))?;
            }
            if let Some(burst) = c.burst() {
                self.set("cpu", field, "cpu.max.burst", &burst.to_string())?;
            }
            if let Some(idle) = c.idle() {
                self.set("cpu", field, "cpu.idle", &idle.to_string())?;
            }
            if c.realtime_runtime().is_some_and(|v| v != 0)
                || c.realtime_period().is_some_and(|v| v != 0)
            {
                return Err(Error::InvalidResource {
                    field: "linux.resources.cpu.realtimeRuntime".into(),
                    reason: "realtime scheduling limits are not supported by cgroup v2".into(),
                });
            }
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                self.set("cpuset", "linux.resources.cpu.cpus", "cpuset.cpus", cpus)?;
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                self.set("cpuset", "linux.resources.cpu.mems", "cpuset.mems", mems)?;
            }
        }
        if let Some(weight) = r
            .block_io()
            .as_ref()
            .and_then(|b| b.weight())
            .filter(|&w| w != 0)
        {
            let field = "linux.resources.blockIO.weight";
            // BFQ takes the v1 scale; without it the io controller's own weight is used.
            if self.dir.join("io.bfq.weight").exists() {
                self.set("io", field, "io.bfq.weight", &weight.to_string())?;
            } else {
                let converted = convert::blkio_to_io_weight(weight);
                self.set("io", field, "io.weight", &converted.to_string())?;
            }
        }
        if let Some(p) = r.pids() {
            let limit = if p.limit() > 0 { p.limit() } else { -1 };
            self.set(
                "pids",
                "linux.resources.pids",
                "pids.max",
                &convert::v2_limit(limit),
            )?;
        }
        if let Some(unified) = r.unified() {
            for (key, value) in unified {
                if key.contains('/') || key.starts_with('.') || key.is_empty() {
                    return Err(Error::InvalidResource {
                        field: format!("linux.resources.unified[{key:?}]"),
                        reason: "not a cgroup file name".into(),
                    });
                }
                fs::write(&self.dir, key, value).map_err(|e| Error::InvalidResource {
                    field: format!("linux.resources.unified[{key:?}]"),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    pub(super) fn add_pid(&self, pid: i32) -> Result<()> {
        fs::write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    pub(super) fn pids(&self) -> Result<Vec<i32>> {
        fs::read_procs(&self.dir)
    }

    fn read_keyed(&self, file: &str, key: &str) -> Result<u64> {
        Ok(fs::read_optional(&self.dir, file)?
            .and_then(|c| keyed(&c, key))
            .unwrap_or(0))
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let read_u64 = |file| -> Result<u64> {
            match fs::read_optional(&self.dir, file)? {
                Some(c) => fs::parse_u64(&self.dir, file, &c),
                None => Ok(0),
            }
        };
        let read_limit = |file| -> Result<Option<u64>> {
            Ok(fs::read_optional(&self.dir, file)?.and_then(|c| limit(&c)))
        };
        Ok(Stats {
            memory_usage_bytes: read_u64("memory.current")?,
            memory_limit_bytes: read_limit("memory.max")?,
            cpu_usage_nanos: self.read_keyed("cpu.stat", "usage_usec")? * 1000,
            pids_current: read_u64("pids.current")?,
            oom_kills: self.read_keyed("memory.events", "oom_kill")?,
            cpu_throttled_periods: self.read_keyed("cpu.stat", "nr_throttled")?,
            pids_limit: read_limit("pids.max")?,
        })
    }

    pub(super) fn oom_killed(&self) -> Result<bool> {
        Ok(self.read_keyed("memory.events", "oom_kill")? > 0)
    }

    fn no_freezer(&self) -> Error {
        Error::ControllerMissing {
            controller: "freezer",
            path: self.dir.join("cgroup.freeze"),
            field: "pause",
        }
    }

    pub(super) fn freeze(&self) -> Result<()> {
        if !self.dir.join("cgroup.freeze").exists() {
            return Err(self.no_freezer());
        }
        fs::write(&self.dir, "cgroup.freeze", "1")?;
        let frozen = fs::wait_until(fs::FREEZE_TIMEOUT, || {
            Ok(self.read_keyed("cgroup.events", "frozen")? == 1)
        })?;
        if !frozen {
            let _ = fs::write(&self.dir, "cgroup.freeze", "0");
            return Err(Error::FreezeTimeout {
                path: self.dir.clone(),
                secs: fs::FREEZE_TIMEOUT.as_secs(),
            });
        }
        Ok(())
    }

    pub(super) fn thaw(&self) -> Result<()> {
        if !self.dir.join("cgroup.freeze").exists() {
            return Err(self.no_freezer());
        }
        fs::write(&self.dir, "cgroup.freeze", "0")
    }

    pub(super) fn is_frozen(&self) -> Result<bool> {
        Ok(fs::read_optional(&self.dir, "cgroup.freeze")?.is_some_and(|v| v.trim() == "1"))
    }

    /// Frozen by itself or through an ancestor (cgroup.events reports the effective state).
    pub(super) fn frozen_effective(&self) -> Result<bool> {
        Ok(self.is_frozen()? || self.read_keyed("cgroup.events", "frozen")? == 1)
    }

    pub(super) fn kill_all(&self, signal: i32) -> Result<()> {
        if !self.dir.exists() {
            // Already destroyed: nobody left to signal.
            return Ok(());
        }
        // cgroup.kill (Linux 5.14) kills every member atomically, forks in flight included.
        if signal == libc::SIGKILL && self.dir.join("cgroup.kill").exists() {
            return fs::write(&self.dir, "cgroup.kill", "1");
        }
        let freezable = self.dir.join("cgroup.freeze").exists();
        if freezable {
            fs::write(&self.dir, "cgroup.freeze", "1")?;
        }
        let result = (|| {
            if freezable {
                // If freezing does not complete in time, signalling is still the best we can do.
                fs::wait_until(fs::SETTLE, || {
                    Ok(self.read_keyed("cgroup.events", "frozen")? == 1)
                })?;
            }
            fs::signal_all(&self.pids()?, signal)
        })();
        // Thaw whatever happened, or the processes stay frozen with the signal pending.
        if freezable {
            let thawed = fs::write(&self.dir, "cgroup.freeze", "0");
            return result.and(thawed);
        }
        result
    }

    pub(super) fn destroy(self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        fs::wait_empty(&self.dir, || self.pids())?;
        fs::remove_dir(&self.dir)
    }
}
