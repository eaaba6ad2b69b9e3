//! NetworkPolicy enforcement of a node: reflectors on NetworkPolicies, Pods and Namespaces,
//! and on every change, after a short debounce, a [`Model`] for this node's pods handed to
//! src/network/netpol, which replaces the `ip nanokube-netpol` table in one transaction.
//!
//! This is where API objects stop: selectors are evaluated here, so the model holds only
//! addresses, port numbers and protocols. A peer or port that does not parse is left out, which
//! can only make a policy allow less.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use crate::controllers::ownership::selects;
use crate::network::netpol::model::{Peer, Policy, Port, Protocol, Rule};
use crate::network::netpol::Model;
use crate::network::Cidr;

/// How long after a change enforcement waits for more before syncing.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// The label every namespace carries implicitly, so `namespaceSelector` can name one.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A pod as policies see it.
struct PodView<'a> {
    namespace: &'a str,
    labels: Option<&'a BTreeMap<String, String>>,
    ip: Ipv4Addr,
    local: bool,
    pod: &'a Pod,
}

fn pod_views<'a>(node: &str, pods: &'a [Arc<Pod>]) -> Vec<PodView<'a>> {
    pods.iter()
        .filter_map(|p| {
            let spec = p.spec.as_ref()?;
            let status = p.status.as_ref()?;
            // A host-network pod has the node's address: policies do not apply to it.
            if spec.host_network == Some(true)
                || matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"))
            {
                return None;
            }
            let ip = status.pod_ip.as_deref()?.parse().ok()?;
            Some(PodView {
                namespace: p.metadata.namespace.as_deref().unwrap_or("default"),
                labels: p.metadata.labels.as_ref(),
                ip,
                local: spec.node_name.as_deref() == Some(node),
                pod: p,
            })
        })
        .collect()
}

fn namespace_labels(namespaces: &[Arc<Namespace>]) -> BTreeMap<String, BTreeMap<String, String>> {
    namespaces
        .iter()
        .filter_map(|n| {
            let name = n.metadata.name.clone()?;
            let mut labels = n.metadata.labels.clone().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.into(), name.clone());
            Some((name, labels))
        })
        .collect()
}

