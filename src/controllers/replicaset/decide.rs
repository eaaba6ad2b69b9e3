//! The ReplicaSet decision, pure: from a set and the pods in its namespace as last observed,
//! which pods to adopt and release, how many to create, which to delete, and the status to
//! write. `syncReplicaSet` upstream, without the I/O.

use super::rank;
use crate::controllers::ownership::{claim, Claim};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Upstream's cap on creations or deletions in one sync, so one set cannot monopolize the
/// API while the others wait.
pub const BURST_REPLICAS: usize = 500;

/// What the controller reads from a ReplicaSet or a ReplicationController.
#[derive(Debug, Clone, Default)]
pub struct Set {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub deleting: bool,
    pub replicas: i32,
    pub min_ready_seconds: i32,
    pub selector: Option<LabelSelector>,
    pub template: Option<PodTemplateSpec>,
    pub status: Status,
    /// The uid of the set's own controller (a Deployment), whose other sets' pods count when
    /// ranking which pods to delete.
    pub owner_uid: Option<String>,
}

/// The status fields both kinds share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    /// The ReplicaFailure condition: (reason, message, lastTransitionTime).
    pub failure: Option<(String, String, String)>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub adopt: Vec<String>,
    pub release: Vec<String>,
    /// Pods to create from the template.
    pub create: usize,
    /// Pods to delete, by name, in deletion order.
    pub delete: Vec<String>,
    /// The status from the pods this sync claims (the writes above show in the next sync).
    pub status: Status,
    /// Sync again then: ready pods become available after minReadySeconds.
    pub recheck_after: Option<Duration>,
}

/// Not finished and not being deleted: FilterActivePods.
pub fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed")) && p.metadata.deletion_timestamp.is_none()
}

/// When the Ready condition last became True, if it is True.
pub fn ready_since(p: &Pod) -> Option<Option<Timestamp>> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| c.last_transition_time.as_ref().map(|t| t.0))
}

pub fn is_ready(p: &Pod) -> bool {
    ready_since(p).is_some()
}

/// Ready for at least minReadySeconds (IsPodAvailable).
pub fn is_available(p: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(p) {
        None => false,
        Some(_) if min_ready_seconds == 0 => true,
        Some(None) => false,
        Some(Some(t)) => t + SignedDuration::from_secs(min_ready_seconds.into()) < now,
    }
}

/// The sync. `pods` are the pods of the set's namespace, `related` the active pods of the
/// sets sharing its controller (for the deletion ranking), `settled` whether the writes of
/// the previous sync have all been observed (see `expectations`): until then the pods seen
/// may be stale, and creating or deleting on them could do the same work twice.
pub fn decide(set: &Set, pods: &[Pod], related: &[Pod], settled: bool, now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let mut mine: Vec<&Pod> = Vec::new();
    for p in pods.iter().filter(|p| is_active(p)) {
        let name = p.metadata.name.clone().unwrap_or_default();
        match claim(&set.uid, set.deleting, set.selector.as_ref(), &p.metadata) {
            Claim::Keep => mine.push(p),
            Claim::Adopt => {
                plan.adopt.push(name);
                mine.push(p);
            }
            Claim::Release => plan.release.push(name),
            Claim::Ignore => {}
        }
    }

    if settled && !set.deleting {
        let want = set.replicas.max(0) as usize;
        if mine.len() < want {
            plan.create = (want - mine.len()).min(BURST_REPLICAS);
        } else if mine.len() > want {
            let surplus = (mine.len() - want).min(BURST_REPLICAS);
            let mut order = mine.clone();
            if surplus < order.len() {
                rank::sort_for_deletion(&mut order, related, now);
            }
            plan.delete = order[..surplus]
                .iter()
                .map(|p| p.metadata.name.clone().unwrap_or_default())
                .collect();
        }
    }

    plan.status = status(set, &mine, now);
    if set.min_ready_seconds > 0
        && plan.status.ready_replicas == set.replicas
        && plan.status.available_replicas != set.replicas
    {
        plan.recheck_after = Some(Duration::from_secs(set.min_ready_seconds as u64));
    }
    plan
}

