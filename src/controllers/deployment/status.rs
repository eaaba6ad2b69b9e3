//! A Deployment's status as upstream computes it: counts summed over its ReplicaSets, the
//! Available condition from maxUnavailable, and the Progressing condition's life
//! (NewReplicaSetCreated / FoundNewReplicaSet / ReplicaSetUpdated while it moves,
//! NewReplicaSetAvailable when done, ProgressDeadlineExceeded when it stalls for longer than
//! progressDeadlineSeconds, DeploymentPaused / DeploymentResumed).

use super::arith::{self, max_unavailable, replicas};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const RS_CREATE_ERROR: &str = "ReplicaSetCreateError";

pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get<'a>(st: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    st.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn remove(st: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = st.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            st.conditions = None;
        }
    }
}

/// SetDeploymentCondition: the same status and reason is no change at all; the same status
/// with another reason keeps the transition time; the condition moves to the end.
pub fn set(st: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = get(st, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove(st, &c.type_);
    st.conditions.get_or_insert_default().push(c);
}

pub fn has_progress_deadline(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .is_some_and(|p| p != i32::MAX)
}

fn nz(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn sum(rss: &[&ReplicaSet], f: impl Fn(&ReplicaSet) -> Option<i32>) -> i32 {
    rss.iter().map(|rs| f(rs).unwrap_or(0)).sum()
}

/// calculateStatus: `all` are the deployment's sets (the new one included), `current` the
/// status as this sync has it so far (its conditions are kept).
pub fn calculate(
    d: &Deployment,
    current: &DeploymentStatus,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let status_of = |f: fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>| {
        move |rs: &ReplicaSet| rs.status.as_ref().and_then(f)
    };
    let available = sum(all, status_of(|s| s.available_replicas));
    let total = sum(all, |rs| Some(arith::rs_replicas(rs)));
    let mut st = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nz(sum(all, status_of(|s| Some(s.replicas)))),
        updated_replicas: nz(sum(
            &new.into_iter().collect::<Vec<_>>(),
            status_of(|s| Some(s.replicas)),
        )),
        ready_replicas: nz(sum(all, status_of(|s| s.ready_replicas))),
        available_replicas: nz(available),
        unavailable_replicas: nz((total - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set(
            &mut st,
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set(
            &mut st,
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    st
}

/// DeploymentComplete: every replica updated and available, and the spec observed.
pub fn complete(d: &Deployment, st: &DeploymentStatus) -> bool {
    let n = replicas(d);
    st.updated_replicas.unwrap_or(0) == n
        && st.replicas.unwrap_or(0) == n
        && st.available_replicas.unwrap_or(0) == n
        && st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// DeploymentProgressing: more updated, fewer old, more ready or more available than the
/// status last written.
pub fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let g = |v: Option<i32>| v.unwrap_or(0);
    let old_old = g(old.replicas) - g(old.updated_replicas);
    let new_old = g(new.replicas) - g(new.updated_replicas);
    g(new.updated_replicas) > g(old.updated_replicas)
        || new_old < old_old
        || g(new.ready_replicas) > g(old.ready_replicas)
        || g(new.available_replicas) > g(old.available_replicas)
}

/// DeploymentTimedOut: no progress recorded for progressDeadlineSeconds.
pub fn timed_out(d: &Deployment, st: &DeploymentStatus, now: Timestamp) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    let Some(c) = get(st, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + deadline(d) < now),
    }
}

pub fn deadline(d: &Deployment) -> SignedDuration {
    let secs = d
        .spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .unwrap_or(600);
    SignedDuration::from_secs(secs.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn same_reason_is_no_change_and_same_status_keeps_transition_time() {
        let mut st = DeploymentStatus::default();
        set(
            &mut st,
            condition(
                PROGRESSING,
                "True",
                NEW_RS_CREATED,
                "a".into(),
                t("2026-01-01T00:00:00Z"),
            ),
        );
        set(
            &mut st,
            condition(
                PROGRESSING,
                "True",
                NEW_RS_CREATED,
                "b".into(),
                t("2026-01-01T00:01:00Z"),
            ),
        );
        assert_eq!(get(&st, PROGRESSING).unwrap().message.as_deref(), Some("a"));
        set(
            &mut st,
            condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                "c".into(),
                t("2026-01-01T00:02:00Z"),
            ),
        );
        let c = get(&st, PROGRESSING).unwrap();
        assert_eq!(
            c.last_transition_time,
            Some(Time(t("2026-01-01T00:00:00Z")))
        );
        assert_eq!(c.last_update_time, Some(Time(t("2026-01-01T00:02:00Z"))));
    }

    #[test]
    fn deadline_counts_from_the_last_progress() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "spec": {"progressDeadlineSeconds": 60, "selector": {}, "template": {}}}))
        .unwrap();
        let mut st = DeploymentStatus::default();
        set(
            &mut st,
            condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                "m".into(),
                t("2026-01-01T00:00:00Z"),
            ),
        );
        assert!(!timed_out(&d, &st, t("2026-01-01T00:00:59Z")));
        assert!(timed_out(&d, &st, t("2026-01-01T00:01:01Z")));
        set(
            &mut st,
            condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                "m".into(),
                t("2026-01-01T00:00:00Z"),
            ),
        );
        assert!(!timed_out(&d, &st, t("2026-01-01T09:00:00Z")));
    }
}
