//! The iptables backend, for hosts without nftables (`--proxy-mode iptables`): the same model
//! as chains of nanokube's own (`NK-...`) in the `nat` and `filter` tables, written by one
//! `iptables-restore --noflush` transaction per sync that replaces those chains whole (as
//! kube-proxy's iptables mode does). Other chains are not touched, except for one jump into
//! ours from each built-in chain we hook. Lookups here are a walk of `NK-SERVICES`, one rule
//! per service port: the cost nftables' maps avoid. Round-robin is `statistic --mode nth`,
//! affinity the `recent` match.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use super::model::{Endpoint, Model, Params, ServicePort};
use super::nft::{endpoint_id, hash, sorted};
use super::Error;

/// The jumps from built-in chains into ours: (table, built-in chain, our chain).
const HOOKS: [(&str, &str, &str); 8] = [
    ("nat", "PREROUTING", "NK-SERVICES"),
    ("nat", "OUTPUT", "NK-SERVICES"),
    ("nat", "POSTROUTING", "NK-POSTROUTING"),
    ("filter", "INPUT", "NK-FILTER"),
    ("filter", "FORWARD", "NK-FILTER"),
    ("filter", "OUTPUT", "NK-FILTER"),
    // After DNAT: what still goes to a service address was not translated.
    ("filter", "FORWARD", "NK-CLUSTER-IPS"),
    ("filter", "OUTPUT", "NK-CLUSTER-IPS"),
];

/// The nat table may not drop (iptables refuses DROP there): a nat chain that turns a
/// packet away marks it with this chain, and `NK-FILTER` drops what carries the mark, as
/// kube-proxy's KUBE-MARK-DROP did.
const MARK_DROP: &str = "NK-MARK-DROP";
const DROP_MARK: &str = "0x8000/0x8000";

#[derive(Default)]
struct Tables {
    nat: Vec<(String, Vec<String>)>,
    filter: Vec<(String, Vec<String>)>,
}

fn proto(p: &ServicePort) -> &'static str {
    p.protocol.nft()
}

fn pool(p: &ServicePort, eps: &[&Endpoint]) -> Vec<String> {
    let ids: Vec<String> = eps.iter().map(|e| endpoint_id(p, e)).collect();
    let mut rules = Vec::new();
    if let Some(secs) = p.affinity_seconds {
        for id in &ids {
            rules.push(format!(
                "-m recent --name NK-SEP-{id} --rcheck --seconds {secs} --reap --rsource -j NK-SEP-{id}"
            ));
        }
    }
    let n = ids.len();
    for (i, id) in ids.iter().enumerate() {
        // Rule i sees the connections the earlier rules let through and takes every
        // (n - i)th of them: together an exact rotation.
        if i + 1 < n {
            rules.push(format!(
                "-m statistic --mode nth --every {} --packet 0 -j NK-SEP-{id}",
                n - i
            ));
        } else {
            rules.push(format!("-j NK-SEP-{id}"));
        }
    }
    rules
}

