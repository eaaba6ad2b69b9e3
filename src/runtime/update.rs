//! `update`: changing a running container's resource limits, as `runc update` does: from its
//! flags, or from a LinuxResources JSON (`--resources FILE`, `-` for stdin), which is what
//! containerd-shim-runc-v2 sends. As with runc 1.1.5, when the JSON is given the flags are
//! ignored, and a zero value means "leave as it is" (so does an absent field).
//!
//! Only what changes is written to the cgroup (cgroups::Cgroup::update keeps the other half of
//! a pair such as cpu.max). The new values are merged into the spec copy in the state dir
//! (`config.json`'s linux.resources), so the container's saved resources are always the ones
//! in force; runc instead keeps only the last update's values.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};
use serde_json::Value;

use super::cgroups::Cgroup;
use super::container::{self, Runtime};
use super::state::{self, Status};

/// Errors of `update`'s input. Their text is runc's, so tools matching on it keep working.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A typed flag (an integer for runc's flag parser) did not parse: runc reports these as
    /// "Incorrect Usage" and prints the command's help.
    #[error("invalid value {value:?} for flag -{flag}: parse error")]
    Usage { flag: String, value: String },
    /// A flag `update` does not have.
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    /// A value flag that did not parse.
    #[error("invalid value for {flag}: {reason}")]
    InvalidValue { flag: String, reason: String },
    /// The --resources JSON did not decode.
    #[error("--resources: {0}")]
    Json(#[from] serde_json::Error),
    /// Intel RDT is asked for; nanokube has no resctrl support.
    #[error("{0}")]
    NotEnabled(&'static str),
    /// The saved spec in the state dir could not be read or rewritten.
    #[error("saved config {path}: {reason}")]
    Config { path: String, reason: String },
}

/// What an update changes; `None` leaves the value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// memory+swap, as OCI and v1 count it; -1 is unlimited.
    pub memory_swap: Option<i64>,
    /// Accepted and ignored with a warning, as runc 1.1 does.
    pub kernel_memory: Option<i64>,
    pub kernel_memory_tcp: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_rt_runtime: Option<i64>,
    pub cpu_rt_period: Option<u64>,
    pub cpu_idle: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Negative is unlimited.
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub unified: Option<HashMap<String, String>>,
    pub l3_cache_schema: Option<String>,
    pub mem_bw_schema: Option<String>,
}

fn nonzero_u(v: Option<u64>) -> Option<u64> {
    v.filter(|&v| v != 0)
}

fn nonzero_i(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v != 0)
}

/// Go's strconv error text, which runc passes on.
fn strconv_error(func: &str, value: &str, e: &std::num::IntErrorKind) -> String {
    let why = match e {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
            "value out of range"
        }
        _ => "invalid syntax",
    };
    format!("strconv.{func}: parsing {value:?}: {why}")
}

/// A memory size as runc (docker/go-units `RAMInBytes`) reads it: a decimal number, an
/// optional space, an optional k/m/g/t/p (powers of 1024) and an optional i and b, any case:
/// "100M", "1.5g", "512 KiB", "4096".
pub fn ram_in_bytes(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid size: '{text}'");
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, mut rest) = text.split_at(number_end);
    // The number is digits with optional ".digits" groups; several groups match the pattern
    // but then fail to parse, as in go-units.
    if number.is_empty()
        || !number.starts_with(|c: char| c.is_ascii_digit())
        || number.split('.').any(str::is_empty)
    {
        return Err(invalid());
    }
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let multiplier: f64 = match chars.peek().map(|c| c.to_ascii_lowercase()) {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            chars.next();
            let power = "kmgtp".find(c).unwrap_or(0) as i32 + 1;
            1024f64.powi(power)
        }
        _ => 1.0,
    };
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return Err(invalid());
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing {number:?}: invalid syntax"))?;
    // Go's float-to-int conversion; `as` saturates instead of wrapping, which is kinder.
    Ok((value * multiplier) as i64)
}

