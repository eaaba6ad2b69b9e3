//! The Node object of this host: registration with capacity, addresses and nodeInfo, the Lease
//! heartbeat every 10 s, and the status (conditions with heartbeat times) every minute.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;

use super::Config;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_SECONDS: i32 = 40;
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
pub const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Total memory of the host in bytes (/proc/meminfo MemTotal).
pub fn memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn ephemeral_storage(dir: &std::path::Path) -> u64 {
    nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks() * s.fragment_size())
        .unwrap_or(0)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn machine_id() -> String {
    std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn conditions(ready: bool, pressure: super::eviction::Pressure) -> Vec<NodeCondition> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let c = |t: &str, s: &str, reason: &str, msg: &str| NodeCondition {
        type_: t.into(),
        status: s.into(),
        reason: Some(reason.into()),
        message: Some(msg.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    vec![
        if pressure.memory {
            c(
                "MemoryPressure",
                "True",
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            c(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if pressure.disk {
            c(
                "DiskPressure",
                "True",
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            c(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        c(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        if ready {
            c(
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            )
        } else {
            c(
                "Ready",
                "False",
                "KubeletNotReady",
                "container runtime network not ready",
            )
        },
    ]
}

/// The node's status as this host measures it.
pub fn status(cfg: &Config, ready: bool) -> NodeStatus {
    let mut cap = BTreeMap::new();
    cap.insert("cpu".to_string(), Quantity(cpus().to_string()));
    cap.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", memory_bytes() / 1024)),
    );
    cap.insert("pods".to_string(), Quantity(cfg.max_pods.to_string()));
    cap.insert(
        "ephemeral-storage".to_string(),
        Quantity(format!("{}Ki", ephemeral_storage(&cfg.data_dir) / 1024)),
    );
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    NodeStatus {
        capacity: Some(cap.clone()),
        allocatable: Some(cap),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: cfg.node_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: cfg.node_name.clone(),
            },
        ]),
        conditions: Some(conditions(
            ready,
            *cfg.pressure.lock().expect("pressure lock"),
        )),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            container_runtime_version: format!("nanokube://{}", env!("CARGO_PKG_VERSION")),
            kernel_version: kernel,
            kube_proxy_version: String::new(),
            kubelet_version: super::KUBELET_VERSION.into(),
            machine_id: machine_id(),
            operating_system: "linux".into(),
            os_image: os_image(),
            system_uuid: machine_id(),
            swap: None,
        }),
        images: Some(images(&cfg.data_dir)),
        daemon_endpoints: Some(k8s_openapi::api::core::v1::NodeDaemonEndpoints {
            kubelet_endpoint: Some(k8s_openapi::api::core::v1::DaemonEndpoint {
                port: cfg.kubelet_port as i32,
            }),
        }),
        ..Default::default()
    }
}

/// Upstream's nodeStatusMaxImages: the biggest images are the ones worth scheduling near.
const MAX_IMAGES: usize = 50;

/// The images this node holds, for the scheduler's ImageLocality: each under all its names
/// (tags and repo@digest), biggest first.
pub fn images(data_dir: &std::path::Path) -> Vec<k8s_openapi::api::core::v1::ContainerImage> {
    let Ok(records) = crate::image::Store::open(data_dir).and_then(|s| s.images()) else {
        return Vec::new();
    };
    let mut by_digest: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
    for r in records.values() {
        let digest = r.digest.to_string();
        let e = by_digest.entry(digest.clone()).or_default();
        e.0.push(r.name.clone());
        let repo = r.name.split('@').next().unwrap_or(&r.name);
        let slash = repo.rfind('/').unwrap_or(0);
        let repo = match repo[slash..].rfind(':') {
            Some(i) => &repo[..slash + i],
            None => repo,
        };
        e.0.push(format!("{repo}@{digest}"));
        e.1 = e.1.max(r.size);
    }
    let mut out: Vec<_> = by_digest
        .into_values()
        .map(|(mut names, size)| {
            names.sort();
            names.dedup();
            k8s_openapi::api::core::v1::ContainerImage {
                names: Some(names),
                size_bytes: Some(size as i64),
            }
        })
        .collect();
    out.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    out.truncate(MAX_IMAGES);
    out
}

/// Creates the Node (or takes over the one of the same name) and returns it.
pub async fn register(nodes: &Api<Node>, cfg: &Config) -> kube::Result<Node> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), cfg.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "kubernetes.io/arch".to_string(),
            std::env::consts::ARCH.replace("x86_64", "amd64"),
        ),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        (
            "beta.kubernetes.io/arch".to_string(),
            std::env::consts::ARCH.replace("x86_64", "amd64"),
        ),
    ]);
    labels.extend(cfg.labels.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..Default::default()
        }),
        status: None,
    };
    let node = match nodes.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(&cfg.node_name).await?,
        Err(e) => return Err(e),
    };
    let st = serde_json::json!({"status": status(cfg, false)});
    nodes
        .patch_status(&cfg.node_name, &PatchParams::default(), &Patch::Merge(&st))
        .await?;
    Ok(node)
}

/// Posts the status with the given readiness.
pub async fn post_status(nodes: &Api<Node>, cfg: &Config, ready: bool) -> kube::Result<()> {
    let st = serde_json::json!({"status": status(cfg, ready)});
    nodes
        .patch_status(&cfg.node_name, &PatchParams::default(), &Patch::Merge(&st))
        .await?;
    Ok(())
}

/// Renews (or creates) the node's Lease.
pub async fn renew_lease(leases: &Api<Lease>, cfg: &Config, node: &Node) -> kube::Result<()> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let body = Lease {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node.metadata.uid.clone().map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: cfg.node_name.clone(),
                    uid,
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(cfg.node_name.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(now),
            ..Default::default()
        }),
    };
    match leases.get_opt(&cfg.node_name).await? {
        None => {
            leases.create(&PostParams::default(), &body).await?;
        }
        Some(_) => {
            let p = serde_json::json!({"spec": {"holderIdentity": cfg.node_name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": body.spec.as_ref().and_then(|s| s.renew_time.clone())}});
            leases
                .patch(&cfg.node_name, &PatchParams::default(), &Patch::Merge(&p))
                .await?;
        }
    }
    Ok(())
}

/// `key=value:Effect` as k3s's --node-taint takes it.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?}: want key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "taint {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
    Ok(Taint {
        key: k.into(),
        value: (!v.is_empty()).then(|| v.to_string()),
        effect: effect.into(),
        time_added: None,
    })
}