/// calculateStatus: counted over the claimed active pods. The ReplicaFailure condition is
/// left as observed; `failure` decides it once the writes are done.
fn status(set: &Set, mine: &[&Pod], now: Timestamp) -> Status {
    let template_labels = set
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref()?.labels.as_ref());
    let fully_labeled = mine
        .iter()
        .filter(|p| {
            let have = p.metadata.labels.as_ref();
            template_labels
                .into_iter()
                .flatten()
                .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
        })
        .count();
    let ready = mine.iter().filter(|p| is_ready(p)).count();
    let available = mine
        .iter()
        .filter(|p| is_available(p, set.min_ready_seconds, now))
        .count();
    Status {
        replicas: mine.len() as i32,
        fully_labeled_replicas: fully_labeled as i32,
        ready_replicas: ready as i32,
        available_replicas: available as i32,
        observed_generation: set.generation,
        failure: set.status.failure.clone(),
    }
}

/// The ReplicaFailure condition after a sync: set by a failed create (FailedCreate) or delete
/// (FailedDelete), kept as first set while failures go on, cleared by a sync without one.
pub fn failure(
    observed: &Option<(String, String, String)>,
    error: Option<(&str, String)>,
    now: Timestamp,
) -> Option<(String, String, String)> {
    match (error, observed) {
        (Some(_), Some(kept)) => Some(kept.clone()),
        (Some((reason, message)), None) => {
            let whole_seconds = Timestamp::from_second(now.as_second()).unwrap_or(now);
            Some((reason.into(), message, whole_seconds.to_string()))
        }
        (None, _) => None,
    }
}

/// SlowStartBatch's sizes: 1, 2, 4, ... until `n` are made, so a template that cannot be
/// created fails once rather than `n` times.
pub fn slow_start_batches(n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut left, mut size) = (n, 1);
    while left > 0 {
        let b = size.min(left);
        out.push(b);
        left -= b;
        size *= 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::ownership::controller_ref;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use std::collections::BTreeMap;

    fn app() -> BTreeMap<String, String> {
        [("app".to_string(), "web".to_string())].into()
    }

    fn set(replicas: i32) -> Set {
        Set {
            namespace: "default".into(),
            name: "web".into(),
            uid: "rs1".into(),
            generation: 2,
            replicas,
            selector: crate::controllers::ownership::equality_selector(Some(&app())),
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(app()),
                    ..Default::default()
                }),
                spec: None,
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, owned: bool, ready_at: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(app()),
                owner_references: owned
                    .then(|| vec![controller_ref("apps/v1", "ReplicaSet", "web", "rs1")]),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: ready_at.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(t.parse().unwrap())),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn creates_the_missing_and_adopts_orphans() {
        let pods = [pod("a", true, None), pod("orphan", false, None)];
        let plan = decide(&set(3), &pods, &[], true, now());
        assert_eq!(plan.adopt, ["orphan"]);
        assert_eq!(plan.create, 1);
        assert_eq!(plan.status.replicas, 2);
        assert_eq!(plan.status.observed_generation, 2);
    }

    #[test]
    fn unsettled_expectations_hold_creations_back() {
        let plan = decide(&set(3), &[], &[], false, now());
        assert_eq!(plan.create, 0);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn deletes_not_ready_before_ready() {
        let pods = [
            pod("ready", true, Some("2026-01-01T00:00:00Z")),
            pod("unready", true, None),
        ];
        let plan = decide(&set(1), &pods, &[], true, now());
        assert_eq!(plan.delete, ["unready"]);
    }

    #[test]
    fn releases_pods_no_longer_selected() {
        let mut p = pod("a", true, None);
        p.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
        let plan = decide(&set(0), &[p], &[], true, now());
        assert_eq!(plan.release, ["a"]);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let mut s = set(1);
        s.min_ready_seconds = 30;
        let pods = [pod("a", true, Some("2026-01-01T00:09:50Z"))];
        let plan = decide(&s, &pods, &[], true, now());
        assert_eq!(
            (plan.status.ready_replicas, plan.status.available_replicas),
            (1, 0)
        );
        assert_eq!(plan.recheck_after, Some(Duration::from_secs(30)));
        let pods = [pod("a", true, Some("2026-01-01T00:09:00Z"))];
        let plan = decide(&s, &pods, &[], true, now());
        assert_eq!(plan.status.available_replicas, 1);
    }

    #[test]
    fn batches_grow_by_doubling() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
    }
}
