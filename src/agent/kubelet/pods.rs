//! The pod worker: one reconcile of one pod bound to this node. It makes what the pod asks for
//! true on the host (sandbox, network, containers in order, restarts with back-off), reports
//! the status, and on deletion stops everything, cleans up, and finishes the API delete.
//! Everything it learns about containers comes from the shim's records, so a restarted agent
//! picks up where the last one was.

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::status::{self, Observed, Waiting};
use super::{spec, Kubelet};
use crate::shim::{self, protocol::Record, protocol::Request, protocol::RunRequest};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Node(String),
}

/// The pod's identity kept in its directory, so housekeeping can name a pod whose object is
/// gone.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    #[serde(default)]
    pub qos: String,
}

pub const META: &str = "pod.json";

/// A pod's cgroup as the kubelet lays them out: Guaranteed pods right under /kubepods, the
/// others under their QoS class's level.
pub fn pod_cgroup(qos: &str, uid: &str) -> String {
    match qos {
        "Guaranteed" => format!("/kubepods/pod{uid}"),
        q => format!("/kubepods/{}/pod{uid}", q.to_ascii_lowercase()),
    }
}

/// The pods this node has a directory for, with what `pod.json` says of them.
pub fn on_disk(data_dir: &Path) -> Vec<(PathBuf, PodMeta)> {
    std::fs::read_dir(data_dir.join("agent/pods"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::read(e.path().join(META))
                .ok()
                .and_then(|b| serde_json::from_slice::<PodMeta>(&b).ok())?;
            Some((e.path(), meta))
        })
        .collect()
}

/// Restart back-off of one container.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub delay: Duration,
    pub until: Instant,
}

pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long starts its back-off afresh.
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Node(format!("worker thread: {e}")))
}

pub(crate) fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

