//! Scores, 0..=100 each, summed: least-allocated, balanced allocation, and spreading pods of one
//! owner across nodes.

use super::filters::resources::{allocatable, pod_requests, used};
use super::NodeInfo;
use k8s_openapi::api::core::v1::Pod;

fn fractions(pod: &Pod, node: &NodeInfo) -> (f64, f64) {
    let (alloc, _) = allocatable(node);
    let (u, w) = (used(node), pod_requests(pod));
    let f = |used: f64, cap: f64| {
        if cap <= 0.0 {
            1.0
        } else {
            (used / cap).min(1.0)
        }
    };
    (
        f(u.milli_cpu + w.milli_cpu, alloc.milli_cpu),
        f(u.memory + w.memory, alloc.memory),
    )
}

/// More free capacity after placing the pod scores higher.
pub fn least_allocated(pod: &Pod, node: &NodeInfo) -> i64 {
    let (c, m) = fractions(pod, node);
    (((1.0 - c) + (1.0 - m)) * 50.0).round() as i64
}

/// cpu and memory used in similar proportion scores higher.
pub fn balanced_allocation(pod: &Pod, node: &NodeInfo) -> i64 {
    let (c, m) = fractions(pod, node);
    ((1.0 - (c - m).abs()) * 100.0).round() as i64
}

fn owner(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// Fewer pods of the same controller already on the node scores higher.
pub fn owner_spread(pod: &Pod, node: &NodeInfo) -> i64 {
    let Some(mine) = owner(pod) else { return 100 };
    let same = node.pods.iter().filter(|p| owner(p) == Some(mine)).count() as i64;
    (100 - same * 20).max(0)
}

pub fn total(pod: &Pod, node: &NodeInfo) -> i64 {
    least_allocated(pod, node) + balanced_allocation(pod, node) + owner_spread(pod, node)
}
