//! The EndpointSlice controller: for every Service with a selector, discovery.k8s.io/v1
//! EndpointSlices listing its pods (as kube-controller-manager's, --max-endpoints-per-slice 100):
//!
//! - one endpoint per pod with an IPv4 address that has not finished, in slices of at most
//!   `MAX_ENDPOINTS`; conditions `serving` (the pod is Ready), `terminating` (it has a
//!   deletionTimestamp) and `ready` (serving and not terminating, or always with
//!   `publishNotReadyAddresses`); nodeName, zone (the node's topology.kubernetes.io/zone),
//!   targetRef, and hostname for pods whose subdomain is the service.
//! - pods whose named target ports resolve differently go into different slices (a slice has
//!   one list of ports); a service without endpoints keeps one empty placeholder slice.
//! - slices are labelled `kubernetes.io/service-name` and `endpointslice.kubernetes.io/
//!   managed-by: endpointslice-controller.k8s.io` and owned by the Service (the garbage
//!   collector removes them with it). Endpoints keep their slice when others come and go, so
//!   a change rewrites only the slices it touches.
//! - services without a selector (and ExternalName services) are left alone: their slices are
//!   the user's.

use super::pod_endpoints as pe;
use crate::controllers::listed::{self, listed};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const MAX_ENDPOINTS: usize = 100;
pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const ZONE: &str = "topology.kubernetes.io/zone";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("a reflector stopped")]
    Stopped,
}

/// One slice's ports, comparable: (name, port, protocol, appProtocol).
type Ports = Vec<(String, i32, String, Option<String>)>;

/// When, and which slices at which resourceVersions (None: deleted).
type Written = (Instant, Vec<(String, Option<i64>)>);

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    /// Per service, the slices this controller last wrote and the resourceVersion it got (None:
    /// deleted): until the reflector shows them, a reconcile waits instead of acting on an
    /// older picture (it would make a second slice for the same pods).
    written: Mutex<HashMap<(String, String), Written>>,
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let (slices, slice_writer) = reflector::store();
    let managed = format!("{MANAGED_BY}={CONTROLLER}");
    let slice_events = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&managed),
    )
    .default_backoff()
    .reflect(slice_writer)
    .touched_objects();
    let (nodes, node_writer) = reflector::store();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer);
    tokio::spawn(node_events.for_each(|_| async {}));

    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let mapper_slices = slices.clone();
    let ctx = Arc::new(Ctx {
        client,
        pods,
        slices,
        nodes,
        written: Default::default(),
    });
    controller
        .owns_stream(slice_events)
        .watches_stream(pod_events, move |pod: Pod| {
            services_of_pod(&services, &mapper_slices, &pod)
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// The services a pod change concerns: those selecting it now, and those whose slices list it
/// (its labels may have changed, or it may be gone).
fn services_of_pod(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<ObjectRef<Service>> = services
        .state_filter(|s| pe::selects(s, pod))
        .iter()
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect();
    for slice in slices.state_filter(|s| {
        s.metadata.namespace == pod.metadata.namespace
            && s.endpoints.iter().any(|e| {
                e.target_ref.as_ref().and_then(|r| r.name.as_ref()) == pod.metadata.name.as_ref()
            })
    }) {
        if let Some(svc) = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME))
        {
            out.push(ObjectRef::new(svc).within(&ns));
        }
    }
    out
}

fn error_policy(svc: Arc<Service>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(service = ?svc.metadata.name, error = %e, "endpointslice sync");
    Action::requeue(Duration::from_secs(1))
}