/// Reads runc's update flags (long names without dashes, values as typed) or, when given,
/// the LinuxResources JSON, which makes the flags ignored (runc 1.1.5).
pub fn parse(flags: &[(String, String)], resources_json: Option<&[u8]>) -> Result<Request, Error> {
    // Unknown names are refused even when the JSON wins: the command line is wrong either way.
    const KNOWN: &[&str] = &[
        "blkio-weight",
        "cpu-period",
        "cpu-quota",
        "cpu-rt-period",
        "cpu-rt-runtime",
        "cpu-share",
        "cpuset-cpus",
        "cpuset-mems",
        "kernel-memory",
        "kernel-memory-tcp",
        "memory",
        "memory-reservation",
        "memory-swap",
        "pids-limit",
        "l3-cache-schema",
        "mem-bw-schema",
    ];
    if let Some((name, _)) = flags.iter().find(|(n, _)| !KNOWN.contains(&n.as_str())) {
        return Err(Error::UnknownFlag(name.clone()));
    }
    // The last occurrence of a flag wins, as with runc's flag parser.
    let flag = |name: &str| -> Option<&str> {
        flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let rdt = Request {
        l3_cache_schema: flag("l3-cache-schema")
            .filter(|v| !v.is_empty())
            .map(String::from),
        mem_bw_schema: flag("mem-bw-schema")
            .filter(|v| !v.is_empty())
            .map(String::from),
        ..Request::default()
    };
    if let Some(json) = resources_json {
        let r: LinuxResources = serde_json::from_slice(json)?;
        return Ok(from_resources(&r, rdt));
    }
    let mut req = rdt;
    let invalid = |flag: &str, reason: String| Error::InvalidValue {
        flag: flag.to_string(),
        reason,
    };
    // runc's flag parser types these two as integers: a bad value is a usage error.
    let typed = |name: &str| -> Result<Option<i64>, Error> {
        match flag(name) {
            None => Ok(None),
            Some(v) => v.trim().parse::<i64>().map(Some).map_err(|_| Error::Usage {
                flag: name.to_string(),
                value: v.to_string(),
            }),
        }
    };
    if let Some(w) = typed("blkio-weight")? {
        // An unsigned flag: a negative value does not parse either.
        let w = u16::try_from(w).map_err(|_| Error::Usage {
            flag: "blkio-weight".into(),
            value: w.to_string(),
        })?;
        req.blkio_weight = Some(w).filter(|&w| w != 0);
    }
    req.pids_limit = nonzero_i(typed("pids-limit")?);
    req.cpuset_cpus = flag("cpuset-cpus")
        .filter(|v| !v.is_empty())
        .map(String::from);
    req.cpuset_mems = flag("cpuset-mems")
        .filter(|v| !v.is_empty())
        .map(String::from);
    let unsigned = |name: &str| -> Result<Option<u64>, Error> {
        match flag(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|e| invalid(name, strconv_error("ParseUint", v, e.kind()))),
        }
    };
    let signed = |name: &str| -> Result<Option<i64>, Error> {
        match flag(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|e| invalid(name, strconv_error("ParseInt", v, e.kind()))),
        }
    };
    let size = |name: &str| -> Result<Option<i64>, Error> {
        match flag(name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some("-1") => Ok(Some(-1)),
            Some(v) => ram_in_bytes(v).map(Some).map_err(|e| invalid(name, e)),
        }
    };
    req.cpu_period = nonzero_u(unsigned("cpu-period")?);
    req.cpu_rt_period = nonzero_u(unsigned("cpu-rt-period")?);
    req.cpu_shares = nonzero_u(unsigned("cpu-share")?);
    req.cpu_quota = nonzero_i(signed("cpu-quota")?);
    req.cpu_rt_runtime = nonzero_i(signed("cpu-rt-runtime")?);
    req.memory = nonzero_i(size("memory")?);
    req.memory_swap = nonzero_i(size("memory-swap")?);
    req.kernel_memory = nonzero_i(size("kernel-memory")?);
    req.kernel_memory_tcp = nonzero_i(size("kernel-memory-tcp")?);
    req.memory_reservation = nonzero_i(size("memory-reservation")?);
    Ok(req)
}

