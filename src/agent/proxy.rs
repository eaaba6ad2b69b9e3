//! The service proxy of a node (kube-proxy's job): reflectors on Services and EndpointSlices,
//! and on every change, after a short debounce, a [`Model`] built from them and handed to the
//! sync layer (src/network/proxy), which programs the nftables table. It runs in every agent
//! under the node's identity.
//!
//! This is where API objects stop: every value is parsed into a typed field here (addresses as
//! `Ipv4Addr`, ports as numbers, protocols and policies as enums or flags) and anything that
//! does not parse leaves the port or endpoint out. Names only form the port's key, which the
//! sync layer hashes.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

use super::proxy_health::{Health, HealthServers};
use crate::network::proxy::{Endpoint, Model, Params, Protocol, Proxy, ServicePort};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long after a change the proxy waits for more before syncing: a rollout touching many
/// slices becomes one transaction.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// The default and largest ClientIP affinity timeout (upstream's).
const AFFINITY_DEFAULT: u32 = 10800;
const AFFINITY_MAX: u32 = 86400;

/// What the proxy of one node needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub params: Params,
    /// The cluster DNS address: the node's DNS server answers it itself, so a Service holding
    /// it is not programmed here.
    pub cluster_dns: Option<Ipv4Addr>,
    pub backend: crate::network::proxy::Backend,
}

/// The ClientIP affinity timeout of a service, if it asks for affinity.
fn affinity(svc: &Service) -> Option<u32> {
    let spec = svc.spec.as_ref()?;
    if spec.session_affinity.as_deref() != Some("ClientIP") {
        return None;
    }
    let secs = spec
        .session_affinity_config
        .as_ref()
        .and_then(|c| c.client_ip.as_ref())
        .and_then(|c| c.timeout_seconds)
        .unwrap_or(AFFINITY_DEFAULT as i32);
    Some((secs.max(1) as u32).min(AFFINITY_MAX))
}

fn port_number(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// The service ports of `svc` with their endpoints from `slices` (all slices; those of other
/// services are ignored).
pub fn service_ports(
    cfg: &Config,
    svc: &Service,
    slices: &[Arc<EndpointSlice>],
) -> Vec<ServicePort> {
    let (Some(spec), Some(name)) = (svc.spec.as_ref(), svc.metadata.name.as_deref()) else {
        return Vec::new();
    };
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return Vec::new();
    }
    // Headless ("None") and unparsable addresses have nothing to program.
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    if Some(cluster_ip) == cfg.cluster_dns {
        return Vec::new();
    }
    let external = ty == "NodePort" || ty == "LoadBalancer";
    let mut external_ips: Vec<Ipv4Addr> = if ty == "LoadBalancer" {
        svc.status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.as_deref()?.parse().ok())
            .collect()
    } else {
        Vec::new()
    };
    // loadBalancerSourceRanges guard the load-balancer addresses only (the API keeps them to
    // type LoadBalancer); spaces around a range are allowed, as upstream allows them. Ranges
    // given but none of them IPv4 still guard: every IPv4 client is then turned away.
    let given = spec
        .load_balancer_source_ranges
        .as_ref()
        .is_some_and(|r| !r.is_empty());
    let firewalled = if ty == "LoadBalancer" && given {
        external_ips.clone()
    } else {
        Vec::new()
    };
    let source_ranges: Vec<crate::network::Cidr> = spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    // externalIPs: whoever routes these addresses to a node reaches the service there, with
    // any type (the API refuses loopback, link-local and unspecified ones). Addresses of the
    // service range are skipped: they are other services' (the cluster DNS among them), and
    // an externalIP must not capture them (the CVE-2020-8554 pattern).
    external_ips.extend(
        spec.external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse::<Ipv4Addr>().ok())
            .filter(|ip| !cfg.params.service_cidr.contains(*ip)),
    );
    external_ips.sort();
    external_ips.dedup();
    let mine: Vec<&EndpointSlice> = slices
        .iter()
        .map(|s| s.as_ref())
        .filter(|s| {
            s.metadata.namespace.as_deref().unwrap_or("default") == namespace
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SERVICE_NAME_LABEL))
                    .map(String::as_str)
                    == Some(name)
                && s.address_type == "IPv4"
        })
        .collect();
    let mut out = Vec::new();
    for sp in spec.ports.iter().flatten() {
        let (Some(protocol), Some(port)) = (
            Protocol::parse(sp.protocol.as_deref()),
            port_number(sp.port),
        ) else {
            continue;
        };
        let port_name = sp.name.as_deref().unwrap_or("");
        let mut endpoints = Vec::new();
        for slice in &mine {
            // The slice's port of the same name and protocol gives the endpoints' port.
            let Some(target) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or("") == port_name
                    && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
            }) else {
                continue;
            };
            let Some(target_port) = target.port.and_then(port_number) else {
                continue;
            };
            for e in &slice.endpoints {
                // Upstream uses an endpoint's first address only.
                let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                    continue;
                };
                let c = e.conditions.as_ref();
                // An unset condition means ready (and so serving), as the API documents.
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                endpoints.push(Endpoint {
                    ip,
                    port: target_port,
                    ready,
                    serving,
                    terminating,
                    local: e.node_name.as_deref() == Some(cfg.node_name.as_str()),
                });
            }
        }
        out.push(ServicePort {
            key: format!("{namespace}/{name}:{port_name}/{}", protocol.nft()),
            cluster_ip,
            protocol,
            port,
            node_port: if external {
                sp.node_port.and_then(port_number)
            } else {
                None
            },
            external_ips: external_ips.clone(),
            source_ranges: source_ranges.clone(),
            firewalled: firewalled.clone(),
            affinity_seconds: affinity(svc),
            external_local: external && spec.external_traffic_policy.as_deref() == Some("Local"),
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            endpoints,
        });
    }
    out
}

