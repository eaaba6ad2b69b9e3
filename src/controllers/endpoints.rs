//! The legacy Endpoints controller: for every Service with a selector, a core/v1 Endpoints of
//! the same name (what older clients and kube-proxy's predecessors read). Ready pods are in
//! `addresses`, others in `notReadyAddresses` (all in `addresses` with
//! `publishNotReadyAddresses`); terminating pods are left out (kept, as not ready, with
//! `publishNotReadyAddresses`, as upstream); pods resolving the service's ports to the same
//! numbers share a subset. The Endpoints goes when its Service does. Services without a
//! selector keep the Endpoints their users write.

use super::pod_endpoints as pe;
use crate::controllers::listed::{self, listed};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("the pod reflector stopped")]
    Stopped,
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let (endpoints, ep_writer) = reflector::store::<Endpoints>();
    let ep_events = watcher(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(ep_writer)
    .touched_objects();
    tokio::spawn(delete_with_services(client.clone()));
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let ctx = Arc::new(Ctx { client, pods });
    controller
        // A changed Endpoints (someone edited it) is put back.
        .watches_stream(ep_events, |ep: Endpoints| {
            Some(
                ObjectRef::<Service>::new(&ep.metadata.name.unwrap_or_default())
                    .within(&ep.metadata.namespace.unwrap_or_default()),
            )
        })
        .watches_stream(pod_events, move |pod: Pod| {
            services_of_pod(&services, &endpoints, &pod)
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Services selecting the pod now, and those whose Endpoints list it.
fn services_of_pod(
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let mut out: Vec<ObjectRef<Service>> = services
        .state_filter(|s| pe::selects(s, pod))
        .iter()
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect();
    let lists_pod = |ep: &Endpoints| {
        ep.metadata.namespace == pod.metadata.namespace
            && ep.subsets.iter().flatten().any(|s| {
                s.addresses
                    .iter()
                    .chain(s.not_ready_addresses.iter())
                    .flatten()
                    .any(|a| {
                        a.target_ref.as_ref().and_then(|r| r.name.as_ref())
                            == pod.metadata.name.as_ref()
                    })
            })
    };
    for ep in endpoints.state_filter(lists_pod) {
        let (Some(ns), Some(name)) = (&ep.metadata.namespace, &ep.metadata.name) else {
            continue;
        };
        out.push(ObjectRef::new(name).within(ns));
    }
    out
}

/// kube's controller sees no object once it is deleted, so the Endpoints of a deleted
/// Service are removed from the delete events of a watch of Services.
async fn delete_with_services(client: kube::Client) {
    let events = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let Ok(watcher::Event::Delete(svc)) = event else {
            continue;
        };
        let (Some(ns), Some(name)) = (svc.metadata.namespace, svc.metadata.name) else {
            continue;
        };
        let api: Api<Endpoints> = Api::namespaced(client.clone(), &ns);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::debug!(endpoints = %format!("{ns}/{name}"), "deleted with its service")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(endpoints = %format!("{ns}/{name}"), error = %e, "deleting"),
        }
    }
}

fn error_policy(svc: Arc<Service>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(service = ?svc.metadata.name, error = %e, "endpoints sync");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !listed(&ctx.pods) {
        return Ok(Action::requeue(listed::RETRY));
    }
    if pe::selector(&svc).is_none() || svc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let pods = ctx.pods.state();
    let publish = svc
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        == Some(true);
    let subsets = subsets(&svc, &pe::pods_of(&svc, &pods, publish));
    let want = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            labels: Some(pe::labels(&svc)),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &ns);
    match api.get_opt(&name).await? {
        None => {
            api.create(&PostParams::default(), &want).await?;
        }
        Some(cur) => {
            let same = cur.subsets.clone().unwrap_or_default()
                == want.subsets.clone().unwrap_or_default()
                && cur.metadata.labels.clone().unwrap_or_default()
                    == want.metadata.labels.clone().unwrap_or_default();
            if !same {
                let mut new = want;
                new.metadata = ObjectMeta {
                    labels: new.metadata.labels,
                    ..cur.metadata
                };
                api.replace(&name, &PostParams::default(), &new).await?;
            }
        }
    }
    Ok(Action::await_change())
}

/// The subsets of a service's pods: one per distinct set of resolved ports, addresses sorted.
fn subsets(svc: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses == Some(true);
    type Key = Vec<(String, i32, String, Option<String>)>;
    let mut groups: BTreeMap<Key, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pe::ipv4(pod) else { continue };
        let ports: Key = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p.name.clone().unwrap_or_default(),
                    pe::target_port(p, pod)?,
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.app_protocol.clone(),
                ))
            })
            .collect();
        // Upstream lists a pod without any resolved port only for headless services without ports.
        if ports.is_empty() && !spec.ports.as_ref().is_none_or(Vec::is_empty) {
            continue;
        }
        let addr = EndpointAddress {
            ip,
            hostname: pe::hostname(pod, svc),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pe::pod_ref(pod)),
        };
        let group = groups.entry(ports).or_default();
        if publish || (pe::is_ready(pod) && !pe::is_terminating(pod)) {
            group.0.push(addr);
        } else {
            group.1.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol, app_protocol)| EndpointPort {
                            name: Some(name).filter(|n| !n.is_empty()),
                            port,
                            protocol: Some(protocol),
                            app_protocol,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::pod_endpoints::tests::{service, web_pod};
    use serde_json::json;

    #[test]
    fn ready_and_not_ready_addresses_by_resolved_ports() {
        let svc = service(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
        let a = web_pod("a", "10.42.0.9", true);
        let b = web_pod("b", "10.42.0.3", false);
        let mut c = web_pod("c", "10.42.0.4", true);
        c.spec.as_mut().unwrap().containers[0]
            .ports
            .as_mut()
            .unwrap()[0]
            .container_port = 9090;
        let got = subsets(&svc, &[&a, &b, &c]);
        assert_eq!(got.len(), 2);
        let first = &got[0];
        assert_eq!(first.ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(first.addresses.as_ref().unwrap()[0].ip, "10.42.0.9");
        assert_eq!(
            first.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.42.0.3"
        );
        assert_eq!(got[1].ports.as_ref().unwrap()[0].port, 9090);
        let mut publish = svc.clone();
        publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let got = subsets(&publish, &[&b]);
        assert_eq!(got[0].addresses.as_ref().unwrap()[0].ip, "10.42.0.3");
        assert!(got[0].not_ready_addresses.is_none());
    }
}
