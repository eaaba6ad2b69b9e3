//! NodeName: a pod that names its node may only go there.

use super::Reject;
use crate::scheduler::{Cycle, NodeInfo};

pub const REASON: &str = "node(s) didn't match the requested node name";

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    match c.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if !n.is_empty() && n != node.name() => Err(Reject::new(REASON)),
        _ => Ok(()),
    }
}
