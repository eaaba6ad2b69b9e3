//! The DaemonSet controller: one pod on every node that should run it (node selector, required
//! node affinity, taints against its tolerations and the automatic ones), pinned there by
//! node affinity so the scheduler binds it; template changes roll out node by node within
//! maxUnavailable / maxSurge (or wait for deletions with OnDelete), each template version
//! recorded as a ControllerRevision whose hash labels its pods. daemonset/plan.rs decides.

pub mod plan;

use crate::controllers::owned_pods::{
    controlled_by, controller_ref, from_template, selector_string,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use sha2::Digest;
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

pub async fn run(client: kube::Client) {
    let (nodes, writer) = reflector::store();
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
    Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client), watcher::Config::default())
    // A node that joins, changes labels or taints may change where daemons run.
    .reconcile_all_on(node_changes)
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

fn error_policy(_d: Arc<DaemonSet>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "daemonset");
    Action::requeue(Duration::from_secs(1))
}

/// A short hash of the pod template in the alphabet upstream uses for generated names (no
/// vowels, so it never spells a word).
pub fn template_hash(template: &serde_json::Value) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = sha2::Sha256::digest(template.to_string().as_bytes());
    digest
        .iter()
        .take(10)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Makes sure the current template has its ControllerRevision (`<ds>-<hash>`), the newest
/// revision number; old ones beyond revisionHistoryLimit go.
async fn sync_revisions(
    ctx: &Ctx,
    ds: &DaemonSet,
    hash: &str,
    template: serde_json::Value,
) -> Result<(), kube::Error> {
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut revs: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| controlled_by(&r.metadata, &uid))
        .collect();
    revs.sort_by_key(|r| r.revision);
    let max = revs.last().map_or(0, |r| r.revision);
    let rev_name = format!("{name}-{hash}");
    match revs
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(&rev_name))
    {
        Some(r) if r.revision == max => {}
        // A rollback to an older template makes its revision the newest again.
        Some(_) => {
            let patch = serde_json::json!({"revision": max + 1});
            api.patch(&rev_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let mut labels = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(plan::REVISION_LABEL.into(), hash.to_string());
            let mut tpl = template;
            tpl["$patch"] = serde_json::json!("replace");
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(rev_name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(labels),
                    owner_references: Some(vec![controller_ref(
                        "apps/v1",
                        "DaemonSet",
                        &ds.metadata,
                    )]),
                    ..Default::default()
                },
                data: Some(RawExtension(serde_json::json!({"spec": {"template": tpl}}))),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
    }
    let keep = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let old: Vec<&ControllerRevision> = revs
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(&rev_name))
        .collect();
    for r in old.iter().take(old.len().saturating_sub(keep)) {
        let n = r.metadata.name.clone().unwrap_or_default();
        match api.delete(&n, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.metadata.namespace.clone().unwrap_or_default();
    let name = ds.metadata.name.clone().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let hash = template_hash(&template);
    sync_revisions(&ctx, &ds, &hash, template).await?;

    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector_string(&spec.selector)))
        .await?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();
    let nodes: Vec<Node> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    let plan = plan::decide(&ds, &hash, &nodes, &pods, Timestamp::now());

    for node in &plan.create {
        let mut pod = from_template(
            &spec.template,
            &format!("{name}-"),
            controller_ref("apps/v1", "DaemonSet", &ds.metadata),
        );
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(plan::REVISION_LABEL.into(), hash.clone());
        if let Some(ps) = pod.spec.as_mut() {
            *ps = plan::with_default_tolerations(ps);
            plan::pin_to_node(ps, node);
        }
        pods_api.create(&PostParams::default(), &pod).await?;
        tracing::info!(daemonset = %name, node = %node, "daemon pod created");
    }
    for pod in &plan.delete {
        match pods_api.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let before = serde_json::to_value(ds.status.clone().unwrap_or_default()).ok();
    let after = serde_json::to_value(&plan.status).ok();
    if before != after {
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &ns);
        let mut status = after.unwrap_or_default();
        // Merge patches keep absent fields: a count that went away must be cleared.
        if status.get("numberUnavailable").is_none() {
            status["numberUnavailable"] = serde_json::Value::Null;
        }
        let patch = serde_json::json!({ "status": status });
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    // Availability after minReadySeconds changes without an event.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    Ok(if min_ready > 0 {
        Action::requeue(Duration::from_secs(min_ready as u64))
    } else {
        Action::requeue(Duration::from_secs(300))
    })
}
