//! The kubelet's stats summary API (`GET /stats/summary` on port 10250, reached through the API
//! server as `nodes/<node>/proxy/stats/summary`): CPU, memory, network and filesystem figures
//! for the node, each pod and each running container, in the shape of the kubelet's
//! `stats/v1alpha1.Summary`, which metrics-server and `kubectl top` read.
//!
//! - Cumulative figures come straight from the kernel: cgroup cpu usage and memory, /proc/stat,
//!   /proc/meminfo, a pod's /proc/<pid>/net/dev, statvfs.
//! - `usageNanoCores` is a rate, the change in usage between two samples. A sampler takes one
//!   every 10 s, and every summary request takes one too.

use super::{pods, Kubelet};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

/// The last two cpu samples of each cgroup (by path; "" is the node): when, and usage in ns.
#[derive(Debug, Default)]
pub struct Samples(Mutex<HashMap<String, Vec<(Instant, u64)>>>);

impl Samples {
    /// Records `usage` for `key` and returns the rate, in nanocores, since the newest earlier
    /// sample taken at least 1 s ago, if there is one. Two are kept, so that a request just
    /// after the sampler's still has an interval to measure.
    fn rate(&self, key: &str, usage: u64) -> Option<u64> {
        let now = Instant::now();
        let mut m = self.0.lock().expect("stats samples");
        let kept = m.entry(key.to_string()).or_default();
        let rate = kept
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at).as_secs_f64() >= 1.0)
            .map(|(at, before)| {
                (usage.saturating_sub(*before) as f64 / now.duration_since(*at).as_secs_f64())
                    as u64
            });
        // The newest sample replaces the older one only once a second has passed, so that a
        // burst of requests does not push every usable sample out.
        if kept
            .last()
            .is_none_or(|(at, _)| now.duration_since(*at).as_secs_f64() >= 1.0)
        {
            kept.push((now, usage));
            if kept.len() > 2 {
                kept.remove(0);
            }
        }
        rate
    }
}

fn now() -> String {
    chrono::DateTime::<chrono::Utc>::from(SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn cpu(samples: &Samples, key: &str, usage_ns: u64, time: &str) -> Value {
    let mut v = json!({"time": time, "usageCoreNanoSeconds": usage_ns});
    if let Some(rate) = samples.rate(key, usage_ns) {
        v["usageNanoCores"] = json!(rate);
    }
    v
}

/// memory.stat's inactive_file (v2 and v1 name it alike; v1 also has total_inactive_file).
fn inactive_file(raw: &std::collections::BTreeMap<String, u64>) -> u64 {
    raw.get("total_inactive_file")
        .or_else(|| raw.get("inactive_file"))
        .copied()
        .unwrap_or(0)
}

/// A cgroup's cpu and memory as the summary gives them, or None if it is gone.
fn cgroup_stats(samples: &Samples, path: &str, time: &str) -> Option<(Value, Value)> {
    let cg = crate::runtime::cgroups::Cgroup::open(path).ok()?;
    let s = cg.stats().ok()?;
    let raw = cg
        .detailed_stats()
        .map(|d| d.memory.raw)
        .unwrap_or_default();
    let working_set = s.memory_usage_bytes.saturating_sub(inactive_file(&raw));
    let mut memory = json!({
        "time": time,
        "usageBytes": s.memory_usage_bytes,
        "workingSetBytes": working_set,
        "rssBytes": raw.get("total_rss").or_else(|| raw.get("rss")).or_else(|| raw.get("anon")).copied().unwrap_or(0),
        "pageFaults": raw.get("total_pgfault").or_else(|| raw.get("pgfault")).copied().unwrap_or(0),
        "majorPageFaults": raw.get("total_pgmajfault").or_else(|| raw.get("pgmajfault")).copied().unwrap_or(0),
    });
    if let Some(limit) = s.memory_limit_bytes {
        memory["availableBytes"] = json!(limit.saturating_sub(working_set));
    }
    Some((cpu(samples, path, s.cpu_usage_nanos, time), memory))
}

/// Interface counters from a /proc/net/dev text, loopback left out.
fn interfaces(net_dev: &str, time: &str) -> Vec<Value> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (f.len() >= 16).then(|| {
                json!({"time": time, "name": name, "rxBytes": f[0], "rxErrors": f[2],
                       "txBytes": f[8], "txErrors": f[10]})
            })
        })
        .collect()
}

