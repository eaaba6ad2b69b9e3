//! A container of a pod, as an OCI runtime spec: the image's defaults under the pod's settings,
//! as the kubelet and containerd's CRI plugin combine them. Pure: everything it needs from the
//! node (paths, resolved environment, cgroup) comes in [`Inputs`].

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::image::ImageConfig;

/// The capabilities containerd gives a container that asks for nothing else.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, for privileged containers.
const ALL_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

fn all_caps() -> Vec<String> {
    ALL_CAPS.iter().map(|c| format!("CAP_{c}")).collect()
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the node prepared for one container.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub rootfs: PathBuf,
    /// The environment from the pod spec, resolved and $(VAR)-expanded, in order.
    pub env: Vec<(String, String)>,
    /// uid/gid when the image names its user by name (looked up in the image's /etc/passwd).
    pub image_user: Option<(u32, u32)>,
    /// Host files bind-mounted over /etc/hosts, /etc/hostname, /etc/resolv.conf.
    pub etc_files: Vec<(String, PathBuf)>,
    /// Volume name -> host directory (or file) that backs it.
    pub volumes: BTreeMap<String, PathBuf>,
    pub cgroups_path: String,
    pub termination_log: Option<PathBuf>,
    /// The pid namespace to join instead of a new one: an ephemeral container's target's.
    pub pid_namespace: Option<PathBuf>,
}

/// Errors that make the container's configuration unusable (CreateContainerConfigError).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
}

/// Command line as Kubernetes defines it: `command` replaces the image's Entrypoint (and drops
/// its Cmd), `args` replaces Cmd; `$(VAR)` in what the pod gave is expanded from `env`.
pub fn command_line(c: &Container, image: &ImageConfig, env: &[(String, String)]) -> Vec<String> {
    let ours = |v: &Vec<String>| v.iter().map(|s| expand(s, env)).collect::<Vec<_>>();
    match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => [ours(cmd), ours(args)].concat(),
        (Some(cmd), None) => ours(cmd),
        (None, Some(args)) => [image.entrypoint.clone().unwrap_or_default(), ours(args)].concat(),
        (None, None) => [
            image.entrypoint.clone().unwrap_or_default(),
            image.cmd.clone().unwrap_or_default(),
        ]
        .concat(),
    }
}

