//! What a Service's pods contribute to its endpoints, shared by the EndpointSlice and the
//! Endpoints controllers (upstream's endpointutil and podutil.FindPort): which pods a service
//! selects, which of them count, whether each is ready, the port each service port reaches on
//! it (a named targetPort is looked up in that pod's containers, so pods may differ), and the
//! hostname StatefulSet pods get when their subdomain is the service.

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Label of every endpoint object of a headless service (as upstream's controllers set it).
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// The service's selector; None for services the controllers leave alone: without a selector
/// (their endpoints are the user's) or ExternalName (they have none).
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

/// Whether `svc` selects `pod`: same namespace, every selector label on the pod.
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = selector(svc) else {
        return false;
    };
    if svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    sel.iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub use super::owned_pods::is_ready;

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's IPv4 address, once it has one.
pub fn ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ips = status.pod_ips.iter().flatten().map(|i| i.ip.as_str());
    status
        .pod_ip
        .as_deref()
        .into_iter()
        .chain(ips)
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

/// Whether the pod is an endpoint at all: it has an address and has not finished; a
/// terminating pod only when `include_terminating` (slices keep them, with conditions).
pub fn counts(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || ipv4(pod).is_none() {
        return false;
    }
    include_terminating || !is_terminating(pod)
}

/// The port `port` reaches on `pod`: a number as given, a name looked up among the pod's
/// container ports of the same protocol (None when the pod has no such port).
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(0)) => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            let spec = pod.spec.as_ref()?;
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The DNS hostname of a pod whose `subdomain` is this service (StatefulSet pods):
/// `<hostname>.<service>.<namespace>.svc`.
pub fn hostname(pod: &Pod, svc: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| host.to_string())
}

pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The labels of a service's endpoint objects: the service's own, and the headless mark.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    let headless = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS.into(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    labels
}

/// The service's pods that are endpoints, in name order.
pub fn pods_of<'a>(
    svc: &Service,
    pods: &'a [std::sync::Arc<Pod>],
    include_terminating: bool,
) -> Vec<&'a Pod> {
    let mut out: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| selects(svc, p) && counts(p, include_terminating))
        .collect();
    out.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    pub fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).unwrap()
    }

    pub fn web_pod(name: &str, ip: &str, ready: bool) -> Pod {
        pod(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                "labels": {"app": "web", "tier": "front"}},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080},
                          {"name": "http", "containerPort": 5353, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
        }))
    }

    #[test]
    fn selection_readiness_and_counting() {
        let svc = service(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}));
        let p = web_pod("a", "10.42.0.5", true);
        assert!(selects(&svc, &p) && is_ready(&p) && counts(&p, false));
        let mut other_ns = p.clone();
        other_ns.metadata.namespace = Some("dev".into());
        assert!(!selects(&svc, &other_ns));
        let mut no_selector = svc.clone();
        no_selector.spec.as_mut().unwrap().selector = None;
        assert!(selector(&no_selector).is_none() && !selects(&no_selector, &p));
        let mut ext = svc.clone();
        ext.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(selector(&ext).is_none());
        let pending = pod(json!({"metadata": {"name": "b", "namespace": "default",
            "labels": {"app": "web"}}, "status": {"phase": "Pending"}}));
        assert!(!counts(&pending, true));
        let mut done = p.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!counts(&done, true));
        let mut going = p.clone();
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(counts(&going, true) && !counts(&going, false));
    }

    #[test]
    fn named_target_ports_per_pod_and_protocol() {
        let p = web_pod("a", "10.42.0.5", true);
        let port = |v: serde_json::Value| -> ServicePort { serde_json::from_value(v).unwrap() };
        assert_eq!(
            target_port(&port(json!({"port": 80, "targetPort": "http"})), &p),
            Some(8080)
        );
        assert_eq!(
            target_port(
                &port(json!({"port": 53, "protocol": "UDP", "targetPort": "http"})),
                &p
            ),
            Some(5353)
        );
        assert_eq!(
            target_port(&port(json!({"port": 80, "targetPort": "nope"})), &p),
            None
        );
        assert_eq!(
            target_port(&port(json!({"port": 80, "targetPort": 9000})), &p),
            Some(9000)
        );
        assert_eq!(target_port(&port(json!({"port": 80})), &p), Some(80));
    }

    #[test]
    fn hostnames_for_pods_of_the_subdomain() {
        let svc = service(json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}}}));
        let mut p = web_pod("db-0", "10.42.0.9", true);
        let spec = p.spec.as_mut().unwrap();
        spec.hostname = Some("db-0".into());
        spec.subdomain = Some("db".into());
        assert_eq!(hostname(&p, &svc).as_deref(), Some("db-0"));
        p.spec.as_mut().unwrap().subdomain = Some("other".into());
        assert_eq!(hostname(&p, &svc), None);
        assert_eq!(labels(&svc).get(HEADLESS).map(String::as_str), Some(""));
    }
}
