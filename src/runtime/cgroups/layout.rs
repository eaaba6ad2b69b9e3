//! Where the cgroup hierarchies are mounted on this host, found once from /proc/self/mountinfo.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::Hierarchy;

/// The standard mount point; a cgroup2 filesystem here means a pure v2 host.
pub(super) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The v1 controllers a container cgroup is created in. `freezer` is not a limit but lets
/// `kill_all` stop every process before signalling and `pause` freeze them; `cpuacct`
/// provides the cpu usage; `devices` decides which device nodes may be created and opened;
/// `blkio` takes the block I/O weight and counts I/O for `events`.
pub(super) const V1_CONTROLLERS: &[&str] = &[
    "blkio", "cpu", "cpuacct", "cpuset", "devices", "memory", "pids", "freezer",
];

#[derive(Debug)]
pub(super) struct Layout {
    pub hierarchy: Hierarchy,
    /// The cgroup2 mount: /sys/fs/cgroup on a unified host, usually /sys/fs/cgroup/unified on
    /// a hybrid one (where it carries no controllers but still tracks and can kill processes).
    pub unified: Option<PathBuf>,
    /// v1 controller name -> mount point ("cpu" and "cpuacct" may share one).
    pub v1: BTreeMap<String, PathBuf>,
}

pub(super) fn get() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(discover)
}

fn discover() -> Layout {
    let hierarchy = match nix::sys::statfs::statfs(CGROUP_ROOT) {
        Ok(fs) if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => {
            Hierarchy::Unified
        }
        _ => Hierarchy::Legacy,
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut layout = parse_mountinfo(&mountinfo);
    layout.hierarchy = hierarchy;
    if hierarchy == Hierarchy::Unified {
        // Several cgroup2 mounts may exist (e.g. one inside a container); the host's is the
        // one at the standard place.
        layout.unified = Some(PathBuf::from(CGROUP_ROOT));
        layout.v1.clear();
    }
    layout
}

/// One cgroup filesystem mount: where, which kind (`cgroup` or `cgroup2`) and its super options
/// (`rw,cpu,cpuacct`, `rw,name=systemd`, `rw,nsdelegate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub point: PathBuf,
    pub fstype: String,
    pub options: String,
}

/// Every cgroup mount in mountinfo lines:
/// `id parent major:minor root mountpoint options [optional fields] - fstype source superoptions`.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fstype), Some(_source), Some(options)) =
            (right.next(), right.next(), right.next())
        else {
            continue;
        };
        if matches!(fstype, "cgroup" | "cgroup2") {
            out.push(CgroupMount {
                point: PathBuf::from(unescape(mount_point)),
                fstype: fstype.to_string(),
                options: options.to_string(),
            });
        }
    }
    out
}

/// The hierarchies in mountinfo lines (see [`cgroup_mounts`]).
pub(super) fn parse_mountinfo(mountinfo: &str) -> Layout {
    let mut layout = Layout {
        hierarchy: Hierarchy::Legacy,
        unified: None,
        v1: BTreeMap::new(),
    };
    for m in cgroup_mounts(mountinfo) {
        match m.fstype.as_str() {
            // Prefer the conventional location if several are mounted.
            "cgroup2" if layout.unified.is_none() || m.point.starts_with(CGROUP_ROOT) => {
                layout.unified = Some(m.point);
            }
            "cgroup" => {
                for opt in m.options.split(',') {
                    if V1_CONTROLLERS.contains(&opt) {
                        layout
                            .v1
                            .entry(opt.to_string())
                            .or_insert_with(|| m.point.clone());
                    }
                }
            }
            _ => {}
        }
    }
    layout
}

/// mountinfo escapes space, tab, newline and backslash as \ooo octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0");
            if let Ok(b) = u8::from_str_radix(octal, 8) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mountinfo() {
        let info = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,pids
";
        let l = parse_mountinfo(info);
        assert_eq!(
            l.unified.as_deref(),
            Some("/sys/fs/cgroup/unified".as_ref())
        );
        assert_eq!(l.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(l.v1["cpuacct"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(l.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(l.v1["pids"], PathBuf::from("/sys/fs/cgroup/my dir"));
        assert!(!l.v1.contains_key("name=systemd"));
    }
}