/// The model for everything in the stores.
pub fn model(cfg: &Config, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Model {
    let mut m = Model::default();
    for svc in services {
        for p in service_ports(cfg, svc, slices) {
            m.insert(p);
        }
    }
    m
}

/// The health-check node ports of externalTrafficPolicy Local services, each with the number
/// of this node's endpoints its service has.
pub fn health_ports(services: &[Arc<Service>], m: &Model) -> BTreeMap<u16, Health> {
    let mut out = BTreeMap::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let external = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        if !external || spec.external_traffic_policy.as_deref() != Some("Local") {
            continue;
        }
        let (Some(port), Some(name)) = (
            spec.health_check_node_port.and_then(port_number),
            svc.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
        // Keys are namespace/name:port/protocol, and neither name may hold '/' or ':'.
        let prefix = format!("{namespace}/{name}:");
        let local: BTreeSet<Ipv4Addr> = m
            .services
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .flat_map(|(_, p)| p.usable(true).into_iter().map(|e| e.ip))
            .collect();
        out.insert(
            port,
            Health {
                namespace: namespace.to_string(),
                name: name.to_string(),
                local_endpoints: local.len(),
            },
        );
    }
    out
}

fn spawn_reflector<K>(api: Api<K>, changed: Arc<Notify>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        stream
            .for_each(|ev| {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "proxy watch");
                }
                changed.notify_one();
                async {}
            })
            .await;
    });
    reader
}

