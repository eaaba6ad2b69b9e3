//! The DaemonSet controller's decisions as pure functions: which nodes should run a daemon
//! pod, which pods to create and delete on each (including a rolling update's budget), and
//! the status that results.

use crate::controllers::owned_pods::{is_available, is_ready, is_terminal};
use crate::scheduler::filters::{nodeaffinity::expression_matches, taints::tolerated};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;

pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The tolerations upstream's DaemonSet controller adds to every daemon pod, so daemons keep
/// running on nodes that are not ready, unreachable, under pressure or cordoned.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Default::default()
    };
    let mut v = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        v.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    v
}

/// The template's pod spec with the automatic tolerations added (those it lacks).
pub fn with_default_tolerations(spec: &PodSpec) -> PodSpec {
    let mut spec = spec.clone();
    let tols = spec.tolerations.get_or_insert_with(Vec::new);
    for t in default_tolerations(spec.host_network == Some(true)) {
        if !tols.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            tols.push(t);
        }
    }
    spec
}

/// Pins a pod to `node` the way upstream does: its required node affinity becomes a single
/// `metadata.name In [node]` field term, so the scheduler binds it there.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// Whether a daemon pod from `spec` belongs on `node`: its node selector, required node
/// affinity and the node's NoSchedule / NoExecute taints (with the automatic tolerations).
pub fn should_run(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.clone().unwrap_or_default();
    if !spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let fields = BTreeMap::from([("metadata.name".to_string(), name)]);
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let affinity_ok = required.is_none_or(|r| {
        r.node_selector_terms.iter().any(|t| {
            let exprs = t.match_expressions.as_deref().unwrap_or(&[]);
            let fs = t.match_fields.as_deref().unwrap_or(&[]);
            !(exprs.is_empty() && fs.is_empty())
                && exprs.iter().all(|e| expression_matches(e, labels))
                && fs.iter().all(|e| expression_matches(e, &fields))
        })
    });
    if !affinity_ok {
        return false;
    }
    let pod = Pod {
        spec: Some(with_default_tolerations(spec)),
        ..Default::default()
    };
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerated(&pod, t))
}

/// The node a daemon pod is for: its nodeName once bound, else the node it is pinned to.
pub fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields
            .iter()
            .flatten()
            .find(|f| f.key == "metadata.name" && f.operator == "In")
            .and_then(|f| f.values.as_ref()?.first().cloned())
    })
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_LABEL)
        .map(String::as_str)
}

/// maxUnavailable / maxSurge against `desired`: a number, or a percentage (unavailability
/// rounded up, surge too, as upstream; surge rounds up as well).
pub fn scaled(v: Option<&IntOrString>, desired: i32, default: i32) -> i32 {
    match v {
        None => default,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i32 = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * desired + 99) / 100
        }
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that get a new pod of the current revision.
    pub create: Vec<String>,
    /// Pods to delete (by name).
    pub delete: Vec<String>,
    pub status: DaemonSetStatus,
}

pub fn decide(ds: &DaemonSet, hash: &str, nodes: &[Node], pods: &[Pod], now: Timestamp) -> Plan {
    let spec = ds.spec.clone().unwrap_or_default();
    let template = spec.template.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        if let Some(n) = node_of(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    let mut plan = Plan::default();
    let mut st = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        ..Default::default()
    };
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = strategy.rolling_update.unwrap_or_default();

    // Per node: (old pods, new pods) for the nodes that should run one.
    let mut running: Vec<(String, Vec<&Pod>, Vec<&Pod>)> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mine = by_node.remove(&name).unwrap_or_default();
        if !should_run(&template, node) {
            if !mine.is_empty() {
                st.number_misscheduled += 1;
            }
            plan.delete
                .extend(mine.iter().filter_map(|p| p.metadata.name.clone()));
            continue;
        }
        st.desired_number_scheduled += 1;
        // Failed daemon pods are replaced (the kubelet does not restart a finished pod).
        let (dead, live): (Vec<&Pod>, Vec<&Pod>) = mine.into_iter().partition(|p| is_terminal(p));
        plan.delete
            .extend(dead.iter().filter_map(|p| p.metadata.name.clone()));
        if !live.is_empty() {
            st.current_number_scheduled += 1;
        }
        let (new, old): (Vec<&Pod>, Vec<&Pod>) =
            live.into_iter().partition(|p| hash_of(p) == Some(hash));
        let best = new.first().or(old.first());
        if best.is_some_and(|p| is_ready(p)) {
            st.number_ready += 1;
        }
        if best.is_some_and(|p| is_available(p, min_ready, now)) {
            *st.number_available.get_or_insert(0) += 1;
        }
        if !new.is_empty() {
            *st.updated_number_scheduled.get_or_insert(0) += 1;
        }
        running.push((name, old, new));
    }
    // Pods on nodes that are gone.
    for pods in by_node.values() {
        plan.delete
            .extend(pods.iter().filter_map(|p| p.metadata.name.clone()));
    }

    let desired = st.desired_number_scheduled;
    let max_unavailable = scaled(ru.max_unavailable.as_ref(), desired, 1).max(0);
    let max_surge = scaled(ru.max_surge.as_ref(), desired, 0).max(0);
    // Unavailable now: nodes whose pods are not available (missing ones included).
    let mut unavailable = running
        .iter()
        .filter(|(_, old, new)| {
            !old.iter()
                .chain(new.iter())
                .any(|p| is_available(p, min_ready, now))
        })
        .count() as i32;
    let mut surging = running
        .iter()
        .filter(|(_, old, new)| !old.is_empty() && !new.is_empty())
        .count() as i32;
    for (node, old, new) in &running {
        // Extra pods on one node: keep one of the newest revision.
        let keep_new = new.first();
        for p in new.iter().skip(1) {
            plan.delete.extend(p.metadata.name.clone());
        }
        if old.is_empty() && new.is_empty() {
            plan.create.push(node.clone());
            continue;
        }
        if old.is_empty() || !rolling {
            if !rolling && new.is_empty() {
                // OnDelete: old pods stay until someone deletes them; extras still go.
                for p in old.iter().skip(1) {
                    plan.delete.extend(p.metadata.name.clone());
                }
            }
            continue;
        }
        let old_available = old.iter().any(|p| is_available(p, min_ready, now));
        match keep_new {
            // The new pod is up: the old ones go.
            Some(n) if is_available(n, min_ready, now) => {
                plan.delete
                    .extend(old.iter().filter_map(|p| p.metadata.name.clone()));
            }
            Some(_) => {}
            None if !old_available => {
                // Nothing to lose: replace at once.
                plan.delete
                    .extend(old.iter().filter_map(|p| p.metadata.name.clone()));
            }
            None if max_surge > 0 => {
                if surging < max_surge {
                    surging += 1;
                    plan.create.push(node.clone());
                }
            }
            None => {
                if unavailable < max_unavailable {
                    unavailable += 1;
                    plan.delete
                        .extend(old.iter().filter_map(|p| p.metadata.name.clone()));
                }
            }
        }
    }
    st.number_unavailable = Some(desired - st.number_available.unwrap_or(0)).filter(|n| *n > 0);
    plan.status = st;
    plan
}

#[cfg(test)]
mod tests;
