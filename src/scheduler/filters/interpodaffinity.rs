//! InterPodAffinity: required pod affinity and anti-affinity by topologyKey, both the incoming
//! pod's terms and the anti-affinity of pods already bound (a pod that refuses company keeps
//! newcomers it selects out of its domain). The counts per (topologyKey, value) are taken once
//! per pod (upstream's PreFilter), so each node costs a few lookups.

use super::Reject;
use crate::controllers::ownership::selects;
use crate::scheduler::snapshot::Snapshot;
use crate::scheduler::{Cycle, NodeInfo};
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::HashMap;

pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// matchLabelKeys (op In) or mismatchLabelKeys (NotIn): each key the pod carries becomes a
/// requirement on the pod's own value of it. A missing selector stays missing (selects nothing).
pub fn fold_label_keys(
    selector: &mut Option<LabelSelector>,
    labels: Option<&std::collections::BTreeMap<String, String>>,
    keys: Option<&Vec<String>>,
    op: &str,
) {
    let Some(sel) = selector.as_mut() else { return };
    for k in keys.into_iter().flatten() {
        if let Some(v) = labels.and_then(|l| l.get(k)) {
            sel.match_expressions
                .get_or_insert_with(Vec::new)
                .push(LabelSelectorRequirement {
                    key: k.clone(),
                    operator: op.into(),
                    values: Some(vec![v.clone()]),
                });
        }
    }
}

/// A pod affinity term resolved against the pod that states it: its namespaces and its
/// selector with matchLabelKeys / mismatchLabelKeys folded in.
#[derive(Debug, Clone)]
pub struct Term {
    pub topology_key: String,
    pub weight: i64,
    namespaces: Vec<String>,
    namespace_selector: Option<LabelSelector>,
    selector: Option<LabelSelector>,
}

impl Term {
    pub fn new(t: &PodAffinityTerm, owner: &Pod, weight: i64) -> Term {
        let own_ns = owner.metadata.namespace.clone().unwrap_or_default();
        let mut namespaces = t.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.push(own_ns);
        }
        let labels = owner.metadata.labels.as_ref();
        let mut selector = t.label_selector.clone();
        fold_label_keys(&mut selector, labels, t.match_label_keys.as_ref(), "In");
        fold_label_keys(
            &mut selector,
            labels,
            t.mismatch_label_keys.as_ref(),
            "NotIn",
        );
        Term {
            topology_key: t.topology_key.clone(),
            weight,
            namespaces,
            namespace_selector: t.namespace_selector.clone(),
            selector,
        }
    }

    pub fn matches(&self, pod: &Pod, snap: &Snapshot) -> bool {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let in_ns = self.namespaces.iter().any(|n| n == ns)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| selects(Some(s), snap.namespaces.get(ns)));
        in_ns && selects(self.selector.as_ref(), pod.metadata.labels.as_ref())
    }
}

