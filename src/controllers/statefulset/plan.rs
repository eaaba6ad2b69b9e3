//! One sync of a StatefulSet, decided without side effects: from the set, its current and
//! update revisions, its pods and the namespace's claims, the steps to take now and the status
//! to report. The order of upstream's controller is kept:
//!
//! 1. every wanted ordinal, lowest first: a failed or succeeded pod is deleted (to be made
//!    again under its name), a missing one is created (claims first); with OrderedReady the
//!    sync stops at the first pod created, or not yet Running, Ready and Available;
//! 2. pods above the range are deleted, highest first (OrderedReady: one at a time, and only
//!    once all below are healthy);
//! 3. RollingUpdate: pods not at the update revision are deleted from the highest ordinal down
//!    to the partition, at most maxUnavailable unavailable at once; they come back at the
//!    update revision through step 1. OnDelete stops before this.

use super::claims;
use super::pods::{self, in_range, replicas, start_ordinal};
use super::revision::Revision;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    ScaleDown,
    Update,
    Failed,
    Succeeded,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create the missing claims, then the pod.
    Create {
        pod: Box<Pod>,
        claims: Vec<PersistentVolumeClaim>,
    },
    /// Create claims a pending pod lacks (one deleted under it).
    CreateClaims {
        pod: String,
        claims: Vec<PersistentVolumeClaim>,
    },
    Delete {
        pod: String,
        uid: String,
        why: Why,
    },
    /// Put the identity labels back on a pod.
    Relabel {
        pod: String,
        labels: BTreeMap<String, String>,
    },
    /// Set a claim's ownerReferences for the retention policy.
    ClaimOwners {
        claim: String,
        refs: Vec<OwnerReference>,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: StatefulSetStatus,
    /// Look again after this long (a pod becoming Available, a claim being deleted).
    pub requeue: Option<Duration>,
    /// Why no pod could be created (reported as a FailedCreate event).
    pub blocked: Option<String>,
}

pub struct Input<'a> {
    pub set: &'a StatefulSet,
    pub current: &'a Revision,
    pub update: &'a Revision,
    pub collision_count: i32,
    /// The pods the set controls.
    pub pods: &'a [Pod],
    /// Claims of the set's namespace by name.
    pub claims: &'a BTreeMap<String, PersistentVolumeClaim>,
    pub now: Timestamp,
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn name(p: &Pod) -> String {
    p.metadata.name.clone().unwrap_or_default()
}

/// maxUnavailable as a number of pods (a percentage rounds down), at least 1.
pub fn max_unavailable(v: Option<&IntOrString>, replicas: i32) -> i32 {
    let n = match v {
        None => 1,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(1, |p| (p * i64::from(replicas) / 100) as i32),
    };
    n.max(1)
}

/// Counts of the pods in `pods` as the status reports them.
fn count(status: &mut StatefulSetStatus, input: &Input, pods: &[&Pod]) {
    let min_ready = min_ready_seconds(input.set);
    for p in pods {
        status.replicas += 1;
        if pods::is_running_and_ready(p) {
            *status.ready_replicas.get_or_insert(0) += 1;
            if pods::is_available(p, min_ready, input.now) {
                *status.available_replicas.get_or_insert(0) += 1;
            }
        }
        if !pods::is_terminating(p) {
            let rev = pods::revision_of(p);
            if rev == Some(input.current.name.as_str()) {
                *status.current_replicas.get_or_insert(0) += 1;
            }
            if rev == Some(input.update.name.as_str()) {
                *status.updated_replicas.get_or_insert(0) += 1;
            }
        }
    }
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

fn parallel(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel")
}

fn strategy(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// The revision a new pod of `ordinal` is made at: below the partition the current one (a
/// partitioned rollout leaves them alone), otherwise the update revision.
fn revision_for<'a>(input: &Input<'a>, ordinal: i32) -> &'a Revision {
    let set = input.set;
    let start = start_ordinal(set);
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let below = match rolling {
        Some(r) => ordinal < start + r.partition.unwrap_or(0),
        None if strategy(set) == "RollingUpdate" => {
            let current = set
                .status
                .as_ref()
                .and_then(|s| s.current_replicas)
                .unwrap_or(0);
            ordinal < start + current
        }
        None => false,
    };
    if strategy(set) == "RollingUpdate" && below {
        input.current
    } else {
        input.update
    }
}

