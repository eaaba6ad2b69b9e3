//! The pure part of Service allocation: which cluster IPs and node ports a range holds, the
//! order dynamic allocation tries them in, and upstream's refusal messages.
//!
//! As kube-apiserver does, each range has a low "static" band that dynamic allocation uses only
//! once the rest is full, so addresses picked by hand (the cluster DNS service's) rarely clash
//! with generated ones; addresses in `IpRange::reserved` are never generated at all.

use crate::network::Cidr;
use std::net::Ipv4Addr;

pub const IP_ALLOCATED: &str = "provided IP is already allocated";
pub const PORT_ALLOCATED: &str = "provided port is already allocated";
pub const RANGE_FULL: &str = "range is full";

pub fn ip_not_in_range(ip: Ipv4Addr, range: &IpRange) -> String {
    format!(
        "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
        range.cidr
    )
}

pub fn port_not_in_range(range: &PortRange) -> String {
    format!("provided port is not in the valid range. The range of valid ports is {range}")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "--service-cidr {0}: a range with at least two host addresses (prefix /8 to /30) is needed"
    )]
    Cidr(String),
    #[error("--service-node-port-range {0}: expected <first>-<last>, e.g. 30000-32767")]
    Ports(String),
}

/// Service cluster IPs: the host addresses of --service-cidr (network and broadcast excluded).
#[derive(Debug, Clone)]
pub struct IpRange {
    pub cidr: Cidr,
    /// Given only when asked for by address, never generated: the `kubernetes` service's
    /// (the first address) and the cluster DNS address.
    pub reserved: Vec<Ipv4Addr>,
}

impl IpRange {
    pub fn new(cidr: &str, reserved: &[Ipv4Addr]) -> Result<IpRange, Error> {
        let parsed: Cidr = cidr.parse().map_err(|_| Error::Cidr(cidr.into()))?;
        if !(8..=30).contains(&parsed.prefix) {
            return Err(Error::Cidr(cidr.into()));
        }
        let mut range = IpRange {
            cidr: parsed,
            reserved: Vec::new(),
        };
        range.reserved.push(range.first());
        range.reserved.extend(reserved.iter().copied());
        Ok(range)
    }

    /// The first host address: the `kubernetes` service's.
    pub fn first(&self) -> Ipv4Addr {
        self.cidr.hosts().0
    }

    fn size(&self) -> u32 {
        let (a, b) = self.cidr.hosts();
        u32::from(b) - u32::from(a) + 1
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let (a, b) = self.cidr.hosts();
        (a..=b).contains(&ip)
    }

    /// Addresses for dynamic allocation, best first; `seed` picks where the walk starts.
    pub fn candidates(&self, seed: u32) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let base = u32::from(self.first());
        // kube-apiserver's band: size/16, at least 16, at most 256 (none below 16 addresses).
        let band = static_band(self.size(), 16, 16, 256);
        probe_order(self.size(), band, seed)
            .map(move |i| Ipv4Addr::from(base + i))
            .filter(|ip| !self.reserved.contains(ip))
    }
}

/// Node ports: --service-node-port-range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl std::str::FromStr for PortRange {
    type Err = Error;
    fn from_str(s: &str) -> Result<PortRange, Error> {
        let bad = || Error::Ports(s.into());
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first {
            return Err(bad());
        }
        Ok(PortRange { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl PortRange {
    pub fn contains(&self, port: i64) -> bool {
        (i64::from(self.first)..=i64::from(self.last)).contains(&port)
    }

    fn size(&self) -> u32 {
        u32::from(self.last - self.first) + 1
    }

    /// Ports for dynamic allocation, best first.
    pub fn candidates(&self, seed: u32) -> impl Iterator<Item = u16> {
        let first = self.first;
        // kube-apiserver's node port band: size/32, at least 16, at most 128.
        let band = static_band(self.size(), 16, 32, 128);
        probe_order(self.size(), band, seed).map(move |i| first + i as u16)
    }
}

/// The size of the low band a range of `size` keeps for values asked for by hand.
fn static_band(size: u32, min: u32, step: u32, max: u32) -> u32 {
    if size < min {
        0
    } else {
        (size / step).clamp(min, max)
    }
}

/// Every index of a range of `size` once: the upper part (from `band` up) first, starting at a
/// point `seed` picks and wrapping, then the static band the same way.
fn probe_order(size: u32, band: u32, seed: u32) -> impl Iterator<Item = u32> {
    let upper = size - band;
    let high = (0..upper).map(move |i| band + (seed % upper.max(1) + i) % upper);
    let low = (0..band).map(move |i| (seed % band.max(1) + i) % band);
    high.chain(low)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_follow_upstream() {
        assert_eq!(static_band(65534, 16, 16, 256), 256);
        assert_eq!(static_band(254, 16, 16, 256), 16);
        assert_eq!(static_band(14, 16, 16, 256), 0);
        assert_eq!(static_band(2768, 16, 32, 128), 86);
    }

    #[test]
    fn every_index_once_upper_band_first() {
        let order: Vec<u32> = probe_order(10, 4, 7).collect();
        // Upper part 4..10 from 4 + 7 % 6, then the band 0..4 from 7 % 4.
        assert_eq!(order, [5, 6, 7, 8, 9, 4, 3, 0, 1, 2]);
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(probe_order(3, 0, 5).collect::<Vec<_>>(), [2, 0, 1]);
    }

    #[test]
    fn ip_range_never_generates_reserved_addresses() {
        let dns: Ipv4Addr = "10.43.0.10".parse().unwrap();
        let r = IpRange::new("10.43.0.0/16", &[dns]).unwrap();
        assert_eq!(r.first(), Ipv4Addr::new(10, 43, 0, 1));
        assert!(r.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 43, 255, 255)));
        assert!(!r.contains(Ipv4Addr::new(10, 43, 0, 0)));
        assert!(!r.contains(Ipv4Addr::new(10, 44, 0, 1)));
        // The first candidate is above the static band (10.43.0.1 - 10.43.1.0).
        let first = r.candidates(0).next().unwrap();
        assert_eq!(first, Ipv4Addr::new(10, 43, 1, 1));
        let small = IpRange::new("10.43.0.0/27", &[Ipv4Addr::new(10, 43, 0, 10)]).unwrap();
        let all: Vec<Ipv4Addr> = small.candidates(3).collect();
        assert_eq!(all.len(), 30 - 2);
        assert!(!all.contains(&Ipv4Addr::new(10, 43, 0, 10)));
        assert!(!all.contains(&Ipv4Addr::new(10, 43, 0, 1)));
        assert!(IpRange::new("10.43.0.0/31", &[]).is_err());
        assert!(IpRange::new("nonsense", &[]).is_err());
    }

    #[test]
    fn port_range_parses_and_orders() {
        let r: PortRange = "30000-32767".parse().unwrap();
        assert_eq!(r.to_string(), "30000-32767");
        assert!(r.contains(30000) && r.contains(32767) && !r.contains(32768));
        assert_eq!(r.candidates(0).next(), Some(30086));
        assert_eq!(r.candidates(0).count(), 2768);
        assert!("32767-30000".parse::<PortRange>().is_err());
        assert!("x".parse::<PortRange>().is_err());
        assert_eq!(
            port_not_in_range(&r),
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        );
    }
}
