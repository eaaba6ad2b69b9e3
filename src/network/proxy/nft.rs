//! The `ip nanokube-proxy` table: how a [`Model`] is written as nftables objects, whole (a cold
//! start) or as the difference between two models (every later update).
//!
//! Lookups go through maps, so the cost of finding a service does not grow with their number:
//! `service-ips` takes `daddr . l4proto . dport` straight to the service's chain, and
//! `service-nodeports` does the same for `l4proto . dport` on the node's own addresses. A
//! service chain holds one DNAT rule per endpoint, each guarded by its own `numgen inc mod
//! N-i 0` counter: rule i takes every (N-i)th connection of those that reach it, which is an
//! exact rotation (the iptables backend's `statistic --mode nth`). No set or map per service:
//! the kernel finds sets by walking a list and checks every element added to a map against
//! every rule bound to it, so per-service maps or one map shared by every service made a
//! cold sync of 10k services cost 6-87 s, while chains are found by hash. Hairpin traffic is
//! recognised in postrouting by one set of `pod . pod` address pairs. Only session affinity
//! keeps a chain and a set per endpoint (`ep-`, `aff-`), for the client it remembers.
//! docs/services.md walks a packet through it.
//!
//! Chain and set names are hashes of the service port's key (and of the endpoint), never names
//! from the API: only addresses, protocol names and numbers reach the text, and those come
//! typed from the model.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

use super::model::{Endpoint, Model, Params, ServicePort};

/// The table's name; nothing else of the host's ruleset is touched.
pub const TABLE: &str = "nanokube-proxy";

/// The packet mark bit that asks postrouting to masquerade.
const MASQ_MARK: &str = "0x4000";

/// The verdict maps and sets whose elements services contribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Map {
    /// `daddr . l4proto . dport : goto <chain>` for cluster IPs and load-balancer addresses.
    ServiceIps,
    /// The same key to the reject chain, for ports with no endpoint to send to.
    NoEndpointServices,
    /// `l4proto . dport : goto <chain>` on the node's own addresses.
    ServiceNodeports,
    NoEndpointNodeports,
}

impl Map {
    fn name(self) -> &'static str {
        match self {
            Map::ServiceIps => "service-ips",
            Map::NoEndpointServices => "no-endpoint-services",
            Map::ServiceNodeports => "service-nodeports",
            Map::NoEndpointNodeports => "no-endpoint-nodeports",
        }
    }

    const ALL: [Map; 4] = [
        Map::ServiceIps,
        Map::NoEndpointServices,
        Map::ServiceNodeports,
        Map::NoEndpointNodeports,
    ];
}

/// The named objects one service port owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Objects {
    /// Chain name to its rules, in order.
    chains: BTreeMap<String, Vec<String>>,
    /// Session-affinity sets: name to the declaration's body.
    sets: BTreeMap<String, String>,
}

pub(crate) fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        // A separator no part can forge, so ("ab","c") and ("a","bc") differ.
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..8])
}

/// Names of a service port's chains.
struct Names {
    svc: String,
    ext: String,
    /// In front of `ext` for load-balancer addresses with loadBalancerSourceRanges.
    fw: String,
    cluster_pool: String,
    local_pool: String,
}

impl Names {
    fn of(p: &ServicePort) -> Names {
        let h = hash(&[&p.key]);
        Names {
            svc: format!("svc-{h}"),
            ext: format!("ext-{h}"),
            fw: format!("fw-{h}"),
            cluster_pool: format!("cl-{h}"),
            local_pool: format!("lo-{h}"),
        }
    }
}

/// The endpoint's chain and affinity-set names. The affinity timeout is part of the hash, so
/// a changed timeout makes new sets instead of redeclaring live ones.
pub(super) fn endpoint_id(p: &ServicePort, e: &Endpoint) -> String {
    let affinity = p.affinity_seconds.unwrap_or(0).to_string();
    hash(&[
        &p.key,
        &e.ip.to_string(),
        &e.port.to_string(),
        p.protocol.nft(),
        &affinity,
    ])
}

/// The DNAT to one endpoint.
fn dnat(p: &ServicePort, e: &Endpoint) -> String {
    format!(
        "meta l4proto {} dnat to {}:{}",
        p.protocol.nft(),
        e.ip,
        e.port
    )
}