fn rv(meta: &ObjectMeta) -> i64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Ctx {
    /// Whether the slice reflector shows this controller's last writes for the service.
    fn caught_up(&self, ns: &str, name: &str) -> bool {
        let mut written = self.written.lock().expect("written lock");
        let key = (ns.to_string(), name.to_string());
        let Some((at, slices)) = written.get(&key) else {
            return true;
        };
        let seen = slices.iter().all(|(slice, want)| {
            let got = self.slices.get(&ObjectRef::new(slice).within(ns));
            match (want, got) {
                (Some(want), Some(s)) => rv(&s.metadata) >= *want,
                (None, None) => true,
                _ => false,
            }
        });
        // Someone else's later change may hide ours: after a while, act on what is seen.
        if seen || at.elapsed() > Duration::from_secs(5) {
            written.remove(&key);
            return true;
        }
        false
    }
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !(listed(&ctx.pods) && listed(&ctx.slices) && listed(&ctx.nodes)) {
        return Ok(Action::requeue(listed::RETRY));
    }
    if pe::selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    if !ctx.caught_up(&ns, &name) {
        return Ok(Action::requeue(Duration::from_millis(50)));
    }
    let pods = ctx.pods.state();
    let desired = desired(&svc, &pe::pods_of(&svc, &pods, true), &ctx.nodes);
    let mut current: Vec<Arc<EndpointSlice>> = ctx.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(ns.as_str())
            && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME)) == Some(&name)
    });
    current.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let views: Vec<Current> = current
        .iter()
        .map(|s| Current {
            name: s.metadata.name.clone().unwrap_or_default(),
            ports: ports_key(s.ports.as_deref().unwrap_or_default()),
            endpoints: s.endpoints.clone(),
        })
        .collect();
    let plan = plan(&views, desired, MAX_ENDPOINTS);

    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ns);
    let mut written = Vec::new();
    for (slice_name, ports, endpoints) in plan.keep {
        let cur = current
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(slice_name.as_str()))
            .expect("kept slices are current ones");
        let mut new = slice_for(&svc, ports, endpoints);
        new.metadata.name = cur.metadata.name.clone();
        new.metadata.resource_version = cur.metadata.resource_version.clone();
        if same_content(cur, &new) {
            continue;
        }
        let stored = api
            .replace(&slice_name, &PostParams::default(), &new)
            .await?;
        written.push((slice_name, Some(rv(&stored.metadata))));
    }
    for (ports, endpoints) in plan.create {
        let mut new = slice_for(&svc, ports, endpoints);
        new.metadata.generate_name = Some(format!("{name}-"));
        let stored = api.create(&PostParams::default(), &new).await?;
        written.push((
            stored.metadata.name.clone().unwrap_or_default(),
            Some(rv(&stored.metadata)),
        ));
    }
    for slice_name in plan.delete {
        match api.delete(&slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        written.push((slice_name, None));
    }
    if !written.is_empty() {
        tracing::debug!(service = %format!("{ns}/{name}"), slices = written.len(), "endpointslices written");
        ctx.written
            .lock()
            .expect("written lock")
            .insert((ns, name), (Instant::now(), written));
    }
    Ok(Action::await_change())
}

fn same_content(cur: &EndpointSlice, new: &EndpointSlice) -> bool {
    cur.endpoints == new.endpoints
        && cur.ports.as_deref().unwrap_or_default() == new.ports.as_deref().unwrap_or_default()
        && cur.metadata.labels == new.metadata.labels
        && cur.metadata.owner_references == new.metadata.owner_references
        && cur.address_type == new.address_type
}

fn ports_key(ports: &[EndpointPort]) -> Ports {
    ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or(0),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect()
}

fn endpoint_ports(ports: Ports) -> Vec<EndpointPort> {
    ports
        .into_iter()
        .map(|(name, port, protocol, app_protocol)| EndpointPort {
            name: Some(name),
            port: Some(port),
            protocol: Some(protocol),
            app_protocol,
        })
        .collect()
}

/// A slice of `svc` holding `endpoints` on `ports`, labelled and owned as the controller's.
fn slice_for(svc: &Service, ports: Ports, endpoints: Vec<Endpoint>) -> EndpointSlice {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut labels = pe::labels(svc);
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER.into());
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: svc.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: if ports.is_empty() {
            None
        } else {
            Some(endpoint_ports(ports))
        },
    }
}

