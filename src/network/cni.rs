//! Pod networking through CNI plugins (`--cni-conf-dir`, `--cni-bin-dir`), as the CNI
//! specification has runtimes call them, so users can bring Calico, Cilium, Flannel or the
//! reference plugins in place of the built-in bridge.
//!
//! - The network is the first file of the config directory, in name order, ending in
//!   `.conflist`, `.conf` or `.json`. A `.conf` holds a single plugin.
//! - ADD runs the list's plugins in order. Each one gets its own config, the list's `name` and
//!   `cniVersion`, the previous plugin's result as `prevResult`, and the `runtimeConfig` keys its
//!   `capabilities` ask for (`portMappings` for hostPorts).
//! - DEL runs them in reverse, and CHECK in order, each with the cached final result as
//!   `prevResult`.
//! - A plugin that fails exits non-zero and prints an error object, whose `msg` and `details`
//!   become the error.
//! - What ADD did is cached in the pod's directory: the network config, the parameters and the
//!   result. DEL then works from the cache alone, even from `nanokube killall`, which has no
//!   CNI flags.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// The cache's file name in a pod's directory.
pub const CACHE: &str = "cni.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no CNI network config in {0} (a .conflist, .conf or .json file)")]
    NoConfig(String),
    #[error("CNI config {file}: {reason}")]
    Config { file: String, reason: String },
    #[error("CNI plugin {plugin:?} not found in {path}")]
    NoPlugin { plugin: String, path: String },
    #[error("CNI plugin {plugin} {command}: {msg}")]
    Plugin {
        plugin: String,
        command: &'static str,
        msg: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// A network: a plugin list and where the plugins are.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The list as a conflist: `cniVersion`, `name`, `plugins` (and whatever else it holds).
    pub list: Value,
    pub bin_dirs: Vec<PathBuf>,
    pub file: PathBuf,
}

/// Who the attachment is for: the pod's identity in CNI_ARGS, and its hostPorts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub port_mappings: Vec<PortMapping>,
}

/// One hostPort, as the `portMappings` capability carries it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: String,
}

/// What ADD did, kept for DEL and CHECK.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cached {
    pub list: Value,
    pub bin_dirs: Vec<PathBuf>,
    pub container_id: String,
    /// The network namespace handed to the plugins: the sandbox's, pinned by a bind mount in
    /// the pod's directory (see [`pin_netns`]).
    pub netns: String,
    /// Which namespace that was (device:inode), to tell a new sandbox from the cached one.
    #[serde(default)]
    pub sandbox: String,
    pub ifname: String,
    pub args: String,
    pub runtime_config: Value,
    pub result: Value,
}

impl Cached {
    pub fn load(pod_dir: &Path) -> Option<Cached> {
        serde_json::from_slice(&std::fs::read(pod_dir.join(CACHE)).ok()?).ok()
    }

    /// The pod's first IPv4 address in the result (`ips[].address`, without its prefix).
    pub fn ip(&self) -> Option<std::net::Ipv4Addr> {
        first_ipv4(&self.result)
    }
}

pub fn first_ipv4(result: &Value) -> Option<std::net::Ipv4Addr> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find_map(|a| a.split('/').next()?.parse().ok())
}

