//! What policy enforcement programs, as plain data. Every selector has already been evaluated
//! by the agent: peers are addresses and networks, named ports are (pod address, protocol,
//! port) triples. The renderer trusts these values because their types allow nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

pub use crate::network::proxy::Protocol;
use crate::network::Cidr;

/// Where a rule lets traffic come from (ingress) or go to (egress).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// A pod picked by a podSelector and/or namespaceSelector.
    Pod(Ipv4Addr),
    /// An ipBlock: `cidr` minus every `except`.
    Block { cidr: Cidr, except: Vec<Cidr> },
}

/// Which ports a rule opens.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Port {
    /// Every port of the protocol (a port entry without `port`).
    All(Protocol),
    /// `port` up to `end` (endPort; equal for a single port).
    Range {
        protocol: Protocol,
        port: u16,
        end: u16,
    },
    /// A named port, resolved on the pods that define it: the destination pod's address, the
    /// protocol and the number its container gives the name. Empty: it names nothing.
    Named(Vec<(Ipv4Addr, Protocol, u16)>),
}

/// One ingress or egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    /// `None`: the rule has no `from`/`to`, so every peer. `Some(empty)`: its selectors
    /// match nothing, so the rule allows nothing.
    pub peers: Option<Vec<Peer>>,
    /// Empty: every port and protocol.
    pub ports: Vec<Port>,
}

/// One NetworkPolicy, reduced to its rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// Identity (namespace/name): only hashed into chain names, never written into rules.
    pub key: String,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
}

/// The policies selecting one local pod, per direction. A pod in neither list is untouched.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selected {
    /// Keys of policies with Ingress in their policyTypes that select the pod.
    pub ingress: BTreeSet<String>,
    pub egress: BTreeSet<String>,
}

/// Everything one node enforces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Model {
    pub policies: BTreeMap<String, Policy>,
    /// This node's pods, by address.
    pub pods: BTreeMap<Ipv4Addr, Selected>,
}

/// Inclusive address ranges covering `peers`, sorted and merged so that an nft interval set
/// accepts them (it refuses overlapping elements). ipBlock excepts are cut out here.
pub fn ranges(peers: &[Peer]) -> Vec<(u32, u32)> {
    let mut v: Vec<(u32, u32)> = Vec::new();
    for p in peers {
        match p {
            Peer::Pod(ip) => v.push((u32::from(*ip), u32::from(*ip))),
            Peer::Block { cidr, except } => {
                let mut pieces = vec![span(cidr)];
                for e in except {
                    let (es, ee) = span(e);
                    pieces = pieces
                        .into_iter()
                        .flat_map(|(s, t)| {
                            let mut out = Vec::new();
                            if ee < s || es > t {
                                out.push((s, t));
                            } else {
                                if es > s {
                                    out.push((s, es - 1));
                                }
                                if ee < t {
                                    out.push((ee + 1, t));
                                }
                            }
                            out
                        })
                        .collect();
                }
                v.extend(pieces);
            }
        }
    }
    v.sort();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (s, e) in v {
        match merged.last_mut() {
            Some((_, le)) if s <= le.saturating_add(1) => *le = (*le).max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

fn span(c: &Cidr) -> (u32, u32) {
    let net = u32::from(c.network());
    let host_bits = 32 - u32::from(c.prefix);
    let last = if host_bits == 32 {
        u32::MAX
    } else {
        net | ((1u32 << host_bits) - 1)
    };
    (net, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn excepts_are_cut_out_and_pods_inside_blocks_merge() {
        let r = ranges(&[
            Peer::Block {
                cidr: "10.0.0.0/24".parse().unwrap(),
                except: vec!["10.0.0.128/25".parse().unwrap()],
            },
            Peer::Pod("10.0.0.5".parse().unwrap()),
            Peer::Pod("10.0.1.1".parse().unwrap()),
        ]);
        assert_eq!(
            r,
            vec![
                (ip("10.0.0.0"), ip("10.0.0.127")),
                (ip("10.0.1.1"), ip("10.0.1.1"))
            ]
        );
        let all = ranges(&[Peer::Block {
            cidr: "0.0.0.0/0".parse().unwrap(),
            except: vec!["10.0.0.0/8".parse().unwrap()],
        }]);
        assert_eq!(
            all,
            vec![(0, ip("9.255.255.255")), (ip("11.0.0.0"), u32::MAX)]
        );
    }
}