fn tables(params: &Params, model: &Model) -> Tables {
    let mut t = Tables::default();
    let mut services = Vec::new();
    let mut nodeports = Vec::new();
    let mut filter = Vec::new();
    let mut cluster_ips = BTreeSet::new();
    let mut chains: Vec<(String, Vec<String>)> = Vec::new();
    let masq = "-j NK-MARK-MASQ".to_string();
    for p in model.services.values() {
        let h = hash(&[&p.key]);
        let pr = proto(p);
        cluster_ips.insert(p.cluster_ip);
        let internal = sorted(p.internal());
        let all = sorted(p.usable(false));
        let local = sorted(p.usable(true));
        let mut used: BTreeSet<(std::net::Ipv4Addr, u16)> = BTreeSet::new();
        let mut eps: Vec<&Endpoint> = Vec::new();
        let vip = format!("-d {}/32 -p {pr} -m {pr} --dport {}", p.cluster_ip, p.port);
        if internal.is_empty() {
            filter.push(format!("{vip} -m conntrack --ctstate NEW -j NK-REJECT"));
        } else {
            let mut rules = vec![format!("! -s {} {masq}", params.cluster_cidr)];
            rules.extend(pool(p, &internal));
            chains.push((format!("NK-SVC-{h}"), rules));
            services.push(format!("{vip} -j NK-SVC-{h}"));
            eps.extend(internal.iter().copied());
        }
        if p.is_external() {
            if all.is_empty() {
                for ip in &p.external_ips {
                    filter.push(format!(
                        "-d {ip}/32 -p {pr} -m {pr} --dport {} -m conntrack --ctstate NEW -j NK-REJECT",
                        p.port
                    ));
                }
                if let Some(np) = p.node_port {
                    filter.push(format!(
                        "-m addrtype --dst-type LOCAL -p {pr} -m {pr} --dport {np} -m conntrack --ctstate NEW -j NK-REJECT"
                    ));
                }
            } else {
                let target = if p.internal_local {
                    chains.push((format!("NK-CL-{h}"), pool(p, &all)));
                    eps.extend(all.iter().copied());
                    format!("NK-CL-{h}")
                } else {
                    format!("NK-SVC-{h}")
                };
                let mut rules = Vec::new();
                if p.external_local {
                    rules.push(format!("-m addrtype --src-type LOCAL {masq}"));
                    rules.push(format!("-m addrtype --src-type LOCAL -j {target}"));
                    rules.push(format!("-s {} -j {target}", params.cluster_cidr));
                    if local.is_empty() {
                        rules.push(format!("-j {MARK_DROP}"));
                    } else {
                        chains.push((format!("NK-LO-{h}"), pool(p, &local)));
                        eps.extend(local.iter().copied());
                        rules.push(format!("-j NK-LO-{h}"));
                    }
                } else {
                    rules.push(masq.clone());
                    rules.push(format!("-j {target}"));
                }
                chains.push((format!("NK-EXT-{h}"), rules));
                if p.guards_load_balancer() {
                    let mut fw: Vec<String> = p
                        .source_ranges
                        .iter()
                        .map(|r| format!("-s {r} -j NK-EXT-{h}"))
                        .collect();
                    fw.push(format!("-j {MARK_DROP}"));
                    chains.push((format!("NK-FW-{h}"), fw));
                }
                for ip in &p.external_ips {
                    let to = if p.firewalled.contains(ip) {
                        "FW"
                    } else {
                        "EXT"
                    };
                    services.push(format!(
                        "-d {ip}/32 -p {pr} -m {pr} --dport {} -j NK-{to}-{h}",
                        p.port
                    ));
                }
                if let Some(np) = p.node_port {
                    nodeports.push(format!("-p {pr} -m {pr} --dport {np} -j NK-EXT-{h}"));
                }
            }
        }
        for e in eps {
            if !used.insert((e.ip, e.port)) {
                continue;
            }
            let id = endpoint_id(p, e);
            let mut rules = vec![format!("-s {}/32 {masq}", e.ip)];
            if p.affinity_seconds.is_some() {
                rules.push(format!("-m recent --name NK-SEP-{id} --set --rsource"));
            }
            rules.push(format!(
                "-p {pr} -m {pr} -j DNAT --to-destination {}:{}",
                e.ip, e.port
            ));
            chains.push((format!("NK-SEP-{id}"), rules));
        }
    }
    services.push("-m addrtype --dst-type LOCAL -j NK-NODEPORTS".to_string());
    t.nat.push(("NK-SERVICES".into(), services));
    t.nat.push(("NK-NODEPORTS".into(), nodeports));
    t.nat.push((
        MARK_DROP.into(),
        vec![format!("-j MARK --set-xmark {DROP_MARK}")],
    ));
    t.nat.push((
        "NK-MARK-MASQ".into(),
        vec!["-j MARK --set-xmark 0x4000/0x4000".into()],
    ));
    t.nat.push((
        "NK-POSTROUTING".into(),
        vec![
            "-m mark ! --mark 0x4000/0x4000 -j RETURN".into(),
            "-j MARK --set-xmark 0x0/0x4000".into(),
            "-j MASQUERADE --random-fully".into(),
        ],
    ));
    t.nat.extend(chains);
    filter.insert(0, format!("-m mark --mark {DROP_MARK} -j DROP"));
    t.filter.push(("NK-FILTER".into(), filter));
    t.filter.push((
        "NK-REJECT".into(),
        vec![
            "-p tcp -j REJECT --reject-with tcp-reset".into(),
            "-j REJECT --reject-with icmp-port-unreachable".into(),
        ],
    ));
    let mut check = vec!["-m addrtype --dst-type LOCAL -j RETURN".to_string()];
    for ip in cluster_ips {
        check.push(format!(
            "-d {ip}/32 -m conntrack --ctstate NEW -j REJECT --reject-with icmp-port-unreachable"
        ));
    }
    check.push(format!(
        "-d {} -m conntrack --ctstate NEW -j DROP",
        params.service_cidr
    ));
    t.filter.push(("NK-CLUSTER-IPS".into(), check));
    t
}

