//! cgroup v1 (and hybrid): one directory per mounted controller, plus one in the
//! controller-less v2 mount when there is one.
//!
//! Resource files: memory.limit_in_bytes, memory.memsw.limit_in_bytes (memory+swap, the OCI
//! meaning of `swap`), memory.soft_limit_in_bytes, memory.swappiness, memory.oom_control,
//! cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us, cpu.cfs_burst_us, cpu.rt_*, cpu.idle,
//! cpuset.cpus, cpuset.mems, pids.max, blkio.weight (or blkio.bfq.weight),
//! devices.deny/devices.allow. Usage comes from
//! memory.usage_in_bytes and cpuacct.usage. The hybrid v2 directory costs nothing and gives
//! `kill_all` cgroup.kill.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

use super::layout::Layout;
use super::stats::{self, keyed, Stats};
use super::{devices, fs, Error, Result};

#[derive(Debug)]
pub(super) struct V1Cgroup {
    /// Controller name -> this cgroup's directory in that controller's hierarchy.
    dirs: BTreeMap<String, PathBuf>,
    /// The directory in the hybrid v2 mount, if there is one.
    unified: Option<PathBuf>,
}

/// A new cpuset cgroup starts with empty cpus and mems, and the kernel refuses to add tasks
/// to it; each level we pass through inherits its parent's sets when empty.
fn inherit_cpuset(parent: &Path, dir: &Path) -> Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        if fs::read(dir, file)?.trim().is_empty() {
            let from_parent = fs::read(parent, file)?;
            fs::write(dir, file, from_parent.trim())?;
        }
    }
    Ok(())
}

impl V1Cgroup {
    pub(super) fn create(
        layout: &Layout,
        parts: &[&str],
        resources: Option<&LinuxResources>,
    ) -> Result<V1Cgroup> {
        if layout.v1.is_empty() {
            return Err(Error::NotMounted(
                "/sys/fs/cgroup is not cgroup2 and no v1 controller is mounted".into(),
            ));
        }
        let mut cgroup = V1Cgroup {
            dirs: BTreeMap::new(),
            unified: None,
        };
        // Leaves this call created, to remove again if a later step fails.
        let mut created: Vec<PathBuf> = Vec::new();
        let result = (|| {
            for (controller, mount) in &layout.v1 {
                let mut dir = mount.clone();
                dir.extend(parts);
                if !cgroup.dirs.values().any(|d| *d == dir) {
                    let (dir, new) = if layout.v1.get("cpuset") == Some(mount) {
                        fs::create_dirs(mount, parts, inherit_cpuset)?
                    } else {
                        fs::create_dirs(mount, parts, |_, _| Ok(()))?
                    };
                    if new {
                        created.push(dir);
                    }
                }
                cgroup.dirs.insert(controller.clone(), dir);
            }
            if let Some(unified) = &layout.unified {
                let (dir, new) = fs::create_dirs(unified, parts, |_, _| Ok(()))?;
                if new {
                    created.push(dir.clone());
                }
                cgroup.unified = Some(dir);
            }
            // A process joining a frozen cgroup freezes at once, and the caller would wait for
            // its init forever: refuse before anything is written.
            if cgroup.frozen_effective()? {
                let dir = cgroup.dirs.get("freezer").or(cgroup.unified.as_ref());
                return Err(Error::Frozen(dir.cloned().unwrap_or_default()));
            }
            // Device rules apply even without resources: the defaults are never "everything".
            cgroup.set_devices(resources.and_then(|r| r.devices().as_deref()))?;
            if let Some(resources) = resources {
                cgroup.apply_limits(resources)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(cgroup),
            Err(e) => {
                for dir in created.iter().rev() {
                    let _ = fs::remove_dir(dir);
                }
                Err(e)
            }
        }
    }

    pub(super) fn open(layout: &Layout, parts: &[&str]) -> Option<V1Cgroup> {
        let join = |mount: &PathBuf| {
            let mut dir = mount.clone();
            dir.extend(parts);
            dir
        };
        let dirs: BTreeMap<String, PathBuf> = layout
            .v1
            .iter()
            .map(|(c, m)| (c.clone(), join(m)))
            .filter(|(_, d)| d.is_dir())
            .collect();
        let unified = layout.unified.as_ref().map(join).filter(|d| d.is_dir());
        if dirs.is_empty() && unified.is_none() {
            return None;
        }
        Some(V1Cgroup { dirs, unified })
    }

    /// Every distinct directory of this cgroup.
    pub(super) fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.dirs.values().cloned().collect();
        dirs.extend(self.unified.clone());
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// This cgroup's directory in `controller`'s hierarchy, if that is mounted.
    pub(super) fn controller_dir(&self, controller: &str) -> Option<&Path> {
        self.dirs.get(controller).map(PathBuf::as_path)
    }

    fn dir(&self, controller: &'static str, field: &'static str) -> Result<&Path> {
        self.dirs
            .get(controller)
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::ControllerMissing {
                controller,
                path: PathBuf::from(format!("/sys/fs/cgroup/{controller}")),
                field,
            })
    }

    fn set(
        &self,
        controller: &'static str,
        field: &'static str,
        file: &str,
        value: &str,
    ) -> Result<()> {
        let dir = self.dir(controller, field)?;
        match fs::write(dir, file, value) {
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Err(Error::ControllerMissing {
                    controller,
                    path: dir.join(file),
                    field,
                })
            }
            other => other,
        }
    }

