//! The Deployment controller: rolls a pod template out through ReplicaSets named
//! `<deployment>-<pod-template-hash>`, one per template, scaling the new one up and the old
//! ones down as the strategy allows (RollingUpdate within maxSurge/maxUnavailable, Recreate
//! all old pods gone first), keeping revisionHistoryLimit old sets for `kubectl rollout undo`,
//! and reporting the rollout in the status that `kubectl rollout status` reads.
//!
//! A sync claims the sets (adopt/release), lets `decide::decide` plan the writes from the
//! reflectors' view, and does them here in order. The ReplicaSet controller makes the pods.

pub mod arith;
pub mod decide;
pub mod hash;
pub mod status;

use crate::controllers::events::{self, About};
use crate::controllers::listed::{self, listed};
use crate::controllers::ownership::{
    adopt_patch, claim, controller_of, controller_ref, release_patch, selects, Claim,
};
use decide::Step;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const COMPONENT: &str = "deployment-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("cache: {0}")]
    Cache(#[from] reflector::store::WriterDropped),
    #[error("deployment {0} changed (uid or deletion) since it was read: not adopting")]
    Gone(String),
    #[error("replica set {0} already exists and is not this deployment's: collision count raised")]
    Collision(String),
}

struct Ctx {
    client: kube::Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let (sets, set_writer) = reflector::store();
    let set_events = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(set_writer)
    .touched_objects();
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let (for_sets, for_pods, sets_for_pods) = (deployments.clone(), deployments, sets.clone());
    let ctx = Arc::new(Ctx { client, sets, pods });
    controller
        .watches_stream(set_events, move |rs: ReplicaSet| {
            deployments_for_set(&for_sets, &rs)
        })
        .watches_stream(pod_events, move |pod: Pod| {
            deployment_for_pod(&for_pods, &sets_for_pods, &pod)
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            // Sync errors are the error policy's to log; this is the machinery's (e.g. an
            // object woken by a related change but missing from the cache).
            if let Err(e) = r {
                tracing::debug!(kind = %"Deployment", error = %e, "controller");
            }
        })
        .await;
}

/// A set's controller if it is a Deployment, else (an orphan) every Deployment in its
/// namespace that selects it.
fn deployments_for_set(
    deployments: &Store<Deployment>,
    rs: &ReplicaSet,
) -> Vec<ObjectRef<Deployment>> {
    let ns = rs.namespace().unwrap_or_default();
    if let Some(r) = controller_of(&rs.metadata) {
        return if r.kind == "Deployment" {
            vec![ObjectRef::new(&r.name).within(&ns)]
        } else {
            Vec::new()
        };
    }
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(ns.as_str()))
        .filter(|d| {
            selects(
                d.spec.as_ref().map(|s| &s.selector),
                rs.metadata.labels.as_ref(),
            )
        })
        .map(|d| ObjectRef::from_obj(d.as_ref()))
        .collect()
}

/// Pods matter to a Recreate rollout only (it waits for the old ones to be gone): the
/// Deployment owning the pod's set, if it recreates.
fn deployment_for_pod(
    deployments: &Store<Deployment>,
    sets: &Store<ReplicaSet>,
    pod: &Pod,
) -> Option<ObjectRef<Deployment>> {
    let owner = controller_of(&pod.metadata)?;
    let ns = pod.namespace().unwrap_or_default();
    let rs = sets
        .state()
        .into_iter()
        .find(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()))?;
    let d_ref = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let key = ObjectRef::new(&d_ref.name).within(&ns);
    let d = deployments.get(&key)?;
    (arith::strategy_type(&d) == "Recreate").then_some(key)
}

fn error_policy(d: Arc<Deployment>, e: &Error, _c: Arc<Ctx>) -> Action {
    let conflict = matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 409);
    if !conflict {
        tracing::warn!(deployment = %d.name_any(), error = %e, "sync failed");
    }
    Action::requeue(Duration::from_secs(
        if conflict || matches!(e, Error::Collision(_)) {
            1
        } else {
            5
        },
    ))
}

/// Whole seconds: what the API keeps of a time, so a condition written and read back
/// compares equal to the one decided.
fn now() -> Timestamp {
    let t = Timestamp::now();
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !(listed(&ctx.sets) && listed(&ctx.pods)) {
        return Ok(Action::requeue(listed::RETRY));
    }
    let ns = d.namespace().unwrap_or_default();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let rss = claim_sets(&d, &ns, &uid, &ctx).await?;
    let uids: Vec<&str> = rss
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .collect();
    let pods: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid.as_str())))
        .map(|p| (**p).clone())
        .collect();
    let plan = decide::decide(&d, &rss, &pods, now());
    tracing::debug!(deployment = %d.name_any(), ?plan, "sync");
    execute(&d, &ns, plan, &ctx).await
}

