//! Detailed usage of one cgroup, in the shape `runc events` prints it (runc's types/events.go:
//! the same JSON names, the same fields left out when zero), so tools that read runc's stats
//! read ours. v1 and v2 fill the same structure from their own files; what a hierarchy does
//! not count stays zero.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::fs;
use super::stats::keyed;
use super::Result;

fn zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CpuUsage {
    /// Nanoseconds, as every cpu figure here.
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    #[serde(skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MemoryEntry {
    /// u64::MAX-ish (v2 "max" as u64::MAX, v1's page-rounded i64::MAX) when unlimited.
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// memory+swap, as v1 counts it (v2's swap figures are added to memory's).
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as the kernel lists it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Blkio {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// Intel RDT is not supported: always the empty object runc prints without it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IntelRdt {}

/// Everything `runc events` reports for a container.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Detailed {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// By page size ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// Always null: runc fills it only for its own network setup, which nanokube leaves to
    /// the caller.
    pub network_interfaces: Option<Vec<()>>,
}

/// A number file; missing or unreadable-as-number means 0 ("max" too).
fn num(dir: &Path, file: &str) -> Result<u64> {
    Ok(fs::read_optional(dir, file)?
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(0))
}

/// A limit file, where v2 writes "max" for none (reported as u64::MAX, as runc does).
fn limit_or_max(dir: &Path, file: &str) -> Result<u64> {
    Ok(match fs::read_optional(dir, file)? {
        Some(c) if c.trim() == "max" => u64::MAX,
        Some(c) => c.trim().parse().unwrap_or(0),
        None => 0,
    })
}

fn flat_keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>> {
    let mut map = BTreeMap::new();
    for line in fs::read_optional(dir, file)?.unwrap_or_default().lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Ok(v) = v.trim().parse() {
                map.insert(k.to_string(), v);
            }
        }
    }
    Ok(map)
}

/// "0-3,5" -> [0, 1, 2, 3, 5].
pub(super) fn parse_list(text: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.parse::<u16>().ok()),
        }
    }
    out
}

fn list(dir: &Path, file: &str) -> Result<Vec<u16>> {
    Ok(parse_list(
        &fs::read_optional(dir, file)?.unwrap_or_default(),
    ))
}

fn numbers(dir: &Path, file: &str) -> Result<Vec<u64>> {
    Ok(fs::read_optional(dir, file)?
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect())
}

/// The hugepage sizes the kernel offers, as runc names them ("2MB", "1GB") with the kernel's
/// own file-name form ("2MB" is also what hugetlb.2MB.* files say).
fn hugepage_sizes() -> Vec<String> {
    let mut sizes = Vec::new();
    for entry in std::fs::read_dir("/sys/kernel/mm/hugepages")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kb) = name
            .strip_prefix("hugepages-")
            .and_then(|s| s.strip_suffix("kB"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        sizes.push(match kb {
            kb if kb >= 1 << 20 && kb % (1 << 20) == 0 => format!("{}GB", kb >> 20),
            kb if kb >= 1 << 10 && kb % (1 << 10) == 0 => format!("{}MB", kb >> 10),
            kb => format!("{kb}KB"),
        });
    }
    sizes.sort();
    sizes
}

/// v1 "recursive" blkio lines: "8:0 Read 4096" ("Total N" lines carry no device and are left
/// out, as runc leaves them).
fn blkio_entries(dir: &Path, file: &str) -> Result<Vec<BlkioEntry>> {
    let mut out = Vec::new();
    for line in fs::read_optional(dir, file)?.unwrap_or_default().lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields.as_slice() {
            [dev, op, value] => (*dev, *op, *value),
            // Files such as blkio.time_recursive have no operation column.
            [dev, value] if dev.contains(':') => (*dev, "", *value),
            _ => continue,
        };
        let Some((major, minor)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(value)) = (major.parse(), minor.parse(), value.parse())
        else {
            continue;
        };
        out.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    Ok(out)
}

fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    let f = |name: &str| format!("{prefix}.{name}");
    Ok(MemoryEntry {
        limit: num(dir, &f("limit_in_bytes"))?,
        usage: num(dir, &f("usage_in_bytes"))?,
        max: num(dir, &f("max_usage_in_bytes"))?,
        failcnt: num(dir, &f("failcnt"))?,
    })
}

