//! Usage read back from a cgroup, and the parsers for the kernel's "flat keyed" files
//! (`key value` per line: memory.events, cpu.stat, memory.oom_control, ...).

/// Usage read back from a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// v2 memory.current / v1 memory.usage_in_bytes.
    pub memory_usage_bytes: u64,
    /// v2 memory.max / v1 memory.limit_in_bytes; None when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// v2 cpu.stat usage_usec * 1000 / v1 cpuacct.usage.
    pub cpu_usage_nanos: u64,
    pub pids_current: u64,
    /// Processes the kernel OOM killer killed in this cgroup.
    pub oom_kills: u64,
    /// CFS periods in which the cgroup ran out of quota (cpu.stat nr_throttled in v1 and v2):
    /// evidence that a cpu quota is being enforced.
    pub cpu_throttled_periods: u64,
    /// v2 pids.max / v1 pids.max; None when unlimited.
    pub pids_limit: Option<u64>,
}

/// The value of `key` in a flat keyed file.
pub(super) fn keyed(content: &str, key: &str) -> Option<u64> {
    content.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A limit file's value: "max" (v2) or a value at or above 2^62 (v1's page-rounded
/// i64::MAX "unlimited") means no limit.
pub(super) fn limit(content: &str) -> Option<u64> {
    let v = content.trim();
    if v == "max" {
        return None;
    }
    v.parse::<u64>().ok().filter(|&n| n < 1 << 62)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_limits() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(keyed(events, "oom_kill"), Some(2));
        assert_eq!(keyed(events, "oom"), Some(3));
        assert_eq!(keyed(events, "missing"), None);
        assert_eq!(limit("max\n"), None);
        assert_eq!(limit("9223372036854771712\n"), None);
        assert_eq!(limit("16777216\n"), Some(16 << 20));
    }
}
