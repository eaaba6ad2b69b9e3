//! A node's bridge and the veth pair of each pod. Each step is idempotent, so a retry after a
//! crash (or a re-adopting agent) finishes what was begun instead of failing on what exists.

use std::net::Ipv4Addr;
use std::os::fd::BorrowedFd;
use std::path::Path;

use super::ipam::Ipam;
use super::netlink::Netlink;
use super::{Cidr, Error};

/// The name of the pod side of the pair, as every CNI plugin names it.
pub const POD_IFNAME: &str = "eth0";

/// The node's bridge and pod range.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub range: Cidr,
    pub ipam: Ipam,
    /// The pods' MTU when it must be below the default (an overlay's encapsulation).
    pub mtu: Option<u32>,
}

/// A pod's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub host_ifname: String,
}

/// The host-side name of a pod's veth: stable for the pod, within IFNAMSIZ.
pub fn host_ifname(pod_id: &str) -> String {
    use sha2::Digest;
    let sum = sha2::Sha256::digest(pod_id.as_bytes());
    format!("veth{}", &hex::encode(sum)[..8])
}

impl Bridge {
    /// Makes sure the bridge exists, holds the range's gateway and is up, and that the node
    /// forwards IPv4 (pods reach other nodes and services through it).
    pub fn ensure(name: &str, range: Cidr, ipam_dir: &Path) -> Result<Bridge, Error> {
        let mut nl = Netlink::open()?;
        let link = match nl.link(name)? {
            Some(l) => l,
            None => {
                match nl.add_bridge(name) {
                    Ok(()) | Err(Error::Errno(nix::errno::Errno::EEXIST)) => {}
                    Err(e) => return Err(e),
                }
                nl.link(name)?
                    .ok_or_else(|| Error::Netlink(format!("bridge {name} vanished")))?
            }
        };
        nl.add_address(link.index, range.gateway(), range.prefix)?;
        nl.set_up(link.index, None)?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(Error::io("enable ip_forward"))?;
        Ok(Bridge {
            name: name.to_string(),
            range,
            ipam: Ipam::open(ipam_dir, range)?,
            mtu: None,
        })
    }

    /// Gives the pod `pod_id`, whose network namespace is `netns`, an address and a veth on the
    /// bridge, with lo up and a default route through the gateway.
    pub fn attach(&self, pod_id: &str, netns: BorrowedFd<'_>) -> Result<Attachment, Error> {
        let ip = self.ipam.allocate(pod_id)?;
        let host = host_ifname(pod_id);
        let mut nl = Netlink::open()?;
        let bridge = nl
            .link(&self.name)?
            .ok_or_else(|| Error::Netlink(format!("bridge {} is missing", self.name)))?;
        let mut pod = Netlink::in_namespace(netns)?;
        let have_peer = pod.link(POD_IFNAME)?.is_some();
        let host_link = match (nl.link(&host)?, have_peer) {
            (Some(l), true) => l,
            (existing, _) => {
                // Half made by an earlier attempt: start over.
                if let Some(l) = existing {
                    nl.delete_link(l.index)?;
                }
                nl.add_veth(&host, POD_IFNAME, netns)?;
                nl.link(&host)?
                    .ok_or_else(|| Error::Netlink(format!("veth {host} vanished")))?
            }
        };
        if let Some(mtu) = self.mtu {
            nl.set_mtu(host_link.index, mtu)?;
        }
        nl.set_up(host_link.index, Some(bridge.index))?;
        nl.set_hairpin(host_link.index)?;
        if let Some(lo) = pod.link("lo")? {
            pod.set_up(lo.index, None)?;
        }
        let eth = pod
            .link(POD_IFNAME)?
            .ok_or_else(|| Error::Netlink("pod eth0 vanished".into()))?;
        if let Some(mtu) = self.mtu {
            pod.set_mtu(eth.index, mtu)?;
        }
        pod.add_address(eth.index, ip, self.range.prefix)?;
        pod.set_up(eth.index, None)?;
        let gateway = self.range.gateway();
        pod.replace_route(Ipv4Addr::UNSPECIFIED, 0, Some(gateway), Some(eth.index))?;
        Ok(Attachment {
            ip,
            prefix: self.range.prefix,
            gateway,
            host_ifname: host,
        })
    }

    /// Removes the pod's veth (if its namespace is gone, the kernel removed it already) and
    /// releases its address.
    pub fn detach(&self, pod_id: &str) -> Result<(), Error> {
        let mut nl = Netlink::open()?;
        if let Some(l) = nl.link(&host_ifname(pod_id))? {
            nl.delete_link(l.index)?;
        }
        self.ipam.release(pod_id)
    }
}
