//! The kubelet: registers this node, keeps its Lease and status fresh, and runs the pods bound
//! to it. Pods are reconciled by a kube-rs controller over a watch of `spec.nodeName=<node>`;
//! a loop over the shims' exit records (the PLEG's role) wakes a pod's reconcile when one of
//! its containers ends, and housekeeping removes what is left of pods whose objects are gone.
//! docs/kubelet.md follows a pod through it.

pub mod events;
pub mod eviction;
pub mod exec;
pub mod exec_spdy;
pub mod fdio;
pub mod grpc_health;
pub mod inputs;
pub mod logs;
pub mod node;
pub mod pods;
pub mod portforward;
pub mod probes;
pub mod server;
pub mod spdy;
pub mod spdy_conn;
pub mod spec;
pub mod static_pods;
pub mod stats;
pub mod status;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::network::{pod::Bridge, Cidr};

/// The Kubernetes version this kubelet speaks.
pub const KUBELET_VERSION: &str = "v1.33.0-nanokube";

/// Everything the kubelet is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub node_ip: String,
    pub data_dir: PathBuf,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub cluster_dns: String,
    pub cluster_domain: String,
    pub pod_logs_dir: PathBuf,
    pub runtime_root: PathBuf,
    pub bridge_name: String,
    pub log_max_size: u64,
    pub log_max_files: usize,
    /// TLS for the kubelet's HTTPS port; without it the port is not opened.
    pub serving: Option<Arc<rustls::ServerConfig>>,
    pub kubelet_port: u16,
    /// The whole pod range (all nodes): traffic leaving it is masqueraded.
    pub cluster_cidr: Cidr,
    /// The Service range: the proxy drops traffic to addresses in it that no Service holds.
    pub service_cidr: Cidr,
    pub proxy_mode: crate::network::proxy::Backend,
    pub flannel_backend: crate::network::routes::Backend,
    pub image_gc: ImageGc,
    /// Node-pressure eviction's hard thresholds, and how often they are checked.
    pub eviction_hard: Vec<eviction::Threshold>,
    /// Soft thresholds, each with its grace period.
    pub eviction_soft: Vec<eviction::Threshold>,
    /// Seconds: the cap on an evicted pod's grace period under a soft threshold (0: none).
    pub eviction_max_pod_grace: u64,
    pub eviction_interval: Duration,
    /// The pressure conditions the eviction manager found, for the node's status.
    pub pressure: Arc<Mutex<eviction::Pressure>>,
    /// CNI mode: the config directory and the plugins' directories.
    pub cni: Option<(PathBuf, Vec<PathBuf>)>,
}

/// The kubelet's shared state.
pub struct Kubelet {
    pub cfg: Config,
    pub client: kube::Client,
    pub bridge: OnceLock<Bridge>,
    /// Pods (by uid) evicted by this agent: stopped for good.
    pub evicted: Mutex<std::collections::HashSet<String>>,
    /// The stats summary's cpu samples, for its rates.
    pub stats: stats::Samples,
    /// When this kubelet started (the summary's node startTime).
    pub started_at: String,
    /// The CNI network, in CNI mode (then there is no bridge).
    pub cni: OnceLock<crate::network::cni::Network>,
    /// Pods whose CNI attachment was CHECKed since this agent started (once each: the pods it
    /// re-adopted, whose network an agent restart should not have disturbed).
    pub cni_checked: Mutex<std::collections::HashSet<String>>,
    pub backoff: Mutex<HashMap<(String, String), pods::Backoff>>,
    pub registries: crate::image::config::RegistriesConfig,
    pub probes: probes::Results,
    pub events: events::Recorder,
    /// Pods (by uid) whose probe task runs.
    pub probers: Mutex<std::collections::HashSet<String>>,
    /// hostPort mappings by pod uid; the nftables table is rebuilt when they change.
    pub host_ports: Mutex<BTreeMap<String, Vec<crate::network::hostports::Mapping>>>,
    /// Service account tokens held for the pods' projected volumes.
    pub tokens: inputs::Tokens,
    /// Wakes a pod's reconcile (probe results, exits).
    pub waker: OnceLock<futures::channel::mpsc::UnboundedSender<ObjectRef<Pod>>>,
}

