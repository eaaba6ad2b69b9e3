//! `exec --cgroup [CONTROLLERS:]PATH`: an extra process joins an existing cgroup below the
//! container's own, in every hierarchy or in the named controllers' hierarchies only.
//! Parsing is apart from resolving, so the CLI can refuse a malformed argument before it
//! looks at any container.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::{Backend, Cgroup, Error, Result};

/// Where in the container's cgroup an exec'd process goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SubCgroups {
    /// The container's own cgroup (no `--cgroup`).
    #[default]
    Container,
    /// PATH below the container's cgroup in every hierarchy (cgroup v2's only form).
    All(String),
    /// controller -> PATH, for v1 hierarchies; the others stay in the container's cgroup.
    PerController(BTreeMap<String, String>),
}

impl SubCgroups {
    /// Reads the `--cgroup` values in order, with runc's rules: a bare PATH must be the only
    /// one; `cpu,cpuacct:PATH` names several controllers at once.
    pub fn parse(args: &[String]) -> std::result::Result<SubCgroups, String> {
        if args.is_empty() {
            return Ok(SubCgroups::Container);
        }
        let mut per = BTreeMap::new();
        for arg in args {
            let parts: Vec<&str> = arg.splitn(3, ':').collect();
            match parts[..] {
                [path] if args.len() == 1 => return Ok(SubCgroups::All(path.to_string())),
                [_] => {
                    return Err(format!(
                        "invalid --cgroup argument: {arg} (missing <controller>: prefix)"
                    ))
                }
                [controllers, path] => {
                    for c in controllers.split(',') {
                        per.insert(c.to_string(), path.to_string());
                    }
                }
                _ => return Err(format!("invalid --cgroup argument: {arg}")),
            }
        }
        Ok(SubCgroups::PerController(per))
    }
}

/// `base` joined with `sub` (lexically: "a/../b" is "b", "/" is `base` itself), or an error
/// if `sub` climbs out of `base`.
fn below(base: &Path, sub: &str) -> Result<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir if parts.pop().is_some() => {}
            Component::ParentDir => return Err(Error::NotSubCgroup(sub.to_string())),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut dir = base.to_path_buf();
    dir.extend(parts);
    Ok(dir)
}

impl Cgroup {
    /// The directories a process placed by `sub` joins, one per hierarchy.
    pub fn dirs_for(&self, sub: &SubCgroups) -> Result<Vec<PathBuf>> {
        let mut dirs: BTreeMap<PathBuf, PathBuf> = match &self.backend {
            Backend::V2(c) => [(c.dir().to_path_buf(), c.dir().to_path_buf())].into(),
            Backend::V1(_) => self.dirs().into_iter().map(|d| (d.clone(), d)).collect(),
        };
        match sub {
            SubCgroups::Container => {}
            SubCgroups::All(path) => {
                for (base, dir) in dirs.iter_mut() {
                    *dir = below(base, path)?;
                }
            }
            SubCgroups::PerController(per) => {
                for (controller, path) in per {
                    let base = match &self.backend {
                        Backend::V1(c) => c.controller_dir(controller).map(Path::to_path_buf),
                        Backend::V2(_) => None,
                    }
                    .ok_or_else(|| Error::UnknownController(controller.clone()))?;
                    // Controllers mounted together (cpu,cpuacct) share the directory.
                    let dir = below(&base, path)?;
                    dirs.insert(base, dir);
                }
            }
        }
        Ok(dirs.into_values().collect())
    }
}

/// The v2 directory process `pid` is in now (its `0::` line of /proc/PID/cgroup under the
/// host's cgroup2 mount), if there is a cgroup2 hierarchy.
pub fn v2_dir_of(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mut dir = super::layout::get().unified.clone()?;
    dir.extend(
        Path::new(path)
            .components()
            .filter(|c| matches!(c, Component::Normal(_))),
    );
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_parse_as_runc_reads_them() {
        assert_eq!(SubCgroups::parse(&[]), Ok(SubCgroups::Container));
        assert_eq!(
            SubCgroups::parse(&args(&["sub"])),
            Ok(SubCgroups::All("sub".into()))
        );
        assert_eq!(
            SubCgroups::parse(&args(&["memory:m", "cpu,cpuacct:c"])),
            Ok(SubCgroups::PerController(
                [("memory", "m"), ("cpu", "c"), ("cpuacct", "c")]
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect()
            ))
        );
        assert!(SubCgroups::parse(&args(&["a", "memory:m"]))
            .unwrap_err()
            .contains("missing <controller>: prefix"));
        assert!(SubCgroups::parse(&args(&["a:b:c"]))
            .unwrap_err()
            .starts_with("invalid --cgroup argument: a:b:c"));
    }

    #[test]
    fn sub_paths_stay_below_the_container() {
        let base = Path::new("/sys/fs/cgroup/c1");
        assert_eq!(below(base, "/").unwrap(), base);
        assert_eq!(below(base, "a/../b").unwrap(), base.join("b"));
        assert_eq!(below(base, "/x/y").unwrap(), base.join("x/y"));
        for bad in ["..", "a/../..", "/../c2"] {
            let e = below(base, bad).unwrap_err().to_string();
            assert_eq!(e, format!("{bad} is not a sub cgroup path"));
        }
    }
}
