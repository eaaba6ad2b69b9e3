//! Node IPAM: gives each Node a pod range, the next free /24 of `--cluster-cidr`, in
//! `spec.podCIDR` and `spec.podCIDRs` (as kube-controller-manager's range allocator). The Node
//! objects are the record of what is taken, so a range comes free when its node is deleted and
//! nothing else has to be persisted.

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::network::Cidr;

/// The size of each node's range.
pub const NODE_PREFIX: u8 = 24;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("no free /{NODE_PREFIX} left in the cluster CIDR {0}")]
    Full(String),
}

struct Ctx {
    client: kube::Client,
    cluster: Cidr,
    nodes: Store<Node>,
    /// Ranges handed out by this process whose patches the store may not show yet.
    pending: std::sync::Mutex<BTreeSet<Cidr>>,
}

/// Runs the allocator until the process ends.
pub async fn run(client: kube::Client, cluster: Cidr) {
    let api: Api<Node> = Api::all(client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let ctx = Arc::new(Ctx {
        client,
        cluster,
        nodes: controller.store(),
        pending: Default::default(),
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_n: Arc<Node>, e: &Error, _c: Arc<Ctx>) -> Action {
    if matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 409) {
        tracing::debug!(error = %e, "node IPAM: node changed meanwhile, retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(error = %e, "node IPAM");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if node
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_ref())
        .is_some()
    {
        return Ok(Action::await_change());
    }
    let taken: BTreeSet<Cidr> = ctx
        .nodes
        .state()
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok())
        .collect();
    let cidr = {
        let mut pending = ctx.pending.lock().expect("pending lock");
        pending.retain(|c| !taken.contains(c));
        let mut i = 0;
        loop {
            let Some(c) = ctx.cluster.subnet(NODE_PREFIX, i) else {
                return Err(Error::Full(ctx.cluster.to_string()));
            };
            if !taken.contains(&c) && !pending.contains(&c) {
                pending.insert(c);
                break c;
            }
            i += 1;
        }
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    let api: Api<Node> = Api::all(ctx.client.clone());
    // Conditional on the version read: the cache may not show this allocator's own patch yet
    // (a kubelet heartbeat can queue the next reconcile first), and a stale copy must be a
    // conflict and a retry, not a second range for the same node.
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": node.metadata.resource_version},
        "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
    });
    if let Err(e) = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        ctx.pending.lock().expect("pending lock").remove(&cidr);
        return Err(e.into());
    }
    tracing::info!(node = %name, podcidr = %cidr, "pod range allocated");
    Ok(Action::await_change())
}