pub async fn reconcile(pod: Arc<Pod>, k: Arc<Kubelet>) -> Result<Action, Error> {
    let uid = uid_of(&pod);
    if uid.is_empty() {
        return Ok(Action::await_change());
    }
    let dir = k.pod_dir(&uid);
    if pod.metadata.deletion_timestamp.is_some() {
        return terminate(&pod, &k, &dir).await;
    }
    if k.evicted.lock().expect("evicted lock").contains(&uid) {
        // Evicted: stopped and Failed for good; only its deletion is left to handle.
        return Ok(Action::await_change());
    }
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if matches!(phase.as_str(), "Succeeded" | "Failed") && !dir.exists() {
        // Finished before this agent knew it (or after its sandbox was cleaned): nothing to do.
        return Ok(Action::await_change());
    }

    let mut obs = Observed {
        host_ip: k.cfg.node_ip.clone(),
        ..Default::default()
    };
    // The sandbox: shim, namespaces, network, /etc files.
    let sandbox = {
        let (k2, pod2, dir2) = (k.clone(), pod.clone(), dir.clone());
        blocking(move || k2.ensure_sandbox(&pod2, &dir2)).await?
    };
    match sandbox {
        Ok(ip) => {
            let host_network = pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false);
            // In CNI mode hostPorts are the plugins' (the portMappings capability).
            let builtin = k.cni.get().is_none();
            if let (true, false, Ok(pod_ip)) =
                (builtin, host_network, ip.parse::<std::net::Ipv4Addr>())
            {
                let mappings: Vec<_> = all_containers(&pod)
                    .iter()
                    .flat_map(|c| c.ports.clone().unwrap_or_default())
                    .filter_map(|p| {
                        Some(crate::network::hostports::Mapping {
                            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                            host_port: u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?,
                            pod_ip,
                            container_port: u16::try_from(p.container_port).ok()?,
                        })
                    })
                    .collect();
                let (k2, u2) = (k.clone(), uid.clone());
                blocking(move || k2.set_host_ports(&u2, mappings)).await?;
            }
            obs.pod_ip = Some(ip);
            obs.sandbox_ready = true;
        }
        Err(e) => {
            tracing::warn!(pod = %name_of(&pod), error = %e, "sandbox");
            for c in all_containers(&pod) {
                obs.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "ContainerCreating".into(),
                        message: Some(format!("failed to create pod sandbox: {e}")),
                    },
                );
            }
            k.report(&pod, &[], &obs).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }
    obs.started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0.to_string());
    if obs.started.is_none() {
        obs.started = Some(chrono::Utc::now().to_rfc3339());
    }

    let mut records = shim::read_records(&dir);
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let mut next: Option<Duration> = None;
    let mut soonest = |d: Duration| next = Some(next.map_or(d, |n: Duration| n.min(d)));

    // Init containers, in order; a restartable one (a sidecar) only has to have started.
    let mut initialized = true;
    for c in spec.init_containers.iter().flatten() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let last = latest(&records, &c.name).cloned();
        match last {
            Some(r) if r.running() => {
                if sidecar {
                    continue;
                }
                initialized = false;
                break;
            }
            Some(r) if r.exit_code == Some(0) && !sidecar => continue,
            Some(r) => {
                let init_policy = if sidecar {
                    "Always"
                } else if policy == "Never" {
                    "Never"
                } else {
                    "OnFailure"
                };
                if !should_restart(init_policy, &r) {
                    initialized = false;
                    break;
                }
                if let Some(wait) = k.backoff_wait(&uid, c, &r, &pod, &mut obs) {
                    soonest(wait);
                    initialized = false;
                    break;
                }
                k.start(&pod, c, r.attempt + 1, &dir, &mut obs).await;
                if !sidecar {
                    initialized = false;
                    break;
                }
            }
            None => {
                k.start(&pod, c, 0, &dir, &mut obs).await;
                if !sidecar {
                    initialized = false;
                    break;
                }
            }
        }
    }
    if initialized {
        for c in &spec.containers {
            let last = latest(&records, &c.name).cloned();
            match last {
                Some(r) if r.running() => {}
                Some(r) => {
                    if should_restart(&policy, &r) {
                        if let Some(wait) = k.backoff_wait(&uid, c, &r, &pod, &mut obs) {
                            soonest(wait);
                            let msg = format!(
                                "Back-off restarting failed container {} in pod {}_{}({uid})",
                                c.name,
                                pod.metadata.name.as_deref().unwrap_or(""),
                                pod.metadata.namespace.as_deref().unwrap_or("")
                            );
                            k.event(&pod, Some(&c.name), "Warning", "BackOff", msg)
                                .await;
                        } else {
                            k.start(&pod, c, r.attempt + 1, &dir, &mut obs).await;
                        }
                    }
                }
                None => k.start(&pod, c, 0, &dir, &mut obs).await,
            }
        }
    } else {
        for c in &spec.containers {
            obs.waiting.entry(c.name.clone()).or_insert(Waiting {
                reason: "PodInitializing".into(),
                message: None,
            });
        }
    }
    // Ephemeral containers (`kubectl debug`): each started once, whether or not the pod has
    // finished initializing, and never restarted, as upstream.
    if !matches!(phase.as_str(), "Succeeded" | "Failed") {
        for (c, target) in ephemeral_containers(&pod) {
            if latest(&records, &c.name).is_none() {
                k.start_in(&pod, &c, target.as_deref(), &dir, &mut obs)
                    .await;
            }
        }
    }
    for c in all_containers(&pod)
        .into_iter()
        .chain(ephemeral_containers(&pod).into_iter().map(|(c, _)| c))
    {
        if obs
            .waiting
            .get(&c.name)
            .is_some_and(|w| w.reason != "CrashLoopBackOff" && w.reason != "PodInitializing")
        {
            // A start that failed is retried after a while.
            soonest(Duration::from_secs(5));
        }
        if latest(&records, &c.name).is_none() && !obs.waiting.contains_key(&c.name) {
            // Not started yet (waiting behind an init container).
        }
    }
    // Tokens in projected volumes are renewed in place before they run out.
    match super::inputs::renew_projected(
        &k.client,
        &k.tokens,
        &pod,
        &dir,
        obs.pod_ip.as_deref(),
        &obs.host_ip,
    )
    .await
    {
        Ok(Some(secs)) => soonest(Duration::from_secs(secs.max(1) as u64)),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(pod = %name_of(&pod), error = %e, "renewing the service account token");
            soonest(Duration::from_secs(10));
        }
    }
    records = shim::read_records(&dir);
    let has_probes = spec.containers.iter().any(|c| {
        c.readiness_probe.is_some() || c.liveness_probe.is_some() || c.startup_probe.is_some()
    });
    if has_probes && k.probers.lock().expect("probers lock").insert(uid.clone()) {
        tokio::spawn(super::probes::run(k.clone(), pod.clone(), dir.clone()));
    }
    for c in &spec.containers {
        if let Some(r) = latest(&records, &c.name).filter(|r| r.running()) {
            if !k.probes.started(&uid, c, &r.id) {
                obs.not_started.insert(c.name.clone());
                obs.unready.insert(c.name.clone());
            } else if !k.probes.ready(&uid, c, &r.id) {
                obs.unready.insert(c.name.clone());
            }
        }
    }
    {
        let dir2 = dir.clone();
        let keep = records.clone();
        blocking(move || prune_old(&dir2, &keep)).await?;
    }
    k.report(&pod, &records, &obs).await?;
    Ok(match next {
        Some(d) => Action::requeue(d),
        None => Action::requeue(Duration::from_secs(300)),
    })
}

fn name_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The pod's ephemeral containers as containers, each with the container whose processes it
/// is to see (`targetContainerName`). The two types share every field a container runs with.
pub fn ephemeral_containers(pod: &Pod) -> Vec<(Container, Option<String>)> {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.ephemeral_containers.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let mut v = serde_json::to_value(e).ok()?;
            let target = v
                .as_object_mut()?
                .remove("targetContainerName")
                .and_then(|t| t.as_str().map(str::to_string));
            Some((serde_json::from_value(v).ok()?, target))
        })
        .collect()
}

pub fn all_containers(pod: &Pod) -> Vec<Container> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .into_iter()
        .flatten()
        .chain(spec.containers)
        .collect()
}

fn latest<'a>(records: &'a [Record], name: &str) -> Option<&'a Record> {
    records
        .iter()
        .filter(|r| r.name == name)
        .max_by_key(|r| r.attempt)
}

fn should_restart(policy: &str, r: &Record) -> bool {
    match policy {
        "Always" => true,
        "OnFailure" => r.exit_code != Some(0),
        _ => false,
    }
}

