//! The Job controller's decisions, as pure functions of the Job, its pods and the time: which
//! finished pods to record, which pods to create or delete, and the status that results. The
//! code in job.rs carries the plan out.
//!
//! Finished pods are counted as upstream tracks them since 1.26: every pod carries the
//! `batch.kubernetes.io/job-tracking` finalizer; a pod seen finished first goes into
//! status.uncountedTerminatedPods (written before anything else), then loses its finalizer,
//! then moves from there into status.succeeded / status.failed. A crash between any two steps
//! leaves a state the next pass finishes, and no pod is counted twice or lost.

use crate::controllers::owned_pods::{is_ready, is_terminal, is_terminating, phase};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;
use std::time::Duration;

pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// Delays between recreations after failures: 10 s doubling up to 6 min, as upstream.
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// The wait before a new pod after `failures` failures in a row (none without failures).
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    BACKOFF_BASE
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(BACKOFF_MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Running,
    Succeeded,
    Failed,
    /// Finished but not counted (a podFailurePolicy Ignore rule, or a pod deleted while the
    /// Job is suspended or finished).
    Ignored,
}

/// What one reconcile does, in order.
#[derive(Debug, Default)]
pub struct Plan {
    /// Step 1: the status with newly finished pods added to uncountedTerminatedPods, if any.
    pub record: Option<JobStatus>,
    /// Step 2: pods whose tracking finalizer comes off.
    pub release: Vec<String>,
    /// Step 3: new pods (their completion index in Indexed mode).
    pub create: Vec<Option<i32>>,
    /// Step 3: pods to delete.
    pub delete: Vec<String>,
    /// Step 4: the status once the above is done.
    pub status: JobStatus,
    /// When to look again even if nothing changes (backoff or deadline).
    pub requeue: Option<Duration>,
}

fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(INDEX_KEY)?
        .parse()
        .ok()
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == TRACKING_FINALIZER)
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

pub fn condition<'a>(status: &'a JobStatus, ty: &str) -> Option<&'a JobCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == ty && c.status == "True")
}

pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .is_some_and(|s| condition(s, "Complete").is_some() || condition(s, "Failed").is_some())
}

/// The moment a pod finished: its last container's exit, else its deletion.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let st = pod.status.as_ref();
    let exits = st
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    exits
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Why a podFailurePolicy rule matched a failed pod, and its action.
fn failure_policy_match(job: &Job, pod: &Pod) -> Option<(String, String)> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    let pod_name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        name(pod)
    );
    let st = pod.status.as_ref();
    for (i, rule) in policy.rules.iter().enumerate() {
        if let Some(req) = &rule.on_exit_codes {
            let statuses = st
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten();
            for c in statuses {
                if req.container_name.as_ref().is_some_and(|n| *n != c.name) {
                    continue;
                }
                let Some(code) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) else {
                    continue;
                };
                let code = code.exit_code;
                // Exit code 0 is a success and never matches a rule.
                if code == 0 {
                    continue;
                }
                let hit = match req.operator.as_str() {
                    "In" => req.values.contains(&code),
                    _ => !req.values.contains(&code),
                };
                if hit {
                    let why = format!(
                        "Container {} for pod {pod_name} failed with exit code {code} matching {} rule at index {i}",
                        c.name, rule.action
                    );
                    return Some((rule.action.clone(), why));
                }
            }
        }
        for pat in rule.on_pod_conditions.iter().flatten() {
            let found = st
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == pat.type_ && c.status == pat.status);
            if found {
                let why = format!(
                    "Pod {pod_name} has condition {} matching {} rule at index {i}",
                    pat.type_, rule.action
                );
                return Some((rule.action.clone(), why));
            }
        }
    }
    None
}

/// How a pod counts for the Job, and the FailJob message if a rule says the Job fails.
pub fn outcome(job: &Job, pod: &Pod) -> (Outcome, Option<String>) {
    let stopping = job.spec.as_ref().and_then(|s| s.suspend) == Some(true) || is_finished(job);
    match phase(pod) {
        "Succeeded" => (Outcome::Succeeded, None),
        "Failed" => match failure_policy_match(job, pod) {
            Some((action, _)) if action == "Ignore" => (Outcome::Ignored, None),
            Some((action, why)) if action == "FailJob" => (Outcome::Failed, Some(why)),
            _ => (Outcome::Failed, None),
        },
        // A pod deleted before it finished failed, unless this Job deleted it to stop.
        _ if is_terminating(pod) && stopping => (Outcome::Ignored, None),
        _ if is_terminating(pod) => (Outcome::Failed, None),
        _ => (Outcome::Running, None),
    }
}

