//! Pods on other nodes through a VXLAN overlay (flannel's vxlan backend, which k3s uses by
//! default): each node has a VTEP, `flannel.1` (VNI 1, UDP 8472), holding the first address of
//! its pod range as a /32. For every other node it writes three things:
//! - a route to that node's range via its VTEP address, on flannel.1, onlink;
//! - a permanent ARP entry giving that address the node's VTEP MAC;
//! - a forwarding entry sending frames for that MAC to the node's own address in UDP.
//!
//! The nodes then need only reach each other by IP, not share a link. The MAC a node's VTEP has
//! is published on its Node object (flannel's `backend-data` annotation).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::netlink::Netlink;
use super::{Cidr, Error};

pub const DEVICE: &str = "flannel.1";
pub const VNI: u32 = 1;
/// The Linux kernel's VXLAN port, which flannel uses (not IANA's 4789).
pub const PORT: u16 = 8472;
/// What VXLAN adds around a frame: outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14.
pub const OVERHEAD: u32 = 50;

/// Flannel's Node annotations, so tools that read them find the familiar names.
pub const BACKEND_TYPE: &str = "flannel.alpha.coreos.com/backend-type";
pub const BACKEND_DATA: &str = "flannel.alpha.coreos.com/backend-data";
pub const PUBLIC_IP: &str = "flannel.alpha.coreos.com/public-ip";

/// Another node as the overlay needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub node_ip: Ipv4Addr,
    pub vtep_mac: [u8; 6],
}

/// This node's VTEP and the entries written for the other nodes.
#[derive(Debug)]
pub struct Vxlan {
    index: u32,
    pub mac: [u8; 6],
    pub mtu: u32,
    peers: BTreeMap<Cidr, Peer>,
}

/// The MTU of the link holding `ip` (1500 if none is found).
fn underlay_mtu(nl: &mut Netlink, ip: Ipv4Addr) -> Result<u32, Error> {
    for l in nl.links()? {
        if nl.addresses(l.index)?.iter().any(|(a, _)| *a == ip) {
            return Ok(l.mtu.unwrap_or(1500));
        }
    }
    Ok(1500)
}

impl Vxlan {
    /// Makes (or finds, after an agent restart) this node's VTEP for range `mine`, sending from
    /// `local`.
    pub fn ensure(local: Ipv4Addr, mine: Cidr) -> Result<Vxlan, Error> {
        let mut nl = Netlink::open()?;
        let mtu = underlay_mtu(&mut nl, local)? - OVERHEAD;
        // A VTEP left by an earlier run is kept only if it is still this node's: the same
        // VNI and port, sending from the same address (the node's IP may have changed).
        let wanted = crate::network::netlink::VxlanParams {
            vni: Some(VNI),
            local: Some(local),
            port: Some(PORT),
        };
        match nl.link(DEVICE)? {
            Some(old) if old.vxlan.as_ref() == Some(&wanted) => {}
            Some(old) => {
                nl.delete_link(old.index)?;
                nl.add_vxlan(DEVICE, VNI, local, PORT, mtu)?;
            }
            None => nl.add_vxlan(DEVICE, VNI, local, PORT, mtu)?,
        }
        let link = nl
            .link(DEVICE)?
            .ok_or_else(|| Error::Netlink(format!("{DEVICE} vanished")))?;
        let vtep = mine.network();
        for (addr, prefix) in nl.addresses(link.index)? {
            // The VTEP address of a podCIDR this node no longer has.
            if (addr, prefix) != (vtep, 32) {
                nl.delete_address(link.index, addr, prefix)?;
            }
        }
        if !nl.addresses(link.index)?.contains(&(vtep, 32)) {
            nl.add_address(link.index, vtep, 32)?;
        }
        nl.set_up(link.index, None)?;
        let mac = link
            .mac
            .ok_or_else(|| Error::Netlink(format!("{DEVICE} has no MAC address")))?;
        Ok(Vxlan {
            index: link.index,
            mac,
            mtu: link.mtu.unwrap_or(mtu),
            peers: BTreeMap::new(),
        })
    }

    /// Flannel's backend-data value for this node: `{"VNI":1,"VtepMAC":"..."}`.
    pub fn backend_data(&self) -> String {
        serde_json::json!({"VNI": VNI, "VtepMAC": format_mac(&self.mac)}).to_string()
    }

