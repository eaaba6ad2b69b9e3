//! Pod networking on a node (synchronous; knows nothing of API types): a bridge holding the
//! gateway of the node's pod range, one veth pair per pod with its peer as the pod's `eth0`, and
//! addresses from [`ipam`]. All link work goes through rtnetlink ([`netlink`]); nothing shells out.
//! docs/networking.md follows a packet through it.

pub mod cni;
pub mod hostports;
pub mod ipam;
pub mod local_dns;
pub mod masquerade;
pub mod netlink;
pub mod netns;
pub mod netpol;
pub mod pod;
pub mod proxy;
pub mod routes;
pub mod vxlan;

use std::net::Ipv4Addr;

/// Errors of pod networking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// The kernel refused a netlink request.
    #[error("netlink: {0}")]
    Errno(nix::errno::Errno),
    #[error("netlink: {0}")]
    Netlink(String),
    #[error("no free address left in {0}")]
    Exhausted(String),
    #[error("invalid CIDR {0:?}")]
    Cidr(String),
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// An IPv4 network, e.g. 10.42.0.0/24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The first and last host addresses (network and broadcast excluded).
    pub fn hosts(&self) -> (Ipv4Addr, Ipv4Addr) {
        let net = u32::from(self.network());
        let bcast = net | !self.mask();
        (Ipv4Addr::from(net + 1), Ipv4Addr::from(bcast - 1))
    }

    /// The gateway a node's bridge holds: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        self.hosts().0
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// The `index`th subnet of prefix length `prefix` inside this one, if it fits.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Cidr> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let bits = prefix - self.prefix;
        if bits < 32 && index >= (1u32 << bits) {
            return None;
        }
        let step = if prefix == 32 {
            1
        } else {
            1u32 << (32 - prefix)
        };
        let base = u32::from(self.network()).checked_add(index.checked_mul(step)?)?;
        Some(Cidr {
            addr: Ipv4Addr::from(base),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl std::str::FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Cidr, Error> {
        let (a, p) = s.split_once('/').ok_or_else(|| Error::Cidr(s.into()))?;
        let addr = a.parse().map_err(|_| Error::Cidr(s.into()))?;
        let prefix: u8 = p.parse().map_err(|_| Error::Cidr(s.into()))?;
        if prefix > 32 {
            return Err(Error::Cidr(s.into()));
        }
        Ok(Cidr { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_arithmetic() {
        let c: Cidr = "10.42.0.0/16".parse().unwrap();
        assert_eq!(c.subnet(24, 0).unwrap().to_string(), "10.42.0.0/24");
        assert_eq!(c.subnet(24, 255).unwrap().to_string(), "10.42.255.0/24");
        assert!(c.subnet(24, 256).is_none());
        let n = c.subnet(24, 7).unwrap();
        assert_eq!(n.gateway().to_string(), "10.42.7.1");
        assert_eq!(n.hosts().1.to_string(), "10.42.7.254");
        assert!(n.contains("10.42.7.9".parse().unwrap()));
        assert!(!n.contains("10.42.8.9".parse().unwrap()));
        assert!("10.42.0.0".parse::<Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Cidr>().is_err());
    }
}
