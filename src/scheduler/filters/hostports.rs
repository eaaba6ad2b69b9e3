//! NodePorts: two pods on one node cannot both take the same hostPort/protocol.

use super::Reject;
use crate::scheduler::NodeInfo;
use k8s_openapi::api::core::v1::Pod;

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

fn host_ports(pod: &Pod) -> Vec<(i32, String)> {
    let spec = pod.spec.iter();
    spec.flat_map(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
    })
    .flat_map(|c| c.ports.iter().flatten())
    .filter_map(|p| {
        let hp = p.host_port.filter(|hp| *hp > 0)?;
        Some((hp, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
    })
    .collect()
}

pub fn filter(pod: &Pod, node: &NodeInfo) -> Result<(), Reject> {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return Ok(());
    }
    let used: Vec<_> = node.pods.iter().flat_map(host_ports).collect();
    if wanted.iter().any(|w| used.contains(w)) {
        Err(Reject::new(REASON))
    } else {
        Ok(())
    }
}