impl Kubelet {
    /// Records an event about a container of `pod`.
    pub async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: &'static str,
        reason: &'static str,
        message: String,
    ) {
        let note = events::Note {
            field_path: container.map(|c| events::container_path(pod, c)),
            kind,
            reason,
            message,
        };
        self.events
            .record(&self.client, &self.cfg.node_name, pod, note)
            .await;
    }

    /// Sets the hostPort mappings of pod `uid` (none: forget it) and rebuilds the table if
    /// anything changed.
    pub fn set_host_ports(&self, uid: &str, mappings: Vec<crate::network::hostports::Mapping>) {
        let mut table = self.host_ports.lock().expect("hostports lock");
        let changed = if mappings.is_empty() {
            table.remove(uid).is_some()
        } else {
            table.insert(uid.to_string(), mappings.clone()).as_ref() != Some(&mappings)
        };
        if changed {
            let all: std::collections::BTreeSet<_> = table.values().flatten().cloned().collect();
            if let Err(e) = crate::network::hostports::apply(&all) {
                tracing::warn!(error = %e, "hostPort rules");
            }
        }
    }

    /// Asks for a reconcile of `pod` soon.
    pub fn wake(&self, pod: &Pod) {
        if let (Some(w), Some(name)) = (self.waker.get(), pod.metadata.name.as_deref()) {
            let r =
                ObjectRef::new(name).within(pod.metadata.namespace.as_deref().unwrap_or("default"));
            let _ = w.unbounded_send(r);
        }
    }
}

impl std::fmt::Debug for Kubelet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelet")
            .field("node", &self.cfg.node_name)
            .finish()
    }
}