/// Claim owner fixes for an existing pod's claims.
fn claim_owner_steps(input: &Input, pod: &Pod, ordinal: i32, steps: &mut Vec<Step>) {
    for (_, c) in claims::for_ordinal(input.set, ordinal) {
        let cname = c.metadata.name.unwrap_or_default();
        if let Some(existing) = input.claims.get(&cname) {
            if let Some(refs) = claims::wanted_refs(existing, input.set, pod) {
                steps.push(Step::ClaimOwners { claim: cname, refs });
            }
        }
    }
}

/// Claims of `ordinal` that do not exist yet; `Err` when one is being deleted or still belongs
/// to an earlier pod of that name (the pod must wait for it to go).
fn missing_claims(
    input: &Input,
    ordinal: i32,
    for_new_pod: bool,
) -> Result<Vec<PersistentVolumeClaim>, String> {
    let pod_name = pods::pod_name(input.set, ordinal);
    let mut missing = vec![];
    for (_, c) in claims::for_ordinal(input.set, ordinal) {
        let cname = c.metadata.name.clone().unwrap_or_default();
        match input.claims.get(&cname) {
            None => missing.push(c),
            Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                return Err(format!("pvc {cname} is being deleted"));
            }
            Some(existing)
                if for_new_pod
                    && claims::policy(input.set).delete_when_scaled
                    && claims::has_stale_ref(existing, "Pod", &pod_name, None) =>
            {
                return Err(format!(
                    "pvc {cname} still belongs to an earlier pod {pod_name}"
                ));
            }
            Some(_) => {}
        }
    }
    Ok(missing)
}

pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let start = start_ordinal(set);
    let n = replicas(set);
    let mut slots: Vec<Option<&Pod>> = vec![None; n as usize];
    let mut condemned: Vec<(i32, &Pod)> = vec![];
    for p in input.pods {
        match pods::ordinal(set, p) {
            Some(o) if in_range(set, o) => slots[(o - start) as usize] = Some(p),
            Some(o) => condemned.push((o, p)),
            None => {}
        }
    }
    condemned.sort_by_key(|c| std::cmp::Reverse(c.0));

    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        current_revision: Some(input.current.name.clone()),
        update_revision: Some(input.update.name.clone()),
        collision_count: Some(input.collision_count),
        // Zeros are written out, so a merge patch of the status clears old counts.
        ready_replicas: Some(0),
        available_replicas: Some(0),
        current_replicas: Some(0),
        updated_replicas: Some(0),
        ..Default::default()
    };
    let existing: Vec<&Pod> = slots
        .iter()
        .flatten()
        .copied()
        .chain(condemned.iter().map(|c| c.1))
        .collect();
    count(&mut status, input, &existing);
    let min_ready = min_ready_seconds(set);
    let mut out = Plan::default();
    if min_ready > 0 && status.ready_replicas != status.available_replicas {
        out.requeue = Some(Duration::from_secs(min_ready as u64));
    }
    // The first unhealthy pod in the order OrderedReady handles them: wanted ordinals from
    // the lowest (a missing one counts), then condemned from the lowest.
    let first_unhealthy: Option<String> = slots
        .iter()
        .enumerate()
        .find(|(_, p)| !p.is_some_and(pods::is_healthy))
        .map(|(i, _)| pods::pod_name(set, start + i as i32))
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|(_, p)| !pods::is_healthy(p))
                .map(|(_, p)| name(p))
        });

    let finish = |mut out: Plan, mut status: StatefulSetStatus| {
        complete_rolling_update(set, &mut status);
        out.status = status;
        out
    };
    if set.metadata.deletion_timestamp.is_some() {
        return finish(out, status);
    }
    let monotonic = !parallel(set);

    // 1. Wanted ordinals.
    for (i, slot) in slots.iter().enumerate() {
        let ordinal = start + i as i32;
        match slot {
            Some(p) if pods::is_failed(p) || pods::is_succeeded(p) => {
                if !pods::is_terminating(p) {
                    let why = if pods::is_failed(p) {
                        Why::Failed
                    } else {
                        Why::Succeeded
                    };
                    out.steps.push(Step::Delete {
                        pod: name(p),
                        uid: uid(p),
                        why,
                    });
                }
                if monotonic {
                    return finish(out, status);
                }
            }
            None => {
                match missing_claims(input, ordinal, true) {
                    Ok(claims) => {
                        let pod = pods::new_pod(set, revision_for(input, ordinal), ordinal);
                        out.steps.push(Step::Create {
                            pod: Box::new(pod),
                            claims,
                        });
                    }
                    Err(e) => {
                        out.blocked = Some(e);
                        out.requeue = Some(Duration::from_secs(5));
                    }
                }
                if monotonic {
                    return finish(out, status);
                }
            }
            Some(p) => {
                if pods::is_pending(p) {
                    if let Ok(claims) = missing_claims(input, ordinal, false) {
                        if !claims.is_empty() {
                            out.steps.push(Step::CreateClaims {
                                pod: name(p),
                                claims,
                            });
                        }
                    }
                }
                if monotonic
                    && (pods::is_terminating(p)
                        || !pods::is_running_and_ready(p)
                        || !pods::is_available(p, min_ready, input.now))
                {
                    return finish(out, status);
                }
                if let Some(labels) = pods::identity_repair(set, p, ordinal) {
                    out.steps.push(Step::Relabel {
                        pod: name(p),
                        labels,
                    });
                }
                claim_owner_steps(input, p, ordinal, &mut out.steps);
            }
        }
    }

    // Claims of pods about to go are handed to them first, so a whenScaled: Delete claim goes
    // with its pod.
    for (o, p) in &condemned {
        claim_owner_steps(input, p, *o, &mut out.steps);
    }

    // 2. Scale down, highest ordinal first.
    for (_, p) in &condemned {
        if pods::is_terminating(p) {
            if monotonic {
                return finish(out, status);
            }
            continue;
        }
        let is_first = first_unhealthy.as_deref() == p.metadata.name.as_deref();
        if monotonic && !pods::is_available(p, min_ready, input.now) && !is_first {
            return finish(out, status);
        }
        out.steps.push(Step::Delete {
            pod: name(p),
            uid: uid(p),
            why: Why::ScaleDown,
        });
        if monotonic {
            return finish(out, status);
        }
    }

    // 3. Rolling update.
    if strategy(set) != "RollingUpdate" {
        return finish(out, status);
    }
    let rolling = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let partition = rolling.and_then(|r| r.partition).unwrap_or(0).max(0);
    let max = max_unavailable(rolling.and_then(|r| r.max_unavailable.as_ref()), n);
    let unavailable = slots
        .iter()
        .filter(|p| !p.is_some_and(pods::is_healthy))
        .count() as i32;
    let mut budget = max - unavailable;
    for slot in slots.iter().skip(partition as usize).rev() {
        if budget <= 0 {
            break;
        }
        let Some(p) = slot else { continue };
        if pods::revision_of(p) != Some(input.update.name.as_str()) && !pods::is_terminating(p) {
            out.steps.push(Step::Delete {
                pod: name(p),
                uid: uid(p),
                why: Why::Update,
            });
            if let Some(c) = status.current_replicas.as_mut() {
                *c -= 1;
            }
            budget -= 1;
        }
    }
    finish(out, status)
}

