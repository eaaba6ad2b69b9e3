//! `spec`: the starting config.json of a new bundle, the same document `runc spec` (and
//! `runc spec --rootless`) writes, byte for byte: runc's integration tests and many users begin
//! with it and then edit fields in place, so field order and layout matter as much as values.
//!
//! Serialized from structs (not a `serde_json::Value`, whose maps sort their keys) with tab
//! indentation and no trailing newline, as Go's `json.MarshalIndent(spec, "", "\t")` leaves it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Errors of `spec`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle directory is missing or not a directory.
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// runc refuses to overwrite a config, with these words.
    #[error("File config.json exists. Remove it first")]
    Exists,
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    oci_version: &'static str,
    process: Process,
    root: Root,
    hostname: &'static str,
    mounts: Vec<Mount>,
    linux: Linux,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    terminal: bool,
    user: User,
    args: Vec<&'static str>,
    env: Vec<&'static str>,
    cwd: &'static str,
    capabilities: Capabilities,
    rlimits: Vec<Rlimit>,
    no_new_privileges: bool,
}

#[derive(Serialize)]
struct User {
    uid: u32,
    gid: u32,
}

#[derive(Serialize)]
struct Capabilities {
    bounding: Vec<&'static str>,
    effective: Vec<&'static str>,
    permitted: Vec<&'static str>,
    ambient: Vec<&'static str>,
}

#[derive(Serialize)]
struct Rlimit {
    #[serde(rename = "type")]
    typ: &'static str,
    hard: u64,
    soft: u64,
}

#[derive(Serialize)]
struct Root {
    path: &'static str,
    readonly: bool,
}