/// Runs the kubelet until the process ends.
pub async fn run(cfg: Config, client: kube::Client) -> anyhow::Result<()> {
    let registries_path = cfg.data_dir.join("agent/etc/registries.yaml");
    let registries = if registries_path.exists() {
        crate::image::config::RegistriesConfig::load(&registries_path)?
    } else {
        crate::image::config::RegistriesConfig::default()
    };
    {
        let d = cfg.data_dir.clone();
        match tokio::task::spawn_blocking(move || crate::image::import_dir_tarballs(&d)).await? {
            Ok(imported) if !imported.is_empty() => {
                tracing::info!(images = imported.len(), "imported the air-gap images")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "air-gap images"),
        }
    }
    let k = Arc::new(Kubelet {
        cfg: cfg.clone(),
        client: client.clone(),
        bridge: OnceLock::new(),
        stats: Default::default(),
        evicted: Default::default(),
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cni: OnceLock::new(),
        cni_checked: Mutex::new(Default::default()),
        backoff: Mutex::new(HashMap::new()),
        registries,
        probes: probes::Results::default(),
        events: events::Recorder::default(),
        probers: Mutex::new(Default::default()),
        waker: OnceLock::new(),
        tokens: inputs::Tokens::default(),
        host_ports: Mutex::new(BTreeMap::new()),
    });
    let nodes: Api<Node> = Api::all(client.clone());
    let node = loop {
        match node::register(&nodes, &cfg).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "registering the node; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    tracing::info!(node = %cfg.node_name, "node registered");
    // The pod range comes from the server (its node IPAM controller).
    let cidr = loop {
        match nodes.get(&cfg.node_name).await {
            Ok(n) => {
                if let Some(c) = n.spec.and_then(|s| s.pod_cidr) {
                    break c;
                }
            }
            Err(e) => tracing::debug!(error = %e, "waiting for the node's podCIDR"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let range: Cidr = cidr
        .parse()
        .map_err(|e| anyhow::anyhow!("podCIDR {cidr}: {e}"))?;
    let vxlan = if let Some((conf_dir, bin_dirs)) = cfg.cni.clone() {
        // The node is Ready once a network config can be read, as the kubelet waits for one.
        let mut said = false;
        let net = loop {
            let (c, b) = (conf_dir.clone(), bin_dirs.clone());
            match tokio::task::spawn_blocking(move || crate::network::cni::Network::load(&c, b))
                .await?
            {
                Ok(n) => break n,
                Err(e) if !said => {
                    tracing::warn!(error = %e, "network plugin not ready: waiting for a CNI config");
                    said = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        tracing::info!(file = %net.file.display(), "pods are networked by CNI plugins");
        let _ = k.cni.set(net);
        None
    } else {
        let (name, ipam_dir) = (cfg.bridge_name.clone(), cfg.data_dir.join("agent/ipam"));
        let mut bridge =
            tokio::task::spawn_blocking(move || Bridge::ensure(&name, range, &ipam_dir)).await??;
        let vxlan = match cfg.flannel_backend {
            crate::network::routes::Backend::HostGw => None,
            crate::network::routes::Backend::Vxlan => {
                let local: std::net::Ipv4Addr = cfg.node_ip.parse().map_err(|_| {
                    anyhow::anyhow!("vxlan needs an IPv4 --node-ip, not {}", cfg.node_ip)
                })?;
                let vx = tokio::task::spawn_blocking(move || {
                    crate::network::vxlan::Vxlan::ensure(local, range)
                })
                .await??;
                bridge.mtu = Some(vx.mtu);
                Some(vx)
            }
        };
        let _ = k.bridge.set(bridge);
        publish_backend(&nodes, &cfg, vxlan.as_ref()).await?;
        vxlan
    };
    node::post_status(&nodes, &cfg, true).await?;
    tracing::info!(node = %cfg.node_name, podcidr = %cidr, "node ready");

    if let Some(tls) = cfg.serving.clone() {
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", cfg.kubelet_port)).await?;
        tokio::spawn(server::serve(k.clone(), listener, tls));
    }
    // In CNI mode the plugins connect the nodes; routes of ours would override theirs.
    if cfg.cni.is_none() {
        tokio::spawn(pod_routes(
            client.clone(),
            cfg.node_name.clone(),
            range,
            vxlan,
        ));
    }
    tokio::spawn(stats::sampler(k.clone()));
    tokio::spawn(static_pods::run(
        client.clone(),
        cfg.data_dir.clone(),
        cfg.node_name.clone(),
    ));
    let cluster = cfg.cluster_cidr;
    if let Err(e) =
        tokio::task::spawn_blocking(move || crate::network::masquerade::ensure(cluster)).await?
    {
        tracing::warn!(error = %e, "egress masquerade: pods cannot reach beyond the cluster");
    }
    tokio::spawn(crate::agent::proxy::run(
        crate::agent::proxy::Config {
            node_name: cfg.node_name.clone(),
            params: crate::network::proxy::Params {
                cluster_cidr: cfg.cluster_cidr,
                service_cidr: cfg.service_cidr,
            },
            cluster_dns: cfg.cluster_dns.parse().ok(),
            backend: cfg.proxy_mode,
        },
        client.clone(),
    ));
    tokio::spawn(crate::agent::netpol::run(
        cfg.node_name.clone(),
        client.clone(),
        cfg.proxy_mode,
    ));
    let leases: Api<Lease> = Api::namespaced(client.clone(), node::LEASE_NAMESPACE);
    let (cfg2, node2) = (cfg.clone(), node.clone());
    tokio::spawn(async move {
        let mut last_status = tokio::time::Instant::now();
        loop {
            if let Err(e) = node::renew_lease(&leases, &cfg2, &node2).await {
                tracing::warn!(error = %e, "renewing the node lease");
            }
            if last_status.elapsed() >= node::STATUS_EVERY {
                if let Err(e) = node::post_status(&nodes, &cfg2, true).await {
                    tracing::warn!(error = %e, "posting node status");
                }
                last_status = tokio::time::Instant::now();
            }
            tokio::time::sleep(node::LEASE_RENEW).await;
        }
    });

    let pods: Api<Pod> = Api::all(client.clone());
    let wc = watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name));
    let (trigger, triggered) = futures::channel::mpsc::unbounded::<ObjectRef<Pod>>();
    let controller = Controller::new(pods, wc);
    let store = controller.store();
    let _ = k.waker.set(trigger.clone());
    tokio::spawn(eviction::run(k.clone(), store.clone()));
    tokio::spawn(image_gc(cfg.clone(), store.clone()));
    tokio::spawn(lifecycle_events(k.clone(), store, trigger));
    controller
        .reconcile_on(triggered)
        .run(pods::reconcile, error_policy, k)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "pod reconcile");
            }
        })
        .await;
    Ok(())
}

fn error_policy(pod: Arc<Pod>, e: &pods::Error, _k: Arc<Kubelet>) -> Action {
    tracing::warn!(pod = ?pod.metadata.name, error = %e, "pod sync failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Every RECORDS_POLL: wakes the reconcile of each pod whose containers' records changed (an exit,
/// a start), and tears down what is left of pods no longer in the API.
/// How often the shims' exit records are read: a dead container is noticed within this, so it
/// bounds how fast a restart can begin (a read of a few small files per pod).
const RECORDS_POLL: Duration = Duration::from_millis(200);
/// How often a CNI DEL that failed is tried again.
const CNI_RETRY: Duration = Duration::from_secs(30);

async fn lifecycle_events(
    k: Arc<Kubelet>,
    store: kube::runtime::reflector::Store<Pod>,
    trigger: futures::channel::mpsc::UnboundedSender<ObjectRef<Pod>>,
) {
    let mut seen: HashMap<String, String> = HashMap::new();
    let pods_dir = k.cfg.data_dir.join("agent/pods");
    let started = tokio::time::Instant::now();
    let mut last_cni_retry = started;
    // Retries run beside this loop (a plugin may take its full timeout), one at a time.
    let retrying = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::time::sleep(RECORDS_POLL).await;
        let pending = pods::cni_pending(&k.cfg.data_dir);
        if last_cni_retry.elapsed() >= CNI_RETRY
            && pending.exists()
            && !retrying.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            last_cni_retry = tokio::time::Instant::now();
            let flag = retrying.clone();
            tokio::task::spawn_blocking(move || {
                let left = crate::network::cni::retry_pending(&pending);
                if left > 0 {
                    tracing::warn!(left, "CNI DEL of removed pods still failing; retrying");
                }
                flag.store(false, std::sync::atomic::Ordering::Release);
            });
        }
        let dirs: Vec<PathBuf> = std::fs::read_dir(&pods_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        let known: HashMap<String, Arc<Pod>> = store
            .state()
            .into_iter()
            .filter_map(|p| p.metadata.uid.clone().map(|u| (u, p)))
            .collect();
        for dir in dirs {
            let uid = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let Ok(meta) = std::fs::read(dir.join(pods::META))
                .map_err(|_| ())
                .and_then(|b| serde_json::from_slice::<pods::PodMeta>(&b).map_err(|_| ()))
            else {
                continue;
            };
            if !known.contains_key(&uid) {
                // Until the watch has listed (and for a pod created just now) the store may not
                // know a pod that exists.
                if started.elapsed() < Duration::from_secs(5) {
                    continue;
                }
                tracing::info!(pod = %meta.name, namespace = %meta.namespace, "pod gone from the API: removing what is left");
                let (k2, d2, u2) = (k.clone(), dir.clone(), uid.clone());
                let _ = tokio::task::spawn_blocking(move || k2.teardown(&u2, &d2)).await;
                seen.remove(&uid);
                continue;
            }
            let digest: String = crate::shim::read_records(&dir)
                .iter()
                .map(|r| {
                    format!(
                        "{}:{}:{};",
                        r.id,
                        r.finished_at.as_deref().unwrap_or("-"),
                        r.exit_code.unwrap_or(-1)
                    )
                })
                .collect();
            // First sight counts as a change: an exit may have come before this loop saw the pod.
            if seen.get(&uid) != Some(&digest) {
                seen.insert(uid.clone(), digest);
                let _ = trigger.unbounded_send(ObjectRef::new(&meta.name).within(&meta.namespace));
            }
        }
    }
}

/// When image GC removes images (percentages of the image filesystem) and how often it looks.
#[derive(Debug, Clone, Copy)]
pub struct ImageGc {
    pub high: u8,
    pub low: u8,
    pub period: Duration,
    pub min_age: Duration,
}

/// How full the filesystem holding `dir` is, in percent (what is not available to users).
fn fs_used_percent(dir: &std::path::Path) -> Option<f64> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let total = st.blocks() as f64;
    (total > 0.0).then(|| 100.0 * (total - st.blocks_available() as f64) / total)
}

/// The kubelet's image GC: when the image filesystem is at least `high` percent full, removes
/// the images no container holds a lease on and none used for `min_age`, least recently used
/// first, until it is under `low` percent or none is left. Images of running containers are
/// never candidates.
async fn image_gc(cfg: Config, pods: kube::runtime::reflector::Store<Pod>) {
    if cfg.image_gc.high >= 100 {
        return;
    }
    loop {
        tokio::time::sleep(cfg.image_gc.period).await;
        let c = cfg.clone();
        let in_use = images_in_use(&pods);
        let done =
            tokio::task::spawn_blocking(move || -> Result<usize, crate::image::gc::Error> {
                let store = crate::image::store::Store::open(&c.data_dir)?;
                let root = store.root().to_path_buf();
                let full = || fs_used_percent(&root).unwrap_or(0.0);
                if full() < f64::from(c.image_gc.high) {
                    return Ok(0);
                }
                remove_unused_images(&store, &c, &in_use, "image GC", || {
                    full() < f64::from(c.image_gc.low)
                })
            })
            .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "image GC failed");
        }
    }
}

