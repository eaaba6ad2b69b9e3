//! The ReplicaSet controller (and the ReplicationController one, the same logic over the older
//! kind): keeps `spec.replicas` active pods from the template, adopting matching orphans and
//! releasing pods it no longer selects, and reports how many are ready and available.
//!
//! A sync reads the set and its namespace's pods from reflectors, lets `decide::decide` say
//! what to do, then does it here: adopt/release patches, creations in slow-start batches,
//! deletions, and the status. `expectations` holds back the next sync until the watch shows
//! this one's writes.

pub mod decide;
pub mod expectations;
pub mod rank;

use crate::controllers::events::{self, About};
use crate::controllers::listed::{self, listed};
use crate::controllers::ownership::{
    adopt_patch, controller_of, controller_ref, release_patch, selects,
};
use decide::{Plan, Set, Status};
use expectations::Expectations;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMPONENT: &str = "replicaset-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("pod cache: {0}")]
    Cache(#[from] reflector::store::WriterDropped),
    #[error("encoding: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{kind} {name} changed (uid or deletion) since it was read: not adopting")]
    Gone { kind: &'static str, name: String },
}

/// A kind this controller runs: ReplicaSet or ReplicationController.
pub trait Replicated:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    const API_VERSION: &'static str;
    fn view(&self) -> Set;
}

fn base(meta: &ObjectMeta) -> Set {
    Set {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or(0),
        deleting: meta.deletion_timestamp.is_some(),
        owner_uid: controller_of(meta).map(|r| r.uid.clone()),
        ..Set::default()
    }
}

fn failure_of<'a>(
    conds: impl IntoIterator<
        Item = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<String>,
        ),
    >,
) -> Option<(String, String, String)> {
    conds
        .into_iter()
        .find(|c| c.0 == "ReplicaFailure" && c.1 == "True")
        .map(|c| {
            (
                c.2.unwrap_or_default().to_string(),
                c.3.unwrap_or_default().to_string(),
                c.4.unwrap_or_default(),
            )
        })
}

impl Replicated for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";
    const API_VERSION: &'static str = "apps/v1";
    fn view(&self) -> Set {
        let mut s = base(&self.metadata);
        if let Some(spec) = &self.spec {
            s.replicas = spec.replicas.unwrap_or(1);
            s.min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
            s.selector = Some(spec.selector.clone());
            s.template = spec.template.clone();
        }
        if let Some(st) = &self.status {
            s.status = Status {
                replicas: st.replicas,
                fully_labeled_replicas: st.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: st.ready_replicas.unwrap_or(0),
                available_replicas: st.available_replicas.unwrap_or(0),
                observed_generation: st.observed_generation.unwrap_or(0),
                failure: failure_of(st.conditions.iter().flatten().map(|c| {
                    (
                        c.type_.as_str(),
                        c.status.as_str(),
                        c.reason.as_deref(),
                        c.message.as_deref(),
                        c.last_transition_time.as_ref().map(|t| t.0.to_string()),
                    )
                })),
            };
        }
        s
    }
}

impl Replicated for ReplicationController {
    const KIND: &'static str = "ReplicationController";
    const API_VERSION: &'static str = "v1";
    fn view(&self) -> Set {
        let mut s = base(&self.metadata);
        if let Some(spec) = &self.spec {
            s.replicas = spec.replicas.unwrap_or(1);
            s.min_ready_seconds = spec.min_ready_seconds.unwrap_or(0);
            s.selector = crate::controllers::ownership::equality_selector(spec.selector.as_ref());
            s.template = spec.template.clone();
        }
        if let Some(st) = &self.status {
            s.status = Status {
                replicas: st.replicas,
                fully_labeled_replicas: st.fully_labeled_replicas.unwrap_or(0),
                ready_replicas: st.ready_replicas.unwrap_or(0),
                available_replicas: st.available_replicas.unwrap_or(0),
                observed_generation: st.observed_generation.unwrap_or(0),
                failure: failure_of(st.conditions.iter().flatten().map(|c| {
                    (
                        c.type_.as_str(),
                        c.status.as_str(),
                        c.reason.as_deref(),
                        c.message.as_deref(),
                        c.last_transition_time.as_ref().map(|t| t.0.to_string()),
                    )
                })),
            };
        }
        s
    }
}

struct Ctx<K: Replicated> {
    client: kube::Client,
    pods: Store<Pod>,
    sets: Store<K>,
    expectations: Expectations,
}