/// Indexes as upstream writes completedIndexes: sorted, runs joined with '-' ("0-2,5").
pub fn format_indexes(set: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            out.extend(a..=b);
        }
    }
    out
}

fn cond(ty: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: ty.to_string(),
        status: "True".to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets condition `c`, keeping the transition time of one already in that state.
fn set_condition(status: &mut JobStatus, c: JobCondition) {
    let list = status.conditions.get_or_insert_with(Vec::new);
    match list.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) if x.status == c.status && x.reason == c.reason => {}
        Some(x) => *x = c,
        None => list.push(c),
    }
}

pub fn decide(job: &Job, pods: &[Pod], now: Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let suspended = spec.suspend == Some(true);
    let mut plan = Plan::default();

    // Counting: which finished pods are new, which are waiting in uncounted.
    let old_unc = old.uncounted_terminated_pods.clone().unwrap_or_default();
    let mut unc_ok: BTreeSet<String> = old_unc.succeeded.unwrap_or_default().into_iter().collect();
    let mut unc_failed: BTreeSet<String> = old_unc.failed.unwrap_or_default().into_iter().collect();
    let mut recorded = false;
    let mut fail_job: Option<String> = None;
    let mut completed = parse_indexes(old.completed_indexes.as_deref().unwrap_or(""));
    for p in pods {
        let (out, why) = outcome(job, p);
        if fail_job.is_none() && !is_finished(job) {
            fail_job = why;
        }
        if !has_finalizer(p) || out == Outcome::Running {
            continue;
        }
        let u = uid(p);
        match out {
            Outcome::Succeeded => recorded |= unc_ok.insert(u),
            Outcome::Failed => recorded |= unc_failed.insert(u),
            _ => {}
        }
        plan.release.push(name(p));
    }
    for p in pods {
        if unc_ok.contains(&uid(p)) {
            if let Some(i) = index_of(p) {
                completed.insert(i);
            }
        }
    }
    if recorded {
        let mut st = old.clone();
        st.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(unc_ok.iter().cloned().collect()),
            failed: Some(unc_failed.iter().cloned().collect()),
        });
        plan.record = Some(st);
    }

    let mut st = old.clone();
    st.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    let succeeded = if indexed {
        completed.retain(|i| completions.is_some_and(|c| *i < c));
        st.completed_indexes = Some(format_indexes(&completed));
        completed.len() as i32
    } else {
        old.succeeded.unwrap_or(0) + unc_ok.len() as i32
    };
    let failed = old.failed.unwrap_or(0) + unc_failed.len() as i32;
    st.succeeded = Some(succeeded);
    st.failed = Some(failed);

    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| !is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let terminating = pods.iter().filter(|p| is_terminating(p)).count() as i32;
    st.terminating = Some(terminating);

    // Finished Jobs only release what they still hold.
    if is_finished(job) {
        st.active = Some(active.len() as i32);
        st.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
        plan.status = st;
        return plan;
    }

    // Suspension.
    if suspended {
        set_condition(
            &mut st,
            cond("Suspended", "JobSuspended", "Job suspended", now),
        );
    } else if condition(&old, "Suspended").is_some() {
        let mut c = cond("Suspended", "JobResumed", "Job resumed", now);
        c.status = "False".to_string();
        set_condition(&mut st, c);
        // The deadline counts from the resumption.
        st.start_time = Some(Time(now));
    }
    if !suspended && st.start_time.is_none() {
        st.start_time = Some(Time(now));
    }

    // Has the Job reached an end? A target condition first; the final one once no pod runs.
    let restarts: i32 = if spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure")
    {
        active
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    let deadline = spec.active_deadline_seconds.and_then(|s| {
        let start = st.start_time.as_ref()?.0;
        Some(start.as_second() + s)
    });
    let failure: Option<(String, String)> = if let Some(t) = condition(&old, "FailureTarget") {
        Some((
            t.reason.clone().unwrap_or_default(),
            t.message.clone().unwrap_or_default(),
        ))
    } else if let Some(why) = fail_job {
        Some(("PodFailurePolicy".to_string(), why))
    } else if failed + restarts > backoff_limit {
        Some((
            "BackoffLimitExceeded".to_string(),
            "Job has reached the specified backoff limit".to_string(),
        ))
    } else if !suspended && deadline.is_some_and(|d| now.as_second() >= d) {
        Some((
            "DeadlineExceeded".to_string(),
            "Job was active longer than specified deadline".to_string(),
        ))
    } else {
        None
    };
    let success = condition(&old, "SuccessCriteriaMet").is_some()
        || match completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };

    if let Some((reason, message)) = failure {
        set_condition(&mut st, cond("FailureTarget", &reason, &message, now));
        plan.delete = active.iter().map(|p| name(p)).collect();
        if active.is_empty() && terminating == 0 {
            set_condition(&mut st, cond("Failed", &reason, &message, now));
        }
    } else if success {
        let msg = "Reached expected number of succeeded pods";
        set_condition(
            &mut st,
            cond("SuccessCriteriaMet", "CompletionsReached", msg, now),
        );
        plan.delete = active.iter().map(|p| name(p)).collect();
        if active.is_empty() && terminating == 0 {
            set_condition(&mut st, cond("Complete", "CompletionsReached", msg, now));
            st.completion_time = Some(Time(now));
        }
    } else if suspended {
        plan.delete = active.iter().map(|p| name(p)).collect();
    } else {
        manage(&mut plan, job, pods, &active, succeeded, &completed, now);
        if let Some(d) = deadline {
            let left = Duration::from_secs((d - now.as_second()).max(1) as u64);
            plan.requeue = Some(plan.requeue.map_or(left, |r| r.min(left)));
        }
    }
    let remaining = active.len() - plan.delete.len().min(active.len());
    st.active = Some((remaining + plan.create.len()) as i32);
    st.ready = Some(
        active
            .iter()
            .filter(|p| is_ready(p) && !plan.delete.contains(&name(p)))
            .count() as i32,
    );
    plan.status = st;
    plan
}