/// Removes the images image GC may take (unleased, unnamed by `in_use`, past the minimum age),
/// least recently used first, until `enough` says so; returns how many went. Image GC and
/// disk-pressure reclaim both come here.
pub fn remove_unused_images(
    store: &crate::image::store::Store,
    cfg: &Config,
    in_use: &std::collections::HashSet<String>,
    why: &str,
    mut enough: impl FnMut() -> bool,
) -> Result<usize, crate::image::gc::Error> {
    let mut removed = 0;
    for image in crate::image::gc::unused(store, cfg.image_gc.min_age.as_secs())? {
        if in_use.contains(&image.name) {
            continue;
        }
        crate::image::gc::remove_images(store, std::slice::from_ref(&image.name))?;
        tracing::info!(image = %image.name, "{why} removed an unused image");
        removed += 1;
        if enough() {
            break;
        }
    }
    Ok(removed)
}

/// The (normalized) images the pods bound to this node name. Image GC keeps them besides the
/// leased ones: a container started by an agent from before leases holds none.
pub fn images_in_use(
    pods: &kube::runtime::reflector::Store<Pod>,
) -> std::collections::HashSet<String> {
    pods.state()
        .iter()
        .filter_map(|p| p.spec.as_ref())
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .filter_map(|c| c.image.as_deref())
                .filter_map(|i| crate::image::reference::Reference::parse(i).ok())
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Writes flannel's annotations on this node's Node: the backend, the address other nodes
/// reach it at and, for vxlan, its VTEP's MAC, which the other nodes need for their entries.
async fn publish_backend(
    nodes: &Api<Node>,
    cfg: &Config,
    vxlan: Option<&crate::network::vxlan::Vxlan>,
) -> anyhow::Result<()> {
    use crate::network::vxlan;
    let (kind, data) = match vxlan {
        Some(v) => ("vxlan", Some(v.backend_data())),
        None => ("host-gw", None),
    };
    let patch = serde_json::json!({"metadata": {"annotations": {
        vxlan::BACKEND_TYPE: kind,
        vxlan::BACKEND_DATA: data,
        vxlan::PUBLIC_IP: cfg.node_ip,
        "flannel.alpha.coreos.com/kube-subnet-manager": "true",
    }}});
    nodes
        .patch(
            &cfg.node_name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "annotating node {} with its network backend: {e}",
                cfg.node_name
            )
        })?;
    Ok(())
}

