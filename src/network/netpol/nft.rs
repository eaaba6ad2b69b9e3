//! The `ip nanokube-netpol` table: how a [`Model`] is written as nftables objects.
//!
//! Two base chains on the `forward` hook, after the proxy's DNAT (prerouting), so a policy sees
//! the pod a ClusterIP was translated to. `egress` (priority filter - 10) looks the source up in
//! the verdict map `egress-pods`, `ingress` (priority filter) the destination in `ingress-pods`;
//! an `accept` ends only its own base chain, so a packet between two isolated pods of one node
//! passes both checks. Each map element jumps to the chain of the pod's set of policies, which
//! jumps to each policy's chain and drops what none accepted. Peers are interval sets, so the
//! cost per packet is a few hash and interval lookups whatever the number of policies.
//! `ct state established,related accept` comes first: replies pass, and connections opened
//! before a policy keep flowing. Traffic the node itself sends (the kubelet's probes) or
//! receives never meets the forward hook.
//!
//! Names are hashes of policy keys; only addresses, protocol names and numbers reach the text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::model::{ranges, Model, Port, Rule};
use crate::network::proxy::nft::hash;

/// The table's name; nothing else of the host's ruleset is touched.
pub const TABLE: &str = "nanokube-netpol";

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    Ingress,
    Egress,
}

impl Dir {
    fn tag(self) -> &'static str {
        match self {
            Dir::Ingress => "in",
            Dir::Egress => "eg",
        }
    }
    /// The packet field holding the peer's address.
    fn peer(self) -> &'static str {
        match self {
            Dir::Ingress => "ip saddr",
            Dir::Egress => "ip daddr",
        }
    }
}

fn policy_chain(key: &str, d: Dir) -> String {
    format!("pol-{}-{}", hash(&[key]), d.tag())
}

fn set_chain(keys: &BTreeSet<String>, d: Dir) -> String {
    let parts: Vec<&str> = keys.iter().map(String::as_str).collect();
    format!("sel-{}-{}", hash(&parts), d.tag())
}

fn range_text(r: &[(u32, u32)]) -> String {
    let items: Vec<String> = r
        .iter()
        .map(|(s, e)| {
            if s == e {
                Ipv4Addr::from(*s).to_string()
            } else {
                format!("{}-{}", Ipv4Addr::from(*s), Ipv4Addr::from(*e))
            }
        })
        .collect();
    items.join(", ")
}

/// Named sets and the chain of one policy in one direction.
fn policy_objects(
    key: &str,
    d: Dir,
    rules: &[Rule],
    sets: &mut BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let peer = match &rule.peers {
            None => String::new(),
            Some(peers) => {
                let r = ranges(peers);
                if r.is_empty() {
                    // Selectors matching nobody: the rule opens nothing.
                    continue;
                }
                let name = format!("peer-{}", hash(&[key, d.tag(), &i.to_string()]));
                sets.insert(
                    name.clone(),
                    format!(
                        "type ipv4_addr; flags interval; elements = {{ {} }};",
                        range_text(&r)
                    ),
                );
                format!("{} @{name} ", d.peer())
            }
        };
        if rule.ports.is_empty() {
            out.push(format!("{peer}accept"));
        }
        for (j, port) in rule.ports.iter().enumerate() {
            match port {
                Port::All(p) => out.push(format!("{peer}meta l4proto {} accept", p.nft())),
                Port::Range {
                    protocol,
                    port,
                    end,
                } => {
                    let ports = if end > port {
                        format!("{port}-{end}")
                    } else {
                        port.to_string()
                    };
                    out.push(format!(
                        "{peer}meta l4proto {} th dport {ports} accept",
                        protocol.nft()
                    ));
                }
                Port::Named(entries) => {
                    if entries.is_empty() {
                        continue;
                    }
                    let name = format!(
                        "np-{}",
                        hash(&[key, d.tag(), &i.to_string(), &j.to_string()])
                    );
                    let mut items: Vec<String> = entries
                        .iter()
                        .map(|(ip, p, n)| format!("{ip} . {} . {n}", p.nft()))
                        .collect();
                    items.sort();
                    items.dedup();
                    sets.insert(
                        name.clone(),
                        format!(
                            "type ipv4_addr . inet_proto . inet_service; elements = {{ {} }};",
                            items.join(", ")
                        ),
                    );
                    out.push(format!(
                        "{peer}ip daddr . meta l4proto . th dport @{name} accept"
                    ));
                }
            }
        }
    }
    out
}