/// The pod's terms: (required affinity, required anti-affinity, preferred affinity,
/// preferred anti-affinity).
pub fn terms_of(pod: &Pod) -> [Vec<Term>; 4] {
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return Default::default();
    };
    let required = |r: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
        r.into_iter()
            .flatten()
            .map(|t| Term::new(t, pod, 1))
            .collect()
    };
    let preferred = |p: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<Term> {
        p.into_iter()
            .flatten()
            .map(|w| Term::new(&w.pod_affinity_term, pod, w.weight as i64))
            .collect()
    };
    let (aff, anti) = (a.pod_affinity.as_ref(), a.pod_anti_affinity.as_ref());
    [
        required(aff.and_then(|x| {
            x.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        required(anti.and_then(|x| {
            x.required_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        preferred(aff.and_then(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })),
        preferred(anti.and_then(|x| {
            x.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })),
    ]
}

/// topologyKey -> value -> count (or score).
pub type Counts = HashMap<String, HashMap<String, i64>>;

/// Adds `by` to the count of (key, value); a count that reaches zero is dropped, so an empty
/// map still means "no pod matched anywhere" after a what-if removal.
fn bump(map: &mut Counts, key: &str, value: &str, by: i64) {
    let values = map.entry(key.to_string()).or_default();
    let n = values.entry(value.to_string()).or_insert(0);
    *n += by;
    if *n == 0 {
        values.remove(value);
        if values.is_empty() {
            map.remove(key);
        }
    }
}

pub fn get(map: &Counts, key: &str, value: &str) -> i64 {
    map.get(key)
        .and_then(|m| m.get(value))
        .copied()
        .unwrap_or(0)
}

/// The incoming pod's PreFilter state.
#[derive(Debug, Default, Clone)]
pub struct State {
    pub affinity: Vec<Term>,
    pub anti: Vec<Term>,
    pub preferred: Vec<Term>,
    pub preferred_anti: Vec<Term>,
    /// Pairs holding pods that match all the pod's required affinity terms.
    affinity_counts: Counts,
    /// Pairs holding pods matching one of the pod's required anti-affinity terms.
    anti_counts: Counts,
    /// Pairs where a bound pod's required anti-affinity selects the incoming pod.
    existing_anti: Counts,
    /// The first pod of a group with affinity to itself may go anywhere it otherwise fits.
    matches_own_affinity: bool,
}

impl State {
    pub fn new(pod: &Pod, snap: &Snapshot) -> State {
        let [affinity, anti, preferred, preferred_anti] = terms_of(pod);
        let mut s = State {
            matches_own_affinity: !affinity.is_empty()
                && affinity.iter().all(|t| t.matches(pod, snap)),
            affinity,
            anti,
            preferred,
            preferred_anti,
            ..Default::default()
        };
        for (i, terms) in &snap.with_affinity {
            let labels = snap.nodes[*i].labels();
            for t in &terms[1] {
                if let Some(v) = labels.get(&t.topology_key) {
                    if t.matches(pod, snap) {
                        bump(&mut s.existing_anti, &t.topology_key, v, 1);
                    }
                }
            }
        }
        if s.affinity.is_empty() && s.anti.is_empty() {
            return s;
        }
        for node in &snap.nodes {
            let labels = node.labels();
            for p in &node.pods {
                if !s.affinity.is_empty() && s.affinity.iter().all(|t| t.matches(p, snap)) {
                    for t in &s.affinity {
                        if let Some(v) = labels.get(&t.topology_key) {
                            bump(&mut s.affinity_counts, &t.topology_key, v, 1);
                        }
                    }
                }
                for t in &s.anti {
                    if let Some(v) = labels.get(&t.topology_key) {
                        if t.matches(p, snap) {
                            bump(&mut s.anti_counts, &t.topology_key, v, 1);
                        }
                    }
                }
            }
        }
        s
    }

    /// Counts `pod` on `node` once more (`by` 1) or once less (-1): preemption's what-if of
    /// evicting a victim, upstream's PreFilterExtensions AddPod/RemovePod.
    pub fn update(&mut self, incoming: &Pod, pod: &Pod, node: &NodeInfo, snap: &Snapshot, by: i64) {
        let labels = node.labels();
        let [_, anti_of_pod, _, _] = terms_of(pod);
        for t in &anti_of_pod {
            if let Some(v) = labels.get(&t.topology_key) {
                if t.matches(incoming, snap) {
                    bump(&mut self.existing_anti, &t.topology_key, v, by);
                }
            }
        }
        if !self.affinity.is_empty() && self.affinity.iter().all(|t| t.matches(pod, snap)) {
            for t in &self.affinity {
                if let Some(v) = labels.get(&t.topology_key) {
                    bump(&mut self.affinity_counts, &t.topology_key, v, by);
                }
            }
        }
        for t in &self.anti {
            if let Some(v) = labels.get(&t.topology_key) {
                if t.matches(pod, snap) {
                    bump(&mut self.anti_counts, &t.topology_key, v, by);
                }
            }
        }
    }

    fn satisfies_affinity(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        let mut pods_exist = true;
        for t in &self.affinity {
            match labels.get(&t.topology_key) {
                // Every topology key must be on the node.
                None => return false,
                Some(v) => {
                    if get(&self.affinity_counts, &t.topology_key, v) <= 0 {
                        pods_exist = false;
                    }
                }
            }
        }
        pods_exist || (self.affinity_counts.is_empty() && self.matches_own_affinity)
    }

    fn satisfies_anti(&self, node: &NodeInfo) -> bool {
        let labels = node.labels();
        self.anti.iter().all(|t| {
            labels
                .get(&t.topology_key)
                .is_none_or(|v| get(&self.anti_counts, &t.topology_key, v) <= 0)
        })
    }

    fn satisfies_existing_anti(&self, node: &NodeInfo) -> bool {
        self.existing_anti.is_empty()
            || self.existing_anti.iter().all(|(k, values)| {
                node.labels()
                    .get(k)
                    .is_none_or(|v| values.get(v).copied().unwrap_or(0) <= 0)
            })
    }
}

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    let s = &c.affinity;
    if !s.affinity.is_empty() && !s.satisfies_affinity(node) {
        return Err(Reject::new(AFFINITY));
    }
    if !s.satisfies_anti(node) {
        return Err(Reject::resolvable(ANTI_AFFINITY));
    }
    if !s.satisfies_existing_anti(node) {
        return Err(Reject::resolvable(EXISTING_ANTI_AFFINITY));
    }
    Ok(())
}

/// InterPodAffinity's score before normalising: preferred terms of the incoming pod against
/// pods already placed, and bound pods' terms (required affinity at weight 1, preferred
/// affinity and anti-affinity at theirs) that select the incoming pod, summed per
/// (topologyKey, value) and read off each node's labels.
pub fn preferred_scores(c: &Cycle, snap: &Snapshot) -> Option<Counts> {
    let mut scores: Counts = HashMap::new();
    let s = &c.affinity;
    let mut add = |key: &str, value: &str, w: i64| bump(&mut scores, key, value, w);
    if !s.preferred.is_empty() || !s.preferred_anti.is_empty() {
        for node in &snap.nodes {
            let labels = node.labels();
            for p in &node.pods {
                for (terms, sign) in [(&s.preferred, 1), (&s.preferred_anti, -1)] {
                    for t in terms {
                        if let Some(v) = labels.get(&t.topology_key) {
                            if t.matches(p, snap) {
                                add(&t.topology_key, v, sign * t.weight);
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, terms) in &snap.with_affinity {
        let labels = snap.nodes[*i].labels();
        let [req, _, pref, pref_anti] = terms.as_ref();
        for (list, sign) in [(req, 1), (pref, 1), (pref_anti, -1)] {
            for t in list {
                if let Some(v) = labels.get(&t.topology_key) {
                    if t.matches(c.pod, snap) {
                        add(&t.topology_key, v, sign * t.weight);
                    }
                }
            }
        }
    }
    (!scores.is_empty()).then_some(scores)
}
