//! A Service's cluster IP, node ports and health-check node port, with kube-apiserver's rules
//! (its service REST storage, pkg/registry/core/service/storage):
//!
//! - every type but ExternalName gets a cluster IP from --service-cidr, unless headless
//!   (`clusterIP: None`); one asked for is honoured when free and in range, otherwise refused
//!   with upstream's field errors. IPv4 single-stack: `ipFamilies [IPv4]`, a PreferDualStack
//!   policy is accepted and stays single, RequireDualStack and IPv6 are refused.
//! - NodePort services, and LoadBalancer services unless `allocateLoadBalancerNodePorts: false`,
//!   get a node port per port from --service-node-port-range (ports of the same number share
//!   one, as for TCP and UDP of DNS); LoadBalancers with `externalTrafficPolicy: Local` get a
//!   `healthCheckNodePort` too.
//! - an update that leaves out what the server filled in (a PUT without clusterIP or nodePort)
//!   keeps it; a type change drops what the new type cannot use and frees it (ClusterIP to
//!   ExternalName frees the address, NodePort to ClusterIP the node ports).

use super::ranges::{self, IP_ALLOCATED, PORT_ALLOCATED, RANGE_FULL};
use super::{Allocator, Owner, Record, Taken};
use crate::apiserver::status::{ApiError, Cause};
use crate::apiserver::validation::{self, FieldError};
use crate::store::Store;
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

pub struct Services;

impl Allocator for Services {
    fn allocate<'a>(
        &'a self,
        store: &'a dyn Store,
        svc: &'a mut Value,
        old: Option<&'a Value>,
        dry_run: bool,
    ) -> BoxFuture<'a, Result<Taken, ApiError>> {
        Box::pin(async move {
            if let Some(old) = old {
                keep_allocated_values(svc, old);
                drop_type_dependent_fields(svc, old);
            }
            normalize_cluster_ips(svc);
            check_ip_families(svc)?;
            let mut taken = Taken::new(Owner::of(svc), dry_run);
            let result = async {
                cluster_ip(store, svc, old, &mut taken).await?;
                node_ports(store, svc, old, &mut taken).await?;
                health_check_node_port(store, svc, old, &mut taken).await
            }
            .await;
            match result {
                Ok(()) => Ok(taken),
                Err(e) => {
                    taken.revert(store).await;
                    Err(e)
                }
            }
        })
    }

    fn held(&self, svc: &Value) -> Vec<Record> {
        let mut held: Vec<Record> = held_ip(svc).into_iter().map(Record::ClusterIp).collect();
        held.extend(held_node_ports(svc).into_iter().map(Record::NodePort));
        held.extend(held_health_check(svc).map(Record::NodePort));
        held
    }
}

fn ty(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    ty(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(ty(svc), "NodePort" | "LoadBalancer")
}

/// Whether ports without a nodePort get one (a LoadBalancer may do without).
fn allocates_node_ports(svc: &Value) -> bool {
    ty(svc) == "NodePort"
        || (ty(svc) == "LoadBalancer"
            && svc["spec"]["allocateLoadBalancerNodePorts"].as_bool() != Some(false))
}

/// Upstream's NeedsHealthCheck: only load balancers that keep traffic on the receiving node.
fn needs_health_check(svc: &Value) -> bool {
    ty(svc) == "LoadBalancer" && svc["spec"]["externalTrafficPolicy"] == "Local"
}

fn str_of<'a>(v: &'a Value, field: &str) -> &'a str {
    v["spec"][field].as_str().unwrap_or("")
}

fn node_port(p: &Value) -> i64 {
    p["nodePort"].as_i64().unwrap_or(0)
}

fn ports(svc: &Value) -> &[Value] {
    svc["spec"]["ports"].as_array().map_or(&[], Vec::as_slice)
}

/// The address a stored Service holds.
fn held_ip(svc: &Value) -> Option<Ipv4Addr> {
    if !needs_cluster_ip(svc) {
        return None;
    }
    str_of(svc, "clusterIP").parse().ok()
}

fn held_node_ports(svc: &Value) -> Vec<u16> {
    if !needs_node_ports(svc) {
        return Vec::new();
    }
    let mut out: Vec<u16> = ports(svc)
        .iter()
        .filter_map(|p| u16::try_from(node_port(p)).ok().filter(|n| *n != 0))
        .collect();
    out.dedup();
    out
}