/// Rules that send a packet to one of `pool`, round-robin: of N targets, rule i takes every
/// (N-i)th connection that reaches it (its own counter) and the last takes the rest. With
/// session affinity a client with a live entry first goes back to its endpoint's chain, and
/// the targets are those chains; without, the targets are the DNATs themselves.
fn pool_rules(p: &ServicePort, pool: &[&Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    let targets: Vec<String> = if p.affinity_seconds.is_some() {
        let ids: Vec<String> = pool.iter().map(|e| endpoint_id(p, e)).collect();
        for id in &ids {
            rules.push(format!("ip saddr @aff-{id} goto ep-{id}"));
        }
        ids.iter().map(|id| format!("goto ep-{id}")).collect()
    } else {
        pool.iter().map(|e| dnat(p, e)).collect()
    };
    let n = targets.len();
    for (i, target) in targets.into_iter().enumerate() {
        if i + 1 < n {
            rules.push(format!("numgen inc mod {} 0 {target}", n - i));
        } else {
            rules.push(target);
        }
    }
    rules
}

pub(super) fn sorted(mut v: Vec<&Endpoint>) -> Vec<&Endpoint> {
    v.sort_by_key(|e| (e.ip, e.port));
    v.dedup_by_key(|e| (e.ip, e.port));
    v
}

/// The chains and sets of one service port.
fn objects<'a>(p: &'a ServicePort, params: &Params) -> Objects {
    let n = Names::of(p);
    let mut o = Objects::default();
    let internal = sorted(p.internal());
    let all = sorted(p.usable(false));
    let local = sorted(p.usable(true));
    let mut used: BTreeSet<(Ipv4Addr, u16)> = BTreeSet::new();
    let mut endpoints: Vec<&Endpoint> = Vec::new();
    let mut take = |pool: &[&'a Endpoint]| {
        for e in pool {
            if used.insert((e.ip, e.port)) {
                endpoints.push(e);
            }
        }
    };

    if !internal.is_empty() {
        // From outside the pod range (the node itself, another host): replies must come back
        // through this node to be un-NATed.
        let mut rules = vec![format!(
            "ip saddr != {} jump mark-for-masquerade",
            params.cluster_cidr
        )];
        rules.extend(pool_rules(p, &internal));
        o.chains.insert(n.svc.clone(), rules);
        take(&internal);
    }

    if p.is_external() && !all.is_empty() {
        // Where external traffic goes when it may use every endpoint: the service chain
        // when that already holds them all, else a pool of its own.
        let cluster_target = if !p.internal_local {
            n.svc.clone()
        } else {
            let rules = pool_rules(p, &all);
            o.chains.insert(n.cluster_pool.clone(), rules);
            take(&all);
            n.cluster_pool.clone()
        };
        let mut rules = Vec::new();
        if p.external_local {
            // Local keeps the client's address, so no masquerade, except for traffic the node
            // or its pods send, which any endpoint may answer.
            rules.push("fib saddr type local jump mark-for-masquerade".to_string());
            rules.push(format!("fib saddr type local goto {cluster_target}"));
            rules.push(format!(
                "ip saddr {} goto {cluster_target}",
                params.cluster_cidr
            ));
            if local.is_empty() {
                rules.push("drop".to_string());
            } else {
                let pool = pool_rules(p, &local);
                o.chains.insert(n.local_pool.clone(), pool);
                take(&local);
                rules.push(format!("goto {}", n.local_pool));
            }
        } else {
            rules.push("jump mark-for-masquerade".to_string());
            rules.push(format!("goto {cluster_target}"));
        }
        o.chains.insert(n.ext.clone(), rules);
        if p.guards_load_balancer() {
            let ranges: Vec<String> = p.source_ranges.iter().map(|r| r.to_string()).collect();
            let mut rules = Vec::new();
            if !ranges.is_empty() {
                rules.push(format!(
                    "ip saddr {{ {} }} goto {}",
                    ranges.join(", "),
                    n.ext
                ));
            }
            rules.push("drop".to_string());
            o.chains.insert(n.fw.clone(), rules);
        }
    }

    // Only affinity needs a chain per endpoint: it records the client before the DNAT.
    if let Some(secs) = p.affinity_seconds {
        for e in endpoints {
            let id = endpoint_id(p, e);
            let rules = vec![format!("update @aff-{id} {{ ip saddr }}"), dnat(p, e)];
            o.sets.insert(
                format!("aff-{id}"),
                format!("type ipv4_addr; flags dynamic,timeout; timeout {secs}s;"),
            );
            o.chains.insert(format!("ep-{id}"), rules);
        }
    }
    o
}

