//! The iptables backend of policy enforcement (with `--proxy-mode iptables`, for hosts
//! without nftables): the same [`Model`] as chains of its own (`NKNP-...`) in the `filter`
//! table, replaced whole by one `iptables-restore --noflush` transaction per change.
//!
//! `NKNP-FORWARD`, jumped to first from FORWARD, lets established and related traffic pass,
//! then sends a packet from an egress-isolated pod to `NKNP-EGRESS` and one to an
//! ingress-isolated pod to `NKNP-INGRESS`: one rule per isolated pod of this node, each jumping
//! to the chain of the pod's set of policies. That chain jumps to each policy's chain, whose
//! rules mark what they allow (nftables' `accept` ends its own base chain; iptables has no
//! such verdict for a nested chain, hence the mark), then drops what carries no mark and
//! clears it for the other direction. Allowed traffic goes on through FORWARD untouched.
//! Peers are address and `iprange` matches: a walk per packet where nftables has interval
//! sets, the price of the fallback.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use super::model::{ranges, Model, Port, Rule};
use super::Error;
use crate::network::proxy::nft::hash;

const PREFIX: &str = "NKNP-";
const HOOK: &str = "-A FORWARD -j NKNP-FORWARD";
/// The mark a policy rule sets on what it allows (a bit the proxy's marks do not use), and
/// the same bit cleared.
const ALLOWED: &str = "0x20000/0x20000";
const CLEARED: &str = "0x0/0x20000";

#[derive(Clone, Copy)]
enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    fn tag(self) -> &'static str {
        match self {
            Dir::Ingress => "IN",
            Dir::Egress => "EG",
        }
    }
    /// Matches the pod this direction isolates.
    fn pod(self, ip: Ipv4Addr) -> String {
        match self {
            Dir::Ingress => format!("-d {ip}/32"),
            Dir::Egress => format!("-s {ip}/32"),
        }
    }
    /// Matches the peer of a rule: one address or a range of them.
    fn peer(self, (start, end): (u32, u32)) -> String {
        let (s, e) = (Ipv4Addr::from(start), Ipv4Addr::from(end));
        match (self, start == end) {
            (Dir::Ingress, true) => format!("-s {s}/32"),
            (Dir::Egress, true) => format!("-d {s}/32"),
            (Dir::Ingress, false) => format!("-m iprange --src-range {s}-{e}"),
            (Dir::Egress, false) => format!("-m iprange --dst-range {s}-{e}"),
        }
    }
}

fn allow(matches: &[&str]) -> String {
    let m: Vec<&str> = matches.iter().copied().filter(|m| !m.is_empty()).collect();
    let mut rule = m.join(" ");
    if !rule.is_empty() {
        rule.push(' ');
    }
    rule.push_str(&format!("-j MARK --set-xmark {ALLOWED}"));
    rule
}

/// The port matches of a rule; [""] when it opens every port.
fn port_matches(rule: &Rule) -> Vec<String> {
    if rule.ports.is_empty() {
        return vec![String::new()];
    }
    let mut out = Vec::new();
    for port in &rule.ports {
        match port {
            Port::All(p) => out.push(format!("-p {}", p.nft())),
            Port::Range {
                protocol,
                port,
                end,
            } => {
                let ports = if end > port {
                    format!("{port}:{end}")
                } else {
                    port.to_string()
                };
                out.push(format!("-p {} --dport {ports}", protocol.nft()));
            }
            Port::Named(entries) => {
                let set: BTreeSet<String> = entries
                    .iter()
                    .map(|(ip, p, n)| format!("-d {ip}/32 -p {} --dport {n}", p.nft()))
                    .collect();
                out.extend(set);
            }
        }
    }
    out
}