    fn set_devices(&self, spec: Option<&[LinuxDeviceCgroup]>) -> Result<()> {
        let rules = devices::rules(spec)?;
        match self.dirs.get("devices") {
            Some(dir) => devices::apply_v1(dir, &rules),
            None => {
                tracing::warn!("no v1 devices controller: device access is not restricted");
                Ok(())
            }
        }
    }

    /// Applies what `r` mentions: an update.
    pub(super) fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(devices) = r.devices() {
            self.set_devices(Some(devices))?;
        }
        self.apply_limits(r)
    }

    fn apply_limits(&self, r: &LinuxResources) -> Result<()> {
        super::log_unsupported(r);
        if let Some(m) = r.memory() {
            let field = "linux.resources.memory";
            self.set_memory_and_swap(m.limit(), m.swap())?;
            if let Some(reservation) = m.reservation() {
                self.set(
                    "memory",
                    field,
                    "memory.soft_limit_in_bytes",
                    &reservation.max(-1).to_string(),
                )?;
            }
            if let Some(swappiness) = m.swappiness() {
                if swappiness > 100 {
                    return Err(Error::InvalidResource {
                        field: "linux.resources.memory.swappiness".into(),
                        reason: format!("{swappiness} is not in 0..=100"),
                    });
                }
                self.set(
                    "memory",
                    field,
                    "memory.swappiness",
                    &swappiness.to_string(),
                )?;
            }
            if let Some(disable) = m.disable_oom_killer() {
                self.set(
                    "memory",
                    field,
                    "memory.oom_control",
                    if disable { "1" } else { "0" },
                )?;
            }
        }
        if let Some(c) = r.cpu() {
            let field = "linux.resources.cpu";
            if let Some(shares) = c.shares().filter(|&s| s != 0) {
                self.set("cpu", field, "cpu.shares", &shares.to_string())?;
            }
            // The period first: a quota is only meaningful relative to it. But a shorter period
            // under the old quota can exceed a parent's (a pod's) bandwidth, which the kernel
            // refuses (EINVAL); then the new quota goes first and the period after it, as runc.
            let quota = c.quota().filter(|&q| q != 0);
            let mut period_later = None;
            if let Some(period) = c.period().filter(|&p| p != 0) {
                match self.set("cpu", field, "cpu.cfs_period_us", &period.to_string()) {
                    Err(Error::Io { source, .. })
                        if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
                    {
                        period_later = Some(period);
                    }
                    other => other?,
                }
            }
            if let Some(quota) = quota {
                self.set("cpu", field, "cpu.cfs_quota_us", &quota.max(-1).to_string())?;
            }
            if let Some(period) = period_later {
                self.set("cpu", field, "cpu.cfs_period_us", &period.to_string())?;
            }
            if let Some(burst) = c.burst() {
                self.set("cpu", field, "cpu.cfs_burst_us", &burst.to_string())?;
            }
            if let Some(period) = c.realtime_period().filter(|&p| p != 0) {
                self.set("cpu", field, "cpu.rt_period_us", &period.to_string())?;
            }
            if let Some(runtime) = c.realtime_runtime().filter(|&r| r != 0) {
                self.set("cpu", field, "cpu.rt_runtime_us", &runtime.to_string())?;
            }
            if let Some(idle) = c.idle() {
                self.set("cpu", field, "cpu.idle", &idle.to_string())?;
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
            let dir = self.dir("blkio", field)?;
            // CFQ's blkio.weight is gone from current kernels; BFQ's takes the same scale.
            let file = if dir.join("blkio.weight").exists() {
                "blkio.weight"
            } else {
                "blkio.bfq.weight"
            };
            self.set("blkio", field, file, &weight.to_string())?;
        }
        if let Some(p) = r.pids() {
            let value = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            };
            self.set("pids", "linux.resources.pids", "pids.max", &value)?;
        }
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(Error::InvalidResource {
                field: "linux.resources.unified".into(),
                // runc's words, which callers match.
                reason: "invalid configuration: cannot use unified on cgroup v1 (this host's \
                         controllers are cgroup v1)"
                    .into(),
            });
        }
        Ok(())
    }

    /// v1 insists memory.limit_in_bytes <= memory.memsw.limit_in_bytes at every moment, so
    /// when the memory+swap limit grows it is written first, and when it shrinks, last.
    fn set_memory_and_swap(&self, limit: Option<i64>, swap: Option<i64>) -> Result<()> {
        let field = "linux.resources.memory";
        let limit = limit.map(|l| l.max(-1));
        let swap = swap.filter(|&s| s != 0).map(|s| s.max(-1));
        if let (Some(l), Some(s)) = (limit, swap) {
            if l >= 0 && s >= 0 && s < l {
                return Err(Error::InvalidResource {
                    field: "linux.resources.memory.swap".into(),
                    reason: format!("memory+swap ({s}) must not be below the memory limit ({l})"),
                });
            }
        }
        let memory_dir = self.dir("memory", field)?;
        let has_memsw = memory_dir.join("memory.memsw.limit_in_bytes").exists();
        if swap.is_some_and(|s| s >= 0) && !has_memsw {
            return Err(Error::InvalidResource {
                field: "linux.resources.memory.swap".into(),
                reason: "this kernel does not account swap (no memory.memsw.limit_in_bytes)".into(),
            });
        }
        let mut swap = swap.filter(|_| has_memsw);
        // A new memory limit without a swap value keeps the current swap allowance (memsw −
        // limit); otherwise raising the limit above a limited memsw would fail.
        if let (Some(l), None, true) = (limit, swap, has_memsw) {
            let memsw = stats::limit(&fs::read(memory_dir, "memory.memsw.limit_in_bytes")?);
            let current = stats::limit(&fs::read(memory_dir, "memory.limit_in_bytes")?);
            if let (Some(memsw), Some(current)) = (memsw, current) {
                let allowance = memsw.saturating_sub(current) as i64;
                swap = Some(if l < 0 { -1 } else { l + allowance });
            }
        }
        let swap_first = match swap {
            Some(-1) => true,
            Some(s) => {
                let current = fs::read(memory_dir, "memory.memsw.limit_in_bytes")?;
                stats::limit(&current).is_some_and(|cur| (s as u64) > cur)
            }
            None => false,
        };
        let write_swap = |s: i64| {
            self.set(
                "memory",
                field,
                "memory.memsw.limit_in_bytes",
                &s.to_string(),
            )
        };
        let write_limit =
            |l: i64| self.set("memory", field, "memory.limit_in_bytes", &l.to_string());
        if swap_first {
            swap.map(write_swap).transpose()?;
            limit.map(write_limit).transpose()?;
        } else {
            limit.map(write_limit).transpose()?;
            swap.map(write_swap).transpose()?;
        }
        Ok(())
    }

    pub(super) fn add_pid(&self, pid: i32) -> Result<()> {
        let pid = pid.to_string();
        for dir in self.dirs() {
            fs::write(&dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// The directory that lists the member processes (every hierarchy lists the same ones).
    fn procs_dir(&self) -> Option<&Path> {
        ["pids", "memory", "freezer", "cpu"]
            .iter()
            .find_map(|c| self.dirs.get(*c))
            .or(self.unified.as_ref())
            .map(PathBuf::as_path)
    }

    pub(super) fn pids(&self) -> Result<Vec<i32>> {
        match self.procs_dir() {
            Some(dir) => fs::read_procs(dir),
            None => Ok(Vec::new()),
        }
    }

    fn read(&self, controller: &str, file: &str) -> Result<Option<String>> {
        match self.dirs.get(controller) {
            Some(dir) => fs::read_optional(dir, file),
            None => Ok(None),
        }
    }

    fn read_u64(&self, controller: &str, file: &str) -> Result<u64> {
        match (self.read(controller, file)?, self.dirs.get(controller)) {
            (Some(c), Some(dir)) => fs::parse_u64(dir, file, &c),
            _ => Ok(0),
        }
    }

    pub(super) fn stats(&self) -> Result<Stats> {
        let keyed_value = |controller, file, key| -> Result<u64> {
            Ok(self
                .read(controller, file)?
                .and_then(|c| keyed(&c, key))
                .unwrap_or(0))
        };
        Ok(Stats {
            memory_usage_bytes: self.read_u64("memory", "memory.usage_in_bytes")?,
            memory_limit_bytes: self
                .read("memory", "memory.limit_in_bytes")?
                .and_then(|c| stats::limit(&c)),
            cpu_usage_nanos: self.read_u64("cpuacct", "cpuacct.usage")?,
            pids_current: self.read_u64("pids", "pids.current")?,
            oom_kills: keyed_value("memory", "memory.oom_control", "oom_kill")?,
            cpu_throttled_periods: keyed_value("cpu", "cpu.stat", "nr_throttled")?,
            pids_limit: self
                .read("pids", "pids.max")?
                .and_then(|c| stats::limit(&c)),
        })
    }

    /// memory.oom_control has an `oom_kill` counter since Linux 4.13; older kernels only
    /// offer memory.failcnt, which counts hitting the limit (usually followed by an OOM kill
    /// when there is no swap).
    pub(super) fn oom_killed(&self) -> Result<bool> {
        let Some(control) = self.read("memory", "memory.oom_control")? else {
            return Ok(false);
        };
        match keyed(&control, "oom_kill") {
            Some(kills) => Ok(kills > 0),
            None => Ok(self.read_u64("memory", "memory.failcnt")? > 0),
        }
    }

    /// The hybrid v2 directory's own freeze switch: on a hybrid host a process is frozen when
    /// either the v1 freezer or this says so (runc only uses the v1 one, but someone else may
    /// have used this one).
    fn unified_frozen(&self) -> Result<bool> {
        match &self.unified {
            Some(dir) => {
                Ok(fs::read_optional(dir, "cgroup.freeze")?.is_some_and(|v| v.trim() == "1"))
            }
            None => Ok(false),
        }
    }

    pub(super) fn freeze(&self) -> Result<()> {
        let dir = self.dir("freezer", "pause")?;
        // Writing FROZEN again on every poll nudges tasks that were in a fork when the
        // freeze began; without it v1 can stay FREEZING while new processes appear.
        let frozen = fs::wait_until(fs::FREEZE_TIMEOUT, || {
            fs::write(dir, "freezer.state", "FROZEN")?;
            Ok(fs::read(dir, "freezer.state")?.trim() == "FROZEN")
        })?;
        if !frozen {
            let _ = fs::write(dir, "freezer.state", "THAWED");
            return Err(Error::FreezeTimeout {
                path: dir.to_path_buf(),
                secs: fs::FREEZE_TIMEOUT.as_secs(),
            });
        }
        Ok(())
    }

    pub(super) fn thaw(&self) -> Result<()> {
        let dir = self.dir("freezer", "resume")?;
        fs::write(dir, "freezer.state", "THAWED")?;
        if self.unified_frozen()? {
            if let Some(unified) = &self.unified {
                fs::write(unified, "cgroup.freeze", "0")?;
            }
        }
        Ok(())
    }

    pub(super) fn is_frozen(&self) -> Result<bool> {
        if self.unified_frozen()? {
            return Ok(true);
        }
        let Some(dir) = self.dirs.get("freezer") else {
            return Ok(false);
        };
        // freezer.state also reads FROZEN when only an ancestor is frozen; self_freezing says
        // whether this cgroup was frozen itself. Kernels before 3.14 lack it.
        match fs::read_optional(dir, "freezer.self_freezing")? {
            Some(v) => Ok(v.trim() == "1"),
            None => Ok(fs::read(dir, "freezer.state")?.trim() == "FROZEN"),
        }
    }

    /// Frozen, freezing, or frozen through an ancestor.
    pub(super) fn frozen_effective(&self) -> Result<bool> {
        if self.unified_frozen()? {
            return Ok(true);
        }
        if let Some(unified) = &self.unified {
            let events = fs::read_optional(unified, "cgroup.events")?.unwrap_or_default();
            if keyed(&events, "frozen") == Some(1) {
                return Ok(true);
            }
        }
        match self.dirs.get("freezer") {
            Some(dir) => Ok(fs::read(dir, "freezer.state")?.trim() != "THAWED"),
            None => Ok(false),
        }
    }

    pub(super) fn kill_all(&self, signal: i32) -> Result<()> {
        if self.procs_dir().is_none_or(|d| !d.exists()) {
            // Already destroyed: nobody left to signal.
            return Ok(());
        }
        if let Some(unified) = &self.unified {
            if signal == libc::SIGKILL && unified.join("cgroup.kill").exists() {
                fs::write(unified, "cgroup.kill", "1")?;
                // A task frozen by the v1 freezer (a paused container) keeps the kill pending
                // until it is thawed.
                return match self.dirs.get("freezer") {
                    Some(freezer) => fs::write(freezer, "freezer.state", "THAWED"),
                    None => Ok(()),
                };
            }
        }
        let Some(freezer) = self.dirs.get("freezer") else {
            return fs::signal_all(&self.pids()?, signal);
        };
        fs::write(freezer, "freezer.state", "FROZEN")?;
        let result = (|| {
            // If freezing does not complete in time, signalling is still the best we can do.
            fs::wait_until(fs::SETTLE, || {
                // Writing FROZEN again nudges tasks that were in a fork when the freeze began.
                Ok(fs::read(freezer, "freezer.state")?.trim() == "FROZEN"
                    || fs::write(freezer, "freezer.state", "FROZEN").map(|_| false)?)
            })?;
            fs::signal_all(&fs::read_procs(freezer)?, signal)
        })();
        // Thaw whatever happened, or the processes stay frozen with the signal pending.
        let thawed = fs::write(freezer, "freezer.state", "THAWED");
        result.and(thawed)
    }

    pub(super) fn destroy(self) -> Result<()> {
        // Try every hierarchy even if one fails, so one stuck directory leaks nothing else.
        if let Some(dir) = self.procs_dir().filter(|d| d.exists()) {
            fs::wait_empty(dir, || self.pids())?;
        }
        let mut first_error = None;
        for dir in self.dirs() {
            if let Err(e) = fs::remove_dir(&dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