/// The addresses a podSelector/namespaceSelector peer stands for.
fn peer_pods(
    peer: &NetworkPolicyPeer,
    policy_ns: &str,
    pods: &[PodView<'_>],
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<Peer> {
    pods.iter()
        .filter(|p| match &peer.namespace_selector {
            None => p.namespace == policy_ns,
            Some(sel) => selects(Some(sel), ns_labels.get(p.namespace)),
        })
        .filter(|p| match &peer.pod_selector {
            None => true,
            Some(sel) => selects(Some(sel), p.labels),
        })
        .map(|p| Peer::Pod(p.ip))
        .collect()
}

fn peers(
    list: Option<&Vec<NetworkPolicyPeer>>,
    policy_ns: &str,
    pods: &[PodView<'_>],
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<Vec<Peer>> {
    let list = list.filter(|l| !l.is_empty())?;
    let mut out = Vec::new();
    for peer in list {
        if let Some(b) = &peer.ip_block {
            let Ok(cidr) = b.cidr.parse::<Cidr>() else {
                continue;
            };
            let except = b
                .except
                .iter()
                .flatten()
                .filter_map(|e| e.parse().ok())
                .collect();
            out.push(Peer::Block { cidr, except });
        } else {
            out.extend(peer_pods(peer, policy_ns, pods, ns_labels));
        }
    }
    Some(out)
}

fn ports(list: Option<&Vec<NetworkPolicyPort>>, pods: &[PodView<'_>]) -> Vec<Port> {
    let mut out = Vec::new();
    for p in list.into_iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        match &p.port {
            None => out.push(Port::All(protocol)),
            Some(IntOrString::Int(n)) => {
                let Ok(port) = u16::try_from(*n) else {
                    continue;
                };
                let end = p
                    .end_port
                    .and_then(|e| u16::try_from(e).ok())
                    .unwrap_or(port)
                    .max(port);
                out.push(Port::Range {
                    protocol,
                    port,
                    end,
                });
            }
            Some(IntOrString::String(name)) => {
                // Resolved on every pod that names it; the set is keyed by the destination,
                // so each destination answers with its own number.
                let mut entries = Vec::new();
                for v in pods {
                    for c in v.pod.spec.iter().flat_map(|s| &s.containers) {
                        for cp in c.ports.iter().flatten() {
                            if cp.name.as_deref() == Some(name.as_str())
                                && Protocol::parse(cp.protocol.as_deref()) == Some(protocol)
                            {
                                if let Ok(n) = u16::try_from(cp.container_port) {
                                    entries.push((v.ip, protocol, n));
                                }
                            }
                        }
                    }
                }
                out.push(Port::Named(entries));
            }
        }
    }
    out
}

/// One ingress (`from`) or egress (`to`) rule as the model holds it.
fn rule(
    list: Option<&Vec<NetworkPolicyPeer>>,
    port_list: Option<&Vec<NetworkPolicyPort>>,
    policy_ns: &str,
    pods: &[PodView<'_>],
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Rule {
    Rule {
        peers: peers(list, policy_ns, pods, ns_labels),
        ports: ports(port_list, pods),
    }
}

/// The model for this node from everything in the stores.
pub fn model(
    node: &str,
    policies: &[Arc<NetworkPolicy>],
    pods: &[Arc<Pod>],
    namespaces: &[Arc<Namespace>],
) -> Model {
    let views = pod_views(node, pods);
    let ns_labels = namespace_labels(namespaces);
    let mut m = Model::default();
    for np in policies {
        let (Some(name), Some(spec)) = (np.metadata.name.as_deref(), np.spec.as_ref()) else {
            continue;
        };
        let ns = np.metadata.namespace.as_deref().unwrap_or("default");
        let key = format!("{ns}/{name}");
        // Without policyTypes: Ingress always, Egress when the policy has egress rules.
        let types: Vec<&str> = match &spec.policy_types {
            Some(t) => t.iter().map(String::as_str).collect(),
            None if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => {
                vec!["Ingress", "Egress"]
            }
            None => vec!["Ingress"],
        };
        let (ing, eg) = (types.contains(&"Ingress"), types.contains(&"Egress"));
        let selector = spec.pod_selector.clone().unwrap_or_default();
        let mut selected_any = false;
        for v in views.iter().filter(|v| v.local && v.namespace == ns) {
            if !selects(Some(&selector), v.labels) {
                continue;
            }
            selected_any = true;
            let sel = m.pods.entry(v.ip).or_default();
            if ing {
                sel.ingress.insert(key.clone());
            }
            if eg {
                sel.egress.insert(key.clone());
            }
        }
        if selected_any {
            m.policies.insert(
                key.clone(),
                Policy {
                    key,
                    ingress: spec
                        .ingress
                        .iter()
                        .flatten()
                        .map(|r| rule(r.from.as_ref(), r.ports.as_ref(), ns, &views, &ns_labels))
                        .collect(),
                    egress: spec
                        .egress
                        .iter()
                        .flatten()
                        .map(|r| rule(r.to.as_ref(), r.ports.as_ref(), ns, &views, &ns_labels))
                        .collect(),
                },
            );
        }
    }
    m
}

fn spawn_reflector<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        stream
            .for_each(|ev| {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "network policy watch");
                }
                changed.notify_one();
                async {}
            })
            .await;
    });
    reader
}

/// Runs enforcement until the process ends. The table stays when the agent stops (like the
/// proxy's, so pods keep their isolation across an agent restart); `nanokube killall`
/// removes it.
pub async fn run(node: String, client: kube::Client, backend: crate::network::proxy::Backend) {
    // Same-node pod-to-pod traffic is bridged: the forward hook sees it only through bridge
    // netfilter. Per network namespace, so set it for ours.
    if std::path::Path::new("/proc/sys/net/bridge").exists() {
        let _ = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1");
    } else {
        tracing::warn!("no bridge netfilter: policies do not apply between pods of one node");
    }
    let changed = Arc::new(Notify::new());
    let policies = spawn_reflector(Api::<NetworkPolicy>::all(client.clone()), changed.clone());
    let pods = spawn_reflector(Api::<Pod>::all(client.clone()), changed.clone());
    let namespaces = spawn_reflector(Api::<Namespace>::all(client), changed.clone());
    let _ = policies.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let _ = namespaces.wait_until_ready().await;
    let mut last: Option<Model> = None;
    let mut cold = true;
    loop {
        let m = model(&node, &policies.state(), &pods.state(), &namespaces.state());
        if last.as_ref() != Some(&m) {
            let m2 = m.clone();
            let started = std::time::Instant::now();
            let sync = move || crate::network::netpol::sync(&m2, backend, cold);
            match tokio::task::spawn_blocking(sync).await {
                Ok(Ok(bytes)) => {
                    cold = false;
                    tracing::debug!(policies = m.policies.len(), pods = m.pods.len(), bytes, took = ?started.elapsed(), "network policies synced");
                    last = Some(m);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "programming network policies; retrying");
                    last = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => tracing::error!(error = %e, "network policy sync panicked"),
            }
        }
        changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}