/// getReplicaSetsForDeployment: the namespace's sets this deployment owns and selects, after
/// adopting matching orphans and releasing owned sets it no longer selects.
async fn claim_sets(
    d: &Deployment,
    ns: &str,
    uid: &str,
    ctx: &Ctx,
) -> Result<Vec<ReplicaSet>, Error> {
    let selector = d.spec.as_ref().map(|s| &s.selector);
    let deleting = d.metadata.deletion_timestamp.is_some();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let mut owned = Vec::new();
    let mut checked = false;
    for rs in ctx
        .sets
        .state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(ns))
    {
        match claim(uid, deleting, selector, &rs.metadata) {
            Claim::Keep => owned.push((**rs).clone()),
            Claim::Adopt => {
                if !checked {
                    let fresh = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
                        .get(&d.name_any())
                        .await?;
                    if fresh.metadata.uid.as_deref() != Some(uid)
                        || fresh.metadata.deletion_timestamp.is_some()
                    {
                        return Err(Error::Gone(d.name_any()));
                    }
                    checked = true;
                }
                let ours = controller_ref("apps/v1", "Deployment", &d.name_any(), uid);
                let patch = adopt_patch(&rs.metadata, ours);
                owned.push(
                    api.patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?,
                );
            }
            Claim::Release => {
                let patch = release_patch(&rs.metadata, uid);
                match api
                    .patch(
                        &rs.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Claim::Ignore => {}
        }
    }
    Ok(owned)
}

async fn execute(d: &Deployment, ns: &str, plan: decide::Plan, ctx: &Ctx) -> Result<Action, Error> {
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let name = d.name_any();
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let about = &About {
        api_version: "apps/v1",
        kind: "Deployment",
        namespace: ns,
        name: &name,
        uid: &uid,
    };
    let say = |msg: String| async move {
        events::record(
            &ctx.client,
            COMPONENT,
            about,
            "Normal",
            "ScalingReplicaSet",
            &msg,
        )
        .await
    };
    // The versions this sync wrote, so a second write to the same set is pinned to the first.
    let mut written: HashMap<String, String> = HashMap::new();
    for step in plan.steps {
        match step {
            Step::Create(rs, event) => {
                let rs_name = rs.name_any();
                match api.create(&PostParams::default(), &rs).await {
                    Ok(made) => {
                        written.insert(rs_name, made.resource_version().unwrap_or_default());
                        if let Some(msg) = event {
                            say(msg).await;
                        }
                    }
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        let existing = api.get(&rs_name).await?;
                        let ours = controller_of(&existing.metadata).is_some_and(|r| r.uid == uid);
                        let same = match (
                            existing.spec.as_ref().and_then(|s| s.template.as_ref()),
                            d.spec.as_ref(),
                        ) {
                            (Some(t), Some(spec)) => hash::equal_ignoring(t, &spec.template),
                            _ => false,
                        };
                        if !(ours && same) {
                            let mut st = d.status.clone().unwrap_or_default();
                            st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                            write_status(d, d.resource_version(), st, ctx).await?;
                            return Err(Error::Collision(rs_name));
                        }
                        written.insert(rs_name, existing.resource_version().unwrap_or_default());
                    }
                    Err(e) => {
                        if status::has_progress_deadline(d) {
                            let msg = format!(
                                "Failed to create new replica set {rs_name:?}: {}",
                                api_message(&e)
                            );
                            let mut st = d.status.clone().unwrap_or_default();
                            status::set(
                                &mut st,
                                status::condition(
                                    status::PROGRESSING,
                                    "False",
                                    status::RS_CREATE_ERROR,
                                    msg,
                                    now(),
                                ),
                            );
                            write_status(d, d.resource_version(), st, ctx).await?;
                        }
                        return Err(e.into());
                    }
                }
            }
            Step::Update(mut rs, event) => {
                let rs_name = rs.name_any();
                if let Some(rv) = written.get(&rs_name) {
                    rs.metadata.resource_version = Some(rv.clone());
                }
                let done = api.replace(&rs_name, &PostParams::default(), &rs).await?;
                written.insert(rs_name, done.resource_version().unwrap_or_default());
                if let Some(msg) = event {
                    say(msg).await;
                }
            }
            Step::Delete(rs_name, rs_uid) => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(rs_uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(&rs_name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let mut rv = d.resource_version();
    if let Some(revision) = plan.revision {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
        let patch = serde_json::json!({"metadata": {"annotations": {decide::REVISION: revision},
            "resourceVersion": rv}});
        let done = deployments
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        rv = done.resource_version();
    }
    if let Some(st) = plan.status {
        write_status(d, rv, st, ctx).await?;
    }
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::requeue(super::RESYNC),
    })
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// Replaces the status, pinned to `rv`: a spec changed meanwhile must not be reported as
/// observed.
async fn write_status(
    d: &Deployment,
    rv: Option<String>,
    st: DeploymentStatus,
    ctx: &Ctx,
) -> Result<(), Error> {
    let mut obj = d.clone();
    obj.metadata.resource_version = rv;
    obj.metadata.managed_fields = None;
    obj.status = Some(st);
    let api: Api<Deployment> =
        Api::namespaced(ctx.client.clone(), &d.namespace().unwrap_or_default());
    api.replace_status(&d.name_any(), &PostParams::default(), &obj)
        .await?;
    Ok(())
}
