//! One scheduling pass's picture of the cluster, built once from the reflectors' stores (plus
//! the pods this scheduler has bound but the store does not show yet) and updated in place as
//! each pod is placed, so the next pod sees it without another API round trip.

use super::filters::interpodaffinity::{terms_of, Term};
use super::requests::{priority, quantity, Requests};
use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const ZONE: &str = "topology.kubernetes.io/zone";

/// A pod nominated to a node by preemption and not yet bound: it holds its room there
/// against pods of lower priority.
#[derive(Debug, Clone)]
pub struct Nominated {
    pub uid: String,
    pub priority: i32,
    pub requests: Requests,
}

/// A host port a pod takes: (port, protocol, host IP).
pub type HostPort = (i32, String, String);

/// A node with the pods bound to it (terminal pods excluded: they hold nothing) and what they
/// request.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    /// Its place in the snapshot's `nodes`.
    pub index: usize,
    pub name: String,
    pub pods: Vec<Arc<Pod>>,
    pub requested: Requests,
    pub nonzero: Requests,
    pub allocatable: Requests,
    pub max_pods: f64,
    pub ports: Vec<HostPort>,
    pub nominated: Vec<Nominated>,
    /// The images the node reports, by normalised name, with their sizes.
    pub images: HashMap<String, i64>,
}

static EMPTY_LABELS: BTreeMap<String, String> = BTreeMap::new();

impl NodeInfo {
    pub fn new(node: Arc<Node>, index: usize) -> Self {
        let a = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let mut images = HashMap::new();
        for img in node.status.iter().flat_map(|st| st.images.iter().flatten()) {
            for name in img.names.iter().flatten() {
                images.insert(
                    super::scores::normalized_image(name),
                    img.size_bytes.unwrap_or(0),
                );
            }
        }
        NodeInfo {
            images,
            name: node.metadata.name.clone().unwrap_or_default(),
            index,
            allocatable: Requests::from_map(a),
            max_pods: quantity(a.and_then(|a| a.get("pods"))),
            node,
            pods: Vec::new(),
            requested: Requests::default(),
            nonzero: Requests::default(),
            ports: Vec::new(),
            nominated: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY_LABELS)
    }

    pub fn add(&mut self, pod: Arc<Pod>) {
        self.requested.add(&Requests::of_pod(&pod, false));
        self.nonzero.add(&Requests::of_pod(&pod, true));
        self.ports.extend(host_ports(&pod));
        self.pods.push(pod);
    }

    /// Takes a pod off the node (a preemption victim, in a what-if copy).
    pub fn remove(&mut self, uid: &str) {
        let Some(i) = self.pods.iter().position(|p| uid_of(p) == uid) else {
            return;
        };
        let pod = self.pods.remove(i);
        self.requested.sub(&Requests::of_pod(&pod, false));
        self.nonzero.sub(&Requests::of_pod(&pod, true));
        for hp in host_ports(&pod) {
            if let Some(j) = self.ports.iter().position(|p| *p == hp) {
                self.ports.remove(j);
            }
        }
    }
}

pub fn uid_of(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let spec = pod.spec.iter();
    spec.flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
    .flat_map(|c| c.ports.iter().flatten())
    .filter_map(|p| {
        let hp = p.host_port.filter(|hp| *hp > 0)?;
        Some((
            hp,
            p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            p.host_ip.clone().unwrap_or_default(),
        ))
    })
    .collect()
}

/// The uid of the pod's controller (a ReplicaSet, StatefulSet, Job ...), which default
/// topology spreading groups by.
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

pub fn has_affinity(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
}