/// The rules of one policy in one direction.
fn policy_rules(d: Dir, rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    for rule in rules {
        let spans = rule.peers.as_ref().map(|p| ranges(p));
        let peers: Vec<String> = match &spans {
            None => vec![String::new()],
            // Selectors matching nobody: nothing to allow.
            Some(spans) => spans.iter().map(|r| d.peer(*r)).collect(),
        };
        // An egress named port already names its destination pod (`-d`): iptables takes one
        // `-d` per rule, so the pods outside the rule's peers are left out instead.
        if let (Dir::Egress, true) = (d, rule.ports.iter().any(|p| matches!(p, Port::Named(_)))) {
            for port in &rule.ports {
                match port {
                    Port::Named(entries) => {
                        let inside = |ip: &Ipv4Addr| {
                            let n = u32::from(*ip);
                            spans
                                .as_ref()
                                .is_none_or(|s| s.iter().any(|(a, b)| (*a..=*b).contains(&n)))
                        };
                        let set: BTreeSet<String> = entries
                            .iter()
                            .filter(|(ip, _, _)| inside(ip))
                            .map(|(ip, p, n)| format!("-d {ip}/32 -p {} --dport {n}", p.nft()))
                            .collect();
                        out.extend(set.iter().map(|m| allow(&[m])));
                    }
                    other => {
                        let one = Rule {
                            peers: rule.peers.clone(),
                            ports: vec![other.clone()],
                        };
                        out.extend(policy_rules(d, std::slice::from_ref(&one)));
                    }
                }
            }
            continue;
        }
        let ports = port_matches(rule);
        for peer in &peers {
            for port in &ports {
                out.push(allow(&[peer, port]));
            }
        }
    }
    out
}

/// Our chains for `model`: name -> rules.
fn chains(model: &Model) -> BTreeMap<String, Vec<String>> {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dispatch: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (ip, sel) in &model.pods {
        for (d, keys) in [(Dir::Ingress, &sel.ingress), (Dir::Egress, &sel.egress)] {
            if keys.is_empty() {
                continue;
            }
            let parts: Vec<&str> = keys.iter().map(String::as_str).collect();
            let name = format!("{PREFIX}SEL-{}-{}", hash(&parts), d.tag());
            dispatch[d as usize].push(format!("{} -j {name}", d.pod(*ip)));
            if chains.contains_key(&name) {
                continue;
            }
            let mut rules = Vec::new();
            for k in keys {
                let Some(p) = model.policies.get(k) else {
                    continue;
                };
                let chain = format!("{PREFIX}POL-{}-{}", hash(&[k]), d.tag());
                let body = policy_rules(
                    d,
                    match d {
                        Dir::Ingress => &p.ingress,
                        Dir::Egress => &p.egress,
                    },
                );
                chains.insert(chain.clone(), body);
                rules.push(format!("-j {chain}"));
            }
            // Isolated, and no policy allowed it.
            rules.push(format!("-m mark ! --mark {ALLOWED} -j DROP"));
            rules.push(format!("-j MARK --set-xmark {CLEARED}"));
            chains.insert(name, rules);
        }
    }
    chains.insert(format!("{PREFIX}INGRESS"), dispatch[0].clone());
    chains.insert(format!("{PREFIX}EGRESS"), dispatch[1].clone());
    chains.insert(
        format!("{PREFIX}FORWARD"),
        vec![
            "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN".into(),
            format!("-j {PREFIX}EGRESS"),
            format!("-j {PREFIX}INGRESS"),
        ],
    );
    chains
}

/// The `iptables-restore --noflush` input making our chains hold `model`, removing chains of
/// ours it no longer needs, and jumping to ours first from FORWARD if that jump is missing.
fn restore_input(model: &Model, existing: &BTreeSet<String>, hooked: bool) -> String {
    let ours = chains(model);
    let mut out = String::from("*filter\n");
    let stale: Vec<&String> = existing.iter().filter(|n| !ours.contains_key(*n)).collect();
    for name in ours.keys().chain(stale.iter().copied()) {
        out.push_str(&format!(":{name} - [0:0]\n"));
    }
    for (name, rules) in &ours {
        for r in rules {
            out.push_str(&format!("-A {name} {r}\n"));
        }
    }
    for name in stale {
        out.push_str(&format!("-X {name}\n"));
    }
    if !hooked {
        out.push_str("-I FORWARD 1 -j NKNP-FORWARD\n");
    }
    out.push_str("COMMIT\n");
    out
}

fn ours() -> Result<(BTreeSet<String>, bool), Error> {
    let (chains, rules) =
        crate::network::proxy::iptables::existing_with(PREFIX).map_err(proxy_error)?;
    let names = chains
        .into_iter()
        .filter(|(t, _)| t == "filter")
        .map(|(_, n)| n)
        .collect();
    Ok((names, rules.contains(&format!("filter {HOOK}"))))
}

fn proxy_error(e: crate::network::proxy::Error) -> Error {
    Error::Network(crate::network::Error::Netlink(e.to_string()))
}

