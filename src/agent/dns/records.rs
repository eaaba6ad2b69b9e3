//! The cluster's DNS data as a name tree: every owner name (lowercase, no trailing dot) with its
//! records, built whole from Services, EndpointSlices and Pods, and the one lookup that turns a
//! question into an answer, NODATA, NXDOMAIN or "not ours" (for the forwarder). Pure: no
//! sockets, no wire format beyond the record types; the names follow the Kubernetes DNS
//! specification (github.com/kubernetes/dns, docs/specification.md).

use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

/// Every answer's TTL, and the negative TTL (the SOA's minimum): CoreDNS's kubernetes plugin
/// uses 5 s, short enough that a changed endpoint is seen quickly.
pub const TTL: u32 = 5;

/// The reverse zone of IPv4 addresses.
pub const REVERSE_ZONE: &str = "in-addr.arpa";

/// The schema version the Kubernetes DNS specification asks `dns-version.<zone>` to carry.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// The label EndpointSlices carry to name their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One record's data; the owner name is the key it is stored under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Data {
    A(Ipv4Addr),
    Cname(String),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Ptr(String),
    Txt(String),
    Ns(String),
    /// The zone's SOA; its fixed fields come from [`Soa`].
    Soa,
}

impl Data {
    pub fn record_type(&self) -> RecordType {
        match self {
            Data::A(_) => RecordType::A,
            Data::Cname(_) => RecordType::CNAME,
            Data::Srv { .. } => RecordType::SRV,
            Data::Ptr(_) => RecordType::PTR,
            Data::Txt(_) => RecordType::TXT,
            Data::Ns(_) => RecordType::NS,
            Data::Soa => RecordType::SOA,
        }
    }
}

/// A record: owner name and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub data: Data,
}

/// The SOA of a zone this server answers for (put in the authority section of negative answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub zone: String,
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: i32,
    pub retry: i32,
    pub expire: i32,
    /// The negative-caching TTL (RFC 2308).
    pub minimum: u32,
}

/// What the index says about a question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Records answering it (a CNAME chain first, if the name is an alias), and records that
    /// help the client (the addresses of SRV targets).
    Records {
        answers: Vec<Record>,
        additionals: Vec<Record>,
    },
    /// The name exists (it has records of other types, or names below it) but has none of this
    /// type: NOERROR with an empty answer and the zone's SOA.
    NoData(Soa),
    /// No such name in the zone: NXDOMAIN with the zone's SOA.
    NxDomain(Soa),
    /// A name outside the zones this server holds: forwarded upstream, or refused.
    NotOurs,
}

/// The cluster's names at one moment; rebuilt whole after changes (linear in the number of
/// objects), so a lookup never sees half an update.
#[derive(Debug, Clone, Default)]
pub struct Index {
    domain: String,
    serial: u32,
    names: HashMap<String, BTreeSet<Data>>,
    /// Names that own nothing but have names below them (empty non-terminals): NODATA, since
    /// NXDOMAIN would say that nothing exists at or below them (RFC 8020).
    parents: HashSet<String>,
}

/// A DNS label as Kubernetes names are: 1-63 of [a-z0-9-], not starting or ending with '-'.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A name made of such labels (an ExternalName's target); a trailing dot is allowed.
fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    s.len() <= 253 && s.split('.').all(|l| is_label(&l.to_ascii_lowercase()))
}

/// `10.42.0.7` as the label `10-42-0-7` (pod names and unnamed endpoints).
pub fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

/// `10.42.0.7` as `7.0.42.10.in-addr.arpa`.
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.{REVERSE_ZONE}", o[3], o[2], o[1], o[0])
}

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// One address of a headless service's endpoint.
struct Endpoint {
    ip: Ipv4Addr,
    /// The label naming the endpoint under the service: its hostname, else the dashed address.
    label: String,
}