impl Network {
    /// Loads the network of `conf_dir` (see the module comment).
    pub fn load(conf_dir: &Path, bin_dirs: Vec<PathBuf>) -> Result<Network, Error> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
            .map_err(io(format!("reading {}", conf_dir.display())))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("conflist" | "conf" | "json")
                )
            })
            .collect();
        files.sort();
        let file = files
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoConfig(conf_dir.display().to_string()))?;
        let text =
            std::fs::read_to_string(&file).map_err(io(format!("reading {}", file.display())))?;
        let bad = |reason: String| Error::Config {
            file: file.display().to_string(),
            reason,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let list = if v.get("plugins").is_some() {
            v
        } else if v.get("type").is_some() {
            // A single plugin's config: its name and version are the list's.
            json!({"cniVersion": v["cniVersion"], "name": v["name"], "plugins": [v]})
        } else {
            return Err(bad(
                "neither a plugin list (\"plugins\") nor a plugin (\"type\")".into(),
            ));
        };
        if !list["name"].is_string() {
            return Err(bad("the network has no \"name\"".into()));
        }
        let plugins = list["plugins"]
            .as_array()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| bad("\"plugins\" is not a non-empty list".into()))?;
        for (i, p) in plugins.iter().enumerate() {
            if !p["type"].is_string() {
                return Err(bad(format!("plugins[{i}] has no \"type\"")));
            }
        }
        Ok(Network {
            list,
            bin_dirs,
            file,
        })
    }

    /// Attaches the pod whose network namespace is `netns` (ADD) and caches what was done in
    /// `pod_dir`; returns the result.
    pub fn add(&self, pod_dir: &Path, pod: &Pod, netns: &str) -> Result<Cached, Error> {
        let mut cached = Cached {
            list: self.list.clone(),
            bin_dirs: self.bin_dirs.clone(),
            container_id: pod.uid.clone(),
            netns: netns.to_string(),
            sandbox: ns_id(Path::new(netns)).unwrap_or_default(),
            ifname: "eth0".into(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
                pod.namespace, pod.name, pod.uid, pod.uid
            ),
            runtime_config: json!({"portMappings": pod.port_mappings}),
            result: Value::Null,
        };
        let mut prev = Value::Null;
        for plugin in plugins(&cached.list) {
            match invoke(&cached, plugin, "ADD", &prev) {
                Ok(r) => prev = r,
                Err(e) => {
                    // What the plugins before it did is undone, as containerd does, so the
                    // retry starts clean (no address leaked, no interface left in the way).
                    for p in plugins(&cached.list).rev() {
                        let _ = invoke(&cached, p, "DEL", &prev);
                    }
                    return Err(e);
                }
            }
        }
        cached.result = prev;
        let text = serde_json::to_vec_pretty(&cached).map_err(|e| Error::Io {
            what: "encoding the CNI cache".into(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(pod_dir.join(CACHE), text).map_err(io("writing the CNI cache"))?;
        Ok(cached)
    }
}

fn plugins(list: &Value) -> impl DoubleEndedIterator<Item = &Value> {
    list["plugins"].as_array().into_iter().flatten()
}

/// Checks the attachment cached in `pod_dir` (CHECK, in order), unless the network disables
/// it or predates CHECK (versions before 0.4.0).
pub fn check(pod_dir: &Path) -> Result<(), Error> {
    let Some(c) = Cached::load(pod_dir) else {
        return Ok(());
    };
    let version = c.list["cniVersion"].as_str().unwrap_or("");
    if c.list["disableCheck"].as_bool() == Some(true)
        || matches!(version, "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1")
    {
        return Ok(());
    }
    for p in plugins(&c.list) {
        invoke(&c, p, "CHECK", &c.result)?;
    }
    Ok(())
}

/// Detaches the pod cached in `pod_dir` (DEL, in reverse order; every plugin runs even after
/// one fails, and the first error is returned) and drops the cache. No cache: nothing to do.
pub fn del(pod_dir: &Path) -> Result<(), Error> {
    let Some(c) = Cached::load(pod_dir) else {
        return Ok(());
    };
    del_cached(c)?;
    let _ = std::fs::remove_file(pod_dir.join(CACHE));
    Ok(())
}

/// DEL of a cached attachment, every plugin in reverse whatever the earlier ones answered;
/// the first error, if any.
fn del_cached(mut c: Cached) -> Result<(), Error> {
    // Only a namespace that is still pinned is handed on: a bare path could by now name
    // another process's namespace (a reused pid) or, after a reboot, a plain empty file.
    // Without one, plugins clean up what is outside it (addresses, port rules).
    if !is_netns(Path::new(&c.netns)) {
        c.netns = String::new();
    }
    let mut first = None;
    for p in plugins(&c.list).rev() {
        if let Err(e) = invoke(&c, p, "DEL", &c.result) {
            first.get_or_insert(e);
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Keeps a pod's attachment whose DEL failed in `pending` (`<data-dir>/agent/cni-pending`,
/// one file per pod), so that it is retried after the pod's directory is gone: a plugin
/// that failed once (its daemon restarting, say) must still release the address.
pub fn defer_del(pod_dir: &Path, pending: &Path, uid: &str) -> Result<(), Error> {
    let from = pod_dir.join(CACHE);
    if !from.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(pending).map_err(io(format!("creating {}", pending.display())))?;
    let to = pending.join(format!("{uid}.json"));
    std::fs::copy(&from, &to).map_err(io(format!("keeping {}", to.display())))?;
    Ok(())
}

/// Runs DEL again for each deferred attachment, forgetting those it succeeds for; how many
/// are still pending.
pub fn retry_pending(pending: &Path) -> usize {
    let mut left = 0;
    for e in std::fs::read_dir(pending).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read(e.path()) else {
            continue;
        };
        let Ok(c) = serde_json::from_slice::<Cached>(&text) else {
            // Not ours to run: nothing can be done with it.
            let _ = std::fs::remove_file(e.path());
            continue;
        };
        match del_cached(c) {
            Ok(()) => {
                let _ = std::fs::remove_file(e.path());
            }
            Err(err) => {
                tracing::debug!(file = %e.path().display(), error = %err, "CNI DEL still failing");
                left += 1;
            }
        }
    }
    left
}

/// Where a pod's network namespace is pinned.
pub const NETNS: &str = "netns";

/// Whether `path` is a namespace handle (a bind mount of one, or /proc/<pid>/ns/*).
pub fn is_netns(path: &Path) -> bool {
    !path.as_os_str().is_empty()
        && nix::sys::statfs::statfs(path)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// A namespace's identity (device:inode), as `stat` on its handle gives it.
pub fn ns_id(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(format!("{}:{}", m.dev(), m.ino()))
}

/// Pins the network namespace `source` (a /proc/<pid>/ns/net) at `<pod_dir>/netns` with a bind
/// mount, so that the plugins and a later DEL name that namespace and no other, even once the
/// sandbox's process is gone.
pub fn pin_netns(pod_dir: &Path, source: &Path) -> Result<PathBuf, Error> {
    let target = pod_dir.join(NETNS);
    unpin_netns(pod_dir);
    std::fs::File::create(&target).map_err(io(format!("creating {}", target.display())))?;
    nix::mount::mount(
        Some(source),
        &target,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::Io {
        what: format!("pinning {} at {}", source.display(), target.display()),
        source: e.into(),
    })?;
    Ok(target)
}

/// Undoes [`pin_netns`] (nothing pinned: nothing to do).
pub fn unpin_netns(pod_dir: &Path) {
    let target = pod_dir.join(NETNS);
    if is_netns(&target) {
        let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_file(&target);
}

/// The stdin a plugin gets (see the module comment).
fn plugin_config(c: &Cached, plugin: &Value, prev: &Value) -> Value {
    let mut conf = plugin.clone();
    conf["name"] = c.list["name"].clone();
    conf["cniVersion"] = c.list["cniVersion"].clone();
    if !prev.is_null() {
        conf["prevResult"] = prev.clone();
    }
    if let Some(caps) = plugin["capabilities"].as_object() {
        let mut rc = serde_json::Map::new();
        for (cap, on) in caps {
            if on.as_bool() == Some(true) {
                if let Some(v) = c.runtime_config.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            conf["runtimeConfig"] = Value::Object(rc);
        }
    }
    conf
}

/// How long a plugin may take: a hung one is killed rather than holding the pod's sync (and a
/// kubelet worker) for ever.
const PLUGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

fn invoke(c: &Cached, plugin: &Value, command: &'static str, prev: &Value) -> Result<Value, Error> {
    invoke_within(c, plugin, command, prev, PLUGIN_TIMEOUT)
}

fn invoke_within(
    c: &Cached,
    plugin: &Value,
    command: &'static str,
    prev: &Value,
    timeout: std::time::Duration,
) -> Result<Value, Error> {
    let kind = plugin["type"].as_str().unwrap_or_default().to_string();
    let path = std::env::join_paths(&c.bin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe = c
        .bin_dirs
        .iter()
        .map(|d| d.join(&kind))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoPlugin {
            plugin: kind.clone(),
            path: path.clone(),
        })?;
    let stdin = serde_json::to_vec(&plugin_config(c, plugin, prev)).unwrap_or_default();
    let mut child = Command::new(&exe)
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &c.container_id)
        .env("CNI_NETNS", &c.netns)
        .env("CNI_IFNAME", &c.ifname)
        .env("CNI_ARGS", &c.args)
        .env("CNI_PATH", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout kills whatever the plugin started too.
        .process_group(0)
        .spawn()
        .map_err(io(format!("running {}", exe.display())))?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(&stdin)
            .map_err(io(format!("writing to {kind}")))?;
    }
    // The output is read on a thread of its own, so that a plugin past its time can be
    // killed from here; the thread then sees the pipes close and ends.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(out) => out.map_err(io(format!("waiting for {kind}")))?,
        Err(_) => {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            return Err(Error::Plugin {
                plugin: kind,
                command,
                msg: format!("did not finish within {} s; killed", timeout.as_secs_f64()),
            });
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        let msg = match &parsed {
            Some(e) if e["msg"].is_string() => {
                match e["details"].as_str().filter(|d| !d.is_empty()) {
                    Some(d) => format!("{}: {d}", e["msg"].as_str().unwrap_or_default()),
                    None => e["msg"].as_str().unwrap_or_default().to_string(),
                }
            }
            _ => format!(
                "{} ({})",
                String::from_utf8_lossy(&out.stderr).trim(),
                out.status
            ),
        };
        return Err(Error::Plugin {
            plugin: kind,
            command,
            msg,
        });
    }
    // ADD answers with a result; DEL and CHECK with nothing. A plugin that prints no result on
    // ADD passes the previous one on.
    Ok(match (command, parsed) {
        ("ADD", Some(v)) => v,
        _ => prev.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fake plugin that records its environment and stdin, then answers as `body` says.
    fn plugin(dir: &Path, name: &str, body: &str) {
        let log = dir.join("calls");
        let script = format!(
            "#!/bin/sh\ninput=$(cat)\necho \"{name} $CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_NETNS|$CNI_ARGS|$input\" >> {}\n{body}\n",
            log.display()
        );
        let p = dir.join(name);
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn calls(dir: &Path) -> Vec<(String, Value)> {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, '|');
                let head = parts.next().unwrap().to_string();
                parts.next();
                (head, serde_json::from_str(parts.next().unwrap()).unwrap())
            })
            .collect()
    }

    fn pod() -> Pod {
        Pod {
            namespace: "ns".into(),
            name: "web".into(),
            uid: "u1".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
            }],
        }
    }

    #[test]
    fn add_chains_results_and_del_runs_backwards_from_the_cache() {
        let bin = tempfile::tempdir().unwrap();
        let conf = tempfile::tempdir().unwrap();
        let pod_dir = tempfile::tempdir().unwrap();
        plugin(
            bin.path(),
            "first",
            r#"[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"10.88.0.7/24"}]}'; exit 0"#,
        );
        plugin(
            bin.path(),
            "second",
            r#"[ "$CNI_COMMAND" = ADD ] && echo "$input" | sed 's/.*"prevResult":\(.*\),"runtimeConfig".*/\1/'; exit 0"#,
        );
        // A later file in name order, and a file of another kind, are not the network.
        std::fs::write(
            conf.path().join("20-other.conflist"),
            r#"{"name":"x","plugins":[{"type":"x"}]}"#,
        )
        .unwrap();
        std::fs::write(conf.path().join("00-readme.txt"), "not a config").unwrap();
        std::fs::write(
            conf.path().join("10-net.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"first","ipam":{"x":1}},{"type":"second","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        let net =
            Network::load(conf.path(), vec!["/nonexistent".into(), bin.path().into()]).unwrap();
        assert!(net.file.ends_with("10-net.conflist"));
        let cached = net
            .add(pod_dir.path(), &pod(), "/proc/self/ns/net")
            .unwrap();
        assert_eq!(cached.ip(), Some("10.88.0.7".parse().unwrap()));
        let c = calls(bin.path());
        assert_eq!(c[0].0, "first ADD u1 eth0 /proc/self/ns/net");
        assert_eq!(c[0].1["name"], "net");
        assert_eq!(c[0].1["cniVersion"], "1.0.0");
        assert_eq!(c[0].1["ipam"]["x"], 1);
        assert!(
            c[0].1.get("prevResult").is_none(),
            "the first plugin has none"
        );
        assert!(
            c[0].1.get("runtimeConfig").is_none(),
            "it did not ask for portMappings"
        );
        assert_eq!(c[1].1["prevResult"]["ips"][0]["address"], "10.88.0.7/24");
        assert_eq!(c[1].1["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert_eq!(
            c[1].1["runtimeConfig"]["portMappings"][0]["containerPort"],
            80
        );
        let args = std::fs::read_to_string(bin.path().join("calls")).unwrap();
        assert!(
            args.contains("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=u1")
        );

        check(pod_dir.path()).unwrap();
        del(pod_dir.path()).unwrap();
        let c = calls(bin.path());
        let order: Vec<&str> = c[2..].iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(
            order,
            [
                "first CHECK u1 eth0 /proc/self/ns/net",
                "second CHECK u1 eth0 /proc/self/ns/net",
                "second DEL u1 eth0 /proc/self/ns/net",
                "first DEL u1 eth0 /proc/self/ns/net"
            ]
        );
        for (_, input) in &c[2..] {
            assert_eq!(input["prevResult"]["ips"][0]["address"], "10.88.0.7/24");
        }
        assert!(!pod_dir.path().join(CACHE).exists(), "DEL drops the cache");
        del(pod_dir.path()).unwrap();
        assert_eq!(calls(bin.path()).len(), 6, "nothing cached, nothing run");
    }

    #[test]
    fn a_failed_del_is_kept_and_retried_until_it_succeeds() {
        let bin = tempfile::tempdir().unwrap();
        let pod_dir = tempfile::tempdir().unwrap();
        let pending = tempfile::tempdir().unwrap();
        // Fails while the file `down` exists, as a plugin whose daemon is restarting.
        let down = bin.path().join("down");
        plugin(
            bin.path(),
            "flaky",
            &format!(
                r#"[ "$CNI_COMMAND" = DEL ] && [ -e {} ] && {{ echo '{{"code":11,"msg":"daemon down"}}'; exit 1; }}; exit 0"#,
                down.display()
            ),
        );
        let c = Cached {
            list: json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "flaky"}]}),
            bin_dirs: vec![bin.path().into()],
            container_id: "u1".into(),
            netns: String::new(),
            sandbox: String::new(),
            ifname: "eth0".into(),
            args: String::new(),
            runtime_config: Value::Null,
            result: Value::Null,
        };
        std::fs::write(pod_dir.path().join(CACHE), serde_json::to_vec(&c).unwrap()).unwrap();
        std::fs::write(&down, "").unwrap();
        assert!(del(pod_dir.path()).is_err());
        defer_del(pod_dir.path(), pending.path(), "u1").unwrap();
        // The pod's directory goes; its attachment waits.
        std::fs::remove_dir_all(pod_dir.path()).unwrap();
        assert_eq!(retry_pending(pending.path()), 1);
        assert!(pending.path().join("u1.json").exists());
        std::fs::remove_file(&down).unwrap();
        assert_eq!(retry_pending(pending.path()), 0);
        assert!(!pending.path().join("u1.json").exists());
        let dels = calls(bin.path())
            .into_iter()
            .filter(|(h, _)| h.starts_with("flaky DEL u1"))
            .count();
        assert_eq!(dels, 3, "the first try, one failed retry, one that worked");
    }

    #[test]
    fn a_hung_plugin_is_killed_at_its_deadline() {
        let bin = tempfile::tempdir().unwrap();
        plugin(bin.path(), "hangs", "sleep 30");
        let c = Cached {
            list: json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "hangs"}]}),
            bin_dirs: vec![bin.path().into()],
            container_id: "u".into(),
            netns: String::new(),
            sandbox: String::new(),
            ifname: "eth0".into(),
            args: String::new(),
            runtime_config: Value::Null,
            result: Value::Null,
        };
        let started = std::time::Instant::now();
        let err = invoke_within(
            &c,
            &c.list["plugins"][0],
            "ADD",
            &Value::Null,
            std::time::Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "CNI plugin hangs ADD: did not finish within 0.3 s; killed"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn plugin_errors_and_bad_configs_say_what_and_where() {
        let bin = tempfile::tempdir().unwrap();
        let conf = tempfile::tempdir().unwrap();
        let pod_dir = tempfile::tempdir().unwrap();
        plugin(
            bin.path(),
            "failing",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"failed to allocate","details":"range full"}'; exit 1"#,
        );
        std::fs::write(
            conf.path().join("a.conf"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"failing"}"#,
        )
        .unwrap();
        let net = Network::load(conf.path(), vec![bin.path().into()]).unwrap();
        assert_eq!(
            net.list["plugins"][0]["type"], "failing",
            "a .conf is a list of one"
        );
        let err = net
            .add(pod_dir.path(), &pod(), "/x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "CNI plugin failing ADD: failed to allocate: range full"
        );
        assert!(!pod_dir.path().join(CACHE).exists());

        std::fs::write(
            conf.path().join("a.conf"),
            r#"{"cniVersion":"1.0.0","name":"n","type":"missing"}"#,
        )
        .unwrap();
        let net = Network::load(conf.path(), vec![bin.path().into()]).unwrap();
        let err = net
            .add(pod_dir.path(), &pod(), "/x")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("CNI plugin \"missing\" not found in "),
            "{err}"
        );

        std::fs::write(
            conf.path().join("a.conf"),
            r#"{"name":"n","plugins":[{"ipam":{}}]}"#,
        )
        .unwrap();
        let err = Network::load(conf.path(), vec![]).unwrap_err().to_string();
        assert!(err.ends_with("a.conf: plugins[0] has no \"type\""), "{err}");
        std::fs::remove_file(conf.path().join("a.conf")).unwrap();
        let err = Network::load(conf.path(), vec![]).unwrap_err().to_string();
        assert!(err.starts_with("no CNI network config in"), "{err}");
    }
}
