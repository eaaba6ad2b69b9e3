//! Routes to the other nodes' pod ranges through their node addresses (flannel's host-gw
//! backend): on a shared link, a packet for a pod elsewhere goes straight to its node, which
//! forwards it onto its bridge. No encapsulation, so the nodes must be on one layer-2 network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::netlink::Netlink;
use super::{Cidr, Error};

/// How pods reach pods on other nodes (k3s's --flannel-backend).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// Routes to each node's range via its address: no encapsulation, nodes on one link.
    #[default]
    HostGw,
    /// A VXLAN overlay (src/network/vxlan.rs): nodes need only reach each other by IP.
    Vxlan,
}

/// The routes this node keeps, range -> gateway (the range's node).
#[derive(Debug, Default)]
pub struct HostGw {
    routes: BTreeMap<Cidr, Ipv4Addr>,
}

impl HostGw {
    /// Makes the routes exactly `want` (other nodes' ranges and addresses): new ones added,
    /// changed ones replaced, those of nodes that went removed.
    pub fn sync(&mut self, want: &BTreeMap<Cidr, Ipv4Addr>) -> Result<(), Error> {
        let mut nl = Netlink::open()?;
        for (cidr, gw) in want {
            if self.routes.get(cidr) != Some(gw) {
                nl.replace_route(cidr.network(), cidr.prefix, Some(*gw), None)?;
                self.routes.insert(*cidr, *gw);
            }
        }
        let gone: Vec<Cidr> = self
            .routes
            .keys()
            .filter(|c| !want.contains_key(c))
            .copied()
            .collect();
        for cidr in gone {
            nl.delete_route(cidr.network(), cidr.prefix)?;
            self.routes.remove(&cidr);
        }
        Ok(())
    }
}
