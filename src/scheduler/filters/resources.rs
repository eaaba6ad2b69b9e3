//! NodeResourcesFit: the pod's requests of cpu, memory and pod count against the node's
//! allocatable less what the pods already bound there request.

use super::Reject;
use crate::scheduler::NodeInfo;
use k8s_openapi::api::core::v1::Pod;

/// Requests in millicores, bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Requests {
    pub milli_cpu: f64,
    pub memory: f64,
}

fn quantity(q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> f64 {
    q.and_then(|q| {
        crate::apiserver::defaults::parse_quantity(&serde_json::Value::String(q.0.clone()))
    })
    .unwrap_or(0.0)
}

/// Sum over containers, or the largest init container if that is more (upstream's rule).
pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        Requests {
            milli_cpu: quantity(r.and_then(|r| r.get("cpu"))) * 1000.0,
            memory: quantity(r.and_then(|r| r.get("memory"))),
        }
    };
    let mut sum = Requests::default();
    for c in &spec.containers {
        let r = of(c);
        sum.milli_cpu += r.milli_cpu;
        sum.memory += r.memory;
    }
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        sum.milli_cpu = sum.milli_cpu.max(r.milli_cpu);
        sum.memory = sum.memory.max(r.memory);
    }
    sum
}

pub fn allocatable(node: &NodeInfo) -> (Requests, f64) {
    let a = node
        .node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref());
    let alloc = Requests {
        milli_cpu: quantity(a.and_then(|a| a.get("cpu"))) * 1000.0,
        memory: quantity(a.and_then(|a| a.get("memory"))),
    };
    (alloc, quantity(a.and_then(|a| a.get("pods"))))
}

pub fn used(node: &NodeInfo) -> Requests {
    node.pods
        .iter()
        .map(pod_requests)
        .fold(Requests::default(), |a, r| Requests {
            milli_cpu: a.milli_cpu + r.milli_cpu,
            memory: a.memory + r.memory,
        })
}

pub fn filter(pod: &Pod, node: &NodeInfo) -> Result<(), Reject> {
    let want = pod_requests(pod);
    let (alloc, max_pods) = allocatable(node);
    let have = used(node);
    let mut reasons = Vec::new();
    if node.pods.len() as f64 + 1.0 > max_pods {
        reasons.push("Too many pods".to_string());
    }
    if want.milli_cpu > 0.0 && have.milli_cpu + want.milli_cpu > alloc.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if want.memory > 0.0 && have.memory + want.memory > alloc.memory {
        reasons.push("Insufficient memory".to_string());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Reject {
            reasons,
            resolvable: true,
        })
    }
}