/// The request a LinuxResources document makes (zero and absent both mean unchanged; devices,
/// hugepage, network and rdma limits are not updated, as with runc).
#[allow(deprecated)] // memory.kernel: read only to warn that it is ignored
fn from_resources(r: &LinuxResources, mut req: Request) -> Request {
    if let Some(m) = r.memory() {
        req.memory = nonzero_i(m.limit());
        req.memory_reservation = nonzero_i(m.reservation());
        req.memory_swap = nonzero_i(m.swap());
        req.kernel_memory = nonzero_i(m.kernel());
        req.kernel_memory_tcp = nonzero_i(m.kernel_tcp());
    }
    if let Some(c) = r.cpu() {
        req.cpu_shares = nonzero_u(c.shares());
        req.cpu_quota = nonzero_i(c.quota());
        req.cpu_period = nonzero_u(c.period());
        req.cpu_rt_runtime = nonzero_i(c.realtime_runtime());
        req.cpu_rt_period = nonzero_u(c.realtime_period());
        req.cpu_idle = c.idle();
        req.cpuset_cpus = c.cpus().clone().filter(|s| !s.is_empty());
        req.cpuset_mems = c.mems().clone().filter(|s| !s.is_empty());
    }
    if let Some(p) = r.pids() {
        req.pids_limit = nonzero_i(Some(p.limit()));
    }
    req.blkio_weight = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|&w| w != 0);
    req.unified = r.unified().clone().filter(|u| !u.is_empty());
    req
}

impl Request {
    /// The resources to write: only what the request changes.
    fn resources(&self) -> LinuxResources {
        let mut r = LinuxResources::default();
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some()
        {
            let mut m = LinuxMemory::default();
            m.set_limit(self.memory);
            m.set_swap(self.memory_swap);
            m.set_reservation(self.memory_reservation);
            r.set_memory(Some(m));
        }
        let cpu_changes = self.cpu_shares.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_idle.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if cpu_changes {
            let mut c = LinuxCpu::default();
            c.set_shares(self.cpu_shares);
            c.set_quota(self.cpu_quota);
            c.set_period(self.cpu_period);
            c.set_realtime_runtime(self.cpu_rt_runtime);
            c.set_realtime_period(self.cpu_rt_period);
            c.set_idle(self.cpu_idle);
            c.set_cpus(self.cpuset_cpus.clone());
            c.set_mems(self.cpuset_mems.clone());
            r.set_cpu(Some(c));
        }
        if let Some(limit) = self.pids_limit {
            let mut p = LinuxPids::default();
            p.set_limit(if limit < 0 { -1 } else { limit });
            r.set_pids(Some(p));
        }
        if let Some(weight) = self.blkio_weight {
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(weight));
            r.set_block_io(Some(b));
        }
        r.set_unified(self.unified.clone());
        r
    }

    /// Writes the changed values into a linux.resources JSON object, keeping everything else.
    fn merge_into(&self, resources: &mut serde_json::Map<String, Value>) {
        fn put(
            resources: &mut serde_json::Map<String, Value>,
            section: &str,
            key: &str,
            value: Option<Value>,
        ) {
            let Some(value) = value else { return };
            let entry = resources
                .entry(section.to_string())
                .or_insert_with(|| Value::Object(Default::default()));
            if !entry.is_object() {
                *entry = Value::Object(Default::default());
            }
            entry
                .as_object_mut()
                .expect("made an object")
                .insert(key.to_string(), value);
        }
        let j = |v: Option<i64>| v.map(Value::from);
        let u = |v: Option<u64>| v.map(Value::from);
        let s = |v: &Option<String>| v.clone().map(Value::from);
        put(resources, "memory", "limit", j(self.memory));
        put(resources, "memory", "swap", j(self.memory_swap));
        put(
            resources,
            "memory",
            "reservation",
            j(self.memory_reservation),
        );
        put(resources, "cpu", "shares", u(self.cpu_shares));
        put(resources, "cpu", "quota", j(self.cpu_quota));
        put(resources, "cpu", "period", u(self.cpu_period));
        put(resources, "cpu", "realtimeRuntime", j(self.cpu_rt_runtime));
        put(resources, "cpu", "realtimePeriod", u(self.cpu_rt_period));
        put(resources, "cpu", "idle", j(self.cpu_idle));
        put(resources, "cpu", "cpus", s(&self.cpuset_cpus));
        put(resources, "cpu", "mems", s(&self.cpuset_mems));
        put(
            resources,
            "pids",
            "limit",
            j(self.pids_limit.map(|l| l.max(-1))),
        );
        put(
            resources,
            "blockIO",
            "weight",
            self.blkio_weight.map(Value::from),
        );
        for (key, value) in self.unified.iter().flatten() {
            put(resources, "unified", key, Some(Value::from(value.clone())));
        }
    }
}

