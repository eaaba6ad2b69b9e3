use super::*;
use serde_json::json;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-12-03T06:10:00Z";

fn job(spec: serde_json::Value, status: serde_json::Value) -> Job {
    let mut s = json!({"parallelism": 1, "completions": 1, "backoffLimit": 6,
        "completionMode": "NonIndexed", "suspend": false,
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "i"}]}}});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": {"name": "j", "namespace": "default", "uid": "ju"},
        "spec": s, "status": status}))
    .unwrap()
}

/// A pod in `phase`; `finished` is its container's exit time, `code` its exit code.
fn pod(name: &str, phase: &str, finished: Option<&str>, code: i32) -> Pod {
    let state = match finished {
        Some(t) => json!({"terminated": {"exitCode": code, "finishedAt": t}}),
        None => json!({"running": {}}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"),
                     "finalizers": [TRACKING_FINALIZER], "creationTimestamp": "2026-12-03T06:00:00Z"},
        "status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "i", "imageID": "",
            "ready": false, "restartCount": 0, "state": state}]}}))
    .unwrap()
}

fn reason(st: &JobStatus, ty: &str) -> Option<String> {
    condition(st, ty).and_then(|c| c.reason.clone())
}

#[test]
fn backoff_doubles_from_ten_seconds_to_six_minutes() {
    assert_eq!(backoff(0), Duration::ZERO);
    assert_eq!(backoff(1), Duration::from_secs(10));
    assert_eq!(backoff(2), Duration::from_secs(20));
    assert_eq!(backoff(6), Duration::from_secs(320));
    assert_eq!(backoff(7), Duration::from_secs(360));
    assert_eq!(backoff(40), Duration::from_secs(360));
}

#[test]
fn creates_up_to_parallelism_and_not_past_completions() {
    let j = job(json!({"completions": 3, "parallelism": 2}), json!({}));
    let p = decide(&j, &[], ts(NOW));
    assert_eq!(p.create.len(), 2);
    assert_eq!(p.status.active, Some(2));
    assert!(p.status.start_time.is_some());
    // Two succeeded (already counted): one more to go.
    let j = job(
        json!({"completions": 3, "parallelism": 2}),
        json!({"succeeded": 2}),
    );
    let p = decide(&j, &[], ts(NOW));
    assert_eq!(p.create.len(), 1);
}

#[test]
fn finished_pods_are_recorded_before_their_finalizer_goes() {
    let j = job(json!({"completions": 2, "parallelism": 2}), json!({}));
    let done = pod("a", "Succeeded", Some("2026-12-03T06:05:00Z"), 0);
    let running = pod("b", "Running", None, 0);
    let p = decide(&j, &[done.clone(), running.clone()], ts(NOW));
    let rec = p.record.expect("recorded first");
    assert_eq!(
        rec.uncounted_terminated_pods.unwrap().succeeded.unwrap(),
        ["u-a"]
    );
    assert_eq!(p.release, ["a"]);
    assert_eq!(p.status.succeeded, Some(1));
    assert!(p.create.is_empty(), "one running, one done: nothing to add");
    // A pass after a crash between the steps: already uncounted, finalizer gone.
    let j = job(
        json!({"completions": 2, "parallelism": 2}),
        json!({"uncountedTerminatedPods": {"succeeded": ["u-a"]}}),
    );
    let mut released = done;
    released.metadata.finalizers = None;
    let p = decide(&j, &[released, running], ts(NOW));
    assert!(p.record.is_none());
    assert_eq!(p.status.succeeded, Some(1), "counted once");
}

#[test]
fn success_criteria_met_then_complete() {
    let j = job(json!({}), json!({"succeeded": 1}));
    let p = decide(&j, &[], ts(NOW));
    assert_eq!(
        reason(&p.status, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    assert_eq!(
        reason(&p.status, "Complete").as_deref(),
        Some("CompletionsReached")
    );
    assert!(p.status.completion_time.is_some());
}

#[test]
fn failures_back_off_and_stop_at_the_limit() {
    let j = job(json!({"backoffLimit": 2}), json!({"failed": 1}));
    let failed = pod("a", "Failed", Some("2026-12-03T06:09:55Z"), 1);
    let mut released = failed.clone();
    released.metadata.finalizers = None;
    let p = decide(&j, std::slice::from_ref(&released), ts(NOW));
    assert!(p.create.is_empty(), "5 s into a 10 s backoff");
    assert_eq!(p.requeue, Some(Duration::from_secs(5)));
    let p = decide(&j, &[released], ts("2026-12-03T06:10:06Z"));
    assert_eq!(p.create.len(), 1);
    // The third failure passes backoffLimit 2.
    let j = job(json!({"backoffLimit": 2}), json!({"failed": 2}));
    let p = decide(&j, &[failed], ts(NOW));
    assert_eq!(
        reason(&p.status, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        reason(&p.status, "Failed").as_deref(),
        Some("BackoffLimitExceeded")
    );
    assert_eq!(
        condition(&p.status, "Failed").unwrap().message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
}

#[test]
fn deadline_fails_and_deletes_running_pods_first() {
    let j = job(
        json!({"activeDeadlineSeconds": 5}),
        json!({"startTime": "2026-12-03T06:09:00Z"}),
    );
    let p = decide(&j, &[pod("a", "Running", None, 0)], ts(NOW));
    assert_eq!(
        reason(&p.status, "FailureTarget").as_deref(),
        Some("DeadlineExceeded")
    );
    assert!(condition(&p.status, "Failed").is_none(), "a pod still runs");
    assert_eq!(p.delete, ["a"]);
}

#[test]
fn indexed_jobs_fill_missing_indexes() {
    let j = job(
        json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}),
        json!({"completedIndexes": "0"}),
    );
    let mut one = pod("j-1", "Running", None, 0);
    one.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), "1".into());
    let p = decide(&j, &[one], ts(NOW));
    assert_eq!(p.create, [Some(2)]);
    assert_eq!(p.status.succeeded, Some(1));
    assert_eq!(format_indexes(&parse_indexes("0-2,4,6-7")), "0-2,4,6-7");
    assert_eq!(format_indexes(&[0, 1, 2, 5].into_iter().collect()), "0-2,5");
}

#[test]
fn suspend_deletes_pods_without_counting_them() {
    let j = job(json!({"suspend": true}), json!({}));
    let mut going = pod("a", "Running", None, 0);
    let p = decide(&j, std::slice::from_ref(&going), ts(NOW));
    assert_eq!(p.delete, ["a"]);
    assert_eq!(
        reason(&p.status, "Suspended").as_deref(),
        Some("JobSuspended")
    );
    going.metadata.deletion_timestamp = Some(Time(ts(NOW)));
    let p = decide(&j, &[going], ts(NOW));
    assert!(p.record.is_none());
    assert_eq!(p.release, ["a"]);
    assert_eq!(p.status.failed, Some(0));
}

#[test]
fn pod_failure_policy_fail_job_and_ignore() {
    let policy = json!({"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}}]});
    let j = job(json!({"podFailurePolicy": policy}), json!({}));
    let p = decide(&j, &[pod("a", "Failed", Some(NOW), 42)], ts(NOW));
    let c = condition(&p.status, "Failed").expect("failed");
    assert_eq!(c.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        c.message.as_deref(),
        Some("Container main for pod default/a failed with exit code 42 matching FailJob rule at index 0")
    );
    let p = decide(&j, &[pod("a", "Failed", Some(NOW), 7)], ts(NOW));
    assert_eq!(p.status.failed, Some(0));
    assert!(condition(&p.status, "Failed").is_none());
}
