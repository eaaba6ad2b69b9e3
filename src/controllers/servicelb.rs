//! The service load balancer, as k3s's servicelb does it: a Service of type LoadBalancer gets
//! the addresses of the cluster's nodes in `status.loadBalancer.ingress`, and every node's
//! proxy answers the service's port on those addresses (k3s runs a svclb pod per node for that;
//! here the proxy's nftables table does it). Services with a `loadBalancerClass` belong to
//! another load balancer and are left alone; `nanokube server --disable servicelb` turns the
//! whole controller off for clusters that have one.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    nodes: Store<Node>,
}

/// The addresses a LoadBalancer service gets: each Ready node's ExternalIP, else its
/// InternalIP (k3s's choice), sorted so the status does not flap.
fn node_addresses(nodes: &[Arc<Node>]) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|n| {
            let addrs = n.status.as_ref()?.addresses.as_ref()?;
            let of = |t: &str| {
                addrs
                    .iter()
                    .find(|a| a.type_ == t)
                    .map(|a| a.address.clone())
            };
            of("ExternalIP").or_else(|| of("InternalIP"))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

fn current(svc: &Service) -> Vec<String> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(spec) = svc.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    if spec.type_.as_deref() != Some("LoadBalancer") || spec.load_balancer_class.is_some() {
        return Ok(Action::await_change());
    }
    let want = node_addresses(&ctx.nodes.state());
    if current(&svc) == want {
        return Ok(Action::await_change());
    }
    let (Some(name), Some(ns)) = (
        svc.metadata.name.as_deref(),
        svc.metadata.namespace.as_deref(),
    ) else {
        return Ok(Action::await_change());
    };
    let ingress: Vec<serde_json::Value> = want
        .iter()
        .map(|ip| serde_json::json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
    Api::<Service>::namespaced(ctx.client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    tracing::info!(service = %name, namespace = %ns, ingress = ?want, "load balancer addresses");
    Ok(Action::await_change())
}

fn error_policy(_s: Arc<Service>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(error = %e, "servicelb");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let (nodes, writer) = reflector::store();
    // Any node change may change every LoadBalancer service's addresses.
    let node_changes = reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects()
    .filter_map(|r| async move { r.ok().map(|_| ()) });
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        nodes,
    });
    Controller::new(Api::<Service>::all(client), watcher::Config::default())
        .reconcile_all_on(node_changes)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
