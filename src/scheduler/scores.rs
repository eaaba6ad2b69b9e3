//! Score plugins, each 0..=100 per node after normalising, weighted and summed as upstream's
//! default profile weighs them: TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
//! InterPodAffinity 2, NodeResourcesFit (least allocated) 1, BalancedAllocation 1,
//! ImageLocality 1.

use super::filters::interpodaffinity;
use super::filters::nodeaffinity;
use super::filters::taints::tolerated;
use super::snapshot::{NodeInfo, Snapshot};
use super::Cycle;

const MAX: i64 = 100;

fn fraction(requested: f64, capacity: f64) -> f64 {
    if capacity <= 0.0 {
        1.0
    } else {
        (requested / capacity).min(1.0)
    }
}

/// NodeResourcesFit's LeastAllocated: the free share of cpu and memory after placing the pod
/// (non-zero requests, so empty pods still spread), averaged.
pub fn least_allocated(c: &Cycle, node: &NodeInfo) -> i64 {
    let free = |used: f64, want: f64, cap: f64| -> i64 {
        if cap <= 0.0 || used + want > cap {
            0
        } else {
            ((cap - used - want) * MAX as f64 / cap) as i64
        }
    };
    let cpu = free(
        node.nonzero.milli_cpu,
        c.nonzero.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let mem = free(
        node.nonzero.memory,
        c.nonzero.memory,
        node.allocatable.memory,
    );
    (cpu + mem) / 2
}

/// BalancedAllocation: cpu and memory used in like proportion after placing the pod score
/// higher (100 * (1 - standard deviation of the two fractions)); pods without requests are
/// not scored by it.
pub fn balanced_allocation(c: &Cycle, node: &NodeInfo) -> i64 {
    if c.requests.milli_cpu == 0.0 && c.requests.memory == 0.0 {
        return 0;
    }
    let fc = fraction(
        node.requested.milli_cpu + c.requests.milli_cpu,
        node.allocatable.milli_cpu,
    );
    let fm = fraction(
        node.requested.memory + c.requests.memory,
        node.allocatable.memory,
    );
    let std = (fc - fm).abs() / 2.0;
    ((1.0 - std) * MAX as f64) as i64
}

/// NodeAffinity: the summed weights of the preferred terms the node matches (normalised to
/// the best node).
pub fn node_affinity_raw(c: &Cycle, node: &NodeInfo) -> i64 {
    let preferred = c
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    preferred
        .into_iter()
        .flatten()
        .filter(|t| nodeaffinity::term_matches(&t.preference, &node.node))
        .map(|t| t.weight as i64)
        .sum()
}

/// TaintToleration: PreferNoSchedule taints the pod does not tolerate (fewer is better).
pub fn intolerable_raw(c: &Cycle, node: &NodeInfo) -> i64 {
    let taints = node.node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "PreferNoSchedule" && !tolerated(c.pod, t))
        .count() as i64
}

/// An image reference as node status lists it: `nginx` is `docker.io/library/nginx:latest`.
pub fn normalized_image(name: &str) -> String {
    let (repo, tail) = match name.split_once('@') {
        Some((r, d)) => (r.to_string(), format!("@{d}")),
        None => {
            let last = name.rsplit('/').next().unwrap_or(name);
            if last.contains(':') {
                (name.to_string(), String::new())
            } else {
                (name.to_string(), ":latest".to_string())
            }
        }
    };
    let first = repo.split('/').next().unwrap_or("");
    let has_host =
        repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = if has_host {
        repo
    } else if repo.contains('/') {
        format!("docker.io/{repo}")
    } else {
        format!("docker.io/library/{repo}")
    };
    format!("{repo}{tail}")
}

const MB: f64 = 1024.0 * 1024.0;
const MIN_THRESHOLD: f64 = 23.0 * MB;
const MAX_CONTAINER_THRESHOLD: f64 = 1000.0 * MB;

