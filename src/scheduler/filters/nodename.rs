//! NodeName: a pod that names its node may only go there.

use super::Reject;
use crate::scheduler::NodeInfo;
use k8s_openapi::api::core::v1::Pod;

pub const REASON: &str = "node(s) didn't match the requested node name";

pub fn filter(pod: &Pod, node: &NodeInfo) -> Result<(), Reject> {
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && n != node.name() => Err(Reject::new(REASON)),
        _ => Ok(()),
    }
}