/// The map elements of one service port, in the order it claims them.
fn elements(p: &ServicePort) -> Vec<((Map, String), String)> {
    let n = Names::of(p);
    let proto = p.protocol.nft();
    let reject = || "goto reject-chain".to_string();
    let mut out = Vec::new();
    let vip_key = format!("{} . {proto} . {}", p.cluster_ip, p.port);
    if p.internal().is_empty() {
        out.push(((Map::NoEndpointServices, vip_key), reject()));
    } else {
        out.push(((Map::ServiceIps, vip_key), format!("goto {}", n.svc)));
    }
    let external = !p.usable(false).is_empty();
    for ip in &p.external_ips {
        let key = format!("{ip} . {proto} . {}", p.port);
        if external && p.firewalled.contains(ip) {
            out.push(((Map::ServiceIps, key), format!("goto {}", n.fw)));
        } else if external {
            out.push(((Map::ServiceIps, key), format!("goto {}", n.ext)));
        } else {
            out.push(((Map::NoEndpointServices, key), reject()));
        }
    }
    if let Some(np) = p.node_port {
        let key = format!("{proto} . {np}");
        if external {
            out.push(((Map::ServiceNodeports, key), format!("goto {}", n.ext)));
        } else {
            out.push(((Map::NoEndpointNodeports, key), reject()));
        }
    }
    out
}

/// Every address a port's pools may DNAT to, each one element `ip . ip` of the `hairpin`
/// set: a packet from a pod to itself after DNAT is masqueraded, or the pod would get a reply
/// from itself to itself and drop it.
fn hairpins(p: &ServicePort) -> BTreeSet<Ipv4Addr> {
    let mut out: BTreeSet<Ipv4Addr> = p.usable(false).iter().map(|e| e.ip).collect();
    if p.internal_local || p.external_local {
        out.extend(p.usable(true).iter().map(|e| e.ip));
    }
    out
}

fn hairpin_element(ip: &Ipv4Addr) -> String {
    format!("{ip} . {ip}")
}

/// What the service ports contribute to the maps and sets they share, with who claims what,
/// kept by the proxy between syncs so that a delta costs what changed rather than what exists.
/// Two ports may claim one map key (the API should not allow it): the first in key order holds
/// it, so the transaction stays valid. An address stays in `cluster-ips` or `hairpin` while any
/// port still uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shared {
    /// Map key to its claimants: port key to the verdict it wants.
    elements: BTreeMap<(Map, String), BTreeMap<String, String>>,
    cluster_ips: BTreeMap<Ipv4Addr, usize>,
    hairpin: BTreeMap<Ipv4Addr, usize>,
}

/// What one port claims of the shared maps and sets.
struct Claims {
    elements: Vec<((Map, String), String)>,
    cluster_ip: Ipv4Addr,
    hairpin: BTreeSet<Ipv4Addr>,
}

impl Claims {
    fn of(p: &ServicePort) -> Claims {
        Claims {
            elements: elements(p),
            cluster_ip: p.cluster_ip,
            hairpin: hairpins(p),
        }
    }
}

fn count(counts: &mut BTreeMap<Ipv4Addr, usize>, ip: Ipv4Addr, up: bool) {
    if up {
        *counts.entry(ip).or_default() += 1;
    } else if let Some(n) = counts.get_mut(&ip) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&ip);
        }
    }
}

impl Shared {
    /// The claims of every port of `model`.
    pub fn of(model: &Model) -> Shared {
        let mut s = Shared::default();
        for p in model.services.values() {
            s.add(&p.key, &Claims::of(p));
        }
        s
    }

    fn add(&mut self, port: &str, c: &Claims) {
        for (key, verdict) in &c.elements {
            let claimants = self.elements.entry(key.clone()).or_default();
            // A port naming one key twice keeps its first claim.
            claimants
                .entry(port.to_string())
                .or_insert_with(|| verdict.clone());
        }
        count(&mut self.cluster_ips, c.cluster_ip, true);
        for ip in &c.hairpin {
            count(&mut self.hairpin, *ip, true);
        }
    }

    fn remove(&mut self, port: &str, c: &Claims) {
        for (key, _) in &c.elements {
            if let Some(claimants) = self.elements.get_mut(key) {
                claimants.remove(port);
                if claimants.is_empty() {
                    self.elements.remove(key);
                }
            }
        }
        count(&mut self.cluster_ips, c.cluster_ip, false);
        for ip in &c.hairpin {
            count(&mut self.hairpin, *ip, false);
        }
    }

    /// The verdict the table holds for `key`.
    fn winner(&self, key: &(Map, String)) -> Option<&String> {
        self.elements
            .get(key)
            .and_then(|c| c.first_key_value())
            .map(|(_, v)| v)
    }
}

