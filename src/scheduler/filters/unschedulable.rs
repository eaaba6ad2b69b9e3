//! NodeUnschedulable: a cordoned node takes only pods that tolerate
//! node.kubernetes.io/unschedulable:NoSchedule.

use super::Reject;
use crate::scheduler::{Cycle, NodeInfo};
use k8s_openapi::api::core::v1::Taint;

pub const REASON: &str = "node(s) were unschedulable";

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    let cordoned = node
        .node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return Ok(());
    }
    let taint = Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if super::taints::tolerated(c.pod, &taint) {
        Ok(())
    } else {
        Err(Reject::new(REASON))
    }
}