fn held_health_check(svc: &Value) -> Option<u16> {
    if !needs_health_check(svc) {
        return None;
    }
    let hc = svc["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0);
    u16::try_from(hc).ok().filter(|n| *n != 0)
}

/// What the server filled in before stays when an update leaves it out (upstream's
/// patchAllocatedValues), so `kubectl replace` of the original manifest keeps the address.
fn keep_allocated_values(svc: &mut Value, old: &Value) {
    if needs_cluster_ip(old) && needs_cluster_ip(svc) {
        if str_of(svc, "clusterIP").is_empty() && !str_of(old, "clusterIP").is_empty() {
            svc["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
        }
        let empty = svc["spec"]["clusterIPs"]
            .as_array()
            .is_none_or(|a| a.is_empty());
        if empty && old["spec"]["clusterIPs"].is_array() {
            svc["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
    }
    if needs_node_ports(old) && needs_node_ports(svc) {
        let new_ports: Vec<i64> = ports(svc).iter().map(node_port).collect();
        // Ports both versions name are not patched in elsewhere; the rest go back by port name.
        let used: Vec<i64> = ports(old)
            .iter()
            .map(node_port)
            .filter(|n| *n != 0 && new_ports.contains(n))
            .collect();
        let by_name: Vec<(String, i64)> = ports(old)
            .iter()
            .map(|p| (p["name"].as_str().unwrap_or("").to_string(), node_port(p)))
            .collect();
        if let Some(list) = svc["spec"]["ports"].as_array_mut() {
            for p in list.iter_mut().filter(|p| node_port(p) == 0) {
                let name = p["name"].as_str().unwrap_or("");
                if let Some((_, n)) = by_name.iter().find(|(k, _)| k == name) {
                    if *n != 0 && !used.contains(n) {
                        p["nodePort"] = json!(n);
                    }
                }
            }
        }
    }
    if needs_health_check(old)
        && needs_health_check(svc)
        && svc["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0) == 0
        && old["spec"]["healthCheckNodePort"].is_number()
    {
        svc["spec"]["healthCheckNodePort"] = old["spec"]["healthCheckNodePort"].clone();
    }
}

/// A type change drops the values the new type has no use for, when the update left them as
/// they were (upstream's dropTypeDependentFields); the allocation below then frees them.
fn drop_type_dependent_fields(svc: &mut Value, old: &Value) {
    let same = |svc: &Value, f: &str| svc["spec"][f] == old["spec"][f];
    if needs_cluster_ip(old) && !needs_cluster_ip(svc) {
        let spec_drops: Vec<&str> = ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"]
            .into_iter()
            .filter(|f| same(svc, f))
            .collect();
        for f in spec_drops {
            remove(svc, f);
        }
    }
    let node_ports_same = {
        let a: Vec<i64> = ports(svc).iter().map(node_port).collect();
        let b: Vec<i64> = ports(old).iter().map(node_port).collect();
        a == b
    };
    if needs_node_ports(old) && !needs_node_ports(svc) && node_ports_same {
        if let Some(list) = svc["spec"]["ports"].as_array_mut() {
            for p in list.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
    }
    if needs_health_check(old) && !needs_health_check(svc) && same(svc, "healthCheckNodePort") {
        remove(svc, "healthCheckNodePort");
    }
    if ty(svc) != "LoadBalancer" {
        remove(svc, "allocateLoadBalancerNodePorts");
    }
    if needs_node_ports(old) && !needs_node_ports(svc) && same(svc, "externalTrafficPolicy") {
        remove(svc, "externalTrafficPolicy");
    }
}

fn remove(svc: &mut Value, field: &str) {
    if let Some(spec) = svc["spec"].as_object_mut() {
        spec.remove(field);
    }
}

/// `clusterIP` and `clusterIPs[0]` are one value: either given fills the other (for every
/// type, so validation refuses an ExternalName service's address in either field).
fn normalize_cluster_ips(svc: &mut Value) {
    let ip = str_of(svc, "clusterIP").to_string();
    let first = svc["spec"]["clusterIPs"][0].as_str().map(str::to_string);
    match (ip.is_empty(), first) {
        (false, None) => svc["spec"]["clusterIPs"] = json!([ip]),
        (true, Some(f)) if !f.is_empty() => svc["spec"]["clusterIP"] = json!(f),
        _ => {}
    }
}

fn refuse(svc: &Value, errs: Vec<FieldError>) -> ApiError {
    let name = svc["metadata"]["name"].as_str().unwrap_or_default();
    let causes = errs
        .into_iter()
        .map(|e| Cause {
            reason: e.reason,
            message: e.message,
            field: e.field,
        })
        .collect();
    ApiError::invalid("", "Service", name, causes)
}

/// This cluster is IPv4 single-stack: what the dual-stack fields may ask for.
fn check_ip_families(svc: &Value) -> Result<(), ApiError> {
    if !needs_cluster_ip(svc) {
        return Ok(());
    }
    let spec = &svc["spec"];
    let mut errs = Vec::new();
    let policy = &spec["ipFamilyPolicy"];
    let headless_selectorless = str_of(svc, "clusterIP") == "None"
        && spec["selector"].as_object().is_none_or(|m| m.is_empty());
    match policy.as_str().unwrap_or("SingleStack") {
        "SingleStack" | "PreferDualStack" => {}
        // Headless services without a selector may ask for both families: they have no address.
        "RequireDualStack" if headless_selectorless => {}
        "RequireDualStack" => errs.push(validation::invalid(
            "spec.ipFamilyPolicy",
            policy,
            "this cluster is not configured for dual-stack services",
        )),
        _ => errs.push(validation::not_supported(
            "spec.ipFamilyPolicy",
            policy,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        )),
    }
    for (i, fam) in spec["ipFamilies"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if fam != "IPv4" && !(headless_selectorless && fam == "IPv6") {
            errs.push(validation::invalid(
                &format!("spec.ipFamilies[{i}]"),
                fam,
                "not configured on this cluster",
            ));
        }
    }
    let ips = spec["clusterIPs"].as_array().map_or(0, Vec::len);
    if ips > 1 && policy.as_str().unwrap_or("SingleStack") == "SingleStack" {
        errs.push(validation::invalid(
            "spec.ipFamilyPolicy",
            policy,
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
        ));
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(refuse(svc, errs))
    }
}

/// Upstream's refusal of a requested address: the field is the whole `spec.clusterIPs`, its
/// value rendered as Go renders a []string.
fn ip_refusal(svc: &Value, ip: &str, why: &str) -> ApiError {
    let list: Vec<String> = svc["spec"]["clusterIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| format!("{:?}", v.as_str().unwrap_or_default()))
        .collect();
    let name = svc["metadata"]["name"].as_str().unwrap_or_default();
    ApiError::invalid(
        "",
        "Service",
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            field: "spec.clusterIPs".into(),
            message: format!(
                "Invalid value: []string{{{}}}: failed to allocate IP {ip}: {why}",
                list.join(", ")
            ),
        }],
    )
}

async fn cluster_ip(
    store: &dyn Store,
    svc: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    let range = &super::ranges().ips;
    let before = old.and_then(held_ip);
    let want = str_of(svc, "clusterIP").to_string();
    if needs_cluster_ip(svc) && want != "None" {
        if want.is_empty() {
            let seed = rand::random::<u32>();
            let mut chosen = None;
            for ip in range.candidates(seed) {
                if taken.take(store, Record::ClusterIp(ip)).await? {
                    chosen = Some(ip);
                    break;
                }
            }
            let ip = chosen.ok_or_else(|| {
                ApiError::Internal(format!(
                    "Internal error occurred: failed to allocate a serviceIP: {RANGE_FULL}"
                ))
            })?;
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        } else if let Ok(ip) = want.parse::<Ipv4Addr>() {
            if before != Some(ip) {
                if !range.contains(ip) {
                    return Err(ip_refusal(svc, &want, &ranges::ip_not_in_range(ip, range)));
                }
                if !taken.take(store, Record::ClusterIp(ip)).await? {
                    return Err(ip_refusal(svc, &want, IP_ALLOCATED));
                }
            }
        } else if want.parse::<std::net::Ipv6Addr>().is_ok() {
            let errs = vec![validation::invalid(
                "spec.clusterIPs[0]",
                &svc["spec"]["clusterIPs"],
                "IPv6 is not configured on this cluster",
            )];
            return Err(refuse(svc, errs));
        }
        // Anything else is not an address: validation refuses it.
    }
    if let Some(ip) = before.filter(|ip| held_ip(svc) != Some(*ip)) {
        taken.free(Record::ClusterIp(ip));
    }
    Ok(())
}

fn port_refusal(svc: &Value, index: usize, port: i64, why: &str) -> ApiError {
    let field = format!("spec.ports[{index}].nodePort");
    refuse(svc, vec![validation::invalid(&field, &json!(port), why)])
}

/// Takes a node port asked for by number.
async fn take_port(
    store: &dyn Store,
    svc: &Value,
    taken: &mut Taken,
    index: usize,
    port: i64,
) -> Result<(), ApiError> {
    let range = super::ranges().ports;
    if !range.contains(port) {
        return Err(port_refusal(
            svc,
            index,
            port,
            &ranges::port_not_in_range(&range),
        ));
    }
    if !taken.take(store, Record::NodePort(port as u16)).await? {
        return Err(port_refusal(svc, index, port, PORT_ALLOCATED));
    }
    Ok(())
}

/// The next free node port, taken.
async fn next_port(store: &dyn Store, taken: &mut Taken) -> Result<Option<u16>, ApiError> {
    let range = super::ranges().ports;
    for port in range.candidates(rand::random::<u32>()) {
        if taken.take(store, Record::NodePort(port)).await? {
            return Ok(Some(port));
        }
    }
    Ok(None)
}

async fn node_ports(
    store: &dyn Store,
    svc: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    let before: Vec<u16> = old.map(held_node_ports).unwrap_or_default();
    if needs_node_ports(svc) {
        let allocate = allocates_node_ports(svc);
        // (service port, node port): a port number shares its node port across protocols.
        let mut chosen: Vec<(i64, i64)> = Vec::new();
        let count = ports(svc).len();
        for i in 0..count {
            let p = &ports(svc)[i];
            let (number, asked) = (p["port"].as_i64().unwrap_or(0), node_port(p));
            let np = if asked != 0 {
                let held = u16::try_from(asked).is_ok_and(|n| before.contains(&n));
                if !held && !chosen.iter().any(|(_, n)| *n == asked) {
                    take_port(store, svc, taken, i, asked).await?;
                }
                asked
            } else if !allocate {
                continue;
            } else if let Some((_, n)) = chosen.iter().find(|(s, _)| *s == number) {
                *n
            } else if let Some(n) = ports(svc)[i + 1..]
                .iter()
                .find(|q| q["port"].as_i64() == Some(number) && node_port(q) != 0)
                .map(node_port)
            {
                // A later port of the same number asks for one: it is this port's too.
                let held = u16::try_from(n).is_ok_and(|x| before.contains(&x));
                if !held {
                    take_port(store, svc, taken, i, n).await?;
                }
                n
            } else {
                let n = next_port(store, taken).await?.ok_or_else(|| {
                    ApiError::Internal(format!(
                        "Internal error occurred: failed to allocate a nodePort: {RANGE_FULL}"
                    ))
                })?;
                i64::from(n)
            };
            svc["spec"]["ports"][i]["nodePort"] = json!(np);
            chosen.push((number, np));
        }
    }
    let after = held_node_ports(svc);
    for port in before.into_iter().filter(|p| !after.contains(p)) {
        taken.free(Record::NodePort(port));
    }
    Ok(())
}

async fn health_check_node_port(
    store: &dyn Store,
    svc: &mut Value,
    old: Option<&Value>,
    taken: &mut Taken,
) -> Result<(), ApiError> {
    let before = old.and_then(held_health_check);
    if needs_health_check(svc) {
        let asked = svc["spec"]["healthCheckNodePort"].as_i64().unwrap_or(0);
        if asked == 0 {
            let n = next_port(store, taken).await?.ok_or_else(|| {
                ApiError::Internal(format!(
                    "Internal error occurred: failed to allocate a HealthCheck NodePort 0: {RANGE_FULL}"
                ))
            })?;
            svc["spec"]["healthCheckNodePort"] = json!(n);
        } else if u16::try_from(asked).ok() != before {
            let range = super::ranges().ports;
            let why = if !range.contains(asked) {
                Some(ranges::port_not_in_range(&range))
            } else if !taken.take(store, Record::NodePort(asked as u16)).await? {
                Some(PORT_ALLOCATED.to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ApiError::Internal(format!(
                    "Internal error occurred: failed to allocate requested HealthCheck NodePort {asked}: {why}"
                )));
            }
        }
    } else if let Some(spec) = svc["spec"].as_object_mut() {
        // Only Local load balancers have one (upstream clears it on the way out too).
        if spec.get("healthCheckNodePort").and_then(Value::as_i64) == Some(0) {
            spec.remove("healthCheckNodePort");
        }
    }
    if let Some(port) = before.filter(|p| held_health_check(svc) != Some(*p)) {
        taken.free(Record::NodePort(port));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn updates_keep_what_the_server_filled_in() {
        let old = svc(json!({"type": "NodePort", "clusterIP": "10.43.7.7",
            "clusterIPs": ["10.43.7.7"], "ports": [{"name": "http", "port": 80, "nodePort": 30080},
            {"name": "https", "port": 443, "nodePort": 30443}]}));
        let mut new = svc(json!({"type": "NodePort",
            "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 80}]}));
        keep_allocated_values(&mut new, &old);
        assert_eq!(new["spec"]["clusterIP"], "10.43.7.7");
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.43.7.7"]));
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30443);
        assert_eq!(new["spec"]["ports"][1]["nodePort"], 30080);
    }

    #[test]
    fn type_changes_drop_what_the_new_type_cannot_hold() {
        let old = svc(json!({"type": "NodePort", "clusterIP": "10.43.7.7",
            "clusterIPs": ["10.43.7.7"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "externalTrafficPolicy": "Cluster", "ports": [{"port": 80, "nodePort": 30080}]}));
        let mut to_cluster_ip = old.clone();
        to_cluster_ip["spec"]["type"] = json!("ClusterIP");
        drop_type_dependent_fields(&mut to_cluster_ip, &old);
        assert!(to_cluster_ip["spec"]["ports"][0]["nodePort"].is_null());
        assert!(to_cluster_ip["spec"]["externalTrafficPolicy"].is_null());
        assert_eq!(to_cluster_ip["spec"]["clusterIP"], "10.43.7.7");
        assert!(held_node_ports(&to_cluster_ip).is_empty());

        let mut to_external = old.clone();
        to_external["spec"]["type"] = json!("ExternalName");
        to_external["spec"]["externalName"] = json!("db.example.com");
        drop_type_dependent_fields(&mut to_external, &old);
        assert!(to_external["spec"]["clusterIP"].is_null());
        assert!(to_external["spec"]["clusterIPs"].is_null());
        assert!(to_external["spec"]["ipFamilies"].is_null());
        assert_eq!(held_ip(&to_external), None);
        assert_eq!(held_ip(&old), Some(Ipv4Addr::new(10, 43, 7, 7)));
    }

    #[test]
    fn held_values_by_type() {
        let lb = svc(json!({"type": "LoadBalancer", "clusterIP": "10.43.0.20",
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
            "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053},
                      {"port": 53, "protocol": "TCP", "nodePort": 30053}]}));
        let keys: Vec<String> = Services.held(&lb).iter().map(Record::key).collect();
        assert_eq!(
            keys,
            [
                "/registry/networking.k8s.io/ipaddresses/10.43.0.20",
                "/registry/ranges/servicenodeports/30053",
                "/registry/ranges/servicenodeports/31000"
            ]
        );
        let headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assert!(Services.held(&headless).is_empty());
    }

    #[test]
    fn cluster_ips_follow_cluster_ip_and_families_are_ipv4() {
        let mut s = svc(json!({"clusterIP": "10.43.0.10"}));
        normalize_cluster_ips(&mut s);
        assert_eq!(s["spec"]["clusterIPs"], json!(["10.43.0.10"]));
        let mut s = svc(json!({"clusterIPs": ["10.43.0.11"]}));
        normalize_cluster_ips(&mut s);
        assert_eq!(s["spec"]["clusterIP"], "10.43.0.11");
        assert!(check_ip_families(&svc(json!({"ipFamilyPolicy": "PreferDualStack"}))).is_ok());
        let e = check_ip_families(&svc(json!({"ipFamilyPolicy": "RequireDualStack"})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("this cluster is not configured for dual-stack services"),
            "{e}"
        );
        let e = check_ip_families(&svc(json!({"ipFamilies": ["IPv6"]})))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"
            ),
            "{e}"
        );
        let refused = ip_refusal(
            &svc(json!({"clusterIPs": ["1.1.1.1"]})),
            "1.1.1.1",
            IP_ALLOCATED,
        );
        assert_eq!(
            refused.to_string(),
            "Service \"web\" is invalid: spec.clusterIPs: Invalid value: []string{\"1.1.1.1\"}: failed to allocate IP 1.1.1.1: provided IP is already allocated"
        );
    }
}