/// Makes our chains hold exactly `model` (one transaction); returns its size.
pub fn sync(model: &Model) -> Result<usize, Error> {
    let (existing, hooked) = ours()?;
    let input = restore_input(model, &existing, hooked);
    crate::network::proxy::iptables::restore(&input).map_err(proxy_error)?;
    Ok(input.len())
}

/// Removes our jump and chains (nothing if they are not there).
pub fn remove() -> Result<(), Error> {
    let (existing, hooked) = ours()?;
    if existing.is_empty() && !hooked {
        return Ok(());
    }
    let mut out = String::from("*filter\n");
    if hooked {
        out.push_str("-D FORWARD -j NKNP-FORWARD\n");
    }
    for name in &existing {
        out.push_str(&format!(":{name} - [0:0]\n"));
    }
    for name in &existing {
        out.push_str(&format!("-X {name}\n"));
    }
    out.push_str("COMMIT\n");
    crate::network::proxy::iptables::restore(&out).map_err(proxy_error)
}

#[cfg(test)]
mod tests {
    use super::super::model::{Peer, Policy, Protocol, Selected};
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn an_isolated_pod_is_dispatched_to_its_policies_which_mark_what_they_allow() {
        let mut m = Model::default();
        m.policies.insert(
            "ns/web".into(),
            Policy {
                key: "ns/web".into(),
                ingress: vec![Rule {
                    peers: Some(vec![
                        Peer::Pod(ip("10.42.0.7")),
                        Peer::Block {
                            cidr: "192.168.0.0/16".parse().unwrap(),
                            except: vec!["192.168.1.0/24".parse().unwrap()],
                        },
                    ]),
                    ports: vec![
                        Port::Range {
                            protocol: Protocol::Tcp,
                            port: 80,
                            end: 80,
                        },
                        Port::Named(vec![(ip("10.42.0.5"), Protocol::Udp, 53)]),
                    ],
                }],
                egress: vec![],
            },
        );
        m.pods.insert(
            ip("10.42.0.5"),
            Selected {
                ingress: ["ns/web".to_string()].into(),
                egress: ["ns/web".to_string()].into(),
            },
        );
        let c = chains(&m);
        let dispatch = &c["NKNP-INGRESS"];
        assert_eq!(dispatch.len(), 1);
        assert!(dispatch[0].starts_with("-d 10.42.0.5/32 -j NKNP-SEL-"));
        let sel = &c[dispatch[0].rsplit(' ').next().unwrap()];
        assert_eq!(sel.len(), 3, "{sel:?}");
        assert!(sel[1].ends_with("-j DROP"));
        let policy = &c[sel[0].trim_start_matches("-j ")];
        // Three peer ranges (the pod, the block below and above the except) by two ports.
        assert_eq!(policy.len(), 6, "{policy:?}");
        assert!(policy.contains(
            &"-s 10.42.0.7/32 -p tcp --dport 80 -j MARK --set-xmark 0x20000/0x20000".to_string()
        ));
        assert!(policy.contains(&"-m iprange --src-range 192.168.2.0-192.168.255.255 -d 10.42.0.5/32 -p udp --dport 53 -j MARK --set-xmark 0x20000/0x20000".to_string()));
        // Egress isolated with no rules: its policy chain is empty, so everything drops.
        let eg = &c["NKNP-EGRESS"][0];
        assert!(eg.starts_with("-s 10.42.0.5/32 -j NKNP-SEL-"));
        let input = restore_input(&m, &["NKNP-POL-gone-IN".to_string()].into(), false);
        assert!(input.starts_with("*filter\n"));
        assert!(input.contains("-X NKNP-POL-gone-IN\n"));
        assert!(input.contains("-I FORWARD 1 -j NKNP-FORWARD\n"));
        assert!(input.ends_with("COMMIT\n"));
        // Egress to a named port of pods it may reach: one -d per rule, the pods outside its
        // peers left out.
        let eg = vec![Rule {
            peers: Some(vec![Peer::Pod(ip("10.42.0.9"))]),
            ports: vec![Port::Named(vec![
                (ip("10.42.0.9"), Protocol::Tcp, 8080),
                (ip("10.42.0.10"), Protocol::Tcp, 8080),
            ])],
        }];
        assert_eq!(
            policy_rules(Dir::Egress, &eg),
            ["-d 10.42.0.9/32 -p tcp --dport 8080 -j MARK --set-xmark 0x20000/0x20000"]
        );
        // Already hooked: no second jump.
        assert!(!restore_input(&m, &BTreeSet::new(), true).contains("-I FORWARD"));
    }
}
