//! DefaultPreemption, the post-filter: when a pod fits nowhere, find a node where evicting
//! pods of lower priority would make room, evicting as few and as unimportant ones as
//! possible and sparing PodDisruptionBudgets where it can. Pure: the queue applies the result
//! (nominatedNodeName on the preemptor, DisruptionTarget and delete on the victims).

use super::filters::{self, Reject};
use super::requests::priority;
use super::snapshot::{uid_of, NodeInfo, Snapshot};
use super::Cycle;
use crate::controllers::ownership::selects;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const NEVER: &str = "preemption: not eligible due to preemptionPolicy=Never.";
pub const TERMINATING: &str =
    "preemption: not eligible due to a terminating pod on the nominated node.";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: usize,
    pub victims: Vec<Arc<Pod>>,
    pub pdb_violations: usize,
}

/// Whether the pod may preempt at all: not with preemptionPolicy Never, and not while pods it
/// already preempted on its nominated node are still terminating.
pub fn eligible(c: &Cycle, snap: &Snapshot) -> Result<(), &'static str> {
    let spec = c.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err(NEVER);
    }
    let nominated = c
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    if let Some(&i) = nominated.and_then(|n| snap.index.get(n)) {
        let terminating = snap.nodes[i]
            .pods
            .iter()
            .any(|p| p.metadata.deletion_timestamp.is_some() && priority(p) < c.priority);
        if terminating {
            return Err(TERMINATING);
        }
    }
    Ok(())
}

/// Splits victims into those whose eviction would break a PodDisruptionBudget (counting the
/// ones before them) and the rest, each in the order given.
fn by_budget(pods: Vec<Arc<Pod>>, pdbs: &[PodDisruptionBudget]) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: Vec<i64> = pdbs
        .iter()
        .map(|b| {
            b.status
                .as_ref()
                .map_or(0, |s| s.disruptions_allowed as i64)
        })
        .collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in pods {
        let mut breaks = false;
        for (k, b) in pdbs.iter().enumerate() {
            let sel = b.spec.as_ref().and_then(|s| s.selector.as_ref());
            let empty = sel.is_none_or(|s| {
                s.match_labels.as_ref().is_none_or(|m| m.is_empty())
                    && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
            });
            if b.metadata.namespace != p.metadata.namespace
                || empty
                || !selects(sel, p.metadata.labels.as_ref())
            {
                continue;
            }
            allowed[k] -= 1;
            if allowed[k] < 0 {
                breaks = true;
            }
        }
        if breaks {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    (violating, fine)
}

/// The fewest, least important victims on one node, or None if evicting every lower-priority
/// pod there would not make the pod fit.
fn victims_on(
    c: &Cycle,
    node: &NodeInfo,
    snap: &Snapshot,
    pdbs: &[PodDisruptionBudget],
) -> Option<Candidate> {
    let mut potential: Vec<Arc<Pod>> = node
        .pods
        .iter()
        .filter(|p| priority(p) < c.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return None;
    }
    let mut what_if = node.clone();
    let mut cycle = c.clone();
    for p in &potential {
        what_if.remove(uid_of(p));
        cycle.update(p, node, snap, -1);
    }
    if filters::run_all(&cycle, &what_if).is_err() {
        return None;
    }
    // Most important first, so they are the first given back their place.
    potential.sort_by(|a, b| {
        priority(b).cmp(&priority(a)).then_with(|| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        })
    });
    let (violating, fine) = by_budget(potential, pdbs);
    let mut out = Candidate {
        node: 0,
        victims: Vec::new(),
        pdb_violations: 0,
    };
    for (list, breaks) in [(violating, true), (fine, false)] {
        for p in list {
            what_if.add(p.clone());
            cycle.update(&p, node, snap, 1);
            if filters::run_all(&cycle, &what_if).is_err() {
                what_if.remove(uid_of(&p));
                cycle.update(&p, node, snap, -1);
                out.victims.push(p);
                out.pdb_violations += breaks as usize;
            }
        }
    }
    Some(out)
}

/// Picks among candidates as upstream does: fewest PDB violations, then the lowest highest
/// victim priority, the smallest priority sum, the fewest victims; then the first.
fn pick(mut cands: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let top = c
            .victims
            .iter()
            .map(|p| priority(p))
            .max()
            .unwrap_or(i32::MIN);
        let sum: i64 = c.victims.iter().map(|p| priority(p) as i64).sum();
        (c.pdb_violations, top, sum, c.victims.len())
    };
    cands.sort_by_key(key);
    cands.into_iter().next()
}

/// The node to nominate and the pods to evict there, or the post-filter's message.
pub fn find(
    c: &Cycle,
    snap: &Snapshot,
    rejects: &[(usize, Reject)],
    pdbs: &[PodDisruptionBudget],
) -> Result<Candidate, String> {
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut cands = Vec::new();
    for (i, r) in rejects {
        if !r.resolvable {
            *verdicts.entry(NOT_HELPFUL.into()).or_insert(0) += 1;
            continue;
        }
        match victims_on(c, &snap.nodes[*i], snap, pdbs) {
            Some(mut cand) => {
                cand.node = *i;
                cands.push(cand);
            }
            None => *verdicts.entry(NO_VICTIMS.into()).or_insert(0) += 1,
        }
    }
    if let Some(best) = pick(cands) {
        return Ok(best);
    }
    let mut parts: Vec<String> = verdicts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    Err(format!(
        "preemption: 0/{} nodes are available: {}.",
        snap.nodes.len(),
        parts.join(", ")
    ))
}