/// `$(VAR)` expansion as the kubelet does it: known variables are replaced, unknown references
/// stay as written, `$$` is a literal `$`.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    if let Some((_, v)) = env.iter().rev().find(|(k, _)| k == name) {
                        out.push_str(v);
                        i += end + 3;
                        continue;
                    }
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The OCI spec for container `c` of `pod`.
pub fn build(
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    inputs: &Inputs,
) -> Result<Value, Error> {
    let spec = pod
        .spec
        .as_ref()
        .ok_or_else(|| Error::Config("pod has no spec".into()))?;
    let mut s: Value = serde_json::from_slice(&crate::runtime::template::text(false))
        .map_err(|e| Error::Config(e.to_string()))?;
    let env = &inputs.env;
    let args = command_line(c, image, env);
    if args.is_empty() {
        return Err(Error::Config(
            "no command specified: neither the container nor its image names one".into(),
        ));
    }
    let sc = c.security_context.as_ref();
    let psc = spec.security_context.as_ref();
    let (uid, gid) = user(c, pod, image, inputs)?;
    let run_as_non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| psc.and_then(|p| p.run_as_non_root))
        .unwrap_or(false);
    if run_as_non_root && uid == 0 {
        return Err(Error::Config(
            "container has runAsNonRoot and image will run as root".into(),
        ));
    }
    let mut groups: Vec<i64> = psc
        .and_then(|p| p.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs) = psc.and_then(|p| p.fs_group) {
        groups.push(fs);
    }

    // Environment: PATH unless the image sets it, the image's, HOSTNAME, then the pod's.
    let mut envs: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        envs.retain(|(x, _)| x != k);
        envs.push((k.to_string(), v.to_string()));
    };
    let (pk, pv) = DEFAULT_PATH.split_once('=').unwrap_or_default();
    set(pk, pv);
    for e in image.env.iter().flatten() {
        if let Some((k, v)) = e.split_once('=') {
            set(k, v);
        }
    }
    let hostname = pod_hostname(pod);
    set("HOSTNAME", &hostname);
    for (k, v) in env {
        set(k, v);
    }
    let env_list: Vec<String> = envs.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = capabilities(c, privileged);
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    let no_new_privs = sc
        .and_then(|s| s.allow_privilege_escalation)
        .map(|a| !a)
        .unwrap_or(false);
    s["process"] = json!({
        "terminal": c.tty.unwrap_or(false),
        "user": {"uid": uid, "gid": gid, "additionalGids": groups},
        "args": args,
        "env": env_list,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs,
        "oomScoreAdj": settable(oom_score_adj(pod, c)),
    });
    s["root"] = json!({
        "path": inputs.rootfs,
        "readonly": sc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false),
    });
    // The pod's network, IPC and UTS namespaces are the shim's: containers inherit them.
    s.as_object_mut().map(|o| o.remove("hostname"));
    let host_pid = spec.host_pid.unwrap_or(false);
    let share_pid = spec.share_process_namespace.unwrap_or(false);
    let mut namespaces = vec![json!({"type": "mount"})];
    match &inputs.pid_namespace {
        Some(path) if !host_pid && !share_pid => {
            namespaces.push(json!({"type": "pid", "path": path}));
        }
        _ if !host_pid && !share_pid => namespaces.push(json!({"type": "pid"})),
        _ => {}
    }
    if crate::runtime::cgroups::detect() == crate::runtime::cgroups::Hierarchy::Unified {
        namespaces.push(json!({"type": "cgroup"}));
    }
    s["linux"]["namespaces"] = Value::Array(namespaces);
    s["linux"]["cgroupsPath"] = json!(inputs.cgroups_path);
    s["linux"]["resources"] = resources(c);
    if privileged {
        s["linux"]["maskedPaths"] = json!([]);
        s["linux"]["readonlyPaths"] = json!([]);
    }

    let mut mounts = s["mounts"].as_array().cloned().unwrap_or_default();
    if privileged {
        for m in &mut mounts {
            if m["destination"] == "/sys" || m["destination"] == "/sys/fs/cgroup" {
                if let Some(o) = m["options"].as_array_mut() {
                    o.retain(|x| x != "ro");
                }
            }
        }
    }
    for (dest, src) in &inputs.etc_files {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    if let Some(t) = &inputs.termination_log {
        let dest = c
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push(json!({"destination": dest, "type": "bind", "source": t, "options": ["rbind", "rprivate"]}));
    }
    for vm in c.volume_mounts.iter().flatten() {
        let Some(src) = inputs.volumes.get(&vm.name) else {
            return Err(Error::Config(format!(
                "volumeMount {:?}: no volume of that name is ready",
                vm.name
            )));
        };
        let mut src = src.clone();
        let sub = vm
            .sub_path
            .clone()
            .filter(|p| !p.is_empty())
            .or_else(|| vm.sub_path_expr.as_ref().map(|e| expand(e, env)));
        if let Some(sub) = sub.filter(|p| !p.is_empty()) {
            src = safe_subpath(&src, &sub)?;
        }
        let mut opts = vec!["rbind", "rprivate"];
        if vm.read_only.unwrap_or(false) {
            opts.push("ro");
        }
        mounts.push(
            json!({"destination": vm.mount_path, "type": "bind", "source": src, "options": opts}),
        );
    }
    s["mounts"] = Value::Array(mounts);
    s["annotations"] = json!({
        "io.kubernetes.pod.name": pod.metadata.name,
        "io.kubernetes.pod.namespace": pod.metadata.namespace,
        "io.kubernetes.pod.uid": pod.metadata.uid,
        "io.kubernetes.container.name": c.name,
    });
    Ok(s)
}

/// A subPath must stay inside its volume even through symlinks: it is resolved against the
/// volume's real path and refused if it leaves it. A missing subPath is made as a directory.
fn safe_subpath(volume: &std::path::Path, sub: &str) -> Result<PathBuf, Error> {
    let bad = || {
        Error::Config(format!(
            "subPath {sub:?} must be a relative path inside the volume"
        ))
    };
    let p = std::path::Path::new(sub);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad());
    }
    let root = std::fs::canonicalize(volume).map_err(|e| Error::Config(e.to_string()))?;
    let joined = root.join(p);
    if !joined.exists() && std::fs::symlink_metadata(&joined).is_err() {
        std::fs::create_dir_all(&joined).map_err(|e| Error::Config(e.to_string()))?;
    }
    let real = std::fs::canonicalize(&joined).map_err(|e| Error::Config(e.to_string()))?;
    if !real.starts_with(&root) {
        return Err(Error::Config(format!(
            "subPath {sub:?} resolves outside the volume (through a symlink)"
        )));
    }
    Ok(real)
}