/// Keeps the newest two starts of each container (the current one and the one
/// `kubectl logs --previous` reads); older ones are deleted with their roots.
fn prune_old(dir: &Path, records: &[Record]) {
    let mut by_name: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_name.entry(&r.name).or_default().push(r);
    }
    for (_, mut rs) in by_name {
        rs.sort_by_key(|r| r.attempt);
        let n = rs.len();
        for r in rs.into_iter().take(n.saturating_sub(2)) {
            if r.running() {
                continue;
            }
            let _ = shim::client::call(dir, &Request::Remove { id: r.id.clone() });
            let _ = crate::image::rootfs::remove(&dir.join("rootfs").join(&r.id));
            let _ = std::fs::remove_file(&r.log_path);
        }
    }
}

impl Kubelet {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.data_dir.join("agent/pods").join(uid)
    }

    fn log_dir(&self, pod: &Pod) -> PathBuf {
        self.cfg.pod_logs_dir.join(format!(
            "{}_{}_{}",
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            pod.metadata.name.as_deref().unwrap_or(""),
            uid_of(pod)
        ))
    }

    /// Starts (or finds) the pod's shim and network; returns the pod's IP.
    fn ensure_sandbox(&self, pod: &Pod, dir: &Path) -> Result<String, String> {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let uid = uid_of(pod);
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let meta = PodMeta {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: uid.clone(),
            qos: status::qos_class(pod),
        };
        if !dir.join(META).exists() {
            std::fs::write(
                dir.join(META),
                serde_json::to_vec(&meta).unwrap_or_default(),
            )
            .map_err(|e| e.to_string())?;
        }
        let hostname = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .or_else(|| pod.metadata.name.clone())
            .unwrap_or_default();
        // The pod's cgroup, with the pod's limits, before any container is made under it.
        let qos = status::qos_class(pod);
        let pod_cgroup = pod_cgroup(&qos, &uid);
        if crate::runtime::cgroups::Cgroup::open(&pod_cgroup).is_err() {
            let mut res = spec::pod_resources(pod);
            // Devices are each container's business; the pod level allows all, as the
            // kubelet's does (under v1 a child can never allow what its parent denies, and a
            // privileged container needs everything).
            res["devices"] = serde_json::json!([{"allow": true, "access": "rwm"}]);
            let resources: oci_spec::runtime::LinuxResources =
                serde_json::from_value(res).map_err(|e| e.to_string())?;
            crate::runtime::cgroups::Cgroup::create(&pod_cgroup, Some(&resources))
                .map_err(|e| format!("pod cgroup {pod_cgroup}: {e}"))?;
        }
        if !shim::client::alive(dir) {
            if !shim::read_records(dir).is_empty() {
                // The shim died with the pod's namespaces: its containers are gone. Their
                // records stay for the status; new starts go into a new sandbox.
                tracing::warn!(pod = %meta.name, "pod sandbox lost; making a new one");
            }
            let args = shim::ShimArgs {
                dir: dir.to_path_buf(),
                runtime_root: self.cfg.runtime_root.clone(),
                new_netns: !host_network,
                new_ipc: !pod.spec.as_ref().and_then(|s| s.host_ipc).unwrap_or(false),
                new_uts: !host_network,
                hostname: Some(hostname.clone()),
                log_max_size: self.cfg.log_max_size,
                log_max_files: self.cfg.log_max_files,
                detach: true,
            };
            shim::launch(&args).map_err(|e| e.to_string())?;
        }
        let ip = if host_network {
            self.cfg.node_ip.clone()
        } else {
            let pid: i32 = std::fs::read_to_string(dir.join(shim::PID_FILE))
                .map_err(|e| e.to_string())?
                .trim()
                .parse()
                .map_err(|_| "bad shim pid file".to_string())?;
            if let Some(net) = self.cni.get() {
                return self.cni_attach(net, pod, dir, pid, &hostname, host_network);
            }
            let ns =
                std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
            let bridge = self.bridge.get().ok_or("pod network not ready")?;
            let att = bridge
                .attach(&uid, std::os::fd::AsFd::as_fd(&ns))
                .map_err(|e| format!("pod network: {e}"))?;
            att.ip.to_string()
        };
        self.write_etc_files(pod, dir, &ip, &hostname, host_network)?;
        Ok(ip)
    }

    /// The pod's network through the CNI plugins: the cached attachment while the sandbox
    /// (the shim whose network namespace it is) stays the same, else DEL of the old one and
    /// ADD for the new namespace. A pod met for the first time since the agent started is
    /// CHECKed once.
    fn cni_attach(
        &self,
        net: &crate::network::cni::Network,
        pod: &Pod,
        dir: &Path,
        shim_pid: i32,
        hostname: &str,
        host_network: bool,
    ) -> Result<String, String> {
        use crate::network::cni;
        let uid = uid_of(pod);
        let source = std::path::PathBuf::from(format!("/proc/{shim_pid}/ns/net"));
        // The cached attachment is this sandbox's only if the namespace it pinned is the
        // shim's own (a pid alone could have been reused).
        let current = cni::ns_id(&source);
        let cached = cni::Cached::load(dir).filter(|c| {
            current.as_deref() == Some(c.sandbox.as_str()) && cni::is_netns(Path::new(&c.netns))
        });
        let ip = match cached.and_then(|c| c.ip()) {
            Some(ip) => {
                let first = self
                    .cni_checked
                    .lock()
                    .expect("cni lock")
                    .insert(uid.clone());
                if first {
                    if let Err(e) = cni::check(dir) {
                        tracing::warn!(pod = %uid, error = %e, "the pod's network failed its CNI CHECK");
                    }
                }
                ip
            }
            None => {
                if let Err(e) = cni::del(dir) {
                    tracing::warn!(pod = %uid, error = %e, "CNI DEL of the pod's old sandbox");
                }
                let netns =
                    cni::pin_netns(dir, &source).map_err(|e| format!("pod network: {e}"))?;
                let netns = netns.to_string_lossy().into_owned();
                let meta = &pod.metadata;
                let mappings = all_containers(pod)
                    .iter()
                    .flat_map(|c| c.ports.clone().unwrap_or_default())
                    .filter_map(|p| {
                        Some(cni::PortMapping {
                            host_port: u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?,
                            container_port: u16::try_from(p.container_port).ok()?,
                            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                        })
                    })
                    .collect();
                let who = cni::Pod {
                    namespace: meta.namespace.clone().unwrap_or_default(),
                    name: meta.name.clone().unwrap_or_default(),
                    uid: uid.clone(),
                    port_mappings: mappings,
                };
                let done = net
                    .add(dir, &who, &netns)
                    .map_err(|e| format!("pod network: {e}"))?;
                self.cni_checked
                    .lock()
                    .expect("cni lock")
                    .insert(uid.clone());
                done.ip()
                    .ok_or_else(|| "pod network: the CNI result has no IPv4 address".to_string())?
            }
        };
        let ip = ip.to_string();
        self.write_etc_files(pod, dir, &ip, hostname, host_network)?;
        Ok(ip)
    }

    fn write_etc_files(
        &self,
        pod: &Pod,
        dir: &Path,
        ip: &str,
        hostname: &str,
        host_network: bool,
    ) -> Result<(), String> {
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).map_err(|e| e.to_string())?;
        let spec = pod.spec.clone().unwrap_or_default();
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut hosts = String::from("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        if !host_network {
            match &spec.subdomain {
                Some(sub) if !sub.is_empty() => hosts.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{ns}.svc.{}\t{hostname}\n",
                    self.cfg.cluster_domain
                )),
                _ => hosts.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
        for a in spec.host_aliases.iter().flatten() {
            if let Some(names) = &a.hostnames {
                hosts.push_str(&format!(
                    "\n# Entries added by HostAliases.\n{}\t{}\n",
                    a.ip,
                    names.join("\t")
                ));
            }
        }
        let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
        let cluster_first = match policy {
            "ClusterFirst" => !host_network,
            "ClusterFirstWithHostNet" => true,
            _ => false,
        };
        let mut resolv = String::new();
        let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
            if cluster_first {
                (
                    vec![self.cfg.cluster_dns.clone()],
                    vec![
                        format!("{ns}.svc.{}", self.cfg.cluster_domain),
                        format!("svc.{}", self.cfg.cluster_domain),
                        self.cfg.cluster_domain.clone(),
                    ],
                    vec!["ndots:5".into()],
                )
            } else if policy == "None" {
                (vec![], vec![], vec![])
            } else {
                host_resolv()
            };
        if let Some(c) = &spec.dns_config {
            servers.extend(c.nameservers.clone().unwrap_or_default());
            searches.extend(c.searches.clone().unwrap_or_default());
            for o in c.options.iter().flatten() {
                let name = o.name.clone().unwrap_or_default();
                options.retain(|x| x.split(':').next() != Some(&name));
                options.push(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                });
            }
        }
        if !searches.is_empty() {
            resolv.push_str(&format!("search {}\n", searches.join(" ")));
        }
        for s in &servers {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
        if !options.is_empty() {
            resolv.push_str(&format!("options {}\n", options.join(" ")));
        }
        let host_name = if host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            hostname.to_string()
        };
        for (f, text) in [
            ("hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", format!("{host_name}\n")),
        ] {
            std::fs::write(etc.join(f), text).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The wait left before `c` may start again, with the CrashLoopBackOff waiting state set;
    /// `None` when it may start now (the back-off then grows for the next time).
    fn backoff_wait(
        &self,
        uid: &str,
        c: &Container,
        r: &Record,
        pod: &Pod,
        obs: &mut Observed,
    ) -> Option<Duration> {
        let key = (uid.to_string(), c.name.clone());
        let mut table = self.backoff.lock().expect("backoff lock");
        let now = Instant::now();
        let ran = match (
            chrono::DateTime::parse_from_rfc3339(&r.started_at),
            r.finished_at
                .as_deref()
                .map(chrono::DateTime::parse_from_rfc3339),
        ) {
            (Ok(a), Some(Ok(b))) => (b - a).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        match table.get(&key).copied() {
            Some(b) if ran < BACKOFF_RESET && now < b.until => {
                let left = b.until - now;
                obs.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: Some(format!(
                            "back-off {}s restarting failed container={} pod={}_{}({})",
                            b.delay.as_secs(),
                            c.name,
                            pod.metadata.name.as_deref().unwrap_or(""),
                            pod.metadata.namespace.as_deref().unwrap_or(""),
                            uid
                        )),
                    },
                );
                Some(left)
            }
            prior => {
                let delay = match prior {
                    Some(b) if ran < BACKOFF_RESET => (b.delay * 2).min(BACKOFF_MAX),
                    _ => BACKOFF_INITIAL,
                };
                // The next restart waits `delay` from this one.
                table.insert(
                    key,
                    Backoff {
                        delay,
                        until: now + delay,
                    },
                );
                None
            }
        }
    }

    /// Starts start number `attempt` of container `c`; a failure becomes its waiting state.
    async fn start(&self, pod: &Pod, c: &Container, attempt: u32, dir: &Path, obs: &mut Observed) {
        self.start_with(pod, c, attempt, None, dir, obs).await
    }

    /// Starts an ephemeral container, in the pid namespace of `target` when one is named.
    async fn start_in(
        &self,
        pod: &Pod,
        c: &Container,
        target: Option<&str>,
        dir: &Path,
        obs: &mut Observed,
    ) {
        let Some(target) = target else {
            return self.start_with(pod, c, 0, None, dir, obs).await;
        };
        let records = shim::read_records(dir);
        match latest(&records, target).filter(|r| r.running()) {
            Some(r) => {
                let ns = PathBuf::from(format!("/proc/{}/ns/pid", r.pid));
                self.start_with(pod, c, 0, Some(ns), dir, obs).await
            }
            None => {
                obs.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "ContainerCreating".into(),
                        message: Some(format!("target container {target:?} is not running")),
                    },
                );
            }
        }
    }

    async fn start_with(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        pid_namespace: Option<PathBuf>,
        dir: &Path,
        obs: &mut Observed,
    ) {
        match self
            .try_start(pod, c, attempt, pid_namespace, dir, obs)
            .await
        {
            Ok(()) => {
                let name = &c.name;
                self.event(
                    pod,
                    Some(name),
                    "Normal",
                    "Created",
                    format!("Created container: {name}"),
                )
                .await;
                self.event(
                    pod,
                    Some(name),
                    "Normal",
                    "Started",
                    format!("Started container {name}"),
                )
                .await;
                if let Err(msg) = self.post_start(pod, c, dir).await {
                    tracing::info!(pod = %name_of(pod), container = %name, %msg, "postStart hook failed");
                    self.event(
                        pod,
                        Some(name),
                        "Warning",
                        "FailedPostStartHook",
                        msg.clone(),
                    )
                    .await;
                    obs.waiting.insert(
                        name.clone(),
                        Waiting {
                            reason: "PostStartHookError".into(),
                            message: Some(msg),
                        },
                    );
                }
            }
            Err(w) => {
                tracing::info!(pod = %name_of(pod), container = %c.name, reason = %w.reason, message = ?w.message, "container not started");
                let msg = w.message.clone().unwrap_or_default();
                let (reason, text) = match w.reason.as_str() {
                    "ContainerCreating" => ("FailedMount", msg),
                    "ErrImagePull" | "ErrImageNeverPull" | "InvalidImageName" => ("Failed", msg),
                    _ => ("Failed", format!("Error: {msg}")),
                };
                self.event(pod, Some(&c.name), "Warning", reason, text)
                    .await;
                obs.waiting.insert(c.name.clone(), w);
            }
        }
    }

    /// Runs the container's postStart hook, if it has one, as upstream does: after the
    /// container started and before the next container starts. A failed hook kills the
    /// container (restartPolicy then decides) and its message says why.
    async fn post_start(&self, pod: &Pod, c: &Container, dir: &Path) -> Result<(), String> {
        let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
            return Ok(());
        };
        let records = shim::read_records(dir);
        let Some(id) = latest(&records, &c.name).map(|r| r.id.clone()) else {
            return Ok(());
        };
        let who = format!(
            "for Container {:?} in Pod \"{}_{}({})\"",
            c.name,
            pod.metadata.name.as_deref().unwrap_or(""),
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.uid.as_deref().unwrap_or("")
        );
        let failure = if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            None
        } else if let Some(e) = &h.exec {
            let cmd = e.command.clone().unwrap_or_default();
            let (d, id2, argv) = (dir.to_path_buf(), id.clone(), cmd.clone());
            let code = blocking(move || {
                shim::client::exec(&d, &id2, argv, false, false)
                    .and_then(|x| shim::client::wait_exit(&x.conn))
            })
            .await;
            match code {
                Ok(Ok(0)) => None,
                Ok(Ok(n)) => Some(format!(
                    "Exec lifecycle hook ({cmd:?}) {who} failed - error: command '{}' exited with {n}, message: \"\"",
                    cmd.join(" ")
                )),
                Ok(Err(e)) => Some(format!(
                    "Exec lifecycle hook ({cmd:?}) {who} failed - error: {e}, message: \"\""
                )),
                Err(e) => Some(format!("Exec lifecycle hook ({cmd:?}) {who} failed - error: {e}")),
            }
        } else {
            let probe = k8s_openapi::api::core::v1::Probe {
                http_get: h.http_get.clone(),
                tcp_socket: h.tcp_socket.clone(),
                timeout_seconds: Some(POST_START_TIMEOUT_SECONDS),
                ..Default::default()
            };
            if super::probes::check(self, pod, dir, &id, &probe).await {
                None
            } else {
                let path = h
                    .http_get
                    .as_ref()
                    .and_then(|g| g.path.clone())
                    .unwrap_or_default();
                Some(format!(
                    "HTTP lifecycle hook ({path}) {who} failed - error: no successful response"
                ))
            }
        };
        let Some(msg) = failure else { return Ok(()) };
        let d = dir.to_path_buf();
        let _ = blocking(move || {
            shim::client::call(
                &d,
                &shim::protocol::Request::Kill {
                    id,
                    signal: libc::SIGKILL,
                },
            )
        })
        .await;
        Err(msg)
    }

    async fn try_start(
        &self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        pid_namespace: Option<PathBuf>,
        dir: &Path,
        obs: &mut Observed,
    ) -> Result<(), Waiting> {
        let w = |reason: &str, message: String| Waiting {
            reason: reason.into(),
            message: Some(message),
        };
        let image_name = c.image.clone().unwrap_or_default();
        if image_name.is_empty() {
            return Err(w("InvalidImageName", "no image given".into()));
        }
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            if image_name.ends_with(":latest")
                || !image_name.rsplit('/').next().unwrap_or("").contains(':')
            {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let opts = crate::image::pull::PullOptions {
            registries: self.registries.clone(),
            progress: false,
        };
        let present = {
            let d = self.cfg.data_dir.clone();
            let n = image_name.clone();
            blocking(move || {
                crate::image::Store::open(&d)
                    .map(|s| crate::image::find(&s, &n).is_ok())
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false)
        };
        if present && policy != "Always" {
            let msg = format!("Container image \"{image_name}\" already present on machine");
            self.event(pod, Some(&c.name), "Normal", "Pulled", msg)
                .await;
        } else if policy != "Never" {
            let msg = format!("Pulling image \"{image_name}\"");
            self.event(pod, Some(&c.name), "Normal", "Pulling", msg)
                .await;
        }
        let pull_started = Instant::now();
        let prepared = if policy == "Never" && !present {
            return Err(w(
                "ErrImageNeverPull",
                format!(
                    "Container image \"{image_name}\" is not present with pull policy of Never"
                ),
            ));
        } else {
            // An image already here is used as is unless the policy is Always and the registry
            // answers; with no registry reachable a present image still runs.
            let always = policy == "Always" && !present;
            match crate::image::ensure(&self.cfg.data_dir, &image_name, always, &opts).await {
                Ok(p) => p,
                Err(e) if policy == "Always" && present => {
                    tracing::debug!(error = %e, "pull failed; using the image present");
                    let d = self.cfg.data_dir.clone();
                    let n = image_name.clone();
                    blocking(move || crate::image::prepare(&d, &n))
                        .await
                        .map_err(|e| w("ErrImagePull", e.to_string()))?
                        .map_err(|e| w("ErrImagePull", e.to_string()))?
                }
                Err(e) => {
                    return Err(w(
                        "ErrImagePull",
                        format!("failed to pull and unpack image \"{image_name}\": {e:#}"),
                    ))
                }
            }
        };
        if !present {
            let took = pull_started.elapsed().as_secs_f64();
            let msg = format!("Successfully pulled image \"{image_name}\" in {took:.3}s");
            self.event(pod, Some(&c.name), "Normal", "Pulled", msg)
                .await;
        }
        // The container's lease keeps its layers whatever happens to the image's name.
        let (d, lease_id, p2) = (
            self.cfg.data_dir.clone(),
            format!("{}_{}", uid_of(pod), c.name),
            prepared.clone(),
        );
        blocking(move || crate::image::lease(&d, &lease_id, &p2))
            .await
            .map_err(|e| w("CreateContainerError", e.to_string()))?
            .map_err(|e| w("CreateContainerError", format!("image lease: {e}")))?;
        obs.images.insert(
            c.name.clone(),
            (
                prepared.name.clone(),
                format!(
                    "{}@{}",
                    prepared.name.split(':').next().unwrap_or(&prepared.name),
                    prepared.digest
                ),
            ),
        );
        let env = super::inputs::env(&self.client, pod, c, obs.pod_ip.as_deref(), &obs.host_ip)
            .await
            .map_err(|e| w("CreateContainerConfigError", e))?;
        let volumes = super::inputs::volumes(
            &self.client,
            &self.tokens,
            pod,
            dir,
            obs.pod_ip.as_deref(),
            &obs.host_ip,
        )
        .await
        .map_err(|e| w("ContainerCreating", e))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let qos = status::qos_class(pod);
        let uid = uid_of(pod);
        let cgroup = format!("{}/{id}", pod_cgroup(&qos, &uid));
        let log_path = self
            .log_dir(pod)
            .join(&c.name)
            .join(format!("{attempt}.log"));
        let (pod2, c2, dir2) = (pod.clone(), c.clone(), dir.to_path_buf());
        let started = blocking(move || -> Result<(), Waiting> {
            let bundle = dir2.join("rootfs").join(&id);
            let rootfs = crate::image::rootfs::mount(&prepared.lower_dirs, &bundle)
                .map_err(|e| w("CreateContainerError", e.to_string()))?;
            let term = bundle.join("termination-log");
            let _ = std::fs::write(&term, b"");
            let inputs = spec::Inputs {
                image_user: image_user(&rootfs, prepared.config.user.as_deref()),
                rootfs,
                env,
                etc_files: ["hosts", "hostname", "resolv.conf"]
                    .iter()
                    .map(|f| (format!("/etc/{f}"), dir2.join("etc").join(f)))
                    .collect(),
                volumes,
                cgroups_path: cgroup,
                termination_log: Some(term),
                pid_namespace,
            };
            let spec = spec::build(&pod2, &c2, &prepared.config, &inputs)
                .map_err(|e| w("CreateContainerConfigError", e.to_string()))?;
            let req = Request::Run(RunRequest {
                id: id.clone(),
                name: c2.name.clone(),
                attempt,
                bundle: bundle.clone(),
                spec,
                log_path,
                stdin: c2.stdin.unwrap_or(false),
                stdin_once: c2.stdin_once.unwrap_or(false),
            });
            shim::client::call(&dir2, &req).map_err(|e| {
                let _ = crate::image::rootfs::remove(&bundle);
                w("RunContainerError", e.to_string())
            })?;
            Ok(())
        })
        .await
        .map_err(|e| w("RunContainerError", e.to_string()))?;
        started
    }

    /// Publishes the pod's status if it changed.
    async fn report(&self, pod: &Pod, records: &[Record], obs: &Observed) -> Result<(), Error> {
        self.publish(pod, status::pod_status(pod, records, obs))
            .await
    }

    /// Writes `st` as the pod's status unless it is what the API already has.
    async fn publish(
        &self,
        pod: &Pod,
        st: k8s_openapi::api::core::v1::PodStatus,
    ) -> Result<(), Error> {
        if !status::differs(pod.status.as_ref(), &st) {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let body = serde_json::json!({"status": st});
        match api
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or(""),
                &PatchParams::default(),
                &Patch::Merge(&body),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// uid/gid of an image's named user from its /etc/passwd (numeric users need no lookup).
fn image_user(rootfs: &Path, user: Option<&str>) -> Option<(u32, u32)> {
    let user = user.filter(|u| !u.is_empty())?;
    let (name, group) = user.split_once(':').unwrap_or((user, ""));
    if name.parse::<u32>().is_ok() && (group.is_empty() || group.parse::<u32>().is_ok()) {
        return None;
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    let (uid, gid) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && (f[0] == name || f[2] == name))
            .then(|| (f[2].parse().ok(), f[3].parse().ok()))
    })?;
    let mut gid: u32 = gid?;
    if !group.is_empty() {
        gid = group.parse().ok().or_else(|| {
            let groups = std::fs::read_to_string(rootfs.join("etc/group")).ok()?;
            groups.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[0] == group)
                    .then(|| f[2].parse().ok())
                    .flatten()
            })
        })?;
    }
    Some((uid?, gid))
}