/// The whole table for `model`, replacing whatever is there in one transaction. Conntrack
/// entries outlive the table, so established connections are not cut by a replace.
pub fn full(model: &Model) -> String {
    let mut t = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    let mut sets = BTreeMap::new();
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut maps: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for (ip, sel) in &model.pods {
        for (d, keys) in [(Dir::Ingress, &sel.ingress), (Dir::Egress, &sel.egress)] {
            if keys.is_empty() {
                continue;
            }
            let name = set_chain(keys, d);
            maps[d as usize].push(format!("{ip} : jump {name}"));
            if chains.contains_key(&name) {
                continue;
            }
            let mut rules: Vec<String> = Vec::new();
            for k in keys {
                let Some(p) = model.policies.get(k) else {
                    continue;
                };
                let pc = policy_chain(k, d);
                if !chains.contains_key(&pc) {
                    let r = match d {
                        Dir::Ingress => &p.ingress,
                        Dir::Egress => &p.egress,
                    };
                    let body = policy_objects(k, d, r, &mut sets);
                    chains.insert(pc.clone(), body);
                }
                rules.push(format!("jump {pc}"));
            }
            // Isolated, and no policy allowed it.
            rules.push("drop".into());
            chains.insert(name, rules);
        }
    }
    for (name, m) in [("ingress-pods", &maps[0]), ("egress-pods", &maps[1])] {
        let _ = writeln!(t, "  map {name} {{\n    type ipv4_addr : verdict;");
        if !m.is_empty() {
            let _ = writeln!(t, "    elements = {{ {} }};", m.join(", "));
        }
        t.push_str("  }\n");
    }
    for (name, body) in &sets {
        let _ = writeln!(t, "  set {name} {{ {body} }}");
    }
    for (name, rules) in &chains {
        let _ = writeln!(t, "  chain {name} {{");
        for r in rules {
            let _ = writeln!(t, "    {r}");
        }
        t.push_str("  }\n");
    }
    for (name, prio, field, map) in [
        ("egress", "filter - 10", "ip saddr", "egress-pods"),
        ("ingress", "filter", "ip daddr", "ingress-pods"),
    ] {
        let _ = writeln!(
            t,
            "  chain {name} {{\n    type filter hook forward priority {prio}; policy accept;\n    ct state established,related accept\n    {field} vmap @{map}\n  }}"
        );
    }
    t.push_str("}\n");
    t
}

