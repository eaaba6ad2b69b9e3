//! InterPodAffinity: required pod affinity and anti-affinity by topologyKey, both the incoming
//! pod's terms and the anti-affinity of pods already bound (a pod that refuses company keeps
//! newcomers it selects out of its domain). The counts per (topologyKey, value) are taken once
//! per pod (upstream's PreFilter), so each node costs a few lookups.

use super::Reject;
use crate::controllers::ownership::selects;
use crate::scheduler::snapshot::Snapshot;
use crate::scheduler::{Cycle, NodeInfo};
use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use std::collections::HashMap;

pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

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
        let mut fold = |keys: Option<&Vec<String>>, op: &str| {
            for k in keys.into_iter().flatten() {
                let (Some(sel), Some(v)) = (selector.as_mut(), labels.and_then(|l| l.get(k)))
                else {
                    continue;
                };
                sel.match_expressions
                    .get_or_insert_with(Vec::new)
                    .push(LabelSelectorRequirement {
                        key: k.clone(),
                        operator: op.into(),
                        values: Some(vec![v.clone()]),
                    });
            }
        };
        fold(t.match_label_keys.as_ref(), "In");
        fold(t.mismatch_label_keys.as_ref(), "NotIn");
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
    let mut out: [Vec<Term>; 4] = Default::default();
    let Some(a) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return out;
    };
    if let Some(pa) = a.pod_affinity.as_ref() {
        for t in pa
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out[0].push(Term::new(t, pod, 1));
        }
        for w in pa
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out[2].push(Term::new(&w.pod_affinity_term, pod, w.weight as i64));
        }
    }
    if let Some(pa) = a.pod_anti_affinity.as_ref() {
        for t in pa
            .required_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out[1].push(Term::new(t, pod, 1));
        }
        for w in pa
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
        {
            out[3].push(Term::new(&w.pod_affinity_term, pod, w.weight as i64));
        }
    }
    out
}

/// topologyKey -> value -> count (or score).
pub type Counts = HashMap<String, HashMap<String, i64>>;

fn bump(map: &mut Counts, key: &str, value: &str, by: i64) {
    *map.entry(key.to_string())
        .or_default()
        .entry(value.to_string())
        .or_insert(0) += by;
}

pub fn get(map: &Counts, key: &str, value: &str) -> i64 {
    map.get(key)
        .and_then(|m| m.get(value))
        .copied()
        .unwrap_or(0)
}

/// The incoming pod's PreFilter state.
#[derive(Debug, Default)]
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
        for (i, existing) in &snap.with_affinity {
            let labels = snap.nodes[*i].labels();
            for t in &terms_of(existing)[1] {
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
    for (i, existing) in &snap.with_affinity {
        let labels = snap.nodes[*i].labels();
        let [req, _, pref, pref_anti] = terms_of(existing);
        for (terms, sign) in [(&req, 1), (&pref, 1), (&pref_anti, -1)] {
            for t in terms {
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