fn pod_hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
}

fn user(
    c: &Container,
    pod: &Pod,
    image: &ImageConfig,
    inputs: &Inputs,
) -> Result<(i64, i64), Error> {
    let sc = c.security_context.as_ref();
    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let uid = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| psc.and_then(|p| p.run_as_user));
    let gid = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| psc.and_then(|p| p.run_as_group));
    let (iu, ig) = match (
        &inputs.image_user,
        image.user.as_deref().filter(|u| !u.is_empty()),
    ) {
        (Some((u, g)), _) => (*u as i64, *g as i64),
        (None, None) => (0, 0),
        (None, Some(u)) => {
            let (u, g) = u.split_once(':').unwrap_or((u, ""));
            let u: i64 = u.parse().map_err(|_| {
                Error::Config(format!(
                    "image user {u:?} is not in the image's /etc/passwd"
                ))
            })?;
            (u, g.parse().unwrap_or(0))
        }
    };
    Ok((
        uid.unwrap_or(iu),
        gid.unwrap_or(if uid.is_some() { 0 } else { ig }),
    ))
}

fn capabilities(c: &Container, privileged: bool) -> Vec<String> {
    if privileged {
        return all_caps();
    }
    let norm = |s: &String| {
        let up = s.to_ascii_uppercase();
        if up.starts_with("CAP_") {
            up
        } else {
            format!("CAP_{up}")
        }
    };
    let caps = c
        .security_context
        .as_ref()
        .and_then(|s| s.capabilities.as_ref());
    let drop: Vec<String> = caps
        .and_then(|c| c.drop.as_ref())
        .into_iter()
        .flatten()
        .map(norm)
        .collect();
    let add: Vec<String> = caps
        .and_then(|c| c.add.as_ref())
        .into_iter()
        .flatten()
        .map(norm)
        .collect();
    let mut out: Vec<String> = if drop.iter().any(|d| d == "CAP_ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|a| a == "CAP_ALL") {
        return all_caps();
    }
    for a in add {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// cpu and memory from requests and limits, as the kubelet writes them.
fn resources(c: &Container) -> Value {
    let r = c.resources.as_ref();
    let q =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
         k: &str| { m.and_then(|m| m.get(k)).map(|q| q.0.clone()) };
    let req_cpu = q(r.and_then(|r| r.requests.as_ref()), "cpu").and_then(|s| milli_cpu(&s));
    let lim_cpu = q(r.and_then(|r| r.limits.as_ref()), "cpu").and_then(|s| milli_cpu(&s));
    let lim_mem = q(r.and_then(|r| r.limits.as_ref()), "memory").and_then(|s| bytes(&s));
    // A limit alone implies an equal request, as API defaulting does.
    let shares = req_cpu.or(lim_cpu).map_or(2, |m| (m * 1024 / 1000).max(2));
    let mut cpu = json!({"shares": shares});
    if let Some(l) = lim_cpu {
        cpu["quota"] = json!((l * 100_000 / 1000).max(1000));
        cpu["period"] = json!(100_000);
    }
    let mut out = json!({"cpu": cpu});
    if let Some(m) = lim_mem {
        out["memory"] = json!({"limit": m});
    }
    out
}

/// The pod-level cgroup's resources, as the kubelet sets them: cpu shares from the sum of the
/// requests; a cpu quota and a memory limit only when every container has that limit (else
/// the pod may use what the node has). Init containers run alone, so the largest of them
/// counts when it is larger than the app containers' sum.
pub fn pod_resources(pod: &Pod) -> Value {
    let Some(spec) = &pod.spec else {
        return json!({});
    };
    let get = |c: &Container, which: &str, what: &str| {
        let r = c.resources.as_ref()?;
        let m = if which == "limits" {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }?;
        let q = &m.get(what)?.0;
        if what == "cpu" {
            milli_cpu(q)
        } else {
            bytes(q)
        }
    };
    let sum = |which: &str, what: &str| -> Option<i64> {
        let apps: Option<Vec<i64>> = spec
            .containers
            .iter()
            .map(|c| get(c, which, what))
            .collect();
        let app_sum: i64 = apps?.into_iter().sum();
        let init_max = spec
            .init_containers
            .iter()
            .flatten()
            .filter_map(|c| get(c, which, what))
            .max()
            .unwrap_or(0);
        Some(app_sum.max(init_max))
    };
    let req_cpu: i64 = spec
        .containers
        .iter()
        .map(|c| {
            get(c, "requests", "cpu")
                .or_else(|| get(c, "limits", "cpu"))
                .unwrap_or(0)
        })
        .sum();
    let mut cpu = json!({"shares": (req_cpu * 1024 / 1000).max(2)});
    if let Some(l) = sum("limits", "cpu") {
        cpu["quota"] = json!((l * 100_000 / 1000).max(1000));
        cpu["period"] = json!(100_000);
    }
    let mut out = json!({"cpu": cpu});
    if let Some(m) = sum("limits", "memory") {
        out["memory"] = json!({"limit": m});
    }
    out
}

fn oom_score_adj(pod: &Pod, c: &Container) -> i64 {
    match super::status::qos_class(pod).as_str() {
        "Guaranteed" => -997,
        "BestEffort" => 1000,
        _ => {
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get("memory"))
                .and_then(|q| bytes(&q.0))
                .unwrap_or(0);
            let total = crate::agent::kubelet::node::memory_bytes().max(1);
            let adj = 1000 - (1000 * req as i128 / total as i128) as i64;
            adj.clamp(3, 999)
        }
    }
}

/// Lowering a score below our own needs CAP_SYS_RESOURCE, which some sandboxes withhold even
/// from root; the container then keeps our score rather than failing to start.
fn settable(want: i64) -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_sys_resource = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0);
    let ours: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if want < ours && !cap_sys_resource {
        ours
    } else {
        want
    }
}