/// ImageLocality: the size of the pod's images already on the node, each scaled by the share
/// of nodes that hold it (so one node caching an image does not pull every pod to it).
pub fn image_locality(c: &Cycle, snap: &Snapshot, node: &NodeInfo) -> i64 {
    let Some(spec) = c.pod.spec.as_ref() else {
        return 0;
    };
    if node.images.is_empty() {
        return 0;
    }
    let total = snap.nodes.len().max(1) as f64;
    let mut sum = 0.0;
    let containers: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    for ct in &containers {
        let want = normalized_image(ct.image.as_deref().unwrap_or(""));
        if let Some(size) = node.images.get(&want) {
            let spread = snap.image_nodes.get(&want).copied().unwrap_or(1) as f64 / total;
            sum += *size as f64 * spread;
        }
    }
    let max = MAX_CONTAINER_THRESHOLD * containers.len() as f64;
    let sum = sum.clamp(MIN_THRESHOLD, max.max(MIN_THRESHOLD));
    if max <= MIN_THRESHOLD {
        return 0;
    }
    (MAX as f64 * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)) as i64
}

/// upstream's DefaultNormalizeScore: scale to the best node (or invert, for "fewer is better").
fn normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = match (max, reverse) {
            (0, true) => MAX,
            (0, false) => 0,
            (m, false) => *s * MAX / m,
            (m, true) => MAX - *s * MAX / m,
        };
    }
}

/// Each feasible node's weighted total.
pub fn rank(c: &Cycle, snap: &Snapshot, feasible: &[usize]) -> Vec<i64> {
    let nodes: Vec<&NodeInfo> = feasible.iter().map(|&i| &snap.nodes[i]).collect();
    let mut total: Vec<i64> = nodes
        .iter()
        .map(|n| least_allocated(c, n) + balanced_allocation(c, n))
        .collect();
    let mut add = |mut raw: Vec<i64>, weight: i64, reverse: bool| {
        normalize(&mut raw, reverse);
        for (t, r) in total.iter_mut().zip(raw) {
            *t += weight * r;
        }
    };
    add(
        nodes.iter().map(|n| intolerable_raw(c, n)).collect(),
        3,
        true,
    );
    add(
        nodes.iter().map(|n| node_affinity_raw(c, n)).collect(),
        2,
        false,
    );
    if !snap.image_nodes.is_empty() {
        let raw = nodes.iter().map(|n| image_locality(c, snap, n)).collect();
        // Already 0..=100: scaled by MAX/MAX.
        for (t, r) in total.iter_mut().zip::<Vec<i64>>(raw) {
            *t += r;
        }
    }
    if let Some(map) = interpodaffinity::preferred_scores(c, snap) {
        let raw: Vec<i64> = nodes
            .iter()
            .map(|n| {
                n.labels()
                    .iter()
                    .map(|(k, v)| interpodaffinity::get(&map, k, v))
                    .sum()
            })
            .collect();
        let (min, max) = (
            raw.iter().copied().min().unwrap_or(0),
            raw.iter().copied().max().unwrap_or(0),
        );
        for (t, r) in total.iter_mut().zip(raw) {
            if max > min {
                *t += 2 * (MAX * (r - min) / (max - min));
            }
        }
    }
    if let Some((raw, ignored)) = c.spread.raw_scores(c.pod, snap, feasible) {
        let live = raw.iter().zip(&ignored).filter(|(_, ig)| !**ig);
        let min = live.clone().map(|(r, _)| *r).min().unwrap_or(0);
        let max = live.map(|(r, _)| *r).max().unwrap_or(0);
        for ((t, r), ig) in total.iter_mut().zip(raw).zip(ignored) {
            let s = if ig {
                0
            } else if max == 0 {
                MAX
            } else {
                MAX * (max + min - r) / max
            };
            *t += 2 * s;
        }
    }
    total
}
