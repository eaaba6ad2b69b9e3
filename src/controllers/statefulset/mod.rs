//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), hostnames and
//! storage, made, replaced, scaled and updated in order, as kube-controller-manager's
//! statefulset controller does.
//!
//! The deciding is pure (`plan` for one sync, `revision` for the template history, `claims`
//! for storage and its retention, `pods` for identity); this file watches, reads the caches,
//! carries the plan out through the API, and reports status and events. docs/controllers-
//! statefulset.md walks through it.

pub mod claims;
pub mod plan;
pub mod pods;
pub mod revision;

use crate::controllers::listed::{self, listed};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use plan::{Step, Why};
use revision::{Resolution, Revision};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("revision {0} holds no pod template")]
    BadRevision(String),
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    claims: Store<PersistentVolumeClaim>,
    recorder: Recorder,
}

/// Runs the controller until the process ends.
pub async fn run(client: kube::Client) {
    let (pods, pod_writer) = reflector::store();
    let pod_changes = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).default_backoff(),
    )
    .touched_objects();
    let (revisions, rev_writer) = reflector::store();
    let rev_changes = reflector::reflector(
        rev_writer,
        watcher(
            Api::<ControllerRevision>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let (claims, claim_writer) = reflector::store();
    let claim_changes = reflector::reflector(
        claim_writer,
        watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .touched_objects();
    let sets: Controller<StatefulSet> =
        Controller::new(Api::all(client.clone()), watcher::Config::default());
    let set_store = sets.store();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "statefulset-controller".into(),
            instance: None,
        },
    );
    let ctx = Arc::new(Ctx {
        client,
        pods,
        revisions,
        claims,
        recorder,
    });
    sets.owns_stream(pod_changes)
        .owns_stream(rev_changes)
        // A claim going away may unblock a pod waiting to be made; claims name no owner
        // under the default Retain policy, so every set of the namespace looks again.
        .watches_stream(claim_changes, move |claim: PersistentVolumeClaim| {
            let ns = claim.namespace();
            set_store
                .state()
                .into_iter()
                .filter(|s| s.namespace() == ns)
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(set: Arc<StatefulSet>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(statefulset = %set.name_any(), error = %e, "statefulset sync");
    Action::requeue(Duration::from_secs(5))
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    // A sync from half-filled caches would make pods that exist.
    if !(listed(&ctx.pods) && listed(&ctx.revisions) && listed(&ctx.claims)) {
        return Ok(Action::requeue(listed::RETRY));
    }
    let ns = set.namespace().unwrap_or_default();
    let set_uid = set.uid().unwrap_or_default();
    let ours = |refs: Option<&Vec<_>>, obj_ns: Option<String>| {
        obj_ns.as_deref() == Some(ns.as_str()) && pods::controlled_by(refs, &set_uid)
    };
    let owned_pods = claim_pods(&ctx, &set, &ns).await?;
    let mut revs: Vec<ControllerRevision> = ctx
        .revisions
        .state()
        .iter()
        .filter(|r| ours(r.metadata.owner_references.as_ref(), r.namespace()))
        .map(|r| (**r).clone())
        .collect();
    revision::sort(&mut revs);
    let claims: BTreeMap<String, PersistentVolumeClaim> = ctx
        .claims
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(ns.as_str()))
        .map(|c| (c.name_any(), (**c).clone()))
        .collect();

    let rev_api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    let mut collision = set
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let update = match revision::resolve(&set, &revs, collision) {
        Resolution::Latest(i) => revs[i].clone(),
        Resolution::Renumber(i, number) => {
            rev_api
                .patch(
                    &revs[i].name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"revision": number})),
                )
                .await?
        }
        Resolution::Create(_) => create_revision(&rev_api, &set, &revs, &mut collision).await?,
    };
    let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = revs
        .iter()
        .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
        .cloned()
        .unwrap_or_else(|| update.clone());
    let view = |r: &ControllerRevision| -> Result<Revision, Error> {
        Ok(Revision {
            name: r.name_any(),
            template: revision::template_of(r).ok_or_else(|| Error::BadRevision(r.name_any()))?,
        })
    };
    let (current_view, update_view) = (view(&current)?, view(&update)?);
    let plan = plan::plan(&plan::Input {
        set: &set,
        current: &current_view,
        update: &update_view,
        collision_count: collision,
        pods: &owned_pods,
        claims: &claims,
        now: Timestamp::now(),
    });

    let acted = carry_out(&ctx, &set, &plan).await;
    if let Some(why) = &plan.blocked {
        let pod = first_missing_pod(&set, &owned_pods);
        event(
            &ctx,
            &set,
            EventType::Warning,
            "FailedCreate",
            format!(
                "create Pod {pod} in StatefulSet {} failed error: {why}",
                set.name_any()
            ),
        )
        .await;
    }
    update_status(&ctx, &set, &plan.status).await?;
    prune_history(&ctx, &set, &revs, &owned_pods, &current, &update).await?;
    acted?;
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// The set's pods, after adopting matching orphans and releasing pods it no longer selects.
async fn claim_pods(ctx: &Ctx, set: &StatefulSet, ns: &str) -> Result<Vec<Pod>, Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let set_uid = set.uid().unwrap_or_default();
    let mut owned = vec![];
    for p in ctx.pods.state() {
        if p.namespace().as_deref() != Some(ns) {
            continue;
        }
        let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
        match pods::ownership(set, &p) {
            pods::Ownership::Owned => owned.push((*p).clone()),
            pods::Ownership::NotOurs => {}
            own => {
                if own == pods::Ownership::Adopt {
                    refs.push(pods::controller_ref(set));
                } else {
                    refs.retain(|r| r.uid != set_uid);
                }
                // The UID in the patch keeps it from landing on a successor of the same name.
                let patch = json!({"metadata": {"uid": p.uid(), "ownerReferences": refs}});
                match api
                    .patch(
                        &p.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(updated) if own == pods::Ownership::Adopt => owned.push(updated),
                    Ok(_) => {}
                    Err(e) if is_code(&e, 404) || is_code(&e, 409) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(owned)
}

fn first_missing_pod(set: &StatefulSet, owned: &[Pod]) -> String {
    let start = pods::start_ordinal(set);
    (start..start + pods::replicas(set))
        .map(|o| pods::pod_name(set, o))
        .find(|n| !owned.iter().any(|p| p.metadata.name.as_ref() == Some(n)))
        .unwrap_or_default()
}

/// Creates the revision for the set's template; a name already taken by other data means a
/// hash collision, escaped by counting collisionCount up (it is reported in the status).
async fn create_revision(
    api: &Api<ControllerRevision>,
    set: &StatefulSet,
    sorted: &[ControllerRevision],
    collision: &mut i32,
) -> Result<ControllerRevision, Error> {
    loop {
        let rev = revision::new_revision(set, revision::next_number(sorted), *collision);
        match api.create(&PostParams::default(), &rev).await {
            Ok(r) => return Ok(r),
            Err(e) if is_code(&e, 409) => {
                let existing = api.get(&rev.name_any()).await?;
                if existing.data == rev.data {
                    return Ok(existing);
                }
                *collision += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn event(ctx: &Ctx, set: &StatefulSet, type_: EventType, reason: &str, note: String) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &set.object_ref(&())).await {
        tracing::debug!(error = %e, "statefulset event");
    }
}

/// Takes the plan's steps in order; stops at the first failure (after its event).
async fn carry_out(ctx: &Ctx, set: &StatefulSet, plan: &plan::Plan) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let claim_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    for step in &plan.steps {
        match step {
            Step::Create { pod, claims } => {
                let pod_name = pod.name_any();
                create_claims(ctx, set, &claim_api, &pod_name, claims).await?;
                match pod_api.create(&PostParams::default(), pod).await {
                    Ok(created) => {
                        tracing::info!(statefulset = %set_name, pod = %pod_name, "pod created");
                        event(
                            ctx,
                            set,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        )
                        .await;
                        // The pod has a UID now: its claims can be given their owners.
                        let ordinal = pods::ordinal(set, &created).unwrap_or_default();
                        for (_, c) in claims::for_ordinal(set, ordinal) {
                            if let Some(claim) = claim_api.get_opt(&c.name_any()).await? {
                                if let Some(refs) = claims::wanted_refs(&claim, set, &created) {
                                    set_claim_owners(&claim_api, &claim.name_any(), &refs).await?;
                                }
                            }
                        }
                    }
                    // The cache was behind; the next sync sees the pod.
                    Err(e) if is_code(&e, 409) => {}
                    Err(e) => {
                        event(
                            ctx,
                            set,
                            EventType::Warning,
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                            ),
                        )
                        .await;
                        return Err(e.into());
                    }
                }
            }
            Step::CreateClaims { pod, claims } => {
                create_claims(ctx, set, &claim_api, pod, claims).await?;
            }
            Step::Delete { pod, uid, why } => {
                match why {
                    Why::Failed => {
                        event(
                            ctx,
                            set,
                            EventType::Warning,
                            "RecreatingFailedPod",
                            format!("StatefulSet {ns}/{set_name} is recreating failed Pod {pod}"),
                        )
                        .await
                    }
                    Why::Succeeded => {
                        event(
                            ctx,
                            set,
                            EventType::Normal,
                            "RecreatingTerminatedPod",
                            format!(
                                "StatefulSet {ns}/{set_name} is recreating terminated Pod {pod}"
                            ),
                        )
                        .await
                    }
                    Why::ScaleDown | Why::Update => {}
                }
                // The UID precondition keeps a stale cache from deleting a pod's successor.
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match pod_api.delete(pod, &params).await {
                    Ok(_) => {
                        tracing::info!(statefulset = %set_name, %pod, ?why, "pod deleted");
                        event(
                            ctx,
                            set,
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {pod} in StatefulSet {set_name} successful"),
                        )
                        .await;
                    }
                    Err(e) if is_code(&e, 404) || is_code(&e, 409) => {}
                    Err(e) => {
                        event(
                            ctx,
                            set,
                            EventType::Warning,
                            "FailedDelete",
                            format!("delete Pod {pod} in StatefulSet {set_name} failed error: {e}"),
                        )
                        .await;
                        return Err(e.into());
                    }
                }
            }
            Step::Relabel { pod, labels } => {
                let patch = json!({"metadata": {"labels": labels}});
                match pod_api
                    .patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_code(&e, 404) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Step::ClaimOwners { claim, refs } => set_claim_owners(&claim_api, claim, refs).await?,
        }
    }
    Ok(())
}

async fn create_claims(
    ctx: &Ctx,
    set: &StatefulSet,
    api: &Api<PersistentVolumeClaim>,
    pod: &str,
    claims: &[PersistentVolumeClaim],
) -> Result<(), Error> {
    let set_name = set.name_any();
    for c in claims {
        let name = c.name_any();
        match api.create(&PostParams::default(), c).await {
            Ok(_) => {
                event(
                    ctx,
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("create Claim {name} Pod {pod} in StatefulSet {set_name} success"),
                )
                .await
            }
            Err(e) if is_code(&e, 409) => {}
            Err(e) => {
                event(
                    ctx,
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Claim {name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"
                    ),
                )
                .await;
                return Err(e.into());
            }
        }
    }
    Ok(())
}

async fn set_claim_owners(
    api: &Api<PersistentVolumeClaim>,
    claim: &str,
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Result<(), Error> {
    let patch = json!({"metadata": {"ownerReferences": refs}});
    match api
        .patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Writes the status when a field `kubectl rollout status` and friends read has changed.
async fn update_status(
    ctx: &Ctx,
    set: &StatefulSet,
    status: &StatefulSetStatus,
) -> Result<(), Error> {
    let old = set.status.clone().unwrap_or_default();
    let z = |v: Option<i32>| v.unwrap_or(0);
    let same = old.observed_generation >= status.observed_generation
        && old.replicas == status.replicas
        && z(old.ready_replicas) == z(status.ready_replicas)
        && z(old.available_replicas) == z(status.available_replicas)
        && z(old.current_replicas) == z(status.current_replicas)
        && z(old.updated_replicas) == z(status.updated_replicas)
        && old.current_revision == status.current_revision
        && old.update_revision == status.update_revision
        && z(old.collision_count) == z(status.collision_count);
    if same {
        return Ok(());
    }
    let api: Api<StatefulSet> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    match api
        .patch_status(
            &set.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, 404) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the oldest revisions beyond revisionHistoryLimit that nothing uses.
async fn prune_history(
    ctx: &Ctx,
    set: &StatefulSet,
    sorted: &[ControllerRevision],
    owned_pods: &[Pod],
    current: &ControllerRevision,
    update: &ControllerRevision,
) -> Result<(), Error> {
    let mut live: BTreeSet<String> = [current.name_any(), update.name_any()].into();
    live.extend(
        owned_pods
            .iter()
            .filter_map(|p| pods::revision_of(p).map(str::to_string)),
    );
    let limit = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0) as usize;
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    for name in revision::to_prune(sorted, &live, limit) {
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_code(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