fn host_resolv() -> (Vec<String>, Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (mut s, mut d, mut o) = (Vec::new(), Vec::new(), Vec::new());
    for l in text.lines() {
        let mut w = l.split_whitespace();
        match w.next() {
            Some("nameserver") => s.extend(w.map(str::to_string)),
            Some("search") | Some("domain") => d.extend(w.map(str::to_string)),
            Some("options") => o.extend(w.map(str::to_string)),
            _ => {}
        }
    }
    (s, d, o)
}

/// How long an httpGet or tcpSocket postStart hook may take (exec and sleep hooks run to
/// their end, as upstream's do).
const POST_START_TIMEOUT_SECONDS: i32 = 300;

/// Runs the preStop hooks of the running containers, all at once, within the grace period
/// (exec through the shim, httpGet and tcpSocket to the pod, sleep).
async fn pre_stop_hooks(k: &Arc<Kubelet>, pod: &Pod, dir: &Path, deadline: Instant) {
    let records = shim::read_records(dir);
    let mut hooks = Vec::new();
    for c in all_containers(pod) {
        let Some(h) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
            continue;
        };
        let Some(r) = latest(&records, &c.name).filter(|r| r.running()).cloned() else {
            continue;
        };
        let left = deadline.saturating_duration_since(Instant::now()).as_secs() as i32;
        let (k, pod, dir) = (k.clone(), pod.clone(), dir.to_path_buf());
        hooks.push(async move {
            if let Some(s) = &h.sleep {
                tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
                return;
            }
            // A hook is a probe that runs once, with the rest of the grace period as timeout.
            let probe = k8s_openapi::api::core::v1::Probe {
                exec: h.exec.clone(),
                http_get: h.http_get.clone(),
                tcp_socket: h.tcp_socket.clone(),
                timeout_seconds: Some(left.max(1)),
                ..Default::default()
            };
            if !super::probes::check(&k, &pod, &dir, &r.id, &probe).await {
                let msg = format!("PreStopHook failed for container {}", c.name);
                k.event(&pod, Some(&c.name), "Warning", "FailedPreStopHook", msg)
                    .await;
            }
        });
    }
    let _ = tokio::time::timeout_at(deadline.into(), futures::future::join_all(hooks)).await;
}