/// The fixed part of the table: hooks, maps, and the chains every service shares.
fn skeleton(params: &Params) -> String {
    let mut t = String::new();
    for map in Map::ALL {
        let key = match map {
            Map::ServiceIps | Map::NoEndpointServices => "ipv4_addr . inet_proto . inet_service",
            Map::ServiceNodeports | Map::NoEndpointNodeports => "inet_proto . inet_service",
        };
        let _ = writeln!(t, "  map {} {{\n    type {key} : verdict\n  }}", map.name());
    }
    t.push_str("  set cluster-ips {\n    type ipv4_addr\n  }\n");
    t.push_str("  set hairpin {\n    type ipv4_addr . ipv4_addr\n  }\n");
    let chain = |t: &mut String, name: &str, head: Option<&str>, rules: &[&str]| {
        let _ = writeln!(t, "  chain {name} {{");
        if let Some(h) = head {
            let _ = writeln!(t, "    {h}; policy accept;");
        }
        for r in rules {
            let _ = writeln!(t, "    {r}");
        }
        t.push_str("  }\n");
    };
    let lookups = [
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
    ];
    chain(&mut t, "services", None, &lookups);
    chain(
        &mut t,
        "nat-prerouting",
        Some("type nat hook prerouting priority dstnat"),
        &["jump services"],
    );
    // nft 1.0 knows no `dstnat` keyword on the output hook: -100 is its value.
    chain(
        &mut t,
        "nat-output",
        Some("type nat hook output priority -100"),
        &["jump services"],
    );
    chain(
        &mut t,
        "nat-postrouting",
        Some("type nat hook postrouting priority srcnat"),
        &["jump masquerading"],
    );
    let mark = format!("meta mark set meta mark | {MASQ_MARK}");
    chain(&mut t, "mark-for-masquerade", None, &[&mark]);
    let hairpin = "ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade";
    let unmarked = format!("meta mark & {MASQ_MARK} == 0 return");
    let clear = format!("meta mark set meta mark ^ {MASQ_MARK}");
    chain(
        &mut t,
        "masquerading",
        None,
        &[hairpin, &unmarked, &clear, "masquerade fully-random"],
    );
    // No endpoint: refuse at once rather than let the client time out.
    chain(
        &mut t,
        "reject-chain",
        None,
        &["meta l4proto tcp reject with tcp reset", "reject"],
    );
    // Seen after DNAT: a service address still here was not translated. A held address on
    // a wrong port is refused; an address nobody holds is dropped. The node's own addresses
    // (such as the cluster DNS address the DNS server answers on) are left alone.
    let unallocated = format!("ip daddr {} drop", params.service_cidr);
    chain(
        &mut t,
        "cluster-ips-check",
        None,
        &[
            "fib daddr type local return",
            "ip daddr @cluster-ips reject",
            &unallocated,
        ],
    );
    let no_ep = "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services";
    let no_np =
        "ct state new fib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports";
    let check = "ct state new jump cluster-ips-check";
    chain(
        &mut t,
        "filter-forward",
        Some("type filter hook forward priority filter"),
        &[no_ep, check],
    );
    chain(
        &mut t,
        "filter-input",
        Some("type filter hook input priority filter"),
        &[no_ep, no_np],
    );
    chain(
        &mut t,
        "filter-output",
        Some("type filter hook output priority filter"),
        &[no_ep, no_np, check],
    );
    t
}

/// The whole table for `model`, replacing whatever is there in one transaction. The
/// conntrack entries of established connections keep their translation, so they survive it.
pub fn full(params: &Params, model: &Model) -> String {
    full_with(params, model, &Shared::of(model))
}