/// Runs the proxy until the process ends.
pub async fn run(cfg: Config, client: kube::Client) {
    let changed = Arc::new(Notify::new());
    let services = spawn_reflector(Api::<Service>::all(client.clone()), changed.clone());
    let slices = spawn_reflector(Api::<EndpointSlice>::all(client), changed.clone());
    // A sync before both lists arrive would reject every service it has no endpoints for yet.
    let _ = services.wait_until_ready().await;
    let _ = slices.wait_until_ready().await;
    let proxy = Arc::new(std::sync::Mutex::new(Proxy::with_backend(cfg.backend)));
    let mut last: Option<Model> = None;
    let mut health = HealthServers::default();
    loop {
        let all = services.state();
        let m = model(&cfg, &all, &slices.state());
        health.sync(health_ports(&all, &m)).await;
        if last.as_ref() != Some(&m) {
            let (p, params, m2) = (proxy.clone(), cfg.params, m.clone());
            let started = std::time::Instant::now();
            let done =
                tokio::task::spawn_blocking(move || p.lock().expect("proxy lock").sync(params, m2))
                    .await;
            match done {
                Ok(Ok(s)) => {
                    tracing::debug!(ports = m.services.len(), full = s.full, bytes = s.bytes, flushed = s.flushed, took = ?started.elapsed(), "services synced");
                    last = Some(m);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "programming services; retrying");
                    last = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => tracing::error!(error = %e, "proxy sync panicked"),
            }
        }
        changed.notified().await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVIL: &str = "x\"; flush ruleset; add rule ip filter input drop # }\n{";

    fn cfg() -> Config {
        Config {
            node_name: "node1".into(),
            params: Params {
                cluster_cidr: "10.42.0.0/16".parse().unwrap(),
                service_cidr: "10.43.0.0/16".parse().unwrap(),
            },
            cluster_dns: Some(Ipv4Addr::new(10, 43, 0, 10)),
            backend: Default::default(),
        }
    }

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn web(name: &str, ip: &str) -> serde_json::Value {
        json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": ip,
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}
        })
    }

    fn web_slice(service: &str, ip: &str) -> serde_json::Value {
        json!({
            "metadata": {"name": "s1", "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}, "nodeName": "node1"}]
        })
    }

    #[test]
    fn a_service_and_its_slice_become_a_port_with_endpoints() {
        let m = model(
            &cfg(),
            &[svc(web("web", "10.43.0.5"))],
            &[slice(web_slice("web", "10.42.0.7"))],
        );
        let p = &m.services["default/web:http/tcp"];
        assert_eq!(p.cluster_ip, Ipv4Addr::new(10, 43, 0, 5));
        assert_eq!(p.node_port, Some(30080));
        assert_eq!(p.endpoints.len(), 1);
        assert_eq!(p.endpoints[0].port, 8080);
        assert!(p.endpoints[0].local && p.endpoints[0].ready);
        // Another service's slice is not ours; the cluster DNS address is not programmed.
        let m = model(
            &cfg(),
            &[svc(web("web", "10.43.0.5")), svc(web("dns", "10.43.0.10"))],
            &[slice(web_slice("other", "10.42.0.7"))],
        );
        assert!(m.services["default/web:http/tcp"].endpoints.is_empty());
        assert_eq!(m.services.len(), 1);
    }

    /// spec.externalIPs lead to the service like load-balancer addresses, with any type.
    #[test]
    fn external_ips_are_external_addresses_of_the_service() {
        let service = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.5",
                     "externalIPs": ["10.99.0.7", "not-an-ip", "10.99.0.7"],
                     "ports": [{"name": "http", "port": 80}]}
        });
        let m = model(
            &cfg(),
            &[svc(service)],
            &[slice(web_slice("web", "10.42.0.7"))],
        );
        let p = &m.services["default/web:http/tcp"];
        assert_eq!(p.external_ips, vec![Ipv4Addr::new(10, 99, 0, 7)]);
        let text = crate::network::proxy::nft::full(&cfg().params, &m);
        assert!(text.contains("10.99.0.7 . tcp . 80 : goto ext-"), "{text}");

        // With source ranges only the load-balancer address is guarded; an externalIP in the
        // service range (here the cluster DNS address) is never programmed.
        let service = json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.5",
                     "externalIPs": ["10.99.0.7", "10.43.0.10"],
                     "loadBalancerSourceRanges": ["10.42.0.0/16"],
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "10.99.0.2"}]}}
        });
        let m = model(
            &cfg(),
            &[svc(service)],
            &[slice(web_slice("web", "10.42.0.7"))],
        );
        let p = &m.services["default/web:http/tcp"];
        assert_eq!(
            p.external_ips,
            vec![Ipv4Addr::new(10, 99, 0, 2), Ipv4Addr::new(10, 99, 0, 7)]
        );
        assert_eq!(p.firewalled, vec![Ipv4Addr::new(10, 99, 0, 2)]);
        let text = crate::network::proxy::nft::full(&cfg().params, &m);
        assert!(text.contains("10.99.0.2 . tcp . 80 : goto fw-"), "{text}");
        assert!(text.contains("10.99.0.7 . tcp . 80 : goto ext-"), "{text}");
        assert!(!text.contains("10.43.0.10 . tcp"), "{text}");
    }

    /// Every string field of a Service and an EndpointSlice holds nft syntax: nothing of it
    /// reaches the ruleset, and what does not parse is left out.
    #[test]
    fn injection_through_every_string_field_reaches_no_rule() {
        let ingress = json!([{"ip": EVIL, "hostname": EVIL, "ipMode": EVIL,
                              "ports": [{"port": 80, "protocol": EVIL, "error": EVIL}]}]);
        let service = json!({
            "metadata": {"name": EVIL, "namespace": EVIL, "generateName": EVIL, "uid": EVIL,
                         "labels": {"a": EVIL}, "annotations": {EVIL: EVIL}},
            "spec": {
                "type": "LoadBalancer", "clusterIP": "10.43.0.5", "clusterIPs": [EVIL],
                "externalIPs": [EVIL], "loadBalancerIP": EVIL, "externalName": EVIL,
                "loadBalancerSourceRanges": [EVIL], "loadBalancerClass": EVIL,
                "sessionAffinity": "ClientIP", "externalTrafficPolicy": EVIL,
                "internalTrafficPolicy": EVIL, "ipFamilyPolicy": EVIL, "ipFamilies": [EVIL],
                "trafficDistribution": EVIL, "selector": {EVIL: EVIL},
                "ports": [
                    {"name": EVIL, "port": 80, "targetPort": EVIL, "nodePort": 30080,
                     "appProtocol": EVIL},
                    {"name": "p2", "port": 81, "protocol": EVIL}
                ]
            },
            "status": {"loadBalancer": {"ingress": ingress},
                       "conditions": [{"type": EVIL, "status": EVIL, "reason": EVIL,
                                       "message": EVIL, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
        });
        let slice_v = json!({
            "metadata": {"name": EVIL, "namespace": EVIL, "labels": {SERVICE_NAME_LABEL: EVIL}},
            "addressType": "IPv4",
            "ports": [{"name": EVIL, "port": 8080, "protocol": "TCP", "appProtocol": EVIL}],
            "endpoints": [
                {"addresses": ["10.42.0.7"], "hostname": EVIL, "nodeName": EVIL, "zone": EVIL,
                 "targetRef": {"kind": EVIL, "name": EVIL, "namespace": EVIL, "uid": EVIL},
                 "deprecatedTopology": {EVIL: EVIL}, "hints": {"forZones": [{"name": EVIL}]}},
                {"addresses": [EVIL]},
                {"addresses": ["10.42.0.8; flush ruleset"]}
            ]
        });
        let m = model(&cfg(), &[svc(service)], &[slice(slice_v)]);
        // The valid port is programmed, with its one valid endpoint; the port with a bogus
        // protocol and every unparsable address are not.
        assert_eq!(m.services.len(), 1, "{m:?}");
        let p = m.services.values().next().unwrap();
        assert_eq!(p.endpoints.len(), 1);
        assert!(p.external_ips.is_empty());
        assert!(!p.external_local && !p.internal_local);
        let text = crate::network::proxy::nft::full(&cfg().params, &m);
        let delta = crate::network::proxy::nft::delta(
            &cfg().params,
            &Model::default(),
            &m,
            &mut Default::default(),
        );
        for t in [&text, &delta] {
            assert!(
                !t.contains("flush ruleset") && !t.contains("filter input"),
                "{t}"
            );
            assert!(!t.contains('"') && !t.contains('#'), "{t}");
            assert!(t.contains("dnat to 10.42.0.7:8080"), "{t}");
        }
    }
}