    /// Makes the entries exactly those of `want` (the other nodes' ranges): new and changed
    /// peers written, those of nodes that went removed.
    pub fn sync(&mut self, want: &BTreeMap<Cidr, Peer>) -> Result<(), Error> {
        let mut nl = Netlink::open()?;
        let gone: Vec<(Cidr, Peer)> = self
            .peers
            .iter()
            .filter(|(c, p)| want.get(c) != Some(p))
            .map(|(c, p)| (*c, *p))
            .collect();
        for (cidr, peer) in gone {
            if !want.contains_key(&cidr) {
                nl.delete_route(cidr.network(), cidr.prefix)?;
            }
            nl.delete_neighbour(self.index, cidr.network())?;
            nl.delete_fdb(self.index, peer.vtep_mac, peer.node_ip)?;
            self.peers.remove(&cidr);
        }
        for (cidr, peer) in want {
            if self.peers.get(cidr) == Some(peer) {
                continue;
            }
            let vtep = cidr.network();
            nl.replace_neighbour(self.index, vtep, peer.vtep_mac)?;
            nl.replace_fdb(self.index, peer.vtep_mac, peer.node_ip)?;
            nl.replace_onlink_route(vtep, cidr.prefix, vtep, self.index)?;
            self.peers.insert(*cidr, *peer);
        }
        Ok(())
    }
}

/// Removes the VTEP (`nanokube killall`); its routes and entries go with it.
pub fn remove() -> Result<(), Error> {
    let mut nl = Netlink::open()?;
    if let Some(l) = nl.link(DEVICE)? {
        nl.delete_link(l.index)?;
    }
    Ok(())
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = text
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).ok())
        .collect::<Option<_>>()?;
    parts.try_into().ok()
}

/// The VTEP MAC in a node's backend-data annotation.
pub fn vtep_mac_of(backend_data: &str) -> Option<[u8; 6]> {
    let v: serde_json::Value = serde_json::from_str(backend_data).ok()?;
    parse_mac(v.get("VtepMAC")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root: in a network namespace of the test's own thread.
    #[test]
    fn a_vtep_left_with_another_local_address_is_made_again() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let mut nl = Netlink::open().unwrap();
            let lo = nl.link("lo").unwrap().unwrap();
            nl.set_up(lo.index, None).unwrap();
            let (old_ip, new_ip) = (Ipv4Addr::new(10, 99, 0, 2), Ipv4Addr::new(10, 99, 0, 7));
            nl.add_address(lo.index, old_ip, 24).unwrap();
            nl.add_address(lo.index, new_ip, 24).unwrap();
            nl.add_vxlan(DEVICE, VNI, old_ip, PORT, 1400).unwrap();
            let stale = nl.link(DEVICE).unwrap().unwrap();
            assert_eq!(stale.vxlan.as_ref().unwrap().local, Some(old_ip));
            let mine: Cidr = "10.42.1.0/24".parse().unwrap();
            let v = Vxlan::ensure(new_ip, mine).unwrap();
            let link = nl.link(DEVICE).unwrap().unwrap();
            assert_ne!(link.index, stale.index, "the stale VTEP is replaced");
            assert_eq!(link.vxlan.as_ref().unwrap().local, Some(new_ip));
            assert_eq!(link.vxlan.as_ref().unwrap().vni, Some(VNI));
            // A podCIDR's VTEP address of an earlier run goes; this one's is there.
            nl.add_address(link.index, Ipv4Addr::new(10, 42, 9, 0), 32)
                .unwrap();
            let again = Vxlan::ensure(new_ip, mine).unwrap();
            assert_eq!(again.index, v.index, "a VTEP that fits is kept");
            assert_eq!(
                nl.addresses(link.index).unwrap(),
                vec![(Ipv4Addr::new(10, 42, 1, 0), 32)]
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn backend_data_round_trips_as_flannel_writes_it() {
        let mac = [0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x5f];
        assert_eq!(format_mac(&mac), "0a:1b:2c:3d:4e:5f");
        let data = serde_json::json!({"VNI": 1, "VtepMAC": "0a:1b:2c:3d:4e:5f"}).to_string();
        assert_eq!(vtep_mac_of(&data), Some(mac));
        assert_eq!(
            vtep_mac_of(r#"{"VNI":1,"VtepMAC":"zz:1b:2c:3d:4e:5f"}"#),
            None
        );
        assert_eq!(vtep_mac_of(r#"{"VNI":1,"VtepMAC":"0a:1b"}"#), None);
        assert_eq!(vtep_mac_of("not json"), None);
    }
}
