//! The namespace controller, as kube-controller-manager's: a namespace being deleted
//! (deletionTimestamp, `kubernetes` in spec.finalizers) is emptied of every namespaced
//! resource discovery finds (a delete collection where the resource has one, else one delete
//! per object, always with Background propagation), its status conditions say how far that
//! got (`namespace/conditions.rs`), and once nothing is left the `kubernetes` finalizer is
//! taken off through namespaces/finalize; the API server removes the namespace when that
//! leaves no finalizer. It runs as `system:serviceaccount:kube-system:namespace-controller`.

mod conditions;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

/// The finalizer this controller owns in spec.finalizers.
pub const FINALIZER: &str = "kubernetes";
/// What upstream waits for objects held by finalizers (finalizerEstimateSeconds).
const FINALIZER_ESTIMATE: i64 = 15;
/// Upstream looks again after half the estimate; nanokube caps that, a list being cheap here,
/// so a namespace goes soon after its last object.
const MAX_RECHECK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Content(String),
}

struct Ctx {
    client: kube::Client,
}

/// Runs the controller until the future is dropped.
pub async fn run(client: kube::Client) {
    let api: Api<Namespace> = Api::all(client.clone());
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(Ctx { client }))
        .for_each(|_| async {})
        .await;
}

fn error_policy(ns: Arc<Namespace>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(namespace = ns.metadata.name.as_deref().unwrap_or(""), error = %e, "namespace deletion");
    Action::requeue(Duration::from_secs(2))
}