/// A cpu quantity in millicores ("500m", "1", "0.25").
pub fn milli_cpu(s: &str) -> Option<i64> {
    if let Some(m) = s.strip_suffix('m') {
        return m.parse().ok();
    }
    s.parse::<f64>().ok().map(|v| (v * 1000.0).round() as i64)
}

/// A memory quantity in bytes ("64Mi", "1G", "1000").
pub fn bytes(s: &str) -> Option<i64> {
    const UNITS: &[(&str, i64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (u, mul) in UNITS {
        if let Some(n) = s.strip_suffix(u) {
            return n.parse::<f64>().ok().map(|v| (v * *mul as f64) as i64);
        }
    }
    s.parse::<f64>().ok().map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_and_args_against_the_image() {
        let image = ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            ..Default::default()
        };
        let mut c = Container::default();
        assert_eq!(command_line(&c, &image, &[]), ["/entry", "default"]);
        c.args = Some(vec!["x".into()]);
        assert_eq!(command_line(&c, &image, &[]), ["/entry", "x"]);
        c.command = Some(vec!["/bin/sh".into()]);
        assert_eq!(command_line(&c, &image, &[]), ["/bin/sh", "x"]);
        c.args = None;
        assert_eq!(command_line(&c, &image, &[]), ["/bin/sh"]);
    }

    #[test]
    fn variable_expansion() {
        let env = vec![
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "two".to_string()),
        ];
        assert_eq!(expand("$(A)-$(B)", &env), "1-two");
        assert_eq!(expand("$(C) stays", &env), "$(C) stays");
        assert_eq!(expand("$$(A) escaped", &env), "$(A) escaped");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }

    #[test]
    fn quantities() {
        assert_eq!(milli_cpu("250m"), Some(250));
        assert_eq!(milli_cpu("1.5"), Some(1500));
        assert_eq!(bytes("64Mi"), Some(64 << 20));
        assert_eq!(bytes("1G"), Some(1_000_000_000));
    }

    #[test]
    fn subpath_cannot_escape_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir_all(vol.join("ok")).unwrap();
        std::os::unix::fs::symlink("/etc", vol.join("evil")).unwrap();
        assert!(safe_subpath(&vol, "ok").is_ok());
        assert!(safe_subpath(&vol, "new/dir").unwrap().is_dir());
        assert!(safe_subpath(&vol, "../x").is_err());
        assert!(safe_subpath(&vol, "/etc").is_err());
        let e = safe_subpath(&vol, "evil").unwrap_err().to_string();
        assert!(e.contains("outside the volume"), "{e}");
    }
}