/// The endpoints the service should have, grouped by the ports they resolve to.
fn desired(svc: &Service, pods: &[&Pod], nodes: &Store<Node>) -> BTreeMap<Ports, Vec<Endpoint>> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    let mut out: BTreeMap<Ports, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pe::ipv4(pod) else { continue };
        let ports: Ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let target = pe::target_port(p, pod)?;
                Some((
                    p.name.clone().unwrap_or_default(),
                    target,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.app_protocol.clone(),
                ))
            })
            .collect();
        let serving = pe::is_ready(pod);
        let terminating = pe::is_terminating(pod);
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
        let zone = node_name.as_ref().and_then(|n| {
            let node = nodes.get(&ObjectRef::new(n))?;
            node.metadata.labels.as_ref()?.get(ZONE).cloned()
        });
        out.entry(ports).or_default().push(Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                // Never ready while terminating, unless not-ready addresses are published.
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: pe::hostname(pod, svc),
            node_name,
            target_ref: Some(pe::pod_ref(pod)),
            zone,
            ..Default::default()
        });
    }
    out
}

/// An existing slice, as the plan sees it.
#[derive(Debug, Clone)]
struct Current {
    name: String,
    ports: Ports,
    endpoints: Vec<Endpoint>,
}

/// What to write: existing slices with their new endpoints, new slices, slices to delete.
#[derive(Debug, Default, PartialEq)]
struct Plan {
    keep: Vec<(String, Ports, Vec<Endpoint>)>,
    create: Vec<(Ports, Vec<Endpoint>)>,
    delete: Vec<String>,
}

fn endpoint_key(e: &Endpoint) -> String {
    match e.target_ref.as_ref().and_then(|r| r.name.clone()) {
        Some(pod) => pod,
        None => e.addresses.join(","),
    }
}