/// (table, chain) of each of our chains.
pub(crate) type Chains = BTreeSet<(String, String)>;
/// Every rule as "<table> -A <chain> <rule>".
pub(crate) type Rules = BTreeSet<String>;

/// Our chains and every rule, as `iptables-save` shows them now.
fn existing() -> Result<(Chains, Rules), Error> {
    existing_with("NK-")
}

/// The chains whose names start with `prefix`, and every rule.
pub(crate) fn existing_with(prefix: &str) -> Result<(Chains, Rules), Error> {
    let out = Command::new("iptables-save")
        .output()
        .map_err(Error::io("run iptables-save"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut chains, mut rules) = (BTreeSet::new(), BTreeSet::new());
    let mut table = String::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(c) = line.strip_prefix(':').filter(|c| c.starts_with(prefix)) {
            let name = c.split(' ').next().unwrap_or("");
            chains.insert((table.clone(), name.to_string()));
        } else if line.starts_with("-A ") {
            rules.insert(format!("{table} {line}"));
        }
    }
    Ok((chains, rules))
}

/// The `iptables-restore --noflush` input for `model` given what is there now.
fn restore_input(t: &Tables, chains: &Chains, rules: &Rules) -> String {
    let mut out = String::new();
    for (table, ours) in [("nat", &t.nat), ("filter", &t.filter)] {
        out.push_str(&format!("*{table}\n"));
        let wanted: BTreeSet<&str> = ours.iter().map(|(n, _)| n.as_str()).collect();
        // Declaring a chain in --noflush mode creates or empties it.
        for (name, _) in ours {
            out.push_str(&format!(":{name} - [0:0]\n"));
        }
        let stale: Vec<&String> = chains
            .iter()
            .filter(|(tb, n)| tb == table && !wanted.contains(n.as_str()))
            .map(|(_, n)| n)
            .collect();
        for name in &stale {
            out.push_str(&format!(":{name} - [0:0]\n"));
        }
        for (name, rs) in ours {
            for r in rs {
                out.push_str(&format!("-A {name} {r}\n"));
            }
        }
        for name in &stale {
            out.push_str(&format!("-X {name}\n"));
        }
        for (tb, builtin, target) in HOOKS {
            if tb == table && !rules.contains(&format!("{table} -A {builtin} -j {target}")) {
                out.push_str(&format!("-A {builtin} -j {target}\n"));
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

pub(crate) fn restore(input: &str) -> Result<(), Error> {
    let mut child = Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::io("run iptables-restore"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .map_err(Error::io("write to iptables-restore"))?;
    let out = child
        .wait_with_output()
        .map_err(Error::io("wait for iptables-restore"))?;
    if !out.status.success() {
        return Err(Error::Iptables(format!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Makes our chains hold exactly `model`; returns the transaction's size.
pub fn sync(params: &Params, model: &Model) -> Result<usize, Error> {
    let (chains, rules) = existing()?;
    let input = restore_input(&tables(params, model), &chains, &rules);
    restore(&input)?;
    Ok(input.len())
}

/// Removes our jumps and chains.
pub fn remove() -> Result<(), Error> {
    let (chains, rules) = existing()?;
    if chains.is_empty() {
        return Ok(());
    }
    let mut out = String::new();
    for table in ["nat", "filter"] {
        out.push_str(&format!("*{table}\n"));
        for (tb, builtin, target) in HOOKS {
            if tb == table && rules.contains(&format!("{table} -A {builtin} -j {target}")) {
                out.push_str(&format!("-D {builtin} -j {target}\n"));
            }
        }
        for (_, name) in chains.iter().filter(|(tb, _)| tb == table) {
            out.push_str(&format!(":{name} - [0:0]\n"));
        }
        for (_, name) in chains.iter().filter(|(tb, _)| tb == table) {
            out.push_str(&format!("-X {name}\n"));
        }
        out.push_str("COMMIT\n");
    }
    restore(&out)
}

#[cfg(test)]
mod tests {
    use super::super::model::Protocol;
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_service_is_a_rule_in_the_walk_and_an_exact_rotation() {
        let params = Params {
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            service_cidr: "10.43.0.0/16".parse().unwrap(),
        };
        let ep = |l: u8| Endpoint {
            ip: Ipv4Addr::new(10, 42, 0, l),
            port: 80,
            ready: true,
            serving: true,
            terminating: false,
            local: true,
        };
        let mut m = Model::default();
        m.insert(ServicePort {
            key: "default/web:http/tcp".into(),
            cluster_ip: Ipv4Addr::new(10, 43, 0, 5),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: Some(30080),
            external_ips: vec![],
            source_ranges: vec![],
            firewalled: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints: vec![ep(1), ep(2), ep(3)],
        });
        let t = restore_input(&tables(&params, &m), &BTreeSet::new(), &BTreeSet::new());
        let h = hash(&["default/web:http/tcp"]);
        assert!(t.contains(&format!(
            "-A NK-SERVICES -d 10.43.0.5/32 -p tcp -m tcp --dport 80 -j NK-SVC-{h}\n"
        )));
        assert!(t.contains("--mode nth --every 3 --packet 0"));
        assert!(t.contains("--mode nth --every 2 --packet 0"));
        assert!(t.contains("-j DNAT --to-destination 10.42.0.3:80"));
        assert!(t.contains(&format!(
            "-A NK-NODEPORTS -p tcp -m tcp --dport 30080 -j NK-EXT-{h}"
        )));
        assert!(t.contains("-A PREROUTING -j NK-SERVICES\n"));
        // Already hooked: no second jump.
        let hooked: BTreeSet<String> = ["nat -A PREROUTING -j NK-SERVICES".to_string()].into();
        let t = restore_input(&tables(&params, &m), &BTreeSet::new(), &hooked);
        assert!(!t.contains("-A PREROUTING -j NK-SERVICES\n"));

        // What nat chains turn away (Local with no local endpoint, a source outside the load
        // balancer's ranges) is marked there and dropped in filter: nat may not DROP.
        let mut p = m.services.values().next().unwrap().clone();
        p.external_local = true;
        for e in &mut p.endpoints {
            e.local = false;
        }
        p.external_ips = vec![Ipv4Addr::new(10, 99, 0, 2)];
        p.firewalled = p.external_ips.clone();
        p.source_ranges = vec!["10.42.0.0/16".parse().unwrap()];
        let mut m = Model::default();
        m.insert(p);
        let t = restore_input(&tables(&params, &m), &BTreeSet::new(), &BTreeSet::new());
        let nat = &t[..t.find("*filter").unwrap()];
        assert!(!nat.contains("-j DROP"), "{nat}");
        assert!(
            nat.contains(&format!("-A NK-EXT-{h} -j NK-MARK-DROP")),
            "{nat}"
        );
        assert!(
            nat.contains(&format!(
                "-A NK-FW-{h} -s 10.42.0.0/16 -j NK-EXT-{h}\n-A NK-FW-{h} -j NK-MARK-DROP"
            )),
            "{nat}"
        );
        assert!(nat.contains(&format!(
            "-d 10.99.0.2/32 -p tcp -m tcp --dport 80 -j NK-FW-{h}"
        )));
        assert!(
            t.contains("-A NK-FILTER -m mark --mark 0x8000/0x8000 -j DROP\n"),
            "{t}"
        );
    }
}