/// Declaring before deleting makes the removal work whether or not the table exists.
pub fn remove_text() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::super::model::{Peer, Policy, Protocol, Selected};
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn small() -> Model {
        let mut m = Model::default();
        m.policies.insert(
            "ns/deny".into(),
            Policy {
                key: "ns/deny".into(),
                ..Default::default()
            },
        );
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
                        Port::Range {
                            protocol: Protocol::Udp,
                            port: 5000,
                            end: 5010,
                        },
                        Port::Named(vec![(ip("10.42.0.5"), Protocol::Tcp, 8080)]),
                    ],
                }],
                egress: vec![],
            },
        );
        let both: BTreeSet<String> = ["ns/deny".to_string(), "ns/web".to_string()].into();
        m.pods.insert(
            ip("10.42.0.5"),
            Selected {
                ingress: both.clone(),
                egress: ["ns/deny".to_string()].into(),
            },
        );
        m.pods.insert(ip("10.42.0.6"), Selected::default());
        m
    }

    #[test]
    fn small_model_renders_maps_sets_and_chains() {
        let t = full(&small());
        assert!(t.starts_with("table ip nanokube-netpol\ndelete table ip nanokube-netpol\n"));
        let web = policy_chain("ns/web", Dir::Ingress);
        let deny_eg = policy_chain("ns/deny", Dir::Egress);
        // The isolated pod is in both maps; the unselected one in neither.
        assert!(t.contains("elements = { 10.42.0.5 : jump sel-"));
        assert!(!t.contains("10.42.0.6"));
        // ipBlock except cut out, pod merged in, all in one interval set.
        assert!(t.contains(
            "flags interval; elements = { 10.42.0.7, 192.168.0.0-192.168.0.255, 192.168.2.0-192.168.255.255 };"
        ));
        assert!(t.contains("meta l4proto tcp th dport 80 accept"));
        assert!(t.contains("meta l4proto udp th dport 5000-5010 accept"));
        assert!(t.contains("elements = { 10.42.0.5 . tcp . 8080 };"));
        assert!(t.contains("ip daddr . meta l4proto . th dport @np-"));
        // Egress with no rules: the policy chain is empty and the set chain drops.
        assert!(t.contains(&format!("chain {deny_eg} {{\n  }}")));
        assert!(t.contains(&format!("jump {web}\n    drop\n")));
        assert!(t.contains("type filter hook forward priority filter - 10; policy accept;\n    ct state established,related accept\n    ip saddr vmap @egress-pods"));
    }

    #[test]
    fn a_rule_whose_selectors_match_nobody_opens_nothing() {
        let mut m = Model::default();
        m.policies.insert(
            "a/p".into(),
            Policy {
                key: "a/p".into(),
                ingress: vec![Rule {
                    peers: Some(vec![]),
                    ports: vec![],
                }],
                egress: vec![],
            },
        );
        m.pods.insert(
            ip("10.42.0.9"),
            Selected {
                ingress: ["a/p".to_string()].into(),
                ..Default::default()
            },
        );
        let t = full(&m);
        assert!(!t.contains("accept\n    drop"));
        assert!(!t.contains("    accept\n"));
        assert!(t.contains(&format!(
            "chain {} {{\n  }}",
            policy_chain("a/p", Dir::Ingress)
        )));
    }

    /// A model the size of the benchmark's: 1000 policies over 200 pods.
    pub fn big() -> Model {
        let mut m = Model::default();
        for i in 0..1000u32 {
            let key = format!("ns{}/p{i}", i % 10);
            let peers = (0..20)
                .map(|k| Peer::Pod(Ipv4Addr::from(0x0a2a_0000 + (i * 7 + k) % 60000 + 2)))
                .chain([Peer::Block {
                    cidr: "172.16.0.0/12".parse().unwrap(),
                    except: vec!["172.17.0.0/16".parse().unwrap()],
                }])
                .collect();
            m.policies.insert(
                key.clone(),
                Policy {
                    key: key.clone(),
                    ingress: vec![Rule {
                        peers: Some(peers),
                        ports: vec![Port::Range {
                            protocol: Protocol::Tcp,
                            port: 80,
                            end: 90,
                        }],
                    }],
                    egress: vec![Rule {
                        peers: None,
                        ports: vec![Port::Named(vec![(ip("10.42.0.2"), Protocol::Udp, 53)])],
                    }],
                },
            );
            let pod = Ipv4Addr::from(0x0a2a_0000 + (i % 200) + 2);
            let sel = m.pods.entry(pod).or_default();
            sel.ingress.insert(key.clone());
            sel.egress.insert(key);
        }
        m
    }

    /// `nft -c` parses and checks the text against the kernel without committing it; run in a
    /// network namespace of the test's own so no real ruleset is involved.
    #[test]
    fn a_big_model_passes_nft_check() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (nft -c in a new network namespace)");
        }
        let text = full(&big());
        let mut child = std::process::Command::new("unshare")
            .args(["--net", "nft", "-c", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run unshare nft");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -c: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