/// Nanoseconds per USER_HZ tick of cpuacct.stat; USER_HZ is 100 on every Linux ABI.
const NANOS_PER_TICK: u64 = 1_000_000_000 / 100;

/// v1: each part from its own controller's directory (`dir(controller)`).
pub(super) fn v1<'a>(dir: impl Fn(&str) -> Option<&'a Path>) -> Result<Detailed> {
    let mut d = Detailed::default();
    if let Some(acct) = dir("cpuacct") {
        let stat = flat_keyed(acct, "cpuacct.stat")?;
        d.cpu.usage = CpuUsage {
            total: num(acct, "cpuacct.usage")?,
            percpu: numbers(acct, "cpuacct.usage_percpu")?,
            percpu_kernel: numbers(acct, "cpuacct.usage_percpu_sys")?,
            percpu_user: numbers(acct, "cpuacct.usage_percpu_user")?,
            kernel: stat.get("system").copied().unwrap_or(0) * NANOS_PER_TICK,
            user: stat.get("user").copied().unwrap_or(0) * NANOS_PER_TICK,
        };
    }
    if let Some(cpu) = dir("cpu") {
        let stat = flat_keyed(cpu, "cpu.stat")?;
        let get = |k: &str| stat.get(k).copied().unwrap_or(0);
        d.cpu.throttling = Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_time"),
        };
    }
    if let Some(cs) = dir("cpuset") {
        let n = |f: &str| num(cs, &format!("cpuset.{f}"));
        d.cpuset = CpuSet {
            cpus: list(cs, "cpuset.cpus")?,
            cpu_exclusive: n("cpu_exclusive")?,
            mems: list(cs, "cpuset.mems")?,
            mem_hardwall: n("mem_hardwall")?,
            mem_exclusive: n("mem_exclusive")?,
            memory_migrate: n("memory_migrate")?,
            memory_spread_page: n("memory_spread_page")?,
            memory_spread_slab: n("memory_spread_slab")?,
            memory_pressure: n("memory_pressure")?,
            sched_load_balance: n("sched_load_balance")?,
            sched_relax_domain_level: fs::read_optional(cs, "cpuset.sched_relax_domain_level")?
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or(0),
        };
    }
    if let Some(mem) = dir("memory") {
        let raw = flat_keyed(mem, "memory.stat")?;
        d.memory = Memory {
            cache: raw.get("cache").copied().unwrap_or(0),
            usage: memory_entry_v1(mem, "memory")?,
            swap: memory_entry_v1(mem, "memory.memsw")?,
            kernel: memory_entry_v1(mem, "memory.kmem")?,
            kernel_tcp: memory_entry_v1(mem, "memory.kmem.tcp")?,
            raw,
        };
    }
    if let Some(pids) = dir("pids") {
        d.pids = Pids {
            current: num(pids, "pids.current")?,
            limit: num(pids, "pids.max")?,
        };
    }
    if let Some(blkio) = dir("blkio") {
        // CFQ's full set, else BFQ's, else the throttling layer's counters (which count all
        // I/O whatever the scheduler): the first that has seen any I/O.
        let mut chosen = "blkio.throttle.";
        for prefix in ["blkio.", "blkio.bfq."] {
            if !blkio_entries(blkio, &format!("{prefix}io_serviced_recursive"))?.is_empty() {
                chosen = prefix;
                break;
            }
        }
        let e = |name: &str| blkio_entries(blkio, &format!("{chosen}{name}"));
        d.blkio = Blkio {
            io_service_bytes_recursive: e("io_service_bytes_recursive")?,
            io_serviced_recursive: e("io_serviced_recursive")?,
            io_queued_recursive: e("io_queued_recursive")?,
            io_service_time_recursive: e("io_service_time_recursive")?,
            io_wait_time_recursive: e("io_wait_time_recursive")?,
            io_merged_recursive: e("io_merged_recursive")?,
            io_time_recursive: e("time_recursive")?,
            sectors_recursive: e("sectors_recursive")?,
        };
    }
    if let Some(h) = dir("hugetlb") {
        for size in hugepage_sizes() {
            let f = |n: &str| format!("hugetlb.{size}.{n}");
            if h.join(f("usage_in_bytes")).exists() {
                let entry = Hugetlb {
                    usage: num(h, &f("usage_in_bytes"))?,
                    max: num(h, &f("max_usage_in_bytes"))?,
                    failcnt: num(h, &f("failcnt"))?,
                };
                d.hugetlb.insert(size, entry);
            }
        }
    }
    Ok(d)
}

