//! The CronJob controller's decisions as a pure function of the CronJob, the Jobs it owns and
//! the time: which run is due, whether the concurrency policy lets it start, which old Jobs
//! go, and the status that results.

use super::schedule::Schedule;
use crate::controllers::job::plan::condition;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// Runs missed beyond this many are not all looked at (upstream warns at 100).
pub const MAX_MISSED: usize = 100;

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// A Job to create: its name and the time it was scheduled for.
    pub create: Option<(String, Timestamp)>,
    /// Active Jobs replaced (concurrencyPolicy Replace) and finished Jobs past the history
    /// limits.
    pub delete: Vec<String>,
    pub status: CronJobStatus,
    /// Events: (warning, reason, message).
    pub events: Vec<(bool, String, String)>,
    /// Time until the next scheduled run.
    pub requeue: Option<Duration>,
}

/// Upstream's name for the run scheduled at `t`: the CronJob's name and the minutes since the
/// epoch, so the same run always gets the same name and is never created twice.
pub fn job_name(cronjob: &str, t: Timestamp) -> String {
    format!("{cronjob}-{}", t.as_second() / 60)
}

fn finished(job: &Job) -> Option<&'static str> {
    let st = job.status.as_ref()?;
    if condition(st, "Complete").is_some() {
        Some("Complete")
    } else if condition(st, "Failed").is_some() {
        Some("Failed")
    } else {
        None
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..Default::default()
    }
}

