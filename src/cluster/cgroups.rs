//! A node's cgroup on the host: one directory per hierarchy (every v1 controller hierarchy
//! and the cgroup2 one), made before the node starts and removed after its last process is
//! gone. The node sees it as its cgroup namespace's root, so the kubelet's `/kubepods` lands
//! inside it and two nodes of one host never share a pod cgroup.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::runtime::cgroups::{cgroup_mounts, CgroupMount};

/// The host's cgroup mounts under /sys/fs/cgroup, one per mount point.
pub fn hierarchies() -> Vec<CgroupMount> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut seen = BTreeSet::new();
    cgroup_mounts(&info)
        .into_iter()
        .filter(|m| m.point.starts_with("/sys/fs/cgroup") && seen.insert(m.point.clone()))
        .collect()
}

/// Makes `rel` (and its parents) in every hierarchy. On cgroup2 each new level gets the
/// controllers its parent has, so that the node can hand them on to its pods; on v1 cpuset
/// each level gets its parent's cpus and mems (a new cpuset cgroup starts with none).
pub fn create(rel: &Path) -> std::io::Result<()> {
    for h in hierarchies() {
        let mut dir = h.point.clone();
        for part in rel.components() {
            let parent = dir.clone();
            dir.push(part);
            if h.fstype == "cgroup2" {
                delegate_controllers(&parent);
            }
            // Nodes (and the hub) boot at once: another may have made it just now.
            match std::fs::create_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(at("creating", &dir, e));
                }
                _ => {}
            }
            if h.fstype == "cgroup" && h.options.split(',').any(|o| o == "cpuset") {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let mine = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                    if mine.trim().is_empty() {
                        let theirs = std::fs::read_to_string(parent.join(f))
                            .map_err(|e| at("reading", &parent.join(f), e))?;
                        std::fs::write(dir.join(f), theirs.trim())
                            .map_err(|e| at("writing", &dir.join(f), e))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Enables in `dir`'s cgroup.subtree_control every controller `dir` has. Best effort: a root
/// cgroup managed by systemd already has them, and one that refuses leaves the node with
/// fewer controllers, which the runtime reports when a pod asks for them.
fn delegate_controllers(dir: &Path) {
    let have = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let on = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let on: BTreeSet<&str> = on.split_whitespace().collect();
    for c in have.split_whitespace().filter(|c| !on.contains(c)) {
        let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
    }
}

/// Moves process `pid` into `rel` in every hierarchy.
pub fn enter(rel: &Path, pid: u32) -> std::io::Result<()> {
    for h in hierarchies() {
        let procs = h.point.join(rel).join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| at("writing", &procs, e))?;
    }
    Ok(())
}

/// Every process in `rel` or below, in any hierarchy.
pub fn pids(rel: &Path) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for h in hierarchies() {
        for dir in tree(&h.point.join(rel)) {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    out
}

/// Removes `rel` and everything below it from every hierarchy, deepest first. Fails while a
/// process is still in one of them.
pub fn remove(rel: &Path) -> std::io::Result<()> {
    for h in hierarchies() {
        for dir in tree(&h.point.join(rel)).into_iter().rev() {
            match std::fs::remove_dir(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(at("removing", &dir, e))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Removes `rel` from every hierarchy if it is empty (a shared parent such as
/// `nanokube-clusters`, kept while another cluster uses it).
pub fn remove_if_empty(rel: &Path) {
    for h in hierarchies() {
        let _ = std::fs::remove_dir(h.point.join(rel));
    }
}

/// `dir` and its descendant directories, parents before children.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return out;
    }
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(e.path());
                }
            }
        }
        out.push(d);
    }
    // A parent always precedes its children in the pop order above only along one branch;
    // sorting by depth makes "parents first" hold across branches.
    out.sort_by_key(|p| p.components().count());
    out
}

fn at(op: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}
