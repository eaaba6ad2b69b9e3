//! PodTopologySpread: topologySpreadConstraints. DoNotSchedule constraints filter (placing the
//! pod must keep `count in this domain + 1 - min over domains <= maxSkew`); ScheduleAnyway
//! ones, or the system defaults for a controller's pods without constraints (hostname maxSkew
//! 3, zone maxSkew 5), score. Counted are non-terminating pods of the pod's namespace that the
//! constraint's selector matches, on nodes that pass the pod's node affinity (nodeAffinityPolicy
//! Honor) and, with nodeTaintsPolicy Honor, its tolerations.

use super::interpodaffinity::fold_label_keys;
use super::Reject;
use crate::controllers::ownership::selects;
use crate::scheduler::snapshot::{controller_uid, Domains, NodeInfo, Snapshot, HOSTNAME, ZONE};
use crate::scheduler::Cycle;
use k8s_openapi::api::core::v1::{Pod, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::sync::Arc;

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Which pods a constraint counts.
#[derive(Debug, Clone)]
enum Counted {
    Selector(Option<LabelSelector>),
    /// The system default: pods of the same controller.
    Owner(String),
}

#[derive(Debug, Clone)]
pub struct Constraint {
    pub topology_key: String,
    pub max_skew: i64,
    min_domains: Option<i64>,
    counted: Counted,
    honor_affinity: bool,
    honor_taints: bool,
}

impl Constraint {
    fn new(c: &TopologySpreadConstraint, pod: &Pod) -> Constraint {
        let mut selector = c.label_selector.clone();
        let labels = pod.metadata.labels.as_ref();
        fold_label_keys(&mut selector, labels, c.match_label_keys.as_ref(), "In");
        Constraint {
            topology_key: c.topology_key.clone(),
            max_skew: c.max_skew as i64,
            min_domains: c.min_domains.map(|m| m as i64),
            counted: Counted::Selector(selector),
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    fn system_default(key: &str, max_skew: i64, owner: &str) -> Constraint {
        Constraint {
            topology_key: key.into(),
            max_skew,
            min_domains: None,
            counted: Counted::Owner(owner.into()),
            honor_affinity: true,
            honor_taints: false,
        }
    }

    fn matches_pod(&self, pod: &Pod, ns: &str) -> bool {
        match &self.counted {
            Counted::Selector(sel) => {
                pod.metadata.namespace.as_deref() == Some(ns)
                    && pod.metadata.deletion_timestamp.is_none()
                    && selects(sel.as_ref(), pod.metadata.labels.as_ref())
            }
            Counted::Owner(uid) => controller_uid(pod) == Some(uid.as_str()),
        }
    }

    /// Matching pods per node index. The owner's per-node counts are looked up once here, not
    /// once per node.
    fn counter<'s>(&'s self, snap: &'s Snapshot, ns: &'s str) -> impl Fn(usize) -> i64 + 's {
        let owned = match &self.counted {
            Counted::Owner(uid) => Some(snap.by_owner.get(uid)),
            Counted::Selector(_) => None,
        };
        move |i| match owned {
            Some(per_node) => per_node.map_or(0, |v| v[i] as i64),
            None => snap.nodes[i]
                .pods
                .iter()
                .filter(|p| self.matches_pod(p, ns))
                .count() as i64,
        }
    }

    /// Whether the node's pods count for this constraint (the inclusion policies).
    fn includes(&self, pod: &Pod, node: &NodeInfo) -> bool {
        (!self.honor_affinity || super::nodeaffinity::matches(pod, &node.node))
            && (!self.honor_taints || super::taints::untolerated(pod, &node.node).is_none())
    }
}

fn has_keys(node: &NodeInfo, cs: &[Constraint]) -> bool {
    let labels = node.labels();
    cs.iter().all(|c| labels.contains_key(&c.topology_key))
}

/// Matching pods per domain number of `domains`, over the snapshot's nodes that count; None
/// for a domain none of whose nodes counts.
fn domain_counts(
    c: &Constraint,
    all: &[Constraint],
    pod: &Pod,
    snap: &Snapshot,
    require_all: bool,
    domains: &Domains,
) -> Vec<Option<i64>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let count = c.counter(snap, ns);
    let mut counts = vec![None; domains.values.len()];
    for (i, node) in snap.nodes.iter().enumerate() {
        let Some(d) = domains.of_node[i] else {
            continue;
        };
        if !c.includes(pod, node) || (require_all && !has_keys(node, all)) {
            continue;
        }
        let slot: &mut Option<i64> = &mut counts[d as usize];
        *slot = Some(slot.unwrap_or(0) + count(i));
    }
    counts
}

#[derive(Debug, Default, Clone)]
pub struct State {
    hard: Vec<Constraint>,
    hard_domains: Vec<Arc<Domains>>,
    counts: Vec<Vec<Option<i64>>>,
    min: Vec<i64>,
    self_match: Vec<bool>,
    soft: Vec<Constraint>,
    /// The soft constraints are the pod's own (nodes must then carry all their keys).
    explicit: bool,
}

