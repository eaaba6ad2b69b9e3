//! The node-local DNS address: a dummy link holding the cluster DNS IP (`--cluster-dns`) as a
//! /32, so the kernel delivers packets for it to this node's own DNS server. A pod's query
//! leaves its `eth0`, crosses the bridge to the host (the pod's default route) and, the address
//! being local, goes up to the socket without being routed or NATed further.

use std::net::Ipv4Addr;

use super::netlink::Netlink;
use super::Error;

/// The link's name (at most 15 bytes, IFNAMSIZ).
pub const LINK: &str = "nanokube-dns";

/// Makes the link `name` (if missing), puts `ip/32` on it and sets it up. Idempotent: an agent
/// restarting finds the link as it left it.
pub fn ensure(name: &str, ip: Ipv4Addr) -> Result<(), Error> {
    let mut nl = Netlink::open()?;
    let link = match nl.link(name)? {
        Some(l) if l.kind.as_deref() == Some("dummy") => l,
        Some(_) => {
            return Err(Error::Netlink(format!(
                "{name} exists and is not a dummy link"
            )))
        }
        None => {
            match nl.add_dummy(name) {
                Ok(()) | Err(Error::Errno(nix::errno::Errno::EEXIST)) => {}
                Err(e) => return Err(e),
            }
            nl.link(name)?
                .ok_or_else(|| Error::Netlink(format!("{name} vanished after its creation")))?
        }
    };
    nl.add_address(link.index, ip, 32)?;
    nl.set_up(link.index, None)
}

/// Removes the link and its address (nothing if it is not there).
pub fn remove(name: &str) -> Result<(), Error> {
    let mut nl = Netlink::open()?;
    match nl.link(name)? {
        Some(l) => nl.delete_link(l.index),
        None => Ok(()),
    }
}