fn has_finalizer(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() || !has_finalizer(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    // Others edit a terminating namespace too: decide on the latest.
    let Some(mut ns) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if ns.metadata.deletion_timestamp.is_none() || !has_finalizer(&ns) {
        return Ok(Action::await_change());
    }
    let deleted_at = ns
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let (pass, estimate) = delete_content(&ctx.client, &name, deleted_at).await;

    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(conds) = conditions::update(&old, &pass, Timestamp::now()) {
        ns.status.get_or_insert_with(Default::default).conditions = Some(conds);
        if let Err(e) = api.replace_status(&name, &PostParams::default(), &ns).await {
            tracing::debug!(namespace = %name, error = %e, "namespace conditions");
        }
    }
    let failures: Vec<String> = pass
        .discovery_failures
        .iter()
        .chain(&pass.content_failures)
        .cloned()
        .collect();
    if !failures.is_empty() {
        return Err(Error::Content(failures.join("; ")));
    }
    if estimate > 0 {
        let wait = Duration::from_secs((estimate / 2 + 1) as u64).min(MAX_RECHECK);
        return Ok(Action::requeue(wait));
    }
    // Empty: take our finalizer off; the API server deletes the namespace if none is left.
    let mut done = api.get(&name).await?;
    if let Some(f) = done.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        f.retain(|x| x != FINALIZER);
    }
    match api
        .replace_subresource("finalize", &name, &PostParams::default(), &done)
        .await
    {
        Ok(_) => tracing::info!(namespace = %name, "namespace emptied: finalized"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// A namespaced resource to empty, from discovery.
struct Target {
    api: ApiResource,
    delete_collection: bool,
    list: bool,
}

/// Every namespaced, deletable resource at its group's preferred version, and the group
/// versions that could not be read.
async fn discover(client: &kube::Client) -> (Vec<Target>, Vec<String>) {
    let mut versions = Vec::new();
    let mut failures = Vec::new();
    match client.list_core_api_versions().await {
        Ok(v) => versions.extend(v.versions.iter().map(|v| (String::new(), v.clone()))),
        Err(e) => failures.push(format!("v1: {e}")),
    }
    match client.list_api_groups().await {
        Ok(groups) => {
            for g in groups.groups {
                if let Some(p) = g.preferred_version.or_else(|| g.versions.first().cloned()) {
                    versions.push((g.name.clone(), p.version));
                }
            }
        }
        Err(e) => failures.push(format!("apis: {e}")),
    }
    let mut targets = Vec::new();
    for (group, version) in versions {
        let gv = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let list = if group.is_empty() {
            client.list_core_api_resources(&version).await
        } else {
            client.list_api_group_resources(&gv).await
        };
        let resources = match list {
            Ok(l) => l.resources,
            Err(e) => {
                failures.push(format!("{gv}: {e}"));
                continue;
            }
        };
        for r in resources {
            if let Some(t) = target(&group, &version, &r) {
                targets.push(t);
            }
        }
    }
    (targets, failures)
}

fn target(group: &str, version: &str, r: &APIResource) -> Option<Target> {
    let verb = |v: &str| r.verbs.iter().any(|x| x == v);
    if !r.namespaced || r.name.contains('/') || !verb("delete") {
        return None;
    }
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    Some(Target {
        api: ApiResource::from_gvk_with_plural(&gvk, &r.name),
        delete_collection: verb("deletecollection"),
        list: verb("list"),
    })
}

/// Go's GroupVersionResource.String(), which upstream's messages use.
fn gvr(a: &ApiResource) -> String {
    format!("{}/{}, Resource={}", a.group, a.version, a.plural)
}

/// One pass over the namespace (upstream's deleteAllContent): delete everything, then count
/// what is left. Returns what the conditions need and the seconds to wait for what is still
/// going (pods in their grace period, objects held by finalizers).
async fn delete_content(
    client: &kube::Client,
    ns: &str,
    deleted_at: Timestamp,
) -> (conditions::Pass, i64) {
    let (targets, discovery_failures) = discover(client).await;
    let mut pass = conditions::Pass {
        discovery_failures,
        ..Default::default()
    };
    let mut estimate = 0;
    for t in targets {
        match delete_resource(client, ns, &t, deleted_at, &mut pass).await {
            Ok(e) => estimate = estimate.max(e),
            Err(e) => pass.content_failures.push(e),
        }
    }
    (pass, estimate)
}

/// Empties one resource of the namespace; the estimate to wait, or why it failed.
async fn delete_resource(
    client: &kube::Client,
    ns: &str,
    t: &Target,
    deleted_at: Timestamp,
    pass: &mut conditions::Pass,
) -> Result<i64, String> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &t.api);
    let is_pods = t.api.group.is_empty() && t.api.plural == "pods";
    let mut estimate = if is_pods {
        pod_estimate(client, ns, deleted_at)
            .await
            .map_err(|e| e.to_string())?
    } else {
        0
    };
    let background = DeleteParams::background();
    if t.delete_collection {
        api.delete_collection(&background, &ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
    } else if t.list {
        for o in api
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
        {
            let name = o.metadata.name.unwrap_or_default();
            match api.delete(&name, &background).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    if !t.list {
        return Ok(estimate);
    }
    let left = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    if left.items.is_empty() {
        return Ok(estimate);
    }
    let key = format!("{}.{}", t.api.plural, t.api.group);
    *pass.remaining.entry(key).or_default() += left.items.len();
    let mut held = false;
    for o in &left.items {
        for f in o.metadata.finalizers.iter().flatten() {
            *pass.finalizers.entry(f.clone()).or_default() += 1;
            held = true;
        }
    }
    if estimate == 0 && held {
        estimate = FINALIZER_ESTIMATE;
    }
    if estimate == 0 {
        return Err(format!(
            "unexpected items still remain in namespace: {ns} for gvr: {}",
            gvr(&t.api)
        ));
    }
    Ok(estimate)
}

/// The seconds the namespace's pods may still take to stop: the longest grace period, less
/// the time since the namespace's deletion began (upstream's estimateGracefulTermination).
async fn pod_estimate(
    client: &kube::Client,
    ns: &str,
    deleted_at: Timestamp,
) -> Result<i64, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let longest = pods
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .map(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
        })
        .max()
        .unwrap_or(0);
    let elapsed = (Timestamp::now().as_second() - deleted_at.as_second()).max(0);
    Ok((longest - elapsed).max(0))
}
