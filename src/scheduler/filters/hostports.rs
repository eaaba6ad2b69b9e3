//! NodePorts: two pods on one node cannot both take the same hostPort and protocol on
//! overlapping host IPs (an empty or 0.0.0.0 IP overlaps every other).

use super::Reject;
use crate::scheduler::snapshot::HostPort;
use crate::scheduler::{Cycle, NodeInfo};

pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

fn wildcard(ip: &str) -> bool {
    ip.is_empty() || ip == "0.0.0.0" || ip == "::"
}

pub fn conflicts(a: &HostPort, b: &HostPort) -> bool {
    a.0 == b.0 && a.1 == b.1 && (wildcard(&a.2) || wildcard(&b.2) || a.2 == b.2)
}

pub fn filter(c: &Cycle, node: &NodeInfo) -> Result<(), Reject> {
    if c.ports
        .iter()
        .any(|w| node.ports.iter().any(|u| conflicts(w, u)))
    {
        Err(Reject::resolvable(REASON))
    } else {
        Ok(())
    }
}
