//! The CronJob controller: creates a Job for each scheduled time (in the CronJob's time zone),
//! as the concurrency policy allows, within startingDeadlineSeconds, and keeps the history
//! limits. cronjob/schedule.rs reads schedules, cronjob/plan.rs decides; this file acts and
//! sleeps until the next scheduled minute.

pub mod plan;
pub mod schedule;

use crate::controllers::owned_pods::{controlled_by, controller_ref};
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::Resource;
use std::sync::Arc;
use std::time::Duration;

/// The annotation upstream puts on each Job with the time it was scheduled for.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

struct Ctx {
    client: kube::Client,
    recorder: Recorder,
}

pub async fn run(client: kube::Client) {
    let cronjobs: Api<CronJob> = Api::all(client.clone());
    let jobs: Api<Job> = Api::all(client.clone());
    let reporter = Reporter {
        controller: "cronjob-controller".into(),
        instance: None,
    };
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), reporter),
        client,
    });
    Controller::new(cronjobs, watcher::Config::default())
        .owns(jobs, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_c: Arc<CronJob>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %e, "cronjob");
    Action::requeue(Duration::from_secs(2))
}

/// The Job for the run scheduled at `at`, from the CronJob's jobTemplate.
fn new_job(cj: &CronJob, name: &str, at: Timestamp) -> Job {
    let tpl = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let meta = tpl.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let zone = cj.spec.as_ref().and_then(|s| s.time_zone.clone());
    let local = schedule::Schedule::parse("* * * * *", zone.as_deref())
        .map(|s| {
            at.to_zoned(s.tz)
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_string());
    annotations.insert(SCHEDULED_TIMESTAMP.into(), local);
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("batch/v1", "CronJob", &cj.metadata)]),
            ..Default::default()
        },
        spec: tpl.spec,
        status: None,
    }
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if cj.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = cj.metadata.namespace.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let uid = cj.metadata.uid.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|j| controlled_by(&j.metadata, &uid))
        .collect();
    let plan = plan::decide(&cj, &jobs, Timestamp::now());

    for n in &plan.delete {
        match jobs_api.delete(n, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    if let Some((job, at)) = &plan.create {
        match jobs_api
            .create(&PostParams::default(), &new_job(&cj, job, *at))
            .await
        {
            // Created by an earlier pass whose status write was lost: the same run, by name.
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for (warning, reason, message) in &plan.events {
        let ev = Event {
            type_: if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.clone(),
            note: Some(message.clone()),
            action: reason.clone(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&ev, &cj.object_ref(&())).await {
            tracing::warn!(error = %e, "cronjob event");
        }
    }
    let before = cj.status.clone().unwrap_or_default();
    if serde_json::to_value(&before).ok() != serde_json::to_value(&plan.status).ok() {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
        let mut current = (*cj).clone();
        current.status = Some(plan.status);
        api.replace_status(&name, &PostParams::default(), &current)
            .await?;
    }
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}
