//! The Job controller: runs a Job's pods until enough succeed (completions, parallelism,
//! Indexed mode), recreates failed ones with backoff until backoffLimit, stops them at
//! activeDeadlineSeconds or while suspended, and reports status and the Complete / Failed
//! conditions. job/plan.rs decides; this file lists the pods, carries the plan out in the
//! order its counting protocol needs, and records events.

pub mod plan;

use crate::controllers::owned_pods::{
    controlled_by, controller_ref, from_template, selector_string,
};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::Resource;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
}

/// Runs the Job controller until the process ends.
pub async fn run(client: kube::Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    let pods: Api<Pod> = Api::all(client.clone());
    let reporter = Reporter {
        controller: "job-controller".into(),
        instance: None,
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
    });
    Controller::new(jobs, watcher::Config::default())
        .owns(pods, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_j: Arc<Job>, e: &Error, _c: Arc<Ctx>) -> Action {
    // Conflicts are the common case: the Job changed while we worked from an older copy.
    tracing::debug!(error = %e, "job");
    Action::requeue(Duration::from_secs(1))
}

/// The pod for completion index `index` (None outside Indexed mode).
fn new_pod(job: &Job, index: Option<i32>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let owner = controller_ref("batch/v1", "Job", &job.metadata);
    let prefix = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    let mut pod = from_template(&spec.template, &prefix, owner);
    pod.metadata
        .finalizers
        .get_or_insert_with(Vec::new)
        .push(plan::TRACKING_FINALIZER.to_string());
    if let Some(i) = index {
        let i = i.to_string();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(plan::INDEX_KEY.into(), i.clone());
        pod.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(plan::INDEX_KEY.into(), i.clone());
        if let Some(ps) = pod.spec.as_mut() {
            if ps.hostname.is_none() {
                ps.hostname = Some(format!("{name}-{i}"));
            }
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: format!("metadata.annotations['{}']", plan::INDEX_KEY),
                    }),
                    ..Default::default()
                }),
            };
            let containers = ps
                .containers
                .iter_mut()
                .chain(ps.init_containers.iter_mut().flatten());
            for c in containers {
                c.env.get_or_insert_with(Vec::new).push(env.clone());
            }
        }
    }
    pod
}

async fn event(ctx: &Ctx, job: &Job, warning: bool, reason: &str, note: String) {
    let ev = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &job.object_ref(&())).await {
        tracing::warn!(error = %e, "job event");
    }
}

/// Takes the tracking finalizer off a pod. The patch carries the resourceVersion the list
/// was read at, so a pod changed meanwhile makes it fail (and the pass retry) instead of
/// dropping a finalizer someone else just added.
async fn release(pods: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let rest: Vec<&String> = pod
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != plan::TRACKING_FINALIZER)
        .collect();
    let patch = serde_json::json!({"metadata": {
        "finalizers": rest, "resourceVersion": pod.metadata.resource_version}});
    match pods
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        r => r.map(|_| ()),
    }
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .map(selector_string)
        .unwrap_or_default();
    // A fresh list, not a cache: what this pass creates must not be created again by the next.
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .filter(|p| controlled_by(&p.metadata, &uid))
        .collect();
    let plan = plan::decide(&job, &pods, Timestamp::now());
    let mut current = (*job).clone();

    if let Some(st) = plan.record {
        current.status = Some(st);
        current = jobs_api
            .replace_status(&name, &PostParams::default(), &current)
            .await?;
    }
    for p in pods.iter().filter(|p| {
        p.metadata
            .name
            .as_ref()
            .is_some_and(|n| plan.release.contains(n))
    }) {
        release(&pods_api, p).await?;
    }
    for index in &plan.create {
        let created = pods_api
            .create(&PostParams::default(), &new_pod(&job, *index))
            .await?;
        let pod_name = created.metadata.name.unwrap_or_default();
        event(
            &ctx,
            &job,
            false,
            "SuccessfulCreate",
            format!("Created pod: {pod_name}"),
        )
        .await;
    }
    for pod_name in &plan.delete {
        match pods_api.delete(pod_name, &DeleteParams::default()).await {
            Ok(_) => {
                event(
                    &ctx,
                    &job,
                    false,
                    "SuccessfulDelete",
                    format!("Deleted pod: {pod_name}"),
                )
                .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }

    let before = current.status.clone().unwrap_or_default();
    let after = plan.status;
    if serde_json::to_value(&before).ok() != serde_json::to_value(&after).ok() {
        for (ty, warning) in [("Complete", false), ("Failed", true), ("Suspended", false)] {
            let was = plan::condition(&before, ty).map(|c| c.reason.clone());
            let now = plan::condition(&after, ty).map(|c| c.reason.clone());
            if was != now {
                if let Some(c) = plan::condition(&after, ty) {
                    // Upstream reports completion as "Completed" / "Job completed".
                    let (reason, note) = if ty == "Complete" {
                        ("Completed".to_string(), "Job completed".to_string())
                    } else {
                        (
                            c.reason.clone().unwrap_or_default(),
                            c.message.clone().unwrap_or_default(),
                        )
                    };
                    event(&ctx, &job, warning, &reason, note).await;
                }
            }
        }
        if plan::condition(&before, "Suspended").is_some()
            && plan::condition(&after, "Suspended").is_none()
        {
            event(&ctx, &job, false, "Resumed", "Job resumed".into()).await;
        }
        current.status = Some(after);
        jobs_api
            .replace_status(&name, &PostParams::default(), &current)
            .await?;
    }
    Ok(Action::requeue(
        plan.requeue.unwrap_or(Duration::from_secs(300)),
    ))
}
