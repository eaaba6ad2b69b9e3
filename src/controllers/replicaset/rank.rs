//! Which pods go first when a set has too many: upstream's ActivePodsWithRanks order (with
//! LogarithmicScaleDown and PodDeletionCost, both on by default). Earlier in the order is
//! cheaper to lose: not yet placed, not yet running, not ready, marked cheap, doubled up on a
//! node, ready or alive for less long (in powers of two, so near-equal ages tie), restarted more.

use super::decide::{is_active, ready_since};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use std::cmp::Reverse;
use std::collections::HashMap;

const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Sorts `pods` so the first ones are those to delete. `related` are the active pods of the
/// sets sharing this set's controller: a pod on a node crowded with them ranks earlier.
pub fn sort_for_deletion(pods: &mut [&Pod], related: &[Pod], now: Timestamp) {
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node_of(p)).or_default() += 1;
    }
    let rank = |p: &Pod| on_node.get(node_of(p)).copied().unwrap_or(0);
    pods.sort_by_cached_key(|p| key(p, rank(p), now));
}

fn node_of(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELETION_COST))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// floor(log2(age in ns)), -1 for no age: pods whose ages share a power of two tie.
fn log_age(t: Timestamp, now: Timestamp) -> i64 {
    let ns = now.as_nanosecond() - t.as_nanosecond();
    if ns > 0 {
        (ns as f64).log2() as i64
    } else {
        -1
    }
}

/// Younger first, a missing time first of all, by the age's power of two. Upstream breaks a
/// tie within one power of two by uid at once, and lets exactly equal times fall through to
/// the next criterion; that comparison is not transitive, and a sort may not be given one. As
/// a key the uid comes last, after every criterion.
fn age_bucket(t: Option<Timestamp>, now: Timestamp) -> i64 {
    t.map_or(-2, |t| log_age(t, now))
}

type Key = (
    bool,
    u8,
    bool,
    i32,
    Reverse<usize>,
    i64,
    Reverse<i32>,
    i64,
    String,
);

/// The order as one key per pod, earlier sorting first.
fn key(p: &Pod, rank: usize, now: Timestamp) -> Key {
    let ready = ready_since(p);
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    (
        !node_of(p).is_empty(),
        phase_ordinal(p),
        ready.is_some(),
        deletion_cost(p),
        Reverse(rank),
        ready.map_or(0, |since| age_bucket(since, now)),
        Reverse(max_restarts(p)),
        age_bucket(created, now),
        p.metadata.uid.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(name: &str, node: &str, phase: &str, ready_at: Option<&str>, created: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.into()),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(ts(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn order(pods: &[Pod], related: &[Pod]) -> Vec<String> {
        let mut refs: Vec<&Pod> = pods.iter().collect();
        sort_for_deletion(&mut refs, related, ts("2026-01-01T12:00:00Z"));
        refs.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    const OLD: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn unplaced_then_pending_then_not_ready_then_ready() {
        let pods = [
            pod("ready", "n1", "Running", Some(OLD), OLD),
            pod("unready", "n1", "Running", None, OLD),
            pod("pending", "n1", "Pending", None, OLD),
            pod("unplaced", "", "Pending", None, OLD),
        ];
        assert_eq!(
            order(&pods, &[]),
            ["unplaced", "pending", "unready", "ready"]
        );
    }

    #[test]
    fn newer_ready_pods_go_before_older_ones_but_close_ages_tie() {
        let pods = [
            pod("old", "n1", "Running", Some("2026-01-01T01:00:00Z"), OLD),
            pod("new", "n1", "Running", Some("2026-01-01T11:59:00Z"), OLD),
        ];
        assert_eq!(order(&pods, &[]), ["new", "old"]);
        // 11 h 00 m and 11 h 30 m ready: both within 2^45..2^46 ns, so the uid decides.
        let pods = [
            pod("b", "n1", "Running", Some("2026-01-01T00:30:00Z"), OLD),
            pod("a", "n1", "Running", Some("2026-01-01T01:00:00Z"), OLD),
        ];
        assert_eq!(order(&pods, &[]), ["a", "b"]);
    }

    #[test]
    fn deletion_cost_and_doubled_up_nodes() {
        let mut cheap = pod("cheap", "n1", "Running", Some(OLD), OLD);
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
        let crowded = pod("crowded", "n2", "Running", Some(OLD), OLD);
        let alone = pod("alone", "n1", "Running", Some(OLD), OLD);
        let related = [
            pod("x", "n2", "Running", Some(OLD), OLD),
            pod("y", "n2", "Running", Some(OLD), OLD),
        ];
        assert_eq!(
            order(&[alone, crowded, cheap], &related),
            ["cheap", "crowded", "alone"]
        );
    }

    #[test]
    fn restarts_then_age() {
        let mut restarted = pod("restarted", "n1", "Running", Some(OLD), OLD);
        restarted.status.as_mut().unwrap().container_statuses = Some(vec![ContainerStatus {
            restart_count: 3,
            ..Default::default()
        }]);
        let young = pod("young", "n1", "Running", Some(OLD), "2026-01-01T11:59:59Z");
        let old = pod("old", "n1", "Running", Some(OLD), OLD);
        assert_eq!(
            order(&[old, young, restarted], &[]),
            ["restarted", "young", "old"]
        );
    }
}