/// Places the desired endpoints into slices of at most `max`: an endpoint stays in the slice
/// that lists it (updated), new ones fill slices with room and then new slices; slices left
/// empty, or with ports no endpoint has any more, go. No endpoints at all: one empty slice.
fn plan(current: &[Current], desired: BTreeMap<Ports, Vec<Endpoint>>, max: usize) -> Plan {
    let mut plan = Plan::default();
    if desired.is_empty() {
        match current.split_first() {
            Some((first, rest)) => {
                plan.keep.push((first.name.clone(), Vec::new(), Vec::new()));
                plan.delete.extend(rest.iter().map(|c| c.name.clone()));
            }
            None => plan.create.push((Vec::new(), Vec::new())),
        }
        return plan;
    }
    for c in current.iter().filter(|c| !desired.contains_key(&c.ports)) {
        plan.delete.push(c.name.clone());
    }
    for (ports, endpoints) in desired {
        let mut wanted: BTreeMap<String, Endpoint> = endpoints
            .into_iter()
            .map(|e| (endpoint_key(&e), e))
            .collect();
        let mut slices: Vec<(String, Vec<Endpoint>)> = Vec::new();
        for c in current.iter().filter(|c| c.ports == ports) {
            // An endpoint listed twice (two slices from a stale view) stays in the first.
            let kept = c
                .endpoints
                .iter()
                .filter_map(|e| wanted.remove(&endpoint_key(e)))
                .collect();
            slices.push((c.name.clone(), kept));
        }
        let mut rest: std::collections::VecDeque<Endpoint> = wanted.into_values().collect();
        for (_, kept) in slices.iter_mut() {
            while kept.len() < max {
                match rest.pop_front() {
                    Some(e) => kept.push(e),
                    None => break,
                }
            }
        }
        let rest: Vec<Endpoint> = rest.into();
        for chunk in rest.chunks(max) {
            plan.create.push((ports.clone(), chunk.to_vec()));
        }
        for (name, kept) in slices {
            if kept.is_empty() {
                plan.delete.push(name);
            } else {
                plan.keep.push((name, ports.clone(), kept));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pod_endpoints::tests::{service, web_pod};
    use serde_json::json;

    fn ep(pod: &str) -> Endpoint {
        Endpoint {
            addresses: vec![format!("10.42.0.{}", pod.len())],
            target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
                name: Some(pod.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn http() -> Ports {
        vec![("http".into(), 8080, "TCP".into(), None)]
    }

    fn names(eps: &[Endpoint]) -> Vec<String> {
        eps.iter().map(endpoint_key).collect()
    }

    #[test]
    fn endpoints_stay_in_their_slice_and_new_ones_fill_room_first() {
        let current = vec![
            Current {
                name: "web-a".into(),
                ports: http(),
                endpoints: vec![ep("p1"), ep("p2")],
            },
            Current {
                name: "web-b".into(),
                ports: http(),
                endpoints: vec![ep("p3")],
            },
        ];
        let desired = BTreeMap::from([(
            http(),
            vec![ep("p1"), ep("p3"), ep("p4"), ep("p5"), ep("p6")],
        )]);
        let p = plan(&current, desired, 3);
        assert_eq!(p.keep.len(), 2);
        assert_eq!(p.keep[0].0, "web-a");
        assert_eq!(names(&p.keep[0].2), ["p1", "p4", "p5"]);
        assert_eq!(names(&p.keep[1].2), ["p3", "p6"]);
        assert!(p.create.is_empty() && p.delete.is_empty());
    }

    #[test]
    fn at_most_max_per_slice_and_empty_slices_go() {
        let many: Vec<Endpoint> = (0..250).map(|i| ep(&format!("pod-{i:03}"))).collect();
        let p = plan(&[], BTreeMap::from([(http(), many)]), MAX_ENDPOINTS);
        let sizes: Vec<usize> = p.create.iter().map(|(_, e)| e.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        let current = vec![
            Current {
                name: "web-a".into(),
                ports: http(),
                endpoints: vec![ep("p1")],
            },
            Current {
                name: "web-b".into(),
                ports: http(),
                endpoints: vec![ep("p1"), ep("p2")],
            },
            Current {
                name: "web-c".into(),
                ports: vec![],
                endpoints: vec![],
            },
        ];
        let p = plan(&current, BTreeMap::from([(http(), vec![ep("p1")])]), 100);
        assert_eq!(p.keep.len(), 1);
        assert_eq!(p.keep[0].0, "web-a");
        assert_eq!(p.delete, ["web-c", "web-b"]);
    }

    #[test]
    fn no_endpoints_leave_one_placeholder() {
        let current = vec![
            Current {
                name: "web-a".into(),
                ports: http(),
                endpoints: vec![ep("p1")],
            },
            Current {
                name: "web-b".into(),
                ports: http(),
                endpoints: vec![ep("p2")],
            },
        ];
        let p = plan(&current, BTreeMap::new(), 100);
        assert_eq!(p.keep, [("web-a".to_string(), vec![], vec![])]);
        assert_eq!(p.delete, ["web-b"]);
        let p = plan(&[], BTreeMap::new(), 100);
        assert_eq!(p.create, [(vec![], vec![])]);
    }

    #[test]
    fn desired_endpoints_carry_conditions_ports_and_refs() {
        let svc = service(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
            "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
        );
        let ready = web_pod("a", "10.42.0.5", true);
        let unready = web_pod("b", "10.42.0.6", false);
        let mut going = web_pod("c", "10.42.0.7", true);
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let (nodes, _w) = reflector::store::<Node>();
        let d = desired(&svc, &[&ready, &unready, &going], &nodes);
        let eps = &d[&http()];
        let cond = |i: usize| {
            let c = eps[i].conditions.clone().unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        };
        assert_eq!(cond(0), (true, true, false));
        assert_eq!(cond(1), (false, false, false));
        assert_eq!(cond(2), (false, true, true));
        assert_eq!(eps[0].node_name.as_deref(), Some("node1"));
        assert_eq!(
            eps[0].target_ref.as_ref().unwrap().uid.as_deref(),
            Some("uid-a")
        );
        let mut publish = svc.clone();
        publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let d = desired(&publish, &[&unready], &nodes);
        assert_eq!(d[&http()][0].conditions.as_ref().unwrap().ready, Some(true));
        let slice = slice_for(&svc, http(), vec![]);
        let labels = slice.metadata.labels.unwrap();
        assert_eq!(labels[SERVICE_NAME], "web");
        assert_eq!(labels[MANAGED_BY], CONTROLLER);
        assert_eq!(labels["team"], "a");
        let owner = &slice.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Service", "u1", Some(true))
        );
    }
}
