//! Filter plugins: each says whether a pod may run on one node and, if not, the reason that
//! goes into the Unschedulable message (upstream's wording, counted per reason).

pub mod hostports;
pub mod interpodaffinity;
pub mod nodeaffinity;
pub mod nodename;
pub mod resources;
pub mod taints;
pub mod topologyspread;
pub mod unschedulable;

use super::{Cycle, NodeInfo};

/// Why a node was rejected; `resolvable` marks reasons that evicting pods could cure
/// (upstream's Unschedulable, against UnschedulableAndUnresolvable), which decides whether
/// preemption tries the node.
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

    pub fn resolvable(reason: impl Into<String>) -> Self {
        Reject {
            reasons: vec![reason.into()],
            resolvable: true,
        }
    }
}

/// All filters in upstream's order; the first that rejects decides (as the framework does).
pub fn run_all(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    unschedulable::filter(c, node)?;
    nodename::filter(c, node)?;
    taints::filter(c, node)?;
    nodeaffinity::filter(c, node)?;
    hostports::filter(c, node)?;
    resources::filter(c, node)?;
    topologyspread::filter(c, node)?;
    interpodaffinity::filter(c, node)?;
    Ok(())
}
