//! What the proxy programs, as plain data: one entry per service port with its endpoints. The
//! agent builds it from Service and EndpointSlice objects after validating every field; nothing
//! here knows an API type, and the renderer ([`super::nft`]) trusts these values to be
//! well-formed because their types allow nothing else.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::network::Cidr;

/// A transport protocol a Service port may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The name nft knows it by (an `inet_proto` value).
    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }

    /// From a Service's `protocol` field (`TCP` when unset, as the API defaults it).
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

/// One backend of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// EndpointConditions: `ready` implies serving and not terminating.
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (the slice's `nodeName` is ours): eligible for the Local traffic policies.
    pub local: bool,
}

/// One port of one Service, the unit the proxy programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's identity (namespace, name, port name): only ever hashed into chain names,
    /// never written into the ruleset.
    pub key: String,
    pub cluster_ip: Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress` addresses, answered on `port`
    /// like the cluster IP but as external traffic (kube-proxy treats both alike).
    pub external_ips: Vec<Ipv4Addr>,
    /// `spec.loadBalancerSourceRanges`: the only clients the load-balancer addresses
    /// (`firewalled`) answer; empty lets everyone in. Node ports and externalIPs are not
    /// filtered, as upstream.
    pub source_ranges: Vec<crate::network::Cidr>,
    /// The addresses among `external_ips` that came from `status.loadBalancer.ingress`, when
    /// the Service lists loadBalancerSourceRanges (else empty).
    pub firewalled: Vec<Ipv4Addr>,
    /// sessionAffinity ClientIP: how long a client sticks to its endpoint, in seconds.
    pub affinity_seconds: Option<u32>,
    /// externalTrafficPolicy Local: NodePort and LoadBalancer traffic only to this node's
    /// endpoints, keeping the client's address.
    pub external_local: bool,
    /// internalTrafficPolicy Local: cluster IP traffic only to this node's endpoints.
    pub internal_local: bool,
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// The endpoints traffic may go to, as upstream's topology rules pick them: ready ones,
    /// else (only when none is ready) the ones still serving while terminating. `local_only`
    /// keeps this node's.
    pub fn usable(&self, local_only: bool) -> Vec<&Endpoint> {
        let pool: Vec<&Endpoint> = self
            .endpoints
            .iter()
            .filter(|e| !local_only || e.local)
            .collect();
        let ready: Vec<&Endpoint> = pool.iter().copied().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        pool.into_iter()
            .filter(|e| e.serving && e.terminating)
            .collect()
    }

    /// Endpoints for traffic to the cluster IP (internalTrafficPolicy applied).
    pub fn internal(&self) -> Vec<&Endpoint> {
        self.usable(self.internal_local)
    }

    /// Whether load-balancer addresses admit only `source_ranges` (`firewalled` is empty
    /// unless the Service lists ranges; `source_ranges` may then still be empty, when none of
    /// them is IPv4: nobody gets in).
    pub fn guards_load_balancer(&self) -> bool {
        !self.firewalled.is_empty()
    }

    /// Whether the port has a node port or load-balancer address, i.e. external traffic.
    pub fn is_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// Settings of the node that every rule depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The whole pod range: traffic to a service from outside it is masqueraded, so replies
    /// come back through this node.
    pub cluster_cidr: Cidr,
    /// The service range: addresses in it that no service holds are dropped.
    pub service_cidr: Cidr,
}

/// Everything the proxy programs: service ports by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    pub services: BTreeMap<String, ServicePort>,
}

impl Model {
    pub fn insert(&mut self, port: ServicePort) {
        self.services.insert(port.key.clone(), port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8, ready: bool, terminating: bool, local: bool) -> Endpoint {
        Endpoint {
            ip: Ipv4Addr::new(10, 42, 0, last),
            port: 80,
            ready,
            serving: ready || terminating,
            terminating,
            local,
        }
    }

    fn port(endpoints: Vec<Endpoint>) -> ServicePort {
        ServicePort {
            key: "default/web:http".into(),
            cluster_ip: Ipv4Addr::new(10, 43, 0, 5),
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

    #[test]
    fn terminating_endpoints_only_when_no_ready_one_is_left() {
        let p = port(vec![ep(1, true, false, false), ep(2, false, true, false)]);
        assert_eq!(p.internal().len(), 1);
        assert_eq!(p.internal()[0].ip.octets()[3], 1);
        let p = port(vec![ep(1, false, false, false), ep(2, false, true, false)]);
        assert_eq!(p.internal().len(), 1);
        assert_eq!(p.internal()[0].ip.octets()[3], 2);
        // Neither ready nor serving: nothing.
        assert!(port(vec![ep(1, false, false, false)]).internal().is_empty());
    }

    #[test]
    fn local_policy_keeps_this_nodes_endpoints() {
        let mut p = port(vec![ep(1, true, false, false), ep(2, true, false, true)]);
        assert_eq!(p.internal().len(), 2);
        p.internal_local = true;
        assert_eq!(p.internal().len(), 1);
        assert!(p.internal()[0].local);
    }

    #[test]
    fn protocols_parse_as_the_api_spells_them() {
        assert_eq!(Protocol::parse(None), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse(Some("UDP")), Some(Protocol::Udp));
        assert_eq!(Protocol::parse(Some("udp")), None);
        assert_eq!(Protocol::parse(Some("tcp; drop")), None);
    }
}