/// v2: all from the one directory.
pub(super) fn v2(dir: &Path) -> Result<Detailed> {
    let mut d = Detailed::default();
    let cpu = flat_keyed(dir, "cpu.stat")?;
    let get = |k: &str| cpu.get(k).copied().unwrap_or(0);
    d.cpu = Cpu {
        usage: CpuUsage {
            total: get("usage_usec") * 1000,
            kernel: get("system_usec") * 1000,
            user: get("user_usec") * 1000,
            ..CpuUsage::default()
        },
        throttling: Throttling {
            periods: get("nr_periods"),
            throttled_periods: get("nr_throttled"),
            throttled_time: get("throttled_usec") * 1000,
        },
    };
    // runc 1.1.5 reads no cpuset stats on v2, so `events` leaves them out as it does.
    let raw = flat_keyed(dir, "memory.stat")?;
    let events = fs::read_optional(dir, "memory.events")?.unwrap_or_default();
    let usage = MemoryEntry {
        limit: limit_or_max(dir, "memory.max")?,
        usage: num(dir, "memory.current")?,
        max: num(dir, "memory.peak")?,
        failcnt: keyed(&events, "max").unwrap_or(0),
    };
    // v1 reports swap as memory+swap; runc adds v2's memory figures to keep that meaning.
    let mut swap = MemoryEntry {
        limit: limit_or_max(dir, "memory.swap.max")?,
        usage: num(dir, "memory.swap.current")?,
        max: num(dir, "memory.swap.peak")?,
        failcnt: 0,
    };
    if dir.join("memory.swap.current").exists() {
        swap.usage += usage.usage;
        if swap.limit != u64::MAX {
            swap.limit = swap.limit.saturating_add(usage.limit);
        }
    }
    d.memory = Memory {
        cache: raw.get("file").copied().unwrap_or(0),
        usage,
        swap,
        kernel: MemoryEntry::default(),
        kernel_tcp: MemoryEntry::default(),
        raw,
    };
    d.pids = Pids {
        current: num(dir, "pids.current")?,
        limit: match fs::read_optional(dir, "pids.max")? {
            Some(c) => c.trim().parse().unwrap_or(0),
            None => 0,
        },
    };
    // io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device.
    for line in fs::read_optional(dir, "io.stat")?
        .unwrap_or_default()
        .lines()
    {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else { continue };
            let (list, op) = match key {
                "rbytes" => (&mut d.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut d.blkio.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut d.blkio.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut d.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut d.blkio.io_serviced_recursive, "Write"),
                "dios" => (&mut d.blkio.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    for size in hugepage_sizes() {
        let f = |n: &str| format!("hugetlb.{size}.{n}");
        if dir.join(f("current")).exists() {
            let events = fs::read_optional(dir, &f("events"))?.unwrap_or_default();
            let entry = Hugetlb {
                usage: num(dir, &f("current"))?,
                max: num(dir, &f("peak"))?,
                failcnt: keyed(&events, "max").unwrap_or(0),
            };
            d.hugetlb.insert(size, entry);
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_blkio_lines() {
        assert_eq!(parse_list("0-3,5\n"), vec![0, 1, 2, 3, 5]);
        assert_eq!(parse_list(""), Vec::<u16>::new());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("x"),
            "8:0 Read 4096\n8:0 Write 0\n8:16 Sync 7\nTotal 4103\n",
        )
        .unwrap();
        let e = blkio_entries(dir.path(), "x").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[2].major, e[2].minor, e[2].op.as_str(), e[2].value),
            (8, 16, "Sync", 7)
        );
    }

    #[test]
    fn empty_stats_have_runcs_shape() {
        let v = serde_json::to_value(Detailed::default()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "cpu": {"usage": {"kernel": 0, "user": 0}, "throttling": {}},
                "cpuset": {"cpu_exclusive": 0, "mem_hardwall": 0, "mem_exclusive": 0,
                    "memory_migrate": 0, "memory_spread_page": 0, "memory_spread_slab": 0,
                    "memory_pressure": 0, "sched_load_balance": 0, "sched_relax_domain_level": 0},
                "memory": {"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                    "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}},
                "pids": {},
                "blkio": {},
                "hugetlb": {},
                "intel_rdt": {},
                "network_interfaces": null
            })
        );
    }
}