#[derive(Serialize)]
struct Mount {
    destination: &'static str,
    #[serde(rename = "type")]
    typ: &'static str,
    source: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    options: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Linux {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    uid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gid_mappings: Vec<IdMapping>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
    namespaces: Vec<Namespace>,
    masked_paths: Vec<&'static str>,
    readonly_paths: Vec<&'static str>,
}

#[derive(Serialize)]
struct IdMapping {
    #[serde(rename = "containerID")]
    container_id: u32,
    #[serde(rename = "hostID")]
    host_id: u32,
    size: u32,
}

#[derive(Serialize)]
struct Resources {
    devices: Vec<DeviceRule>,
}

#[derive(Serialize)]
struct DeviceRule {
    allow: bool,
    access: &'static str,
}

#[derive(Serialize)]
struct Namespace {
    #[serde(rename = "type")]
    typ: &'static str,
}

/// The few capabilities a shell in the default bundle gets.
const CAPS: [&str; 3] = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

fn mount(
    destination: &'static str,
    typ: &'static str,
    source: &'static str,
    options: &[&'static str],
) -> Mount {
    Mount {
        destination,
        typ,
        source,
        options: options.to_vec(),
    }
}

fn document(rootless: Option<(u32, u32)>) -> Spec {
    let caps = || CAPS.to_vec();
    // Without privileges a fresh sysfs cannot be mounted (it needs a network namespace the
    // user owns) and gid 5 may not be mapped, so rootless binds the host's /sys and leaves
    // the pty group alone.
    let (devpts, sys) = match rootless {
        None => (
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
        ),
        Some(_) => (
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                ],
            ),
            mount(
                "/sys",
                "none",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            ),
        ),
    };
    let mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        devpts,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    // Rootless: no network namespace (a user cannot give it connectivity), a user namespace
    // mapping only the caller, and no device rules (a user cannot write the device cgroup).
    let mut ns_names: Vec<&'static str> = match rootless {
        None => vec!["pid", "network", "ipc", "uts", "mount"],
        Some(_) => vec!["pid", "ipc", "uts", "mount"],
    };
    // As runc: a cgroup namespace on a pure v2 host, before the user namespace rootless adds.
    if super::cgroups::detect() == super::cgroups::Hierarchy::Unified {
        ns_names.push("cgroup");
    }
    if rootless.is_some() {
        ns_names.push("user");
    }
    let map = |id| {
        vec![IdMapping {
            container_id: 0,
            host_id: id,
            size: 1,
        }]
    };
    Spec {
        oci_version: "1.0.2-dev",
        process: Process {
            terminal: true,
            user: User { uid: 0, gid: 0 },
            args: vec!["sh"],
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            cwd: "/",
            capabilities: Capabilities {
                bounding: caps(),
                effective: caps(),
                permitted: caps(),
                ambient: caps(),
            },
            rlimits: vec![Rlimit {
                typ: "RLIMIT_NOFILE",
                hard: 1024,
                soft: 1024,
            }],
            no_new_privileges: true,
        },
        root: Root {
            path: "rootfs",
            readonly: true,
        },
        hostname: "runc",
        mounts,
        linux: Linux {
            uid_mappings: rootless.map(|(uid, _)| map(uid)).unwrap_or_default(),
            gid_mappings: rootless.map(|(_, gid)| map(gid)).unwrap_or_default(),
            resources: rootless.is_none().then(|| Resources {
                devices: vec![DeviceRule {
                    allow: false,
                    access: "rwm",
                }],
            }),
            namespaces: ns_names.iter().map(|&typ| Namespace { typ }).collect(),
            masked_paths: vec![
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            readonly_paths: vec![
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }
}

/// The config.json text: for `rootless`, the user namespace maps container root to the
/// calling process's effective uid and gid, as runc does.
pub fn text(rootless: bool) -> Vec<u8> {
    let ids = rootless.then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    text_for(ids)
}

/// The config.json text, rootless with the user namespace mapping container root to
/// `(uid, gid)` when given: what `runc spec --rootless` writes when that user runs it.
pub fn text_for(rootless: Option<(u32, u32)>) -> Vec<u8> {
    let ids = rootless;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    document(ids)
        .serialize(&mut ser)
        .expect("serializing plain structs into memory cannot fail");
    out
}

/// Writes `bundle/config.json` (mode 0666 less the umask, as runc); refuses to replace an
/// existing one.
pub fn write(bundle: &Path, rootless: bool) -> Result<(), Error> {
    let bundle_err = |source| Error::Bundle {
        path: bundle.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(bundle).map_err(bundle_err)?;
    if !meta.is_dir() {
        return Err(bundle_err(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    let path = bundle.join("config.json");
    // create_new: checking first and then writing would let a file appear in between.
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists),
        Err(source) => return Err(Error::Write { path, source }),
    };
    file.write_all(&text(rootless))
        .map_err(|source| Error::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_and_needs_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), false).unwrap();
        let first = std::fs::read(dir.path().join("config.json")).unwrap();
        let err = write(dir.path(), true).unwrap_err();
        assert_eq!(err.to_string(), "File config.json exists. Remove it first");
        assert_eq!(
            std::fs::read(dir.path().join("config.json")).unwrap(),
            first
        );
        let missing = dir.path().join("missing");
        assert!(matches!(write(&missing, false), Err(Error::Bundle { .. })));
        assert!(matches!(
            write(&dir.path().join("config.json"), false),
            Err(Error::Bundle { .. })
        ));
    }

    #[test]
    fn default_spec_parses_as_an_oci_spec() {
        for rootless in [false, true] {
            let spec: oci_spec::runtime::Spec = serde_json::from_slice(&text(rootless)).unwrap();
            let ns: Vec<_> = spec
                .linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .clone()
                .unwrap()
                .iter()
                .map(|n| n.typ())
                .collect();
            assert_eq!(
                ns.contains(&oci_spec::runtime::LinuxNamespaceType::User),
                rootless
            );
            assert_eq!(
                ns.contains(&oci_spec::runtime::LinuxNamespaceType::Network),
                !rootless
            );
        }
    }
}