impl Index {
    /// The index of `domain` (e.g. `cluster.local`) served at `dns_ip`.
    pub fn build(
        domain: &str,
        dns_ip: Ipv4Addr,
        serial: u32,
        services: &[&Service],
        slices: &[&EndpointSlice],
        pods: &[&Pod],
    ) -> Index {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let mut ix = Index {
            domain: domain.clone(),
            serial,
            ..Default::default()
        };
        let ns_name = format!("ns.dns.{domain}");
        ix.add(&domain, Data::Soa);
        ix.add(&domain, Data::Ns(ns_name.clone()));
        ix.add(&ns_name, Data::A(dns_ip));
        ix.add(
            &format!("dns-version.{domain}"),
            Data::Txt(SCHEMA_VERSION.into()),
        );
        // Structural names exist even in an empty cluster: a resolver asking for them gets
        // NODATA.
        ix.parents.insert(format!("svc.{domain}"));
        ix.parents.insert(format!("pod.{domain}"));

        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices {
            if s.address_type != "IPv4" {
                continue;
            }
            let (Some(ns), Some(svc)) = (
                s.metadata.namespace.as_deref(),
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL)),
            ) else {
                continue;
            };
            by_service
                .entry((ns.to_string(), svc.clone()))
                .or_default()
                .push(s);
        }
        for svc in services {
            let (Some(name), Some(ns)) = (
                svc.metadata.name.as_deref(),
                svc.metadata.namespace.as_deref(),
            ) else {
                continue;
            };
            if !is_label(name) || !is_label(ns) {
                continue;
            }
            let slices = by_service
                .get(&(ns.to_string(), name.to_string()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            ix.add_service(svc, name, ns, slices);
        }
        for p in pods {
            let Some(ns) = p.metadata.namespace.as_deref().filter(|n| is_label(n)) else {
                continue;
            };
            let Some(st) = p.status.as_ref() else {
                continue;
            };
            // A finished pod's address is given back and may already be another pod's.
            if matches!(st.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
                continue;
            }
            let mut ips: Vec<&str> = st.pod_ips.iter().flatten().map(|p| p.ip.as_str()).collect();
            ips.extend(st.pod_ip.as_deref());
            for ip in ips.into_iter().filter_map(ipv4) {
                ix.add(&format!("{}.{ns}.pod.{domain}", dashed(ip)), Data::A(ip));
            }
        }
        ix
    }

    fn add_service(&mut self, svc: &Service, name: &str, ns: &str, slices: &[&EndpointSlice]) {
        let Some(spec) = svc.spec.as_ref() else {
            return;
        };
        let fqdn = format!("{name}.{ns}.svc.{}", self.domain);
        let named_ports: Vec<(String, String, u16)> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port_name = p.name.as_deref().filter(|n| is_label(n))?;
                let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                Some((port_name.to_string(), proto, u16::try_from(p.port).ok()?))
            })
            .collect();
        let srv_name = |port: &str, proto: &str| format!("_{port}._{proto}.{fqdn}");

        if spec.type_.as_deref() == Some("ExternalName") {
            let Some(target) = spec.external_name.as_deref().filter(|t| is_hostname(t)) else {
                return;
            };
            let target = target.trim_end_matches('.').to_ascii_lowercase();
            self.add(&fqdn, Data::Cname(target.clone()));
            for (port, proto, number) in &named_ports {
                self.add(
                    &srv_name(port, proto),
                    Data::Srv {
                        priority: 0,
                        weight: 100,
                        port: *number,
                        target: target.clone(),
                    },
                );
            }
            return;
        }

        let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
        if cluster_ip != "None" {
            // A ClusterIP (or NodePort, LoadBalancer) service: its one virtual address. One
            // not yet allocated has no records.
            let Some(ip) = ipv4(cluster_ip) else {
                return;
            };
            self.add(&fqdn, Data::A(ip));
            self.add(&reverse_name(ip), Data::Ptr(fqdn.clone()));
            for (port, proto, number) in &named_ports {
                self.add(
                    &srv_name(port, proto),
                    Data::Srv {
                        priority: 0,
                        weight: 100,
                        port: *number,
                        target: fqdn.clone(),
                    },
                );
            }
            return;
        }

        // Headless: the endpoints themselves, the ready ones (a nil ready condition counts as
        // ready, as the API documents) or all when the Service asks for
        // publishNotReadyAddresses. Deduplicated: during a re-slice an address may be in two
        // slices.
        let all = spec.publish_not_ready_addresses == Some(true);
        let mut seen: HashSet<Ipv4Addr> = HashSet::new();
        // (port name, protocol) -> (port, target) of every endpoint serving it.
        let mut srv: BTreeMap<(String, String), BTreeSet<(u16, String)>> = BTreeMap::new();
        let mut any = false;
        for slice in slices {
            let mut endpoints = Vec::new();
            for e in &slice.endpoints {
                let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready && !all {
                    continue;
                }
                let hostname = e.hostname.as_deref().filter(|h| is_label(h));
                for ip in e.addresses.iter().filter_map(|a| ipv4(a)) {
                    let label = hostname.map(str::to_string).unwrap_or_else(|| dashed(ip));
                    endpoints.push(Endpoint { ip, label });
                }
            }
            for port in slice.ports.iter().flatten() {
                let (Some(port_name), Some(number)) = (
                    port.name.as_deref().filter(|n| is_label(n)),
                    port.port.and_then(|p| u16::try_from(p).ok()),
                ) else {
                    continue;
                };
                let proto = port
                    .protocol
                    .as_deref()
                    .unwrap_or("TCP")
                    .to_ascii_lowercase();
                let set = srv.entry((port_name.to_string(), proto)).or_default();
                for e in &endpoints {
                    set.insert((number, format!("{}.{fqdn}", e.label)));
                }
            }
            for e in endpoints {
                any = true;
                let host = format!("{}.{fqdn}", e.label);
                self.add(&host, Data::A(e.ip));
                if seen.insert(e.ip) {
                    self.add(&fqdn, Data::A(e.ip));
                }
                self.add(&reverse_name(e.ip), Data::Ptr(host));
            }
        }
        for ((port, proto), targets) in srv {
            let weight = (100 / targets.len().max(1)).max(1) as u16;
            for (number, target) in targets {
                self.add(
                    &srv_name(&port, &proto),
                    Data::Srv {
                        priority: 0,
                        weight,
                        port: number,
                        target,
                    },
                );
            }
        }
        if !any {
            // A headless service with no ready endpoint still exists: NODATA, not NXDOMAIN.
            self.add_parents(&fqdn, true);
        }
    }

    fn add(&mut self, name: &str, data: Data) {
        self.names.entry(name.to_string()).or_default().insert(data);
        self.add_parents(name, false);
    }

    /// Records `name`'s ancestors (and `name` itself when `inclusive`) as existing names.
    fn add_parents(&mut self, name: &str, inclusive: bool) {
        let zone = if name.ends_with(REVERSE_ZONE) {
            REVERSE_ZONE
        } else {
            self.domain.as_str()
        };
        let mut rest = name;
        if inclusive && rest != zone {
            self.parents.insert(rest.to_string());
        }
        while let Some((_, parent)) = rest.split_once('.') {
            if parent.len() < zone.len() {
                break;
            }
            if !self.parents.insert(parent.to_string()) && parent != zone {
                // Its own ancestors are in already.
                break;
            }
            rest = parent;
        }
    }

    /// The zone `name` falls in, if it is one this server answers for.
    fn zone_of(&self, name: &str) -> Option<&str> {
        let under = |zone: &str| {
            name == zone
                || (name.len() > zone.len()
                    && name.ends_with(zone)
                    && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
        };
        if under(&self.domain) {
            Some(&self.domain)
        } else if under(REVERSE_ZONE) {
            Some(REVERSE_ZONE)
        } else {
            None
        }
    }

    /// The SOA of `zone`.
    pub fn soa(&self, zone: &str) -> Soa {
        Soa {
            zone: zone.to_string(),
            mname: format!("ns.dns.{}", self.domain),
            rname: format!("hostmaster.{}", self.domain),
            serial: self.serial,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: TTL,
        }
    }

    /// Answers `qtype` for `qname` (any case, with or without the trailing dot).
    pub fn lookup(&self, qname: &str, qtype: RecordType) -> Answer {
        let name = qname.trim_end_matches('.').to_ascii_lowercase();
        let Some(zone) = self.zone_of(&name) else {
            return Answer::NotOurs;
        };
        if zone == REVERSE_ZONE && !self.names.contains_key(&name) {
            // Only the cluster's own addresses are known here; the rest of the reverse tree
            // belongs to whoever holds those networks.
            return Answer::NotOurs;
        }
        let mut answers = Vec::new();
        let mut owner = name;
        // Follows CNAMEs that stay inside the zone (an ExternalName naming another service),
        // a few steps at most against loops.
        for _ in 0..8 {
            let Some(records) = self.names.get(&owner) else {
                if answers.is_empty() {
                    return if self.parents.contains(&owner) {
                        Answer::NoData(self.soa(zone))
                    } else {
                        Answer::NxDomain(self.soa(zone))
                    };
                }
                // An alias whose in-zone target does not exist: the client sees the CNAME.
                break;
            };
            let matching: Vec<Record> = records
                .iter()
                .filter(|d| qtype == RecordType::ANY || d.record_type() == qtype)
                .map(|d| Record {
                    name: owner.clone(),
                    data: d.clone(),
                })
                .collect();
            if !matching.is_empty() {
                answers.extend(matching);
                break;
            }
            let cname = records.iter().find_map(|d| match d {
                Data::Cname(t) => Some(t.clone()),
                _ => None,
            });
            match cname {
                Some(target) => {
                    answers.push(Record {
                        name: owner.clone(),
                        data: Data::Cname(target.clone()),
                    });
                    if self.zone_of(&target) != Some(self.domain.as_str()) {
                        break;
                    }
                    owner = target;
                }
                None if answers.is_empty() => return Answer::NoData(self.soa(zone)),
                None => break,
            }
        }
        let additionals = answers
            .iter()
            .filter_map(|r| match &r.data {
                Data::Srv { target, .. } | Data::Ns(target) => Some(target),
                _ => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .flat_map(|t| {
                self.names
                    .get(t)
                    .into_iter()
                    .flatten()
                    .filter(|d| matches!(d, Data::A(_)))
                    .map(|d| Record {
                        name: t.clone(),
                        data: d.clone(),
                    })
            })
            .collect();
        Answer::Records {
            answers,
            additionals,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }
    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn index(services: &[Service], slices: &[EndpointSlice], pods: &[Pod]) -> Index {
        Index::build(
            "cluster.local",
            ip("10.43.0.10"),
            7,
            &services.iter().collect::<Vec<_>>(),
            &slices.iter().collect::<Vec<_>>(),
            &pods.iter().collect::<Vec<_>>(),
        )
    }

    fn datas(a: Answer) -> Vec<Data> {
        match a {
            Answer::Records { answers, .. } => answers.into_iter().map(|r| r.data).collect(),
            other => panic!("not records: {other:?}"),
        }
    }

    fn web() -> Service {
        svc(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"port": 8080},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]}
        }))
    }

    fn db() -> Service {
        svc(json!({
            "metadata": {"name": "db", "namespace": "prod"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
        }))
    }

    fn db_slice() -> EndpointSlice {
        slice(json!({
            "metadata": {"name": "db-abc", "namespace": "prod",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"], "conditions": {}},
                {"addresses": ["10.42.0.7"], "hostname": "db-2", "conditions": {"ready": false}}
            ]
        }))
    }

    #[test]
    fn cluster_ip_service_a_record_any_case_and_trailing_dot() {
        let ix = index(&[web()], &[], &[]);
        assert_eq!(
            datas(ix.lookup("web.default.svc.cluster.local", RecordType::A)),
            [Data::A(ip("10.43.0.20"))]
        );
        assert_eq!(
            datas(ix.lookup("WEB.Default.svc.cluster.local.", RecordType::A)),
            [Data::A(ip("10.43.0.20"))]
        );
    }

    #[test]
    fn aaaa_of_an_existing_name_is_nodata_with_the_soa() {
        let ix = index(&[web()], &[], &[]);
        let Answer::NoData(soa) = ix.lookup("web.default.svc.cluster.local", RecordType::AAAA)
        else {
            panic!()
        };
        assert_eq!(soa.zone, "cluster.local");
        assert_eq!(soa.minimum, TTL);
        assert_eq!(soa.serial, 7);
    }

    #[test]
    fn names_with_children_are_nodata_and_the_rest_nxdomain() {
        let ix = index(&[web()], &[], &[]);
        for name in [
            "default.svc.cluster.local",
            "svc.cluster.local",
            "pod.cluster.local",
            "cluster.local",
            "_tcp.web.default.svc.cluster.local",
        ] {
            assert!(
                matches!(ix.lookup(name, RecordType::A), Answer::NoData(_)),
                "{name}"
            );
        }
        for name in [
            "nope.default.svc.cluster.local",
            "web.other.svc.cluster.local",
            "other.svc.cluster.local",
            "x.web.default.svc.cluster.local",
            // What a search path makes of `web.default` asked from namespace default.
            "web.default.default.svc.cluster.local",
            "_http._udp.web.default.svc.cluster.local",
        ] {
            let Answer::NxDomain(soa) = ix.lookup(name, RecordType::A) else {
                panic!("{name}: {:?}", ix.lookup(name, RecordType::A))
            };
            assert_eq!(soa.zone, "cluster.local");
        }
    }

    #[test]
    fn names_outside_the_zones_are_not_ours() {
        let ix = index(&[web()], &[], &[]);
        assert_eq!(ix.lookup("example.com", RecordType::A), Answer::NotOurs);
        // A suffix that is not a whole label.
        assert_eq!(ix.lookup("xcluster.local", RecordType::A), Answer::NotOurs);
        assert_eq!(
            ix.lookup("1.1.168.192.in-addr.arpa", RecordType::PTR),
            Answer::NotOurs
        );
    }

    #[test]
    fn srv_for_named_ports_of_a_cluster_ip_service() {
        let ix = index(&[web()], &[], &[]);
        let Answer::Records {
            answers,
            additionals,
        } = ix.lookup("_http._tcp.web.default.svc.cluster.local", RecordType::SRV)
        else {
            panic!()
        };
        assert_eq!(
            answers[0].data,
            Data::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: "web.default.svc.cluster.local".into()
            }
        );
        assert_eq!(answers.len(), 1);
        assert_eq!(additionals[0].data, Data::A(ip("10.43.0.20")));
        assert_eq!(
            datas(ix.lookup("_dns._udp.web.default.svc.cluster.local", RecordType::SRV)).len(),
            1
        );
        // The SRV name has no address.
        assert!(matches!(
            ix.lookup("_http._tcp.web.default.svc.cluster.local", RecordType::A),
            Answer::NoData(_)
        ));
    }

    #[test]
    fn ptr_for_a_service_ip() {
        let ix = index(&[web()], &[], &[]);
        assert_eq!(
            datas(ix.lookup("20.0.43.10.in-addr.arpa", RecordType::PTR)),
            [Data::Ptr("web.default.svc.cluster.local".into())]
        );
        let Answer::NoData(soa) = ix.lookup("20.0.43.10.in-addr.arpa", RecordType::A) else {
            panic!()
        };
        assert_eq!(soa.zone, "in-addr.arpa");
    }

    #[test]
    fn headless_service_answers_with_ready_endpoints() {
        let ix = index(&[db()], &[db_slice()], &[]);
        let mut a = datas(ix.lookup("db.prod.svc.cluster.local", RecordType::A));
        a.sort();
        assert_eq!(a, [Data::A(ip("10.42.0.5")), Data::A(ip("10.42.0.6"))]);
        assert_eq!(
            datas(ix.lookup("db-0.db.prod.svc.cluster.local", RecordType::A)),
            [Data::A(ip("10.42.0.5"))]
        );
        assert_eq!(
            datas(ix.lookup("10-42-0-6.db.prod.svc.cluster.local", RecordType::A)),
            [Data::A(ip("10.42.0.6"))]
        );
        // Not ready: no name at all.
        assert!(matches!(
            ix.lookup("db-2.db.prod.svc.cluster.local", RecordType::A),
            Answer::NxDomain(_)
        ));
        assert_eq!(
            datas(ix.lookup("5.0.42.10.in-addr.arpa", RecordType::PTR)),
            [Data::Ptr("db-0.db.prod.svc.cluster.local".into())]
        );
        assert_eq!(
            datas(ix.lookup("6.0.42.10.in-addr.arpa", RecordType::PTR)),
            [Data::Ptr("10-42-0-6.db.prod.svc.cluster.local".into())]
        );
        assert_eq!(
            ix.lookup("7.0.42.10.in-addr.arpa", RecordType::PTR),
            Answer::NotOurs
        );
    }

    #[test]
    fn headless_srv_has_one_target_per_endpoint() {
        let ix = index(&[db()], &[db_slice()], &[]);
        let Answer::Records {
            answers,
            additionals,
        } = ix.lookup("_pg._tcp.db.prod.svc.cluster.local", RecordType::SRV)
        else {
            panic!()
        };
        let targets: Vec<_> = answers
            .iter()
            .map(|r| match &r.data {
                Data::Srv {
                    target,
                    port,
                    weight,
                    ..
                } => (target.as_str(), *port, *weight),
                d => panic!("{d:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            [
                ("10-42-0-6.db.prod.svc.cluster.local", 5432, 50),
                ("db-0.db.prod.svc.cluster.local", 5432, 50)
            ]
        );
        assert_eq!(additionals.len(), 2);
    }

    #[test]
    fn publish_not_ready_addresses_includes_every_endpoint() {
        let mut s = db();
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let ix = index(&[s], &[db_slice()], &[]);
        assert_eq!(
            datas(ix.lookup("db.prod.svc.cluster.local", RecordType::A)).len(),
            3
        );
        assert_eq!(
            datas(ix.lookup("db-2.db.prod.svc.cluster.local", RecordType::A)),
            [Data::A(ip("10.42.0.7"))]
        );
    }

    #[test]
    fn a_headless_service_without_endpoints_exists() {
        let ix = index(&[db()], &[], &[]);
        assert!(matches!(
            ix.lookup("db.prod.svc.cluster.local", RecordType::A),
            Answer::NoData(_)
        ));
    }

    #[test]
    fn slices_of_other_services_or_families_are_ignored() {
        let mut other = db_slice();
        other
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(SERVICE_NAME_LABEL.into(), "someone-else".into());
        let mut v6 = db_slice();
        v6.address_type = "IPv6".into();
        v6.endpoints[0].addresses = vec!["fd00::1".into()];
        let ix = index(&[db()], &[other, v6], &[]);
        assert!(matches!(
            ix.lookup("db.prod.svc.cluster.local", RecordType::A),
            Answer::NoData(_)
        ));
    }

    #[test]
    fn an_address_in_two_slices_is_answered_once() {
        let mut second = db_slice();
        second.metadata.name = Some("db-def".into());
        let ix = index(&[db()], &[db_slice(), second], &[]);
        assert_eq!(
            datas(ix.lookup("db.prod.svc.cluster.local", RecordType::A)).len(),
            2
        );
    }

    #[test]
    fn external_name_is_a_cname_for_every_type() {
        let ext = svc(json!({
            "metadata": {"name": "search", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "Search.Example.com."}
        }));
        let ix = index(&[ext], &[], &[]);
        for t in [RecordType::A, RecordType::AAAA, RecordType::CNAME] {
            assert_eq!(
                datas(ix.lookup("search.default.svc.cluster.local", t)),
                [Data::Cname("search.example.com".into())]
            );
        }
    }

    #[test]
    fn external_name_inside_the_zone_is_followed() {
        let ext = svc(json!({
            "metadata": {"name": "alias", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}
        }));
        let ix = index(&[ext, web()], &[], &[]);
        assert_eq!(
            datas(ix.lookup("alias.default.svc.cluster.local", RecordType::A)),
            [
                Data::Cname("web.default.svc.cluster.local".into()),
                Data::A(ip("10.43.0.20"))
            ]
        );
    }

    #[test]
    fn external_name_loops_end() {
        let a = svc(json!({
            "metadata": {"name": "a", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "b.default.svc.cluster.local"}
        }));
        let b = svc(json!({
            "metadata": {"name": "b", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "a.default.svc.cluster.local"}
        }));
        let ix = index(&[a, b], &[], &[]);
        assert_eq!(
            datas(ix.lookup("a.default.svc.cluster.local", RecordType::A)).len(),
            8
        );
    }

    #[test]
    fn unallocated_or_malformed_services_have_no_records() {
        let pending = svc(json!({
            "metadata": {"name": "pending", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]}
        }));
        let bad = svc(json!({
            "metadata": {"name": "Bad_Name", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.30"}
        }));
        let ext = svc(json!({
            "metadata": {"name": "ext", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "a b;c"}
        }));
        let ix = index(&[pending, bad, ext], &[], &[]);
        assert!(matches!(
            ix.lookup("pending.default.svc.cluster.local", RecordType::A),
            Answer::NxDomain(_)
        ));
        assert!(matches!(
            ix.lookup("ext.default.svc.cluster.local", RecordType::A),
            Answer::NxDomain(_)
        ));
        assert_eq!(
            ix.lookup("30.0.43.10.in-addr.arpa", RecordType::PTR),
            Answer::NotOurs
        );
    }

    #[test]
    fn pod_a_records_for_running_pods() {
        let pod = |name: &str, ip: &str, phase: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default"},
                "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}
            }))
            .unwrap()
        };
        let ix = index(
            &[],
            &[],
            &[
                pod("a", "10.42.0.9", "Running"),
                pod("b", "10.42.0.10", "Succeeded"),
            ],
        );
        assert_eq!(
            datas(ix.lookup("10-42-0-9.default.pod.cluster.local", RecordType::A)),
            [Data::A(ip("10.42.0.9"))]
        );
        assert!(matches!(
            ix.lookup("10-42-0-10.default.pod.cluster.local", RecordType::A),
            Answer::NxDomain(_)
        ));
        // Only the namespace the pod is in.
        assert!(matches!(
            ix.lookup("10-42-0-9.other.pod.cluster.local", RecordType::A),
            Answer::NxDomain(_)
        ));
        assert!(matches!(
            ix.lookup("default.pod.cluster.local", RecordType::A),
            Answer::NoData(_)
        ));
    }

    #[test]
    fn the_apex_has_soa_ns_and_the_schema_version() {
        let ix = index(&[], &[], &[]);
        assert_eq!(
            datas(ix.lookup("cluster.local", RecordType::SOA)),
            [Data::Soa]
        );
        let Answer::Records {
            answers,
            additionals,
        } = ix.lookup("cluster.local", RecordType::NS)
        else {
            panic!()
        };
        assert_eq!(answers[0].data, Data::Ns("ns.dns.cluster.local".into()));
        assert_eq!(additionals[0].data, Data::A(ip("10.43.0.10")));
        assert_eq!(
            datas(ix.lookup("dns-version.cluster.local", RecordType::TXT)),
            [Data::Txt("1.1.0".into())]
        );
    }
}