/// Creations and deletions that bring a running Job to its parallelism.
fn manage(
    plan: &mut Plan,
    job: &Job,
    pods: &[Pod],
    active: &[&Pod],
    succeeded: i32,
    completed: &BTreeSet<i32>,
    now: Timestamp,
) {
    let spec = job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let want = match spec.completions {
        Some(c) => parallelism.min(c - succeeded).max(0),
        // A work queue: once one pod succeeded the rest finish on their own.
        None if succeeded > 0 => active.len() as i32,
        None => parallelism,
    } as usize;
    if active.len() > want {
        // The not-ready and newest go first.
        let mut by_cost: Vec<&&Pod> = active.iter().collect();
        by_cost.sort_by_key(|p| {
            (
                is_ready(p),
                std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
            )
        });
        plan.delete = by_cost
            .iter()
            .take(active.len() - want)
            .map(|p| name(p))
            .collect();
        return;
    }
    let missing = want - active.len();
    if missing == 0 {
        return;
    }
    // Failures since the last success hold back new pods.
    let last_success = pods
        .iter()
        .filter(|p| phase(p) == "Succeeded")
        .filter_map(finished_at)
        .max();
    let fails: Vec<Timestamp> = pods
        .iter()
        .filter(|p| outcome(job, p).0 == Outcome::Failed)
        .filter_map(finished_at)
        .filter(|t| last_success.is_none_or(|s| *t > s))
        .collect();
    if let Some(last) = fails.iter().max() {
        let wait = backoff(fails.len() as u32);
        let ready_at = last.as_millisecond() + wait.as_millis() as i64;
        let left = ready_at - now.as_millisecond();
        if left > 0 {
            plan.requeue = Some(Duration::from_millis(left as u64));
            return;
        }
    }
    if spec.completion_mode.as_deref() == Some("Indexed") {
        let running: BTreeSet<i32> = active.iter().filter_map(|p| index_of(p)).collect();
        let total = spec.completions.unwrap_or(0);
        plan.create = (0..total)
            .filter(|i| !completed.contains(i) && !running.contains(i))
            .take(missing)
            .map(Some)
            .collect();
    } else {
        plan.create = vec![None; missing];
    }
}

#[cfg(test)]
mod tests;
