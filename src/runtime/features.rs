//! `features`: the OCI runtime features document (runtime-spec features.md), which containerd
//! 1.7+ asks a runtime for before it decides what to put in a spec (e.g. whether `rro` mounts
//! or seccomp flags may be used). runc 1.1.5 has no such command; newer runc prints this shape.
//!
//! Every list says what nanokube really does, not what the spec allows: claiming a feature we
//! drop would make a client rely on it.

use serde_json::{json, Value};

use super::mounts;

/// Mount options a bundle may carry, as runc (1.2+) names them. Only those `mounts` turns into
/// mount flags, propagation or bind requests are reported: anything else it hands to the
/// filesystem as data, where an unknown flag name fails or is ignored.
const MOUNT_OPTION_CANDIDATES: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "iversion",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "noiversion",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
    "idmap",
    "ridmap",
];

/// The hooks the runtime runs (hooks.rs, container.rs, init.rs).
const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// Namespaces the init creates or joins; time namespaces are refused by spec validation.
const NAMESPACES: &[&str] = &["cgroup", "ipc", "mount", "network", "pid", "user", "uts"];

/// process.rs sets every capability the kernel numbers up to CAP_CHECKPOINT_RESTORE (40).
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// seccomp/compile.rs: every action (SCMP_ACT_NOTIFY with an agent at listenerPath).
const SECCOMP_ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

const SECCOMP_OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// Flags a profile may name: they parse, but compile.rs applies none of them, so none is in
/// supportedFlags.
const SECCOMP_KNOWN_FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// Annotations the runtime acts on that reach the host: the overlay annotation mounts host
/// directories as the rootfs, so a CRI client must not pass it through from a pod.
const UNSAFE_ANNOTATIONS: &[&str] = &["io.nanokube.rootfs.overlay"];

fn mount_options() -> Vec<&'static str> {
    MOUNT_OPTION_CANDIDATES
        .iter()
        .copied()
        .filter(|o| mounts::parse_options(&[o.to_string()]).data.is_empty())
        .collect()
}

/// The features document.
pub fn document() -> Value {
    // The BPF compiler only emits x86_64 programs (other ABIs are killed or get ENOSYS).
    let seccomp = if cfg!(target_arch = "x86_64") {
        json!({
            "enabled": true,
            "actions": SECCOMP_ACTIONS,
            "operators": SECCOMP_OPERATORS,
            "archs": ["SCMP_ARCH_X86_64"],
            "knownFlags": SECCOMP_KNOWN_FLAGS,
            "supportedFlags": [],
        })
    } else {
        json!({"enabled": false})
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": oci_spec::runtime::VERSION,
        "hooks": HOOKS,
        "mountOptions": mount_options(),
        "linux": {
            "namespaces": NAMESPACES,
            "capabilities": CAPABILITIES,
            "cgroup": {
                "v1": true,
                "v2": true,
                // `--systemd-cgroup` is refused (cgroups::resolve_cgroup_path).
                "systemd": false,
                "systemdUser": false,
                "rdma": false,
            },
            "seccomp": seccomp,
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}},
        },
        "annotations": {
            "io.nanokube.runtime.version": env!("CARGO_PKG_VERSION"),
        },
        "potentiallyUnsafeConfigAnnotations": UNSAFE_ANNOTATIONS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_parses_as_oci_features() {
        let doc = document();
        let features: oci_spec::runtime::Features = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(features.oci_version_min(), "1.0.0");
        let linux = features.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), NAMESPACES.len());
        assert!(doc["mountOptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "rbind"));
    }

    #[test]
    fn listed_names_are_ones_the_runtime_understands() {
        // Capabilities: process.rs maps every oci-spec capability, so parsing proves support.
        for cap in CAPABILITIES {
            serde_json::from_value::<oci_spec::runtime::Capability>(json!(cap))
                .unwrap_or_else(|e| panic!("{cap}: {e}"));
        }
        for ns in NAMESPACES {
            serde_json::from_value::<oci_spec::runtime::LinuxNamespaceType>(json!(ns))
                .unwrap_or_else(|e| panic!("{ns}: {e}"));
        }
        for a in SECCOMP_ACTIONS {
            serde_json::from_value::<oci_spec::runtime::LinuxSeccompAction>(json!(a)).unwrap();
        }
        for o in SECCOMP_OPERATORS {
            serde_json::from_value::<oci_spec::runtime::LinuxSeccompOperator>(json!(o)).unwrap();
        }
        for f in SECCOMP_KNOWN_FLAGS {
            serde_json::from_value::<oci_spec::runtime::LinuxSeccompFilterFlag>(json!(f)).unwrap();
        }
        // Every reported mount option is taken by the mount code, none passed on as data.
        for o in mount_options() {
            assert!(
                mounts::parse_options(&[o.to_string()]).data.is_empty(),
                "{o}"
            );
        }
        // And a data option such as mode= is never claimed.
        assert!(!mount_options().contains(&"mode=755"));
    }

    #[test]
    fn refused_features_are_not_claimed() {
        let doc = document();
        assert!(!doc["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "time"));
        assert_eq!(doc["linux"]["cgroup"]["systemd"], false);
    }
}
