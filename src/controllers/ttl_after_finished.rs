//! TTL after finished: deletes a Job `spec.ttlSecondsAfterFinished` seconds after it got its
//! Complete or Failed condition, with its pods (foreground, as upstream's ttl-after-finished
//! controller does).

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

/// When the Job expires: its finish time plus the TTL (None: never).
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let st = job.status.as_ref()?;
    let finished = st
        .conditions
        .iter()
        .flatten()
        .filter(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
        .max()?;
    Some(Timestamp::from_second(finished.as_second() + i64::from(ttl)).unwrap_or(finished))
}

pub async fn run(client: kube::Client) {
    let jobs: Api<Job> = Api::all(client.clone());
    Controller::new(jobs, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

fn error_policy(_j: Arc<Job>, e: &Error, _c: Arc<kube::Client>) -> Action {
    tracing::warn!(error = %e, "ttl after finished");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(job: Arc<Job>, client: Arc<kube::Client>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(at) = expires_at(&job) else {
        return Ok(Action::await_change());
    };
    let left = at.as_millisecond() - Timestamp::now().as_millisecond();
    if left > 0 {
        return Ok(Action::requeue(Duration::from_millis(left as u64)));
    }
    let ns = job.metadata.namespace.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let api: Api<Job> = Api::namespaced((*client).clone(), &ns);
    // The uid guards against deleting a new Job that took the name meanwhile.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::foreground()
    };
    match api.delete(&name, &dp).await {
        Ok(_) => tracing::info!(job = %name, namespace = %ns, "finished job expired: deleted"),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_counts_from_the_finish() {
        let job: Job = serde_json::from_value(serde_json::json!({
            "spec": {"ttlSecondsAfterFinished": 30, "template": {}},
            "status": {"conditions": [
                {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-03T06:00:00Z"}
            ]}
        }))
        .unwrap();
        assert_eq!(
            expires_at(&job).unwrap().to_string(),
            "2026-12-03T06:00:30Z"
        );
        let mut running = job.clone();
        running.status = None;
        assert!(expires_at(&running).is_none());
        let mut no_ttl = job;
        no_ttl.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert!(expires_at(&no_ttl).is_none());
    }
}