/// Runs the controller for `K` until the process ends.
pub async fn run<K: Replicated>(client: kube::Client) {
    let (pods, writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let controller = Controller::new(Api::<K>::all(client.clone()), watcher::Config::default());
    let sets = controller.store();
    let lookup = sets.clone();
    let ctx = Arc::new(Ctx {
        client,
        pods,
        sets,
        expectations: Expectations::default(),
    });
    controller
        .watches_stream(pod_events, move |pod: Pod| sets_for_pod(&lookup, &pod))
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            // Sync errors are the error policy's to log; this is the machinery's (e.g. an
            // object woken by a related change but missing from the cache).
            if let Err(e) = r {
                tracing::debug!(kind = %K::KIND, error = %e, "controller");
            }
        })
        .await;
}

/// The sets a pod's change concerns: its controller if that is one of ours, else (an orphan)
/// every set in its namespace that selects it and may adopt it.
fn sets_for_pod<K: Replicated>(sets: &Store<K>, pod: &Pod) -> Vec<ObjectRef<K>> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    if let Some(r) = controller_of(&pod.metadata) {
        return if r.kind == K::KIND && r.api_version == K::API_VERSION {
            vec![ObjectRef::new(&r.name).within(ns)]
        } else {
            Vec::new()
        };
    }
    sets.state()
        .iter()
        .filter(|s| s.meta().namespace.as_deref() == Some(ns))
        .filter(|s| selects(s.view().selector.as_ref(), pod.metadata.labels.as_ref()))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn error_policy<K: Replicated>(set: Arc<K>, e: &Error, _c: Arc<Ctx<K>>) -> Action {
    let conflict = matches!(e, Error::Kube(kube::Error::Api(s)) if s.code == 409);
    if !conflict {
        tracing::warn!(kind = K::KIND, name = ?set.meta().name, error = %e, "sync failed");
    }
    Action::requeue(Duration::from_secs(if conflict { 1 } else { 5 }))
}

async fn reconcile<K: Replicated>(set: Arc<K>, ctx: Arc<Ctx<K>>) -> Result<Action, Error> {
    if !listed(&ctx.pods) {
        return Ok(Action::requeue(listed::RETRY));
    }
    let view = set.view();
    let pods: Vec<Pod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(view.namespace.as_str()))
        .map(|p| (**p).clone())
        .collect();
    let related = related_pods(&ctx.sets, &view, &pods);
    let settled = ctx.expectations.settled(&view.uid, &pods, Instant::now());
    let plan = decide::decide(&view, &pods, &related, settled, Timestamp::now());
    tracing::debug!(kind = K::KIND, name = %view.name, settled, ?plan, "sync");
    if plan.create > 0 || !plan.delete.is_empty() {
        tracing::info!(kind = K::KIND, name = %view.name, create = plan.create, delete = ?plan.delete, "scaling");
    }
    execute(set.as_ref(), &view, &pods, plan, settled, ctx.as_ref()).await
}

/// The active pods of every set with the same controller as this one (a Deployment's
/// ReplicaSets): the ranking avoids leaving a node crowded with them.
fn related_pods<K: Replicated>(sets: &Store<K>, view: &Set, pods: &[Pod]) -> Vec<Pod> {
    let Some(owner) = &view.owner_uid else {
        return Vec::new();
    };
    let siblings: Vec<String> = sets
        .state()
        .iter()
        .filter(|s| controller_of(s.meta()).is_some_and(|r| &r.uid == owner))
        .filter_map(|s| s.meta().uid.clone())
        .collect();
    pods.iter()
        .filter(|p| decide::is_active(p))
        .filter(|p| controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
        .cloned()
        .collect()
}

fn our_ref<K: Replicated>(view: &Set) -> OwnerReference {
    controller_ref(K::API_VERSION, K::KIND, &view.name, &view.uid)
}

/// GetPodFromTemplate: the template's labels, annotations, finalizers and spec, named after
/// the set.
fn pod_from_template<K: Replicated>(view: &Set) -> Pod {
    let t = view.template.clone().unwrap_or_default();
    let meta = t.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", view.name)),
            namespace: Some(view.namespace.clone()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![our_ref::<K>(view)]),
            ..ObjectMeta::default()
        },
        spec: t.spec,
        status: None,
    }
}