/// Another node's pod range and how to reach it, from its Node object: its InternalIP and,
/// for vxlan, the VTEP MAC it published.
fn peer_of(n: &Node) -> Option<(Cidr, std::net::Ipv4Addr, Option<[u8; 6]>)> {
    let cidr = n.spec.as_ref()?.pod_cidr.as_deref()?.parse::<Cidr>().ok()?;
    let ip = n
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    let mac = n
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::network::vxlan::BACKEND_DATA))
        .and_then(|d| crate::network::vxlan::vtep_mac_of(d));
    Some((cidr, ip, mac))
}

/// Keeps this node's way to every other node's pod range, from the Node objects, every two
/// seconds: a route via the node's address (host-gw), or the overlay's entries (vxlan).
async fn pod_routes(
    client: kube::Client,
    me: String,
    mine: Cidr,
    vxlan: Option<crate::network::vxlan::Vxlan>,
) {
    let nodes: Api<Node> = Api::all(client);
    let host_gw = Arc::new(Mutex::new(crate::network::routes::HostGw::default()));
    let vxlan = Arc::new(Mutex::new(vxlan));
    loop {
        if let Ok(list) = nodes.list(&Default::default()).await {
            let peers: Vec<_> = list
                .items
                .iter()
                .filter(|n| n.metadata.name.as_deref() != Some(me.as_str()))
                .filter_map(peer_of)
                .filter(|(c, _, _)| *c != mine)
                .collect();
            let (h, v) = (host_gw.clone(), vxlan.clone());
            let done = tokio::task::spawn_blocking(move || {
                let mut v = v.lock().expect("vxlan lock");
                match v.as_mut() {
                    Some(vx) => {
                        let want = peers
                            .into_iter()
                            .filter_map(|(c, node_ip, mac)| {
                                // A node that has not published its VTEP yet is reached
                                // once it has.
                                Some((
                                    c,
                                    crate::network::vxlan::Peer {
                                        node_ip,
                                        vtep_mac: mac?,
                                    },
                                ))
                            })
                            .collect();
                        vx.sync(&want)
                    }
                    None => {
                        let want = peers.into_iter().map(|(c, ip, _)| (c, ip)).collect();
                        h.lock().expect("routes lock").sync(&want)
                    }
                }
            })
            .await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "routes to other nodes' pods");
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
