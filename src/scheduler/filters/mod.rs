//! Filter plugins: each says whether a pod may run on one node and, if not, the reason that
//! goes into the Unschedulable message (upstream's wording, counted per reason).

pub mod hostports;
pub mod nodeaffinity;
pub mod nodename;
pub mod resources;
pub mod taints;
pub mod unschedulable;

use super::NodeInfo;
use k8s_openapi::api::core::v1::Pod;

/// Why a node was rejected; `resolvable` marks reasons that evicting pods could cure, which
/// decides the preemption half of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Reject {
    pub fn new(reason: impl Into<String>) -> Self {
        Reject {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// All filters in upstream's order; the first that rejects decides (as the framework does).
pub fn run_all(pod: &Pod, node: &NodeInfo) -> Result<(), Reject> {
    unschedulable::filter(pod, node)?;
    nodename::filter(pod, node)?;
    taints::filter(pod, node)?;
    nodeaffinity::filter(pod, node)?;
    hostports::filter(pod, node)?;
    resources::filter(pod, node)?;
    Ok(())
}
