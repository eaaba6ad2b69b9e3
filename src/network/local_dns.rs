//! The node-local DNS address: the cluster DNS IP (`--cluster-dns`) as a /32 on the node's
//! loopback link, so the kernel delivers packets for it to this node's own DNS server. A pod's
//! query leaves its `eth0`, crosses the bridge to the host (the pod's default route) and, the
//! address being local, goes up to the socket without being routed or NATed further.
//!
//! Loopback rather than a dummy link of its own (NodeLocal DNSCache's choice) because every
//! kernel has it: the test VMs' kernels are built without the dummy driver. The address carries
//! a label of nanokube's ([`LABEL`]), which is how `nanokube killall` finds and removes it
//! without being told the address.

use std::net::Ipv4Addr;

use super::netlink::Netlink;
use super::Error;

/// The link holding the address.
pub const LINK: &str = "lo";
/// The address label marking it as the node's DNS address (`<link>:<tag>`, at most 15 bytes).
pub const LABEL: &str = "lo:nanokube-dns";

/// Puts `ip/32` on the loopback link. Idempotent: an agent restarting finds it as it left it.
pub fn ensure(ip: Ipv4Addr) -> Result<(), Error> {
    let mut nl = Netlink::open()?;
    let lo = nl
        .link(LINK)?
        .ok_or_else(|| Error::Netlink(format!("no {LINK} link")))?;
    nl.add_labelled_address(lo.index, ip, 32, Some(LABEL))?;
    nl.set_up(lo.index, None)
}

/// The addresses of the loopback link labelled as the DNS address.
pub fn addresses() -> Result<Vec<Ipv4Addr>, Error> {
    let mut nl = Netlink::open()?;
    let Some(lo) = nl.link(LINK)? else {
        return Ok(vec![]);
    };
    Ok(nl
        .labelled_addresses(lo.index)?
        .into_iter()
        .filter(|(_, _, label)| label.as_deref() == Some(LABEL))
        .map(|(ip, _, _)| ip)
        .collect())
}

/// Removes every address carrying the label (nothing if there is none).
pub fn remove() -> Result<(), Error> {
    let mut nl = Netlink::open()?;
    let Some(lo) = nl.link(LINK)? else {
        return Ok(());
    };
    for (ip, prefix, label) in nl.labelled_addresses(lo.index)? {
        if label.as_deref() == Some(LABEL) {
            nl.delete_address(lo.index, ip, prefix)?;
        }
    }
    Ok(())
}