impl State {
    pub fn new(pod: &Pod, snap: &Snapshot) -> State {
        let spec = pod.spec.as_ref();
        let constraints = spec
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or(&[]);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let mut s = State {
            explicit: !constraints.is_empty(),
            ..Default::default()
        };
        for c in constraints {
            let parsed = Constraint::new(c, pod);
            if c.when_unsatisfiable == "DoNotSchedule" {
                s.hard.push(parsed);
            } else {
                s.soft.push(parsed);
            }
        }
        if constraints.is_empty() {
            if let Some(owner) = controller_uid(pod) {
                s.soft = vec![
                    Constraint::system_default(HOSTNAME, 3, owner),
                    Constraint::system_default(ZONE, 5, owner),
                ];
            }
        }
        for c in &s.hard {
            let domains = snap.domains(&c.topology_key);
            let counts = domain_counts(c, &s.hard, pod, snap, true, &domains);
            let mut min = counts.iter().flatten().copied().min().unwrap_or(0);
            let present = counts.iter().flatten().count() as i64;
            if c.min_domains.is_some_and(|m| present < m) {
                min = 0;
            }
            s.self_match.push(c.matches_pod(pod, ns));
            s.counts.push(counts);
            s.hard_domains.push(domains);
            s.min.push(min);
        }
        s
    }

    /// Counts `pod` on `node` once more (`by` 1) or once less (-1) for the DoNotSchedule
    /// constraints: preemption's what-if of evicting a victim.
    pub fn update(&mut self, incoming: &Pod, pod: &Pod, node: &NodeInfo, by: i64) {
        let ns = incoming.metadata.namespace.as_deref().unwrap_or("");
        for (k, c) in self.hard.iter().enumerate() {
            let Some(d) = self.hard_domains[k].of_node[node.index] else {
                continue;
            };
            if pod.metadata.deletion_timestamp.is_some()
                || !c.matches_pod(pod, ns)
                || !c.includes(incoming, node)
                || !has_keys(node, &self.hard)
            {
                continue;
            }
            let slot = &mut self.counts[k][d as usize];
            *slot = Some(slot.unwrap_or(0) + by);
            let present = self.counts[k].iter().flatten().count() as i64;
            self.min[k] = self.counts[k].iter().flatten().copied().min().unwrap_or(0);
            if c.min_domains.is_some_and(|m| present < m) {
                self.min[k] = 0;
            }
        }
    }

    /// PodTopologySpread's score before normalising, for the feasible nodes: lower counts of
    /// matching pods in the node's domains score lower here (normalising inverts it). None
    /// when the pod has nothing to spread by.
    pub fn raw_scores(
        &self,
        pod: &Pod,
        snap: &Snapshot,
        feasible: &[usize],
    ) -> Option<(Vec<i64>, Vec<bool>)> {
        if self.soft.is_empty() {
            return None;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let ignored: Vec<bool> = feasible
            .iter()
            .map(|&i| self.explicit && !has_keys(&snap.nodes[i], &self.soft))
            .collect();
        let mut raw = vec![0f64; feasible.len()];
        for c in &self.soft {
            let domains = snap.domains(&c.topology_key);
            let hostname = c.topology_key == HOSTNAME;
            let size = if hostname {
                ignored.iter().filter(|ig| !**ig).count()
            } else {
                let mut seen = vec![false; domains.values.len()];
                for (&i, _) in feasible.iter().zip(&ignored).filter(|(_, ig)| !**ig) {
                    if let Some(d) = domains.of_node[i] {
                        seen[d as usize] = true;
                    }
                }
                seen.iter().filter(|s| **s).count()
            };
            let weight = ((size + 2) as f64).ln();
            let counts = (!hostname)
                .then(|| domain_counts(c, &self.soft, pod, snap, self.explicit, &domains));
            let count = c.counter(snap, ns);
            for (k, &i) in feasible.iter().enumerate() {
                if ignored[k] {
                    continue;
                }
                let Some(d) = domains.of_node[i] else {
                    continue;
                };
                let n = match &counts {
                    None => count(i),
                    Some(m) => m[d as usize].unwrap_or(0),
                };
                raw[k] += n as f64 * weight + (c.max_skew - 1) as f64 * weight;
            }
        }
        Some((raw.into_iter().map(|r| r.round() as i64).collect(), ignored))
    }
}

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    let s = &c.spread;
    for (k, con) in s.hard.iter().enumerate() {
        let Some(d) = s.hard_domains[k].of_node[node.index] else {
            return Err(Reject::new(MISSING_LABEL));
        };
        let here = s.counts[k][d as usize].unwrap_or(0);
        let skew = here + s.self_match[k] as i64 - s.min[k];
        if skew > con.max_skew {
            return Err(Reject::resolvable(REASON));
        }
    }
    Ok(())
}