/// Graceful stop of a pod being deleted: preStop hooks, SIGTERM, the rest of the grace
/// period, SIGKILL; then the sandbox goes and the API delete is finished.
async fn terminate(pod: &Pod, k: &Arc<Kubelet>, dir: &Path) -> Result<Action, Error> {
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0) as u64;
    let deadline = Instant::now() + Duration::from_secs(grace);
    if dir.exists() {
        pre_stop_hooks(k, pod, dir, deadline).await;
        let dir2 = dir.to_path_buf();
        let stopped = blocking(move || {
            let mut names = Vec::new();
            for r in shim::read_records(&dir2).iter().filter(|r| r.running()) {
                let kill = Request::Kill {
                    id: r.id.clone(),
                    signal: libc::SIGTERM,
                };
                let _ = shim::client::call(&dir2, &kill);
                names.push(r.name.clone());
            }
            names
        })
        .await?;
        for name in &stopped {
            k.event(
                pod,
                Some(name),
                "Normal",
                "Killing",
                format!("Stopping container {name}"),
            )
            .await;
        }
        while Instant::now() < deadline && shim::read_records(dir).iter().any(Record::running) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let obs = Observed {
            pod_ip: pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
            host_ip: k.cfg.node_ip.clone(),
            ..Default::default()
        };
        // The grace period is over: what still runs is killed now, so the status below can
        // say how every container ended.
        let dir2 = dir.to_path_buf();
        blocking(move || {
            for r in shim::read_records(&dir2).iter().filter(|r| r.running()) {
                let kill = Request::Kill {
                    id: r.id.clone(),
                    signal: libc::SIGKILL,
                };
                let _ = shim::client::call(&dir2, &kill);
            }
        })
        .await?;
        let killed = Instant::now() + Duration::from_secs(2);
        while Instant::now() < killed && shim::read_records(dir).iter().any(Record::running) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let records = shim::read_records(dir);
        if let Some(st) = status::deleted_pod_status(pod, &records, &obs) {
            k.publish(pod, st).await?;
        }
        let (k2, dir2, uid) = (k.clone(), dir.to_path_buf(), uid_of(pod));
        blocking(move || k2.teardown(&uid, &dir2)).await?;
    }
    let _ = std::fs::remove_dir_all(k.log_dir(pod));
    let api: Api<Pod> = Api::namespaced(
        k.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api
        .delete(pod.metadata.name.as_deref().unwrap_or(""), &dp)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    k.backoff
        .lock()
        .expect("backoff lock")
        .retain(|(u, _), _| *u != uid_of(pod));
    k.probers.lock().expect("probers lock").remove(&uid_of(pod));
    k.events.forget(&uid_of(pod));
    Ok(Action::await_change())
}