pub fn decide(cj: &CronJob, jobs: &[Job], now: Timestamp) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let name = cj.metadata.name.clone().unwrap_or_default();
    let mut plan = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Default::default()
    };
    let st = &mut plan.status;

    // Active: the owned Jobs that have not finished; the newest success is remembered.
    let mut active: Vec<ObjectReference> = jobs
        .iter()
        .filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none())
        .map(reference)
        .collect();
    active.sort_by(|a, b| a.name.cmp(&b.name));
    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some("Complete"))
        .filter_map(|j| j.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        .max();
    if let Some(t) = last_success {
        if st.last_successful_time.as_ref().is_none_or(|old| old.0 < t) {
            st.last_successful_time = Some(Time(t));
        }
    }

    // History: the oldest finished Jobs beyond each limit go.
    for (kind, limit) in [
        ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
        ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
            .collect();
        done.sort_by_key(|j| {
            let st = j.status.as_ref();
            st.and_then(|s| s.start_time.clone())
                .or_else(|| j.metadata.creation_timestamp.clone())
        });
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        for j in done.into_iter().take(extra) {
            let n = j.metadata.name.clone().unwrap_or_default();
            plan.events
                .push((false, "SuccessfulDelete".into(), format!("Deleted job {n}")));
            plan.delete.push(n);
        }
    }

    let sched = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            st.active = (!active.is_empty()).then_some(active);
            plan.events.push((
                true,
                "UnparseableSchedule".into(),
                format!("unparseable schedule: {:?} : {e}", spec.schedule),
            ));
            return plan;
        }
    };
    plan.requeue = sched.next_after(now).map(|n| {
        let ms = (n.as_millisecond() - now.as_millisecond()).max(0) as u64;
        // A little past the minute, so the next pass finds the run due.
        Duration::from_millis(ms + 100)
    });
    if spec.suspend == Some(true) {
        st.active = (!active.is_empty()).then_some(active);
        return plan;
    }

    // The most recent run due: after the last one scheduled (or the creation), and within the
    // starting deadline if there is one.
    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = st.last_schedule_time.as_ref().map_or(created, |t| t.0);
    if let Some(d) = spec.starting_deadline_seconds {
        let limit = Timestamp::from_second(now.as_second() - d).unwrap_or(now);
        earliest = earliest.max(limit);
    }
    let due = sched.times_between(earliest, now, MAX_MISSED + 1);
    let Some(&scheduled) = due.last() else {
        st.active = (!active.is_empty()).then_some(active);
        return plan;
    };
    if due.len() > MAX_MISSED {
        plan.events.push((
            true,
            "TooManyMissedTimes".into(),
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        ));
    }
    let job = job_name(&name, scheduled);
    let already = jobs
        .iter()
        .any(|j| j.metadata.name.as_deref() == Some(job.as_str()));
    if already {
        st.last_schedule_time = Some(Time(scheduled));
        st.active = (!active.is_empty()).then_some(active);
        return plan;
    }
    match spec.concurrency_policy.as_deref().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => {
            st.active = Some(active);
            return plan;
        }
        "Replace" => {
            for a in active.drain(..) {
                let n = a.name.unwrap_or_default();
                plan.events
                    .push((false, "SuccessfulDelete".into(), format!("Deleted job {n}")));
                plan.delete.push(n);
            }
        }
        _ => {}
    }
    plan.events.push((
        false,
        "SuccessfulCreate".into(),
        format!("Created job {job}"),
    ));
    active.push(ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: Some(job.clone()),
        namespace: cj.metadata.namespace.clone(),
        ..Default::default()
    });
    plan.create = Some((job, scheduled));
    st.last_schedule_time = Some(Time(scheduled));
    st.active = Some(active);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn cronjob(extra: serde_json::Value) -> CronJob {
        let mut v = json!({
            "metadata": {"name": "cj", "namespace": "default", "creationTimestamp": "2026-12-03T06:00:30Z"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {}}}}
        });
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value(v).unwrap()
    }

    fn job(name: &str, state: Option<&str>) -> Job {
        let conditions = match state {
            Some(t) => json!([{"type": t, "status": "True"}]),
            None => json!([]),
        };
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")},
            "status": {"conditions": conditions, "startTime": "2026-12-03T06:01:00Z",
                       "completionTime": if state == Some("Complete") { json!("2026-12-03T06:01:05Z") } else { json!(null) }}
        }))
        .unwrap()
    }

    #[test]
    fn names_runs_by_their_minute() {
        let p = decide(&cronjob(json!({})), &[], ts("2026-12-03T06:01:10Z"));
        let (name, at) = p.create.unwrap();
        assert_eq!(at.to_string(), "2026-12-03T06:01:00Z");
        assert_eq!(name, format!("cj-{}", at.as_second() / 60));
        assert_eq!(p.status.last_schedule_time.unwrap().0, at);
        // Requeued for the next minute.
        assert!(p.requeue.unwrap() <= Duration::from_secs(51));
    }

    #[test]
    fn forbid_waits_for_the_active_run_and_replace_deletes_it() {
        let running = job("cj-old", None);
        let p = decide(
            &cronjob(json!({"concurrencyPolicy": "Forbid"})),
            std::slice::from_ref(&running),
            ts("2026-12-03T06:02:10Z"),
        );
        assert!(p.create.is_none());
        assert_eq!(p.status.active.unwrap().len(), 1);
        let p = decide(
            &cronjob(json!({"concurrencyPolicy": "Replace"})),
            std::slice::from_ref(&running),
            ts("2026-12-03T06:02:10Z"),
        );
        assert!(p.create.is_some());
        assert_eq!(p.delete, ["cj-old"]);
        let p = decide(&cronjob(json!({})), &[running], ts("2026-12-03T06:02:10Z"));
        assert!(p.create.is_some() && p.delete.is_empty());
    }

    #[test]
    fn starting_deadline_and_suspend() {
        // Created at 06:00:30 and looked at 06:05:40: the 06:05 run is due, but with a 30 s
        // deadline it is too late.
        let p = decide(
            &cronjob(json!({"schedule": "*/5 * * * *", "startingDeadlineSeconds": 30})),
            &[],
            ts("2026-12-03T06:05:40Z"),
        );
        assert!(p.create.is_none());
        let p = decide(
            &cronjob(json!({"schedule": "*/5 * * * *", "startingDeadlineSeconds": 60})),
            &[],
            ts("2026-12-03T06:05:40Z"),
        );
        assert!(p.create.is_some());
        let p = decide(
            &cronjob(json!({"suspend": true})),
            &[],
            ts("2026-12-03T06:05:40Z"),
        );
        assert!(p.create.is_none());
    }

    #[test]
    fn history_limits_and_last_success() {
        let jobs = [
            job("a", Some("Complete")),
            job("b", Some("Complete")),
            job("c", Some("Failed")),
            job("d", Some("Failed")),
        ];
        let p = decide(
            &cronjob(
                json!({"successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1, "suspend": true}),
            ),
            &jobs,
            ts("2026-12-03T06:05:40Z"),
        );
        assert_eq!(p.delete.len(), 2, "{:?}", p.delete);
        assert_eq!(
            p.status.last_successful_time.unwrap().0.to_string(),
            "2026-12-03T06:01:05Z"
        );
        assert!(p.status.active.is_none());
    }
}