/// The values `previous` held for what `req` changes: what a failed update is put back to.
/// Values the container never had set are left as the failed write left them.
fn restore_request(req: &Request, previous: &LinuxResources) -> Request {
    fn keep<T>(old: Option<T>, changed: bool) -> Option<T> {
        old.filter(|_| changed)
    }
    let m = previous.memory().as_ref();
    let c = previous.cpu().as_ref();
    Request {
        memory: keep(m.and_then(|m| m.limit()), req.memory.is_some()),
        memory_swap: keep(m.and_then(|m| m.swap()), req.memory_swap.is_some()),
        memory_reservation: keep(
            m.and_then(|m| m.reservation()),
            req.memory_reservation.is_some(),
        ),
        cpu_shares: keep(c.and_then(|c| c.shares()), req.cpu_shares.is_some()),
        cpu_quota: keep(c.and_then(|c| c.quota()), req.cpu_quota.is_some()),
        cpu_period: keep(c.and_then(|c| c.period()), req.cpu_period.is_some()),
        cpuset_cpus: keep(c.and_then(|c| c.cpus().clone()), req.cpuset_cpus.is_some()),
        cpuset_mems: keep(c.and_then(|c| c.mems().clone()), req.cpuset_mems.is_some()),
        pids_limit: keep(previous.pids().map(|p| p.limit()), req.pids_limit.is_some()),
        ..Request::default()
    }
}