/// A network block: the first interface (eth0 for a pod) as the default, and all of them.
fn network(net_dev: &str, time: &str, default: &str) -> Value {
    let all = interfaces(net_dev, time);
    let main = all
        .iter()
        .find(|i| i["name"] == default)
        .or(all.first())
        .cloned()
        .unwrap_or_else(|| json!({"time": time}));
    let mut v = main;
    v["interfaces"] = Value::Array(all);
    v
}

fn fs_of(path: &Path, time: &str, used: Option<u64>) -> Value {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return json!({"time": time});
    };
    let frag = st.fragment_size();
    let capacity = st.blocks() * frag;
    let available = st.blocks_available() * frag;
    json!({
        "time": time,
        "availableBytes": available,
        "capacityBytes": capacity,
        "usedBytes": used.unwrap_or(capacity.saturating_sub(st.blocks_free() * frag)),
        "inodesFree": st.files_free(),
        "inodes": st.files(),
        "inodesUsed": st.files().saturating_sub(st.files_free()),
    })
}

/// Bytes in the files under `dir` (not following links): a container's writable layer or logs.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The node's cpu time from /proc/stat's first line, in nanoseconds.
fn node_cpu_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .enumerate()
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        .filter(|(i, _)| !matches!(i, 3 | 4) && *i < 8)
        .filter_map(|(_, v)| v.parse::<u64>().ok())
        .sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    ticks * (1_000_000_000 / hz.max(1))
}

fn meminfo(key: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}

/// The summary (see the module comment).
pub fn summary(k: &Kubelet) -> Value {
    let time = now();
    let samples = &k.stats;
    let data = &k.cfg.data_dir;
    let total = meminfo("MemTotal");
    let available = meminfo("MemAvailable");
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .chars()
                        .all(|c| c.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0);
    let node = json!({
        "nodeName": k.cfg.node_name,
        "startTime": k.started_at,
        "cpu": cpu(samples, "", node_cpu_ns(), &time),
        "memory": {"time": time, "availableBytes": available, "usageBytes": total.saturating_sub(meminfo("MemFree")),
                   "workingSetBytes": total.saturating_sub(available)},
        "network": network(&std::fs::read_to_string("/proc/net/dev").unwrap_or_default(), &time, ""),
        "fs": fs_of(data, &time, None),
        // imagefs shares the data directory's filesystem: its used bytes are that
        // filesystem's (walking every snapshot would cost what a node under disk pressure can
        // least afford).
        "runtime": {"imageFs": fs_of(&data.join("agent/images"), &time, None)},
        "rlimit": {"time": time,
                   "maxpid": std::fs::read_to_string("/proc/sys/kernel/pid_max").ok().and_then(|s| s.trim().parse::<u64>().ok()),
                   "curproc": procs},
    });
    let mut pods_out = Vec::new();
    for (dir, meta) in pods::on_disk(data) {
        let pod_cgroup = pods::pod_cgroup(&meta.qos, &meta.uid);
        let records = crate::shim::read_records(&dir);
        let logs_dir = k
            .cfg
            .pod_logs_dir
            .join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
        let mut containers = Vec::new();
        let mut ephemeral = 0;
        for r in records.iter().filter(|r| r.running()) {
            let Some((cpu, memory)) =
                cgroup_stats(samples, &format!("{pod_cgroup}/{}", r.id), &time)
            else {
                continue;
            };
            let upper = du(&dir.join("rootfs").join(&r.id).join("upper"));
            let logs = du(&logs_dir.join(&r.name));
            ephemeral += upper + logs;
            containers.push(json!({
                "name": r.name,
                "startTime": r.started_at,
                "cpu": cpu,
                "memory": memory,
                "rootfs": fs_of(data, &time, Some(upper)),
                "logs": fs_of(&k.cfg.pod_logs_dir, &time, Some(logs)),
            }));
        }
        let mut pod = json!({
            "podRef": {"name": meta.name, "namespace": meta.namespace, "uid": meta.uid},
            "startTime": records.iter().map(|r| r.started_at.clone()).min(),
            "containers": containers,
            "ephemeral-storage": fs_of(data, &time, Some(ephemeral)),
            "process_stats": {"process_count": crate::runtime::cgroups::Cgroup::open(&pod_cgroup)
                .and_then(|c| c.pids()).map(|p| p.len()).unwrap_or(0)},
        });
        if let Some((cpu, memory)) = cgroup_stats(samples, &pod_cgroup, &time) {
            pod["cpu"] = cpu;
            pod["memory"] = memory;
        }
        let shim_pid = std::fs::read_to_string(dir.join(crate::shim::PID_FILE))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(dev) =
            shim_pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/net/dev")).ok())
        {
            pod["network"] = network(&dev, &time, "eth0");
        }
        pods_out.push(pod);
    }
    json!({"node": node, "pods": pods_out})
}

