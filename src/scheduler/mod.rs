//! The scheduler: picks a node for each pod whose spec.nodeName is empty and whose
//! schedulerName is default-scheduler, from reflectors over nodes and pods; filters, then
//! scores, then binds through pods/binding. Pods that fit nowhere get PodScheduled=False with
//! upstream's message and a FailedScheduling event, and wait in the queue with backoff until a
//! node or pod changes.

pub mod bind;
pub mod filters;
pub mod queue;
pub mod scores;

use k8s_openapi::api::core::v1::{Node, Pod};
use std::collections::BTreeMap;

/// A node with the pods bound to it (terminal pods excluded: they hold nothing).
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Node,
    pub pods: Vec<Pod>,
}

impl NodeInfo {
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or("")
    }
}

pub fn wants_us(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_name.as_deref().unwrap_or("").is_empty()
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
            == "default-scheduler"
        && pod.metadata.deletion_timestamp.is_none()
}

fn holds_resources(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed"))
}

pub fn node_infos(nodes: &[Node], pods: &[Pod]) -> Vec<NodeInfo> {
    let mut by_node: BTreeMap<&str, Vec<Pod>> = BTreeMap::new();
    for p in pods.iter().filter(|p| holds_resources(p)) {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            by_node.entry(n).or_default().push(p.clone());
        }
    }
    nodes
        .iter()
        .map(|n| NodeInfo {
            node: n.clone(),
            pods: by_node
                .remove(n.metadata.name.as_deref().unwrap_or(""))
                .unwrap_or_default(),
        })
        .collect()
}

/// The chosen node, or the Unschedulable message.
pub fn schedule(pod: &Pod, nodes: &[NodeInfo]) -> Result<String, String> {
    let mut rejects = Vec::new();
    let mut best: Option<(i64, &str)> = None;
    for n in nodes {
        match filters::run_all(pod, n) {
            Ok(()) => {
                let s = scores::total(pod, n);
                // Ties go to the first name, so the choice is the same on every run.
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, n.name()));
                }
            }
            Err(r) => rejects.push(r),
        }
    }
    match best {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(unschedulable_message(nodes.len(), &rejects)),
    }
}

fn counted(total: usize, counts: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// Upstream's FitError text followed by the preemption post-filter's verdict.
pub fn unschedulable_message(total: usize, rejects: &[filters::Reject]) -> String {
    let mut reasons = BTreeMap::new();
    let mut preemption = BTreeMap::new();
    for r in rejects {
        for reason in &r.reasons {
            *reasons.entry(reason.clone()).or_insert(0) += 1;
        }
        let verdict = if r.resolvable {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        };
        *preemption.entry(verdict.to_string()).or_insert(0) += 1;
    }
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    format!(
        "{} preemption: {}",
        counted(total, &reasons),
        counted(total, &preemption)
    )
}

pub use queue::run;

#[cfg(test)]
mod tests;
