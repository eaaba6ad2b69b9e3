//! The scheduler: picks a node for each pod whose spec.nodeName is empty and whose
//! schedulerName is default-scheduler, from reflectors over nodes and pods; filters, then
//! scores, then binds through pods/binding. Pods that fit nowhere get PodScheduled=False with
//! upstream's message and a FailedScheduling event, and wait in the queue with backoff until a
//! node or pod changes.

pub mod bind;
pub mod filters;
pub mod preemption;
pub mod queue;
pub mod requests;
pub mod scores;
pub mod snapshot;

use k8s_openapi::api::core::v1::Pod;
use requests::{priority, Requests};
pub use snapshot::{NodeInfo, Snapshot};
use std::collections::BTreeMap;

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

/// One pod's scheduling cycle: what the filters and scores need of it, computed once
/// (upstream's PreFilter and PreScore state) rather than per node.
#[derive(Clone)]
pub struct Cycle<'a> {
    pub pod: &'a Pod,
    pub uid: String,
    pub requests: Requests,
    pub nonzero: Requests,
    pub priority: i32,
    pub ports: Vec<snapshot::HostPort>,
    pub affinity: filters::interpodaffinity::State,
    pub spread: filters::topologyspread::State,
}

impl<'a> Cycle<'a> {
    pub fn new(pod: &'a Pod, snap: &Snapshot) -> Cycle<'a> {
        Cycle {
            pod,
            uid: snapshot::uid_of(pod).to_string(),
            requests: Requests::of_pod(pod, false),
            nonzero: Requests::of_pod(pod, true),
            priority: priority(pod),
            ports: snapshot::host_ports(pod),
            affinity: filters::interpodaffinity::State::new(pod, snap),
            spread: filters::topologyspread::State::new(pod, snap),
        }
    }
}

impl Cycle<'_> {
    /// The PreFilter state as if `pod` were added to (`by` 1) or taken off (-1) `node`:
    /// preemption filters its what-if node with it, so evicting a pod that the incoming
    /// pod's anti-affinity or spread constraint counts can make room.
    pub fn update(&mut self, pod: &Pod, node: &NodeInfo, snap: &Snapshot, by: i64) {
        self.affinity.update(self.pod, pod, node, snap, by);
        self.spread.update(self.pod, pod, node, by);
    }
}

/// How many feasible nodes to find before scoring (upstream's adaptive
/// percentageOfNodesToScore): all of a small cluster, a shrinking share of a large one, never
/// fewer than 100.
pub fn feasible_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let pct = (50 - (nodes as i64) / 125).max(5) as usize;
    (nodes * pct / 100).max(100)
}

/// The rejected nodes, by index, when the pod fits nowhere.
pub type Rejects = Vec<(usize, filters::Reject)>;

/// Filters from `*start` round the ring until enough nodes fit, scores those, and returns the
/// best; `*start` moves on so the next pod looks at other nodes first (as upstream does).
pub fn schedule(c: &Cycle, snap: &Snapshot, start: &mut usize) -> Result<usize, Rejects> {
    let n = snap.nodes.len();
    if n == 0 {
        return Err(Vec::new());
    }
    let want = feasible_to_find(n);
    let mut feasible = Vec::new();
    let mut rejects = Vec::new();
    let mut looked = 0;
    for k in 0..n {
        let i = (*start + k) % n;
        looked = k + 1;
        match filters::run_all(c, &snap.nodes[i]) {
            Ok(()) => {
                feasible.push(i);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(r) => rejects.push((i, r)),
        }
    }
    *start = (*start + looked) % n;
    match feasible.len() {
        0 => Err(rejects),
        1 => Ok(feasible[0]),
        _ => {
            let totals = scores::rank(c, snap, &feasible);
            let mut best = 0;
            for (k, t) in totals.iter().enumerate() {
                if *t > totals[best] {
                    best = k;
                }
            }
            Ok(feasible[best])
        }
    }
}

fn counted(total: usize, counts: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// What one scheduling cycle decided.
#[derive(Debug)]
pub enum Decision {
    Bind(usize),
    /// Fits nowhere now; preemption chose victims on a node (the message has no preemption
    /// verdict: the pod waits for the victims to go).
    Preempt(preemption::Candidate, String),
    Unschedulable(String),
}

/// Filter and score, and if the pod fits nowhere, the preemption post-filter.
pub fn decide(
    c: &Cycle,
    snap: &Snapshot,
    start: &mut usize,
    pdbs: &[k8s_openapi::api::policy::v1::PodDisruptionBudget],
) -> Decision {
    let rejects = match schedule(c, snap, start) {
        Ok(i) => return Decision::Bind(i),
        Err(r) => r,
    };
    let total = snap.nodes.len();
    if rejects.is_empty() {
        return Decision::Unschedulable(unschedulable_message(total, &rejects, None));
    }
    let post = match preemption::eligible(c, snap) {
        Err(m) => m.to_string(),
        Ok(()) => match preemption::find(c, snap, &rejects, pdbs) {
            Ok(cand) => {
                return Decision::Preempt(cand, unschedulable_message(total, &rejects, None))
            }
            Err(m) => m,
        },
    };
    Decision::Unschedulable(unschedulable_message(total, &rejects, Some(&post)))
}

/// Upstream's FitError text: "0/N nodes are available: " and the reasons counted.
pub fn fit_message(total: usize, rejects: &Rejects) -> String {
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut reasons = BTreeMap::new();
    for (_, r) in rejects {
        for reason in &r.reasons {
            *reasons.entry(reason.clone()).or_insert(0) += 1;
        }
    }
    counted(total, &reasons)
}

/// The message with the preemption post-filter's verdict after it (none when preemption
/// found victims: the pod waits for them to go).
pub fn unschedulable_message(total: usize, rejects: &Rejects, post_filter: Option<&str>) -> String {
    let fit = fit_message(total, rejects);
    match post_filter {
        Some(p) if total > 0 => format!("{fit} {p}"),
        _ => fit,
    }
}

pub use queue::run;

#[cfg(test)]
mod tests;