/// [`full`], with `shared` already made from `model`.
pub fn full_with(params: &Params, model: &Model, shared: &Shared) -> String {
    let mut t = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    t.push_str(&skeleton(params));
    let mut chains = BTreeMap::new();
    let mut sets = BTreeMap::new();
    for p in model.services.values() {
        let o = objects(p, params);
        chains.extend(o.chains);
        sets.extend(o.sets);
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
    t.push_str("}\n");
    // Elements once every chain they jump to exists.
    for map in Map::ALL {
        let items: Vec<String> = shared
            .elements
            .iter()
            .filter(|((m, _), _)| *m == map)
            .filter_map(|(key, _)| Some(format!("{} : {}", key.1, shared.winner(key)?)))
            .collect();
        if !items.is_empty() {
            let _ = writeln!(
                t,
                "add element ip {TABLE} {} {{ {} }}",
                map.name(),
                items.join(", ")
            );
        }
    }
    set_elements(
        &mut t,
        "add",
        "cluster-ips",
        shared.cluster_ips.keys().map(|i| i.to_string()),
    );
    set_elements(
        &mut t,
        "add",
        "hairpin",
        shared.hairpin.keys().map(hairpin_element),
    );
    t
}

/// What the shared maps and sets hold at the keys and addresses a delta touches: the
/// verdict each map key has, and the addresses present.
struct Seen {
    elements: BTreeMap<(Map, String), String>,
    cluster_ips: BTreeSet<Ipv4Addr>,
    hairpin: BTreeSet<Ipv4Addr>,
}

impl Seen {
    fn of(
        s: &Shared,
        keys: &BTreeSet<(Map, String)>,
        ips: &BTreeSet<Ipv4Addr>,
        pins: &BTreeSet<Ipv4Addr>,
    ) -> Seen {
        Seen {
            elements: keys
                .iter()
                .filter_map(|k| Some((k.clone(), s.winner(k)?.clone())))
                .collect(),
            cluster_ips: ips
                .iter()
                .filter(|i| s.cluster_ips.contains_key(i))
                .copied()
                .collect(),
            hairpin: pins
                .iter()
                .filter(|i| s.hairpin.contains_key(i))
                .copied()
                .collect(),
        }
    }
}

/// One `add element` or `delete element` command for all of `items` (none when empty).
fn set_elements(t: &mut String, verb: &str, set: &str, items: impl Iterator<Item = String>) {
    let items: Vec<String> = items.collect();
    if !items.is_empty() {
        let _ = writeln!(
            t,
            "{verb} element ip {TABLE} {set} {{ {} }}",
            items.join(", ")
        );
    }
}

/// How one kind of named object (chains, sets) differs between two models: by name,
/// the new ones, the ones whose content changed, and the ones gone.
struct Diff<V> {
    new: BTreeMap<String, V>,
    changed: BTreeMap<String, V>,
    gone: BTreeSet<String>,
}

impl<V: Clone + PartialEq> Diff<V> {
    fn new() -> Self {
        Diff {
            new: BTreeMap::new(),
            changed: BTreeMap::new(),
            gone: BTreeSet::new(),
        }
    }

    /// Adds what differs between one service port's objects `before` and `after`.
    fn add(&mut self, before: &BTreeMap<String, V>, after: &BTreeMap<String, V>) {
        for (name, v) in after {
            match before.get(name) {
                None => {
                    self.new.insert(name.clone(), v.clone());
                }
                Some(old) if old != v => {
                    self.changed.insert(name.clone(), v.clone());
                }
                Some(_) => {}
            }
        }
        self.gone.extend(
            before
                .keys()
                .filter(|name| !after.contains_key(*name))
                .cloned(),
        );
    }
}

/// The commands that turn the table for `old` into the table for `new`, touching only the
/// objects of service ports that changed; `shared` holds the claims of `old` and is brought to
/// those of `new`. Empty when nothing changed.
pub fn delta(params: &Params, old: &Model, new: &Model, shared: &mut Shared) -> String {
    let mut chains = Diff::new();
    // A set's name carries everything its declaration says, so sets never change, only come
    // and go.
    let mut sets = Diff::new();
    let changed = new
        .services
        .iter()
        .filter(|(key, p)| old.services.get(*key) != Some(*p))
        .map(|(key, _)| key)
        .chain(
            old.services
                .keys()
                .filter(|k| !new.services.contains_key(*k)),
        );
    let mut claims = Vec::new();
    for key in changed {
        let (a, b) = (old.services.get(key), new.services.get(key));
        let before = a.map(|p| objects(p, params)).unwrap_or_default();
        let after = b.map(|p| objects(p, params)).unwrap_or_default();
        chains.add(&before.chains, &after.chains);
        sets.add(&before.sets, &after.sets);
        claims.push((key, a.map(Claims::of), b.map(Claims::of)));
    }
    // What the shared maps and sets hold, before and after, wherever a changed port has a
    // claim.
    let mut keys = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let mut pins = BTreeSet::new();
    for (_, a, b) in &claims {
        for c in a.iter().chain(b) {
            keys.extend(c.elements.iter().map(|(k, _)| k.clone()));
            ips.insert(c.cluster_ip);
            pins.extend(&c.hairpin);
        }
    }
    let before = Seen::of(shared, &keys, &ips, &pins);
    for (key, a, b) in &claims {
        if let Some(c) = a {
            shared.remove(key, c);
        }
        if let Some(c) = b {
            shared.add(key, c);
        }
    }
    let after = Seen::of(shared, &keys, &ips, &pins);

    let mut t = String::new();
    // Elements first: once no map points at a chain, it can be emptied and deleted.
    for ((map, k), v) in &before.elements {
        if after.elements.get(&(*map, k.clone())) != Some(v) {
            let _ = writeln!(t, "delete element ip {TABLE} {} {{ {k} }}", map.name());
        }
    }
    let gone_ips = before.cluster_ips.difference(&after.cluster_ips);
    set_elements(
        &mut t,
        "delete",
        "cluster-ips",
        gone_ips.map(|i| i.to_string()),
    );
    let gone_pins = before.hairpin.difference(&after.hairpin);
    set_elements(&mut t, "delete", "hairpin", gone_pins.map(hairpin_element));
    // A changed chain is emptied and refilled in the same transaction: no packet sees it
    // half-written, and its round-robin counters start over.
    for name in chains.gone.iter().chain(chains.changed.keys()) {
        let _ = writeln!(t, "flush chain ip {TABLE} {name}");
    }
    for (name, body) in &sets.new {
        let _ = writeln!(t, "add set ip {TABLE} {name} {{ {body} }}");
    }
    // Every new chain exists before any rule jumps to it.
    for name in chains.new.keys() {
        let _ = writeln!(t, "add chain ip {TABLE} {name}");
    }
    for (name, rules) in chains.new.iter().chain(&chains.changed) {
        for r in rules {
            let _ = writeln!(t, "add rule ip {TABLE} {name} {r}");
        }
    }
    for ((map, k), v) in &after.elements {
        if before.elements.get(&(*map, k.clone())) != Some(v) {
            let _ = writeln!(t, "add element ip {TABLE} {} {{ {k} : {v} }}", map.name());
        }
    }
    let new_ips = after.cluster_ips.difference(&before.cluster_ips);
    set_elements(&mut t, "add", "cluster-ips", new_ips.map(|i| i.to_string()));
    let new_pins = after.hairpin.difference(&before.hairpin);
    set_elements(&mut t, "add", "hairpin", new_pins.map(hairpin_element));
    for name in &chains.gone {
        let _ = writeln!(t, "delete chain ip {TABLE} {name}");
    }
    for name in &sets.gone {
        let _ = writeln!(t, "delete set ip {TABLE} {name}");
    }
    t
}

/// Removes the table (nothing if it is not there).
pub fn remove_text() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::super::model::Protocol;
    use super::*;

    fn params() -> Params {
        Params {
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            service_cidr: "10.43.0.0/16".parse().unwrap(),
        }
    }

    fn ep(last: u8) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(10, 42, 0, last),
            port: 8080,
            ready: true,
            serving: true,
            terminating: false,
            local: last.is_multiple_of(2),
        }
    }

    fn port(name: &str, vip: u8, endpoints: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            key: format!("default/{name}:http/tcp"),
            cluster_ip: Ipv4Addr::new(10, 43, 0, vip),
            protocol: Protocol::Tcp,
            port: 80,
            node_port: None,
            external_ips: vec![],
            source_ranges: vec![],
            firewalled: vec![],
            affinity_seconds: None,
            external_local: false,
            internal_local: false,
            endpoints,
        }
    }

    fn delta_of(old: &Model, new: &Model) -> String {
        let mut shared = Shared::of(old);
        let d = delta(&params(), old, new, &mut shared);
        assert_eq!(shared, Shared::of(new), "the claims follow the delta");
        d
    }

    fn model(ports: Vec<ServicePort>) -> Model {
        let mut m = Model::default();
        for p in ports {
            m.insert(p);
        }
        m
    }

    #[test]
    fn a_service_is_one_map_element_and_a_round_robin_over_its_endpoints() {
        let m = model(vec![port("web", 5, vec![ep(1), ep(2), ep(3)])]);
        let t = full(&params(), &m);
        let h = hash(&["default/web:http/tcp"]);
        assert!(t.starts_with("table ip nanokube-proxy\ndelete table ip nanokube-proxy\n"));
        assert!(
            t.contains(&format!(
                "add element ip nanokube-proxy service-ips {{ 10.43.0.5 . tcp . 80 : goto svc-{h} }}"
            )),
            "{t}"
        );
        // Rule i takes every (3-i)th connection reaching it: an exact rotation.
        assert!(
            t.contains(&format!(
                "chain svc-{h} {{\n    ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n    \
                 numgen inc mod 3 0 meta l4proto tcp dnat to 10.42.0.1:8080\n    \
                 numgen inc mod 2 0 meta l4proto tcp dnat to 10.42.0.2:8080\n    \
                 meta l4proto tcp dnat to 10.42.0.3:8080\n  }}"
            )),
            "{t}"
        );
        assert!(!t.contains("ep-") && !t.contains(" map rr"), "{t}");
        assert!(
            t.contains("add element ip nanokube-proxy hairpin { 10.42.0.1 . 10.42.0.1, 10.42.0.2 . 10.42.0.2, 10.42.0.3 . 10.42.0.3 }"),
            "{t}"
        );
        assert!(t.contains("ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade"));
        assert!(t.contains("ip saddr != 10.42.0.0/16 jump mark-for-masquerade"));
        assert!(t.contains("add element ip nanokube-proxy cluster-ips { 10.43.0.5 }"));
        assert!(t.contains("ip daddr 10.43.0.0/16 drop"));
    }

    #[test]
    fn no_endpoints_means_reject_and_no_chain() {
        let m = model(vec![port("web", 5, vec![])]);
        let t = full(&params(), &m);
        assert!(t.contains(
            "add element ip nanokube-proxy no-endpoint-services { 10.43.0.5 . tcp . 80 : goto reject-chain }"
        ));
        assert!(!t.contains("chain svc-"), "{t}");
        // Not ready and not terminating: the same.
        let mut e = ep(1);
        e.ready = false;
        e.serving = false;
        assert_eq!(full(&params(), &model(vec![port("web", 5, vec![e])])), t);
    }

    #[test]
    fn affinity_remembers_clients_per_endpoint() {
        let mut p = port("web", 5, vec![ep(1), ep(2)]);
        p.affinity_seconds = Some(300);
        let t = full(&params(), &model(vec![p.clone()]));
        let id = endpoint_id(&p, &p.endpoints[0]);
        assert!(t.contains(&format!(
            "set aff-{id} {{ type ipv4_addr; flags dynamic,timeout; timeout 300s; }}"
        )));
        assert!(t.contains(&format!("ip saddr @aff-{id} goto ep-{id}")));
        assert!(t.contains(&format!(
            "chain ep-{id} {{\n    update @aff-{id} {{ ip saddr }}\n    meta l4proto tcp dnat to 10.42.0.1:8080\n"
        )));
        let other = endpoint_id(&p, &p.endpoints[1]);
        assert!(t.contains(&format!(
            "    numgen inc mod 2 0 goto ep-{id}\n    goto ep-{other}\n"
        )));
    }

    #[test]
    fn node_ports_and_the_local_traffic_policy() {
        let mut p = port("web", 5, vec![ep(1), ep(2), ep(3)]);
        p.node_port = Some(30080);
        p.external_ips = vec![Ipv4Addr::new(10, 99, 0, 2)];
        p.external_local = true;
        let t = full(&params(), &model(vec![p.clone()]));
        let h = hash(&[&p.key]);
        assert!(t.contains(&format!("tcp . 30080 : goto ext-{h}")), "{t}");
        assert!(
            t.contains(&format!("10.99.0.2 . tcp . 80 : goto ext-{h}")),
            "{t}"
        );
        // The local pool holds only ep(2), this node's.
        assert!(
            t.contains(&format!(
                "chain lo-{h} {{\n    meta l4proto tcp dnat to 10.42.0.2:8080\n  }}"
            )),
            "{t}"
        );
        // Without a local endpoint, outside traffic is dropped, the node's own still served.
        p.endpoints.remove(1);
        let t = full(&params(), &model(vec![p]));
        assert!(
            t.contains(&format!("fib saddr type local goto svc-{h}\n")),
            "{t}"
        );
        assert!(t.contains("    drop\n"), "{t}");
        assert!(!t.contains("chain lo-"), "{t}");
    }

    #[test]
    fn source_ranges_guard_only_the_load_balancer_addresses() {
        let mut p = port("web", 5, vec![ep(1)]);
        p.node_port = Some(30080);
        p.external_ips = vec![Ipv4Addr::new(10, 99, 0, 2), Ipv4Addr::new(10, 99, 0, 3)];
        p.firewalled = vec![Ipv4Addr::new(10, 99, 0, 2)];
        p.source_ranges = vec![
            "10.42.0.0/16".parse().unwrap(),
            "192.0.2.9/24".parse().unwrap(),
        ];
        let t = full(&params(), &model(vec![p.clone()]));
        let h = hash(&[&p.key]);
        assert!(
            t.contains(&format!("10.99.0.2 . tcp . 80 : goto fw-{h}")),
            "{t}"
        );
        // An externalIP and the node port are not filtered.
        assert!(
            t.contains(&format!("10.99.0.3 . tcp . 80 : goto ext-{h}")),
            "{t}"
        );
        assert!(t.contains(&format!("tcp . 30080 : goto ext-{h}")), "{t}");
        assert!(
            t.contains(&format!(
                "chain fw-{h} {{\n    ip saddr {{ 10.42.0.0/16, 192.0.2.0/24 }} goto ext-{h}\n    drop\n"
            )),
            "{t}"
        );
        // Ranges none of which is IPv4: the guard turns everyone away.
        p.source_ranges.clear();
        let t = full(&params(), &model(vec![p.clone()]));
        assert!(t.contains(&format!("chain fw-{h} {{\n    drop\n")), "{t}");
        // Without ranges there is no guard.
        p.firewalled.clear();
        assert!(!full(&params(), &model(vec![p])).contains("fw-"));
    }

    #[test]
    fn the_delta_touches_only_what_changed() {
        let mut ports: Vec<ServicePort> = (0..100)
            .map(|i| port(&format!("s{i}"), i as u8 + 1, vec![ep(1), ep(3)]))
            .collect();
        let old = model(ports.clone());
        assert_eq!(delta_of(&old, &old), "");

        // One new service: its chain and elements, nothing of the other hundred.
        ports.push(port("new", 200, vec![ep(5)]));
        let new = model(ports.clone());
        let d = delta_of(&old, &new);
        let h = hash(&["default/new:http/tcp"]);
        assert_eq!(
            d,
            format!(
                "add chain ip nanokube-proxy svc-{h}\n\
                 add rule ip nanokube-proxy svc-{h} ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n\
                 add rule ip nanokube-proxy svc-{h} meta l4proto tcp dnat to 10.42.0.5:8080\n\
                 add element ip nanokube-proxy service-ips {{ 10.43.0.200 . tcp . 80 : goto svc-{h} }}\n\
                 add element ip nanokube-proxy cluster-ips {{ 10.43.0.200 }}\n\
                 add element ip nanokube-proxy hairpin {{ 10.42.0.5 . 10.42.0.5 }}\n"
            )
        );

        // One endpoint leaves a service: its chain is emptied and refilled. The address stays
        // in the hairpin set, which the other services still need.
        let mut fewer = ports.clone();
        fewer[0].endpoints.remove(1);
        let d = delta_of(&new, &model(fewer.clone()));
        let svc = hash(&[&ports[0].key]);
        assert_eq!(
            d,
            format!(
                "flush chain ip nanokube-proxy svc-{svc}\n\
                 add rule ip nanokube-proxy svc-{svc} ip saddr != 10.42.0.0/16 jump mark-for-masquerade\n\
                 add rule ip nanokube-proxy svc-{svc} meta l4proto tcp dnat to 10.42.0.1:8080\n"
            )
        );

        // An endpoint replaced by an address nobody used: the chain and the hairpin set.
        let mut swapped = ports.clone();
        swapped[1].endpoints[1] = ep(7);
        let d = delta_of(&new, &model(swapped));
        let svc1 = hash(&[&ports[1].key]);
        assert!(
            d.contains(&format!("flush chain ip nanokube-proxy svc-{svc1}\n")),
            "{d}"
        );
        assert!(
            d.contains("add element ip nanokube-proxy hairpin { 10.42.0.7 . 10.42.0.7 }"),
            "{d}"
        );

        // The last endpoint goes: the element moves to the reject map.
        fewer[0].endpoints.clear();
        let d = delta_of(&model(ports.clone()), &model(fewer));
        assert!(d.contains("delete element ip nanokube-proxy service-ips { 10.43.0.1 . tcp . 80 }"));
        assert!(d.contains(
            "add element ip nanokube-proxy no-endpoint-services { 10.43.0.1 . tcp . 80 : goto reject-chain }"
        ));

        // A service deleted: elements out first, chains emptied, then deleted.
        let d = delta_of(&new, &old);
        assert!(d.contains("delete element ip nanokube-proxy hairpin { 10.42.0.5 . 10.42.0.5 }"));
        let first_delete_chain = d.find("delete chain").unwrap();
        assert!(d.find("delete element").unwrap() < d.find("flush chain").unwrap());
        assert!(d.find("flush chain").unwrap() < first_delete_chain);
        assert!(d.contains("delete element ip nanokube-proxy cluster-ips { 10.43.0.200 }"));
    }

    #[test]
    fn a_key_claimed_twice_keeps_the_transaction_valid() {
        let a = port("a", 5, vec![ep(1)]);
        let mut b = port("b", 6, vec![ep(1)]);
        b.cluster_ip = a.cluster_ip;
        let t = full(&params(), &model(vec![a, b]));
        assert_eq!(t.matches("10.43.0.5 . tcp . 80 :").count(), 1, "{t}");
    }

    #[test]
    fn names_never_reach_the_text() {
        let mut p = port("web", 5, vec![ep(1)]);
        p.key = "evil\"; flush ruleset; }\n".into();
        let t = full(&params(), &model(vec![p]));
        assert!(!t.contains("evil") && !t.contains("flush ruleset"), "{t}");
    }
}