fn config_error(path: &Path, reason: impl ToString) -> Error {
    Error::Config {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn to_container(e: Error) -> container::Error {
    container::Error::Update(e)
}

/// Reads the saved spec and its linux.resources.
fn saved_resources(path: &Path) -> Result<(Value, LinuxResources), Error> {
    let text = std::fs::read(path).map_err(|e| config_error(path, e))?;
    let spec: Value = serde_json::from_slice(&text).map_err(|e| config_error(path, e))?;
    let current = spec
        .pointer("/linux/resources")
        .cloned()
        .map(serde_json::from_value::<LinuxResources>)
        .transpose()
        .map_err(|e| config_error(path, e))?
        .unwrap_or_default();
    Ok((spec, current))
}

fn save_resources(path: &Path, mut spec: Value, req: &Request) -> Result<(), Error> {
    let root = spec
        .as_object_mut()
        .ok_or_else(|| config_error(path, "not a JSON object"))?;
    let linux = root
        .entry("linux")
        .or_insert_with(|| Value::Object(Default::default()));
    let linux = linux
        .as_object_mut()
        .ok_or_else(|| config_error(path, "linux is not an object"))?;
    let resources = linux
        .entry("resources")
        .or_insert_with(|| Value::Object(Default::default()));
    let resources = resources
        .as_object_mut()
        .ok_or_else(|| config_error(path, "linux.resources is not an object"))?;
    req.merge_into(resources);
    let text = serde_json::to_vec(&spec).map_err(|e| config_error(path, e))?;
    // Through a rename, so an `exec` reading the spec meanwhile never sees half of it.
    let tmp = path.with_extension("json.update");
    std::fs::write(&tmp, text).map_err(|e| config_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| config_error(path, e))
}

/// `runc update`: applies `flags` (runc's long names without dashes, values as typed) or
/// `resources_json` (then the flags are ignored) to the container's cgroup and records the
/// merged resources in its state dir. A stopped container is refused as runc refuses it.
pub fn update(
    rt: &Runtime,
    id: &str,
    flags: &[(String, String)],
    resources_json: Option<&[u8]>,
) -> container::Result<()> {
    let req = parse(flags, resources_json).map_err(to_container)?;
    let saved = state::load(&rt.root, id)?;
    let status = state::status(&rt.root, &saved);
    if status == Status::Stopped {
        return Err(container::Error::WrongStatus {
            id: id.into(),
            status,
            message: "container not running",
        });
    }
    if req.l3_cache_schema.is_some() {
        return Err(to_container(Error::NotEnabled(
            "Intel RDT/CAT: l3 cache schema is not enabled",
        )));
    }
    if req.mem_bw_schema.is_some() {
        return Err(to_container(Error::NotEnabled(
            "Intel RDT/MBA: memory bandwidth schema is not enabled",
        )));
    }
    if req.kernel_memory.is_some() || req.kernel_memory_tcp.is_some() {
        tracing::warn!("Kernel memory settings are ignored and will be removed");
    }
    let path = saved
        .cgroup_path
        .as_deref()
        .ok_or_else(|| container::Error::WrongStatus {
            id: id.into(),
            status,
            message: "the container has no cgroup",
        })?;
    let cgroup = Cgroup::open(path)?;
    let config = state::dir(&rt.root, id).join(state::CONFIG);
    let (spec, previous) = saved_resources(&config).map_err(to_container)?;
    if let Err(e) = cgroup.update(&req.resources()) {
        // Part of the update may be written: put back what the container had, as runc does.
        let restore = restore_request(&req, &previous);
        if let Err(e2) = cgroup.update(&restore.resources()) {
            tracing::warn!(
                "setting back the previous resources failed ({e2}); the saved config and the cgroup may differ"
            );
        }
        return Err(e.into());
    }
    save_resources(&config, spec, &req).map_err(to_container)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn sizes_read_as_runc_reads_them() {
        assert_eq!(ram_in_bytes("4096"), Ok(4096));
        assert_eq!(ram_in_bytes("100M"), Ok(100 << 20));
        assert_eq!(ram_in_bytes("100m"), Ok(100 << 20));
        assert_eq!(ram_in_bytes("1g"), Ok(1 << 30));
        assert_eq!(ram_in_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(ram_in_bytes("1.5k"), Ok(1536));
        assert_eq!(ram_in_bytes("2MB"), Ok(2 << 20));
        assert_eq!(ram_in_bytes("8b"), Ok(8));
        for bad in ["abc", "", "-2", "10x", "1.", ".5", "10MBs", "M"] {
            let err = ram_in_bytes(bad).unwrap_err();
            assert_eq!(err, format!("invalid size: '{bad}'"), "{bad}");
        }
        assert!(ram_in_bytes("1.2.3").unwrap_err().contains("ParseFloat"));
    }

    #[test]
    fn flags_parse_with_runcs_values_and_errors() {
        let req = parse(
            &flags(&[
                ("memory", "100M"),
                ("memory-swap", "-1"),
                ("cpu-share", "512"),
                ("cpu-quota", "-1"),
                ("cpu-period", "0"),
                ("cpuset-cpus", "0"),
                ("pids-limit", "20"),
                ("blkio-weight", "300"),
            ]),
            None,
        )
        .unwrap();
        assert_eq!(req.memory, Some(100 << 20));
        assert_eq!(req.memory_swap, Some(-1));
        assert_eq!(req.cpu_shares, Some(512));
        assert_eq!(req.cpu_quota, Some(-1));
        assert_eq!(req.cpu_period, None, "0 leaves the value as it is");
        assert_eq!(req.cpuset_cpus.as_deref(), Some("0"));
        assert_eq!(req.pids_limit, Some(20));
        assert_eq!(req.blkio_weight, Some(300));

        let err = |f: &[(&str, &str)]| parse(&flags(f), None).unwrap_err().to_string();
        assert_eq!(
            err(&[("memory", "abc")]),
            "invalid value for memory: invalid size: 'abc'"
        );
        assert_eq!(
            err(&[("cpu-share", "x")]),
            "invalid value for cpu-share: strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            err(&[("cpu-quota", "99999999999999999999")]),
            "invalid value for cpu-quota: strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
        assert_eq!(
            err(&[("pids-limit", "x")]),
            "invalid value \"x\" for flag -pids-limit: parse error"
        );
        assert!(matches!(
            parse(&flags(&[("blkio-weight", "-5")]), None),
            Err(Error::Usage { .. })
        ));
        assert_eq!(
            err(&[("bogus", "1")]),
            "flag provided but not defined: -bogus"
        );
        // The last of a repeated flag wins.
        let req = parse(&flags(&[("memory", "1M"), ("memory", "2M")]), None).unwrap();
        assert_eq!(req.memory, Some(2 << 20));
    }

    #[test]
    fn json_wins_over_flags_and_zero_means_unchanged() {
        let json = br#"{"memory":{"limit":52428800,"swap":0},"cpu":{"shares":256,"quota":0,"period":100000,"cpus":"","mems":"0"},"pids":{"limit":0},"blockIO":{"weight":0}}"#;
        let req = parse(
            &flags(&[("memory", "70M"), ("pids-limit", "5")]),
            Some(json),
        )
        .unwrap();
        assert_eq!(
            req,
            Request {
                memory: Some(52_428_800),
                cpu_shares: Some(256),
                cpu_period: Some(100_000),
                cpuset_mems: Some("0".into()),
                ..Request::default()
            }
        );
        assert!(matches!(
            parse(&[], Some(b"{not json")),
            Err(Error::Json(_))
        ));
        // Fields runc does not update are accepted and left alone.
        let req = parse(
            &[],
            Some(br#"{"devices":[{"allow":true,"access":"rwm"}],"hugepageLimits":[]}"#),
        )
        .unwrap();
        assert_eq!(req, Request::default());
    }

    #[test]
    fn merge_keeps_what_the_update_does_not_name() {
        let mut resources = serde_json::json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 1000, "reservation": 10},
            "cpu": {"shares": 1024}
        });
        let req = Request {
            memory: Some(2000),
            cpu_quota: Some(5000),
            pids_limit: Some(-5),
            unified: Some(HashMap::from([(
                "memory.high".to_string(),
                "max".to_string(),
            )])),
            ..Request::default()
        };
        req.merge_into(resources.as_object_mut().unwrap());
        assert_eq!(
            resources,
            serde_json::json!({
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 2000, "reservation": 10},
                "cpu": {"shares": 1024, "quota": 5000},
                "pids": {"limit": -1},
                "unified": {"memory.high": "max"}
            })
        );
        // What goes to the cgroup is only the change.
        let r = req.resources();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(2000));
        assert_eq!(r.memory().as_ref().unwrap().reservation(), None);
        assert_eq!(r.cpu().as_ref().unwrap().shares(), None);
        assert!(r.devices().is_none());
    }
}