async fn execute<K: Replicated>(
    set: &K,
    view: &Set,
    pods: &[Pod],
    plan: Plan,
    settled: bool,
    ctx: &Ctx<K>,
) -> Result<Action, Error> {
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &view.namespace);
    let find = |name: &str| {
        pods.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
    };

    if !plan.adopt.is_empty() {
        // canAdopt: a fresh read, so a set deleted and recreated under the same name since the
        // cache saw it does not take pods in the old one's name.
        let fresh = Api::<K>::namespaced(ctx.client.clone(), &view.namespace)
            .get(&view.name)
            .await?;
        if fresh.meta().uid.as_deref() != Some(view.uid.as_str())
            || fresh.meta().deletion_timestamp.is_some()
        {
            return Err(Error::Gone {
                kind: K::KIND,
                name: view.name.clone(),
            });
        }
        for name in &plan.adopt {
            let Some(p) = find(name) else { continue };
            let patch = adopt_patch(&p.metadata, our_ref::<K>(view));
            ignore_not_found(
                pod_api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await,
            )?;
        }
    }
    for name in &plan.release {
        let Some(p) = find(name) else { continue };
        let patch = release_patch(&p.metadata, &view.uid);
        ignore_not_found(
            pod_api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await,
        )?;
    }

    let about = About {
        api_version: K::API_VERSION,
        kind: K::KIND,
        namespace: &view.namespace,
        name: &view.name,
        uid: &view.uid,
    };
    let mut error: Option<(&str, String)> = None;
    if plan.create > 0 {
        let template = pod_from_template::<K>(view);
        let post = PostParams::default();
        let mut created = Vec::new();
        for batch in decide::slow_start_batches(plan.create) {
            let results =
                futures::future::join_all((0..batch).map(|_| pod_api.create(&post, &template)))
                    .await;
            for r in results {
                match r {
                    Ok(p) => {
                        let name = p.metadata.name.unwrap_or_default();
                        events::record(
                            &ctx.client,
                            COMPONENT,
                            &about,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {name}"),
                        )
                        .await;
                        created.push(name);
                    }
                    Err(e) => {
                        let msg = format!("Error creating: {}", api_message(&e));
                        events::record(
                            &ctx.client,
                            COMPONENT,
                            &about,
                            "Warning",
                            "FailedCreate",
                            &msg,
                        )
                        .await;
                        error = Some(("FailedCreate", msg));
                    }
                }
            }
            if error.is_some() {
                break;
            }
        }
        ctx.expectations.expect(&view.uid, created, Vec::new());
    }
    if !plan.delete.is_empty() {
        let dp = DeleteParams::default();
        let results =
            futures::future::join_all(plan.delete.iter().map(|name| pod_api.delete(name, &dp)))
                .await;
        let mut deleted = Vec::new();
        for (name, r) in plan.delete.iter().zip(results) {
            match r {
                Ok(_) => {
                    if let Some(uid) = find(name).and_then(|p| p.metadata.uid.clone()) {
                        deleted.push(uid);
                    }
                    events::record(
                        &ctx.client,
                        COMPONENT,
                        &about,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    let msg = format!("Error deleting: {}", api_message(&e));
                    events::record(
                        &ctx.client,
                        COMPONENT,
                        &about,
                        "Warning",
                        "FailedDelete",
                        &msg,
                    )
                    .await;
                    error = Some(("FailedDelete", msg));
                }
            }
        }
        ctx.expectations.expect(&view.uid, Vec::new(), deleted);
    }

    let mut status = plan.status;
    if settled {
        status.failure = decide::failure(&view.status.failure, error, Timestamp::now());
    }
    if status != view.status {
        write_status(set, view, &status, ctx).await?;
    }
    Ok(match plan.recheck_after {
        Some(d) => Action::requeue(d),
        // A lost watch event must not leave the set waiting past the expectations' expiry.
        None if !settled => Action::requeue(expectations::TIMEOUT),
        None => Action::requeue(super::RESYNC),
    })
}

fn ignore_not_found<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// The status as upstream serializes it (zero counts left out, `replicas` always there),
/// written with the set's resourceVersion so a newer spec is not reported as observed.
async fn write_status<K: Replicated>(
    set: &K,
    view: &Set,
    st: &Status,
    ctx: &Ctx<K>,
) -> Result<(), Error> {
    let nz = |n: i32| (n != 0).then_some(n);
    let mut status = json!({
        "replicas": st.replicas,
        "fullyLabeledReplicas": nz(st.fully_labeled_replicas),
        "readyReplicas": nz(st.ready_replicas),
        "availableReplicas": nz(st.available_replicas),
        "observedGeneration": (st.observed_generation != 0).then_some(st.observed_generation),
    });
    if let Some((reason, message, at)) = &st.failure {
        status["conditions"] = json!([{"type": "ReplicaFailure", "status": "True",
            "reason": reason, "message": message, "lastTransitionTime": at}]);
    }
    if let Some(m) = status.as_object_mut() {
        m.retain(|_, v| !v.is_null());
    }
    let mut obj: Value = serde_json::to_value(set)?;
    obj["status"] = status;
    let api = Api::<K>::namespaced(ctx.client.clone(), &view.namespace);
    let obj: K = serde_json::from_value(obj)?;
    api.replace_status(&view.name, &PostParams::default(), &obj)
        .await?;
    Ok(())
}