impl Kubelet {
    /// Removes everything the pod had on this node (see [`teardown`]).
    pub fn teardown(&self, uid: &str, dir: &Path) {
        self.set_host_ports(uid, Vec::new());
        self.tokens.forget(uid);
        let meta = std::fs::read(dir.join(META))
            .ok()
            .and_then(|b| serde_json::from_slice::<PodMeta>(&b).ok());
        teardown(uid, dir, self.bridge.get(), &self.cfg.data_dir);
        if let Some(m) = meta {
            let logs = self
                .cfg
                .pod_logs_dir
                .join(format!("{}_{}_{}", m.namespace, m.name, m.uid));
            let _ = std::fs::remove_dir_all(logs);
        }
    }
}

/// Removes everything a pod had on this node: containers (via the shim's shutdown, or by
/// killing a shim that does not answer), the veth and address, roots, volumes, the pod cgroup
/// and the pod's directory.
/// Where attachments whose CNI DEL failed wait for another try (`cni::retry_pending`).
pub fn cni_pending(data_dir: &Path) -> PathBuf {
    data_dir.join("agent/cni-pending")
}

pub fn teardown(
    uid: &str,
    dir: &Path,
    bridge: Option<&crate::network::pod::Bridge>,
    data_dir: &Path,
) {
    // CNI plugins are told first, while the sandbox's namespace still exists (as a CRI
    // runtime stops a sandbox's network before its processes).
    if let Err(e) = crate::network::cni::del(dir) {
        tracing::warn!(uid, error = %e, "CNI DEL of the pod's network: retried later");
        if let Err(e) = crate::network::cni::defer_del(dir, &cni_pending(data_dir), uid) {
            tracing::warn!(uid, error = %e, "keeping the pod's CNI attachment for a retry");
        }
    }
    crate::network::cni::unpin_netns(dir);
    if shim::client::alive(dir) {
        let _ = shim::client::call(dir, &Request::Shutdown);
        let deadline = Instant::now() + Duration::from_secs(15);
        while dir.join(shim::SOCKET).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    } else if let Some(pid) = std::fs::read_to_string(dir.join(shim::PID_FILE))
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    match bridge {
        Some(b) => {
            if let Err(e) = b.detach(uid) {
                tracing::warn!(uid, error = %e, "removing the pod's network");
            }
        }
        None => {
            if let Ok(mut nl) = crate::network::netlink::Netlink::open() {
                if let Ok(Some(l)) = nl.link(&crate::network::pod::host_ifname(uid)) {
                    let _ = nl.delete_link(l.index);
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("rootfs")) {
        for e in entries.flatten() {
            let _ = crate::image::rootfs::remove(&e.path());
        }
    }
    if let Ok(entries) = std::fs::read_dir(dir.join("volumes/empty-dir")) {
        for e in entries.flatten() {
            if crate::image::rootfs::is_mounted(&e.path()) {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    for q in ["", "burstable/", "besteffort/"] {
        let path = format!("/kubepods/{q}pod{uid}");
        if let Ok(cg) = crate::runtime::cgroups::Cgroup::open(&path) {
            let _ = cg.destroy();
        }
    }
    // The containers are gone: their images may be collected now.
    if let Err(e) = crate::image::release(data_dir, &format!("{uid}_")) {
        tracing::warn!(uid, error = %e, "releasing the pod's image leases");
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(uid, error = %e, "removing the pod directory");
        }
    }
}
