//! The probe's cgroup limits as the container sees them under its own /sys/fs/cgroup.
//!
//! The file for a controller lives at `mountpoint + (own cgroup path - mount root)`: with a
//! cgroup namespace both paths are "/" and that is the mountpoint itself; with a bind of the
//! host's hierarchy it is the container's own directory below it. cgroup v1 mounts are
//! preferred per controller, since a controller bound to v1 is absent from v2 (hybrid hosts).

use crate::mountinfo::Mount;

pub struct Limits {
    /// "v2", "v1", or None when no cgroup filesystem is mounted.
    pub version: Option<&'static str>,
    /// The memory controller's v1 path when memory is on v1, else the v2 ("0::") path.
    pub path: Option<String>,
    /// /proc/self/cgroup, line by line.
    pub lines: Vec<String>,
    pub memory_max: Option<String>,
    pub memory_swap_max: Option<String>,
    pub pids_max: Option<String>,
    /// Always "QUOTA PERIOD", with "max" for no quota, for both versions.
    pub cpu_max: Option<String>,
    pub cpu_weight_or_shares: Option<String>,
    pub cpuset_cpus: Option<String>,
}

struct Membership {
    /// Empty for the v2 line.
    controllers: Vec<String>,
    path: String,
}

fn memberships(lines: &[String]) -> Vec<Membership> {
    lines
        .iter()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(Membership {
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(|c| c.trim_start_matches("name=").to_string())
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The directory holding this process's files for one hierarchy.
fn own_dir(mount: &Mount, path: &str) -> Vec<String> {
    let mut dirs = Vec::new();
    let root = mount.root.trim_end_matches('/');
    if let Some(rest) = path.strip_prefix(root) {
        if rest.is_empty() || rest.starts_with('/') {
            dirs.push(format!(
                "{}{}",
                mount.mountpoint.trim_end_matches('/'),
                rest
            ));
        }
    }
    dirs.push(mount.mountpoint.clone());
    dirs
}

/// Reads the first existing file among `names` in the first existing candidate dir.
fn read_in(dirs: &[String], name: &str) -> Option<String> {
    dirs.iter()
        .find_map(|d| read_trim(&format!("{}/{}", d.trim_end_matches('/'), name)))
}

pub fn read(mounts: &[Mount]) -> Limits {
    let lines: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let members = memberships(&lines);
    let v2_path = members
        .iter()
        .find(|m| m.controllers.is_empty())
        .map(|m| m.path.clone());
    // Prefer a cgroup2 mount at /sys/fs/cgroup, else any.
    let v2_mount = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2")
        .max_by_key(|m| m.mountpoint == "/sys/fs/cgroup");
    let v2_dirs: Vec<String> = match (v2_mount, &v2_path) {
        (Some(m), Some(p)) => own_dir(m, p),
        (Some(m), None) => vec![m.mountpoint.clone()],
        _ => Vec::new(),
    };
    let v1_dirs = |ctrl: &str| -> Vec<String> {
        let Some(mount) = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == ctrl))
        else {
            return Vec::new();
        };
        match members
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == ctrl))
        {
            Some(member) => own_dir(mount, &member.path),
            None => vec![mount.mountpoint.clone()],
        }
    };

    let mut l = Limits {
        version: None,
        path: v2_path.clone(),
        lines: lines.clone(),
        memory_max: None,
        memory_swap_max: None,
        pids_max: None,
        cpu_max: None,
        cpu_weight_or_shares: None,
        cpuset_cpus: None,
    };
    let mut any_v1 = false;

    let mem = v1_dirs("memory");
    if !mem.is_empty() {
        any_v1 = true;
        l.memory_max = read_in(&mem, "memory.limit_in_bytes");
        l.memory_swap_max = read_in(&mem, "memory.memsw.limit_in_bytes");
        // On v1 and hybrid hosts the limits live in the controllers' hierarchies, so their
        // path is the one that matters, not the (controller-less) unified one.
        if let Some(m) = members
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == "memory"))
        {
            l.path = Some(m.path.clone());
        }
    } else {
        l.memory_max = read_in(&v2_dirs, "memory.max");
        l.memory_swap_max = read_in(&v2_dirs, "memory.swap.max");
    }

    let pids = v1_dirs("pids");
    if !pids.is_empty() {
        any_v1 = true;
        l.pids_max = read_in(&pids, "pids.max");
    } else {
        l.pids_max = read_in(&v2_dirs, "pids.max");
    }

    let cpu = v1_dirs("cpu");
    if !cpu.is_empty() {
        any_v1 = true;
        let quota = read_in(&cpu, "cpu.cfs_quota_us");
        let period = read_in(&cpu, "cpu.cfs_period_us");
        if let (Some(q), Some(p)) = (quota, period) {
            let q = if q == "-1" { "max".to_string() } else { q };
            l.cpu_max = Some(format!("{q} {p}"));
        }
        l.cpu_weight_or_shares = read_in(&cpu, "cpu.shares");
    } else {
        l.cpu_max = read_in(&v2_dirs, "cpu.max");
        l.cpu_weight_or_shares = read_in(&v2_dirs, "cpu.weight");
    }

    let cpuset = v1_dirs("cpuset");
    if !cpuset.is_empty() {
        any_v1 = true;
        l.cpuset_cpus =
            read_in(&cpuset, "cpuset.effective_cpus").or_else(|| read_in(&cpuset, "cpuset.cpus"));
    } else {
        l.cpuset_cpus = read_in(&v2_dirs, "cpuset.cpus.effective");
    }

    l.version = if any_v1 {
        Some("v1")
    } else if v2_mount.is_some() {
        Some("v2")
    } else {
        None
    };
    l
}