/// Once every wanted pod is Ready at the update revision, that revision is the current one.
fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let n = replicas(set);
    if strategy(set) == "RollingUpdate"
        && status.updated_replicas.unwrap_or(0) == n
        && status.ready_replicas.unwrap_or(0) == n
        && status.replicas == n
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::statefulset::revision::tests::set_with_image;
    use k8s_openapi::api::apps::v1::{RollingUpdateStatefulSetStrategy, StatefulSetUpdateStrategy};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn set(replicas: i32, policy: &str) -> StatefulSet {
        let mut s = set_with_image("a:1");
        let spec = s.spec.as_mut().unwrap();
        spec.replicas = Some(replicas);
        spec.pod_management_policy = Some(policy.into());
        spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        s
    }

    fn rev(name: &str) -> Revision {
        Revision {
            name: name.into(),
            template: set_with_image("a:1").spec.unwrap().template,
        }
    }

    fn pod(set: &StatefulSet, ordinal: i32, revision: &str, phase: &str, ready: bool) -> Pod {
        let mut p = pods::new_pod(set, &rev(revision), ordinal);
        p.metadata.uid = Some(format!("uid-{ordinal}"));
        p.status = Some(PodStatus {
            phase: Some(phase.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                last_transition_time: Some(Time(Timestamp::from_second(1000).unwrap())),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    fn run(set: &StatefulSet, pods: &[Pod]) -> Plan {
        run_with(set, pods, &BTreeMap::new())
    }

    fn run_with(
        set: &StatefulSet,
        pods: &[Pod],
        claims: &BTreeMap<String, PersistentVolumeClaim>,
    ) -> Plan {
        let (current, update) = (rev("web-old"), rev("web-new"));
        plan(&Input {
            set,
            current: &current,
            update: &update,
            collision_count: 0,
            pods,
            claims,
            now: Timestamp::from_second(2000).unwrap(),
        })
    }

    fn created(p: &Plan) -> Vec<String> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Create { pod, .. } => pod.metadata.name.clone(),
                _ => None,
            })
            .collect()
    }

    fn deleted(p: &Plan) -> Vec<(String, Why)> {
        p.steps
            .iter()
            .filter_map(|s| match s {
                Step::Delete { pod, why, .. } => Some((pod.clone(), *why)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time_with_its_claim() {
        let s = set(3, "OrderedReady");
        let p = run(&s, &[]);
        assert_eq!(created(&p), vec!["web-0"]);
        let Step::Create { claims, .. } = &p.steps[0] else {
            panic!()
        };
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-0"));
        // web-0 running but not ready: nothing more.
        let p = run(&s, &[pod(&s, 0, "web-new", "Running", false)]);
        assert!(p.steps.is_empty(), "{:?}", p.steps);
        let p = run(&s, &[pod(&s, 0, "web-new", "Running", true)]);
        assert_eq!(created(&p), vec!["web-1"]);
    }

    #[test]
    fn parallel_creates_all() {
        let s = set(3, "Parallel");
        assert_eq!(created(&run(&s, &[])), vec!["web-0", "web-1", "web-2"]);
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
        let s = set(1, "OrderedReady");
        let pods: Vec<Pod> = (0..3)
            .map(|i| pod(&s, i, "web-new", "Running", true))
            .collect();
        let p = run(&s, &pods);
        assert_eq!(deleted(&p), vec![("web-2".to_string(), Why::ScaleDown)]);
        let mut terminating = pods.clone();
        terminating[2].metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        assert!(deleted(&run(&s, &terminating)).is_empty());
        assert_eq!(run(&s, &pods).status.replicas, 3);
    }

    #[test]
    fn failed_pods_are_deleted_to_be_recreated() {
        let s = set(2, "OrderedReady");
        let pods = vec![pod(&s, 0, "web-new", "Failed", false)];
        assert_eq!(
            deleted(&run(&s, &pods)),
            vec![("web-0".to_string(), Why::Failed)]
        );
    }

    #[test]
    fn rolling_update_goes_down_from_the_top_and_stops_at_the_partition() {
        let mut s = set(3, "OrderedReady");
        let pods: Vec<Pod> = (0..3)
            .map(|i| pod(&s, i, "web-old", "Running", true))
            .collect();
        assert_eq!(
            deleted(&run(&s, &pods)),
            vec![("web-2".to_string(), Why::Update)]
        );
        let mut updated = pods.clone();
        updated[2] = pod(&s, 2, "web-new", "Running", true);
        assert_eq!(
            deleted(&run(&s, &updated)),
            vec![("web-1".to_string(), Why::Update)]
        );
        // Partition 2: ordinals 0 and 1 stay at the old revision.
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(2),
                max_unavailable: None,
            }),
        });
        assert!(deleted(&run(&s, &updated)).is_empty());
        // A pod below the partition that is deleted comes back at the current revision.
        let p = run(&s, &[updated[0].clone(), updated[2].clone()]);
        let Step::Create { pod, .. } = &p.steps[0] else {
            panic!()
        };
        assert_eq!(pods::revision_of(pod), Some("web-old"));
    }

    #[test]
    fn max_unavailable_allows_several_at_once() {
        let mut s = set(4, "Parallel");
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateStatefulSetStrategy {
                partition: Some(0),
                max_unavailable: Some(IntOrString::String("50%".into())),
            }),
        });
        let pods: Vec<Pod> = (0..4)
            .map(|i| pod(&s, i, "web-old", "Running", true))
            .collect();
        let names: Vec<String> = deleted(&run(&s, &pods)).into_iter().map(|d| d.0).collect();
        assert_eq!(names, vec!["web-3", "web-2"]);
        assert_eq!(max_unavailable(None, 4), 1);
        assert_eq!(
            max_unavailable(Some(&IntOrString::String("10%".into())), 4),
            1
        );
    }

    #[test]
    fn on_delete_never_deletes_for_update() {
        let mut s = set(2, "OrderedReady");
        s.spec.as_mut().unwrap().update_strategy = Some(StatefulSetUpdateStrategy {
            type_: Some("OnDelete".into()),
            rolling_update: None,
        });
        let pods: Vec<Pod> = (0..2)
            .map(|i| pod(&s, i, "web-old", "Running", true))
            .collect();
        assert!(run(&s, &pods).steps.is_empty());
        // A deleted pod comes back at the update revision.
        let p = run(&s, &pods[..1]);
        let Step::Create { pod, .. } = &p.steps[0] else {
            panic!()
        };
        assert_eq!(pods::revision_of(pod), Some("web-new"));
    }

    #[test]
    fn status_counts_and_completes_the_rollout() {
        let s = set(2, "OrderedReady");
        let pods: Vec<Pod> = (0..2)
            .map(|i| pod(&s, i, "web-new", "Running", true))
            .collect();
        let st = run(&s, &pods).status;
        assert_eq!(st.replicas, 2);
        assert_eq!(st.ready_replicas, Some(2));
        assert_eq!(st.available_replicas, Some(2));
        assert_eq!(st.updated_replicas, Some(2));
        // All at the update revision: it becomes the current one.
        assert_eq!(st.current_revision.as_deref(), Some("web-new"));
        assert_eq!(st.current_replicas, Some(2));
    }

    #[test]
    fn min_ready_seconds_holds_the_next_pod() {
        let mut s = set(2, "OrderedReady");
        s.spec.as_mut().unwrap().min_ready_seconds = Some(5000);
        let p = run(&s, &[pod(&s, 0, "web-new", "Running", true)]);
        assert!(created(&p).is_empty());
        assert_eq!(p.status.available_replicas, Some(0));
        assert!(p.requeue.is_some());
    }

    #[test]
    fn a_claim_being_deleted_blocks_the_pod() {
        let s = set(1, "OrderedReady");
        let mut c = PersistentVolumeClaim::default();
        c.metadata.name = Some("www-web-0".into());
        c.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let claims = BTreeMap::from([("www-web-0".to_string(), c)]);
        let p = run_with(&s, &[], &claims);
        assert!(created(&p).is_empty());
        assert_eq!(p.blocked.as_deref(), Some("pvc www-web-0 is being deleted"));
    }
}