/// Takes a cpu sample of the node and of every pod and running container cgroup (cpu only:
/// no directory walks).
fn sample_cpu(k: &Kubelet) {
    let _ = k.stats.rate("", node_cpu_ns());
    for (dir, meta) in pods::on_disk(&k.cfg.data_dir) {
        let pod_cgroup = pods::pod_cgroup(&meta.qos, &meta.uid);
        let mut paths = vec![pod_cgroup.clone()];
        for r in crate::shim::read_records(&dir)
            .iter()
            .filter(|r| r.running())
        {
            paths.push(format!("{pod_cgroup}/{}", r.id));
        }
        for p in paths {
            if let Ok(s) = crate::runtime::cgroups::Cgroup::open(&p).and_then(|c| c.stats()) {
                let _ = k.stats.rate(&p, s.cpu_usage_nanos);
            }
        }
    }
}

/// Samples every cgroup's cpu now and then, so that the first summary already has rates.
pub async fn sampler(k: std::sync::Arc<Kubelet>) {
    loop {
        let k2 = k.clone();
        let _ = tokio::task::spawn_blocking(move || sample_cpu(&k2)).await;
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters_per_interface_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  100 1 0 0 0 0 0 0  100 1 0 0 0 0 0 0\n  eth0: 5000 40 2 0 0 0 0 0 7000 50 3 0 0 0 0 0\n";
        let v = network(text, "t", "eth0");
        assert_eq!(v["name"], "eth0");
        assert_eq!(v["rxBytes"], 5000);
        assert_eq!(v["rxErrors"], 2);
        assert_eq!(v["txBytes"], 7000);
        assert_eq!(v["txErrors"], 3);
        assert_eq!(v["interfaces"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn rates_need_a_second_between_samples() {
        let s = Samples::default();
        assert_eq!(
            s.rate("a", 1000),
            None,
            "a first sample has nothing to compare with"
        );
        assert_eq!(s.rate("a", 2000), None, "too soon");
        s.0.lock().unwrap().insert(
            "a".into(),
            vec![(Instant::now() - std::time::Duration::from_secs(2), 0)],
        );
        let r = s.rate("a", 4_000_000_000).unwrap();
        assert!((1_900_000_000..=2_000_000_000).contains(&r), "{r}");
        // Just after that sample, the older one still gives a rate.
        let r = s.rate("a", 4_000_000_000).unwrap();
        assert!((1_900_000_000..=2_000_000_000).contains(&r), "{r}");
    }
}
