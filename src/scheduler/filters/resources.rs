//! NodeResourcesFit: the pod's requests (cpu, memory, ephemeral-storage, extended resources)
//! and one more pod against the node's allocatable, less what the pods bound there request
//! and what pods nominated there with at least this pod's priority hold.

use super::Reject;
use crate::scheduler::requests::Requests;
use crate::scheduler::{Cycle, NodeInfo};

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    let mut used = node.requested.clone();
    let mut pods = node.pods.len() as f64;
    for n in &node.nominated {
        if n.priority >= c.priority && n.uid != c.uid {
            used.add(&n.requests);
            pods += 1.0;
        }
    }
    let mut reasons = Vec::new();
    if pods + 1.0 > node.max_pods {
        reasons.push("Too many pods".to_string());
    }
    insufficient(&c.requests, &used, &node.allocatable, &mut reasons);
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Reject {
            reasons,
            resolvable: true,
        })
    }
}

fn insufficient(want: &Requests, used: &Requests, alloc: &Requests, out: &mut Vec<String>) {
    let short = |w: f64, u: f64, a: f64| w > 0.0 && w > a - u;
    if short(want.milli_cpu, used.milli_cpu, alloc.milli_cpu) {
        out.push("Insufficient cpu".into());
    }
    if short(want.memory, used.memory, alloc.memory) {
        out.push("Insufficient memory".into());
    }
    if short(
        want.ephemeral_storage,
        used.ephemeral_storage,
        alloc.ephemeral_storage,
    ) {
        out.push("Insufficient ephemeral-storage".into());
    }
    for (name, w) in &want.other {
        let u = used.other.get(name).copied().unwrap_or(0.0);
        let a = alloc.other.get(name).copied().unwrap_or(0.0);
        if short(*w, u, a) {
            out.push(format!("Insufficient {name}"));
        }
    }
}