fn holds_resources(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    pub index: HashMap<String, usize>,
    /// The node and the resolved terms (`interpodaffinity::terms_of`) of each bound pod with
    /// pod (anti-)affinity: every incoming pod is checked against them, so they are resolved
    /// once per pass, not once per incoming pod.
    pub with_affinity: Vec<(usize, Arc<[Vec<Term>; 4]>)>,
    /// controller uid -> pods of it per node index (non-terminating), for default spreading.
    pub by_owner: HashMap<String, Vec<u32>>,
    /// Namespace labels, for namespaceSelector in affinity terms.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
    /// image name -> number of nodes holding it (ImageLocality's spread factor).
    pub image_nodes: HashMap<String, usize>,
    /// The hostname and zone domains, which default spreading asks about for every pod: the
    /// label lookups are done once per pass, not once per pod and node.
    pub common_domains: Vec<(&'static str, Arc<Domains>)>,
}

/// A topology key's domains: the node's label value, numbered.
#[derive(Debug, Clone, Default)]
pub struct Domains {
    /// node index -> domain number (None: the node lacks the label).
    pub of_node: Vec<Option<u32>>,
    /// domain number -> label value.
    pub values: Vec<String>,
}

impl Domains {
    fn of(key: &str, nodes: &[NodeInfo]) -> Domains {
        let mut d = Domains::default();
        let mut numbers: HashMap<&str, u32> = HashMap::new();
        for n in nodes {
            let id = n.labels().get(key).map(|v| {
                *numbers.entry(v.as_str()).or_insert_with(|| {
                    d.values.push(v.clone());
                    (d.values.len() - 1) as u32
                })
            });
            d.of_node.push(id);
        }
        d
    }
}

impl Snapshot {
    pub fn build<'a>(
        nodes: impl IntoIterator<Item = Arc<Node>>,
        pods: impl IntoIterator<Item = &'a Arc<Pod>>,
        namespaces: HashMap<String, BTreeMap<String, String>>,
    ) -> Snapshot {
        let mut s = Snapshot {
            namespaces,
            ..Default::default()
        };
        let mut nodes: Vec<Arc<Node>> = nodes.into_iter().collect();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for n in nodes {
            let info = NodeInfo::new(n, s.nodes.len());
            for name in info.images.keys() {
                *s.image_nodes.entry(name.clone()).or_insert(0) += 1;
            }
            s.index.insert(info.name.clone(), s.nodes.len());
            s.nodes.push(info);
        }
        s.common_domains = [HOSTNAME, ZONE]
            .into_iter()
            .map(|k| (k, Arc::new(Domains::of(k, &s.nodes))))
            .collect();
        for p in pods {
            let Some(spec) = p.spec.as_ref() else {
                continue;
            };
            match spec.node_name.as_deref().filter(|n| !n.is_empty()) {
                Some(node) => {
                    if holds_resources(p) {
                        if let Some(&i) = s.index.get(node) {
                            s.add(i, p.clone());
                        }
                    }
                }
                None => {
                    let nominated = p
                        .status
                        .as_ref()
                        .and_then(|st| st.nominated_node_name.as_deref());
                    if let Some(&i) = nominated.and_then(|n| s.index.get(n)) {
                        if p.metadata.deletion_timestamp.is_none() {
                            s.nodes[i].nominated.push(Nominated {
                                uid: uid_of(p).to_string(),
                                priority: priority(p),
                                requests: Requests::of_pod(p, false),
                            });
                        }
                    }
                }
            }
        }
        s
    }

    /// The domains of `key` over this pass's nodes.
    pub fn domains(&self, key: &str) -> Arc<Domains> {
        match self.common_domains.iter().find(|(k, _)| *k == key) {
            Some((_, d)) => d.clone(),
            None => Arc::new(Domains::of(key, &self.nodes)),
        }
    }

    /// Places a pod on node `i` (a bound pod from the store, or one just assumed).
    pub fn add(&mut self, i: usize, pod: Arc<Pod>) {
        if has_affinity(&pod) {
            self.with_affinity.push((i, Arc::new(terms_of(&pod))));
        }
        if pod.metadata.deletion_timestamp.is_none() {
            if let Some(owner) = controller_uid(&pod) {
                let n = self.nodes.len();
                self.by_owner
                    .entry(owner.to_string())
                    .or_insert_with(|| vec![0; n])[i] += 1;
            }
        }
        let uid = uid_of(&pod).to_string();
        let node = &mut self.nodes[i];
        node.nominated.retain(|n| n.uid != uid);
        node.add(pod);
    }
}
