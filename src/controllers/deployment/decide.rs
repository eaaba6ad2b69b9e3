//! The Deployment decision, pure: from a Deployment, the ReplicaSets it owns and their pods as
//! last observed, the writes of one sync. It follows upstream's syncDeployment step by step
//! (paused, scaling event, Recreate or RollingUpdate, cleanup, status), working on copies of
//! the sets so each step sees what the previous one decided, as upstream's sees the objects
//! its API calls returned.

use super::arith::{
    self, desired_annotation, is_rolling, max_surge, max_unavailable, replicas, rs_available,
    rs_replicas, DESIRED_REPLICAS, MAX_REPLICAS,
};
use super::hash;
use super::status::{self as cond, condition, has_progress_deadline, PROGRESSING};
use crate::controllers::ownership::controller_ref;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// Upstream's cap on the revision-history annotation.
const MAX_HISTORY_CHARS: usize = 2000;

/// Deployment annotations that are not copied to its new ReplicaSet.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Create this set; the event once it exists.
    Create(ReplicaSet, Option<String>),
    /// Replace the set with this (spec and annotations changed); the event once done.
    Update(ReplicaSet, Option<String>),
    /// Delete an old set (revisionHistoryLimit), by name and uid.
    Delete(String, String),
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The Deployment's new revision annotation, when it changes.
    pub revision: Option<String>,
    /// The Deployment's new status, when it changes.
    pub status: Option<DeploymentStatus>,
    /// Sync again after this long (to notice a progress deadline passing).
    pub requeue_after: Option<Duration>,
}

/// One sync's working state.
struct Sync<'a> {
    d: &'a Deployment,
    now: Timestamp,
    /// The deployment's sets, oldest first, as this sync leaves them.
    rss: Vec<ReplicaSet>,
    /// Which of them has the deployment's template.
    new: Option<usize>,
    /// The new set's annotations were brought up to date.
    new_synced: bool,
    status: DeploymentStatus,
    revision: Option<String>,
    steps: Vec<Step>,
    requeue_after: Option<Duration>,
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// ReplicaSetsByCreationTimestamp: oldest first, then by name.
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

pub fn revision_of(rs: &ReplicaSet) -> Option<i64> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(REVISION)?
        .parse()
        .ok()
}

fn template(d: &Deployment) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

/// The sync of `d`, whose sets are `rss` (claimed already) and `pods` the pods those sets own.
pub fn decide(d: &Deployment, rss: &[ReplicaSet], pods: &[Pod], now: Timestamp) -> Plan {
    let mut s = Sync::new(d, rss, now);
    let selector = d.spec.as_ref().map(|s| &s.selector);
    let selects_all = selector.is_none_or(|sel| {
        sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    if selects_all {
        // Upstream refuses to act on a selector that takes every pod in the namespace; it only
        // records that it saw the spec.
        if s.status.observed_generation < d.metadata.generation {
            s.status.observed_generation = d.metadata.generation;
        }
        return s.finish();
    }
    if d.metadata.deletion_timestamp.is_some() {
        s.sync_revision(false);
        s.deployment_status();
        return s.finish();
    }
    s.paused_conditions();
    if paused(d) || s.is_scaling_event() {
        s.sync_scale();
        return s.finish();
    }
    if arith::strategy_type(d) == "Recreate" {
        s.recreate(pods);
    } else {
        s.rolling();
    }
    s.finish()
}

fn paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

impl<'a> Sync<'a> {
    fn new(d: &'a Deployment, rss: &[ReplicaSet], now: Timestamp) -> Self {
        let mut rss = rss.to_vec();
        rss.sort_by(by_creation);
        let t = template(d);
        let new = rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|rt| hash::equal_ignoring(rt, &t))
        });
        Sync {
            d,
            now,
            rss,
            new,
            new_synced: false,
            status: d.status.clone().unwrap_or_default(),
            revision: d
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION).cloned()),
            steps: Vec::new(),
            requeue_after: None,
        }
    }

    fn finish(self) -> Plan {
        let observed_revision = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION));
        Plan {
            revision: self.revision.filter(|r| Some(r) != observed_revision),
            status: Some(self.status).filter(|st| Some(st) != self.d.status.as_ref()),
            steps: self.steps,
            requeue_after: self.requeue_after,
        }
    }

    fn old(&self) -> Vec<usize> {
        (0..self.rss.len())
            .filter(|i| Some(*i) != self.new)
            .collect()
    }

    fn active(&self, idx: Vec<usize>) -> Vec<usize> {
        idx.into_iter()
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect()
    }

    fn all_refs(&self) -> Vec<&ReplicaSet> {
        self.rss.iter().collect()
    }

    fn new_rs(&self) -> Option<&ReplicaSet> {
        self.new.map(|i| &self.rss[i])
    }

    /// getAllReplicaSetsAndSyncRevision: brings the new set's annotations up to date, or
    /// creates it if `create`; the deployment takes the new set's revision.
    fn sync_revision(&mut self, create: bool) {
        let max_old = self
            .old()
            .iter()
            .filter_map(|i| revision_of(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        match self.new {
            Some(_) if self.new_synced => {}
            Some(i) => {
                self.new_synced = true;
                let mut rs = self.rss[i].clone();
                let annotated = new_rs_annotations(self.d, &mut rs, &new_revision, true);
                let min_ready = self
                    .d
                    .spec
                    .as_ref()
                    .and_then(|s| s.min_ready_seconds)
                    .unwrap_or(0);
                let spec = rs.spec.get_or_insert_default();
                if annotated || spec.min_ready_seconds.unwrap_or(0) != min_ready {
                    spec.min_ready_seconds = Some(min_ready);
                    self.rss[i] = rs.clone();
                    self.steps.push(Step::Update(rs, None));
                    return;
                }
                self.revision = rs
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION).cloned());
                if has_progress_deadline(self.d) && cond::get(&self.status, PROGRESSING).is_none() {
                    let msg = format!("Found new replica set {:?}", name(&rs));
                    cond::set(
                        &mut self.status,
                        condition(PROGRESSING, "True", cond::FOUND_NEW_RS, msg, self.now),
                    );
                }
            }
            None if create => {
                self.new_synced = true;
                let mut rs = self.build_new();
                let n = {
                    let mut all = self.all_refs();
                    all.push(&rs);
                    arith::new_rs_replicas(self.d, &all, &rs)
                };
                rs.spec.get_or_insert_default().replicas = Some(n);
                new_rs_annotations(self.d, &mut rs, &new_revision, false);
                let event =
                    (n > 0).then(|| format!("Scaled up replica set {} from 0 to {n}", name(&rs)));
                let msg = format!("Created new replica set {:?}", name(&rs));
                self.steps.push(Step::Create(rs.clone(), event));
                self.rss.push(rs);
                self.new = Some(self.rss.len() - 1);
                self.revision = Some(new_revision);
                if has_progress_deadline(self.d) {
                    cond::set(
                        &mut self.status,
                        condition(PROGRESSING, "True", cond::NEW_RS_CREATED, msg, self.now),
                    );
                }
            }
            None => {}
        }
    }

    /// The set for the deployment's template: `<deployment>-<hash>`, the hash as a label on
    /// it, its selector and its template.
    fn build_new(&self) -> ReplicaSet {
        let d = self.d;
        let mut t = template(d);
        let h = hash::compute(&t, self.status.collision_count);
        let mut labels = t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(hash::LABEL.into(), h.clone());
        t.metadata.get_or_insert_default().labels = Some(labels.clone());
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(hash::LABEL.into(), h.clone());
        let dname = d.metadata.name.clone().unwrap_or_default();
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{dname}-{h}")),
                namespace: d.metadata.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![controller_ref(
                    "apps/v1",
                    "Deployment",
                    &dname,
                    d.metadata.uid.as_deref().unwrap_or(""),
                )]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(t),
            }),
            status: None,
        }
    }

    /// scaleReplicaSet: the size and the desired/max-replicas annotations; true if the size
    /// changed.
    fn scale(&mut self, i: usize, size: i32) -> bool {
        let want = replicas(self.d);
        let max = want + max_surge(self.d);
        let rs = &self.rss[i];
        let old = rs_replicas(rs);
        let annotations_stale = desired_annotation(rs) != Some(want)
            || rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MAX_REPLICAS))
                != Some(&max.to_string());
        if old == size && !annotations_stale {
            return false;
        }
        let mut rs = rs.clone();
        rs.spec.get_or_insert_default().replicas = Some(size);
        set_replicas_annotations(&mut rs, want, max);
        let event = (old != size).then(|| {
            let way = if old > size { "down" } else { "up" };
            format!(
                "Scaled {way} replica set {} from {old} to {size}",
                name(&rs)
            )
        });
        self.rss[i] = rs.clone();
        self.steps.push(Step::Update(rs, event));
        old != size
    }

    /// scaleReplicaSetAndRecordEvent: nothing at all when the size is already right.
    fn scale_to(&mut self, i: usize, size: i32) -> bool {
        rs_replicas(&self.rss[i]) != size && self.scale(i, size)
    }

    /// checkPausedConditions: Progressing is Unknown while paused (unless it timed out).
    fn paused_conditions(&mut self) {
        if !has_progress_deadline(self.d) {
            return;
        }
        let reason = cond::get(&self.status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(cond::TIMED_OUT) {
            return;
        }
        let paused_recorded = reason.as_deref() == Some(cond::PAUSED);
        if paused(self.d) && !paused_recorded {
            cond::set(
                &mut self.status,
                condition(
                    PROGRESSING,
                    "Unknown",
                    cond::PAUSED,
                    "Deployment is paused".into(),
                    self.now,
                ),
            );
        } else if !paused(self.d) && paused_recorded {
            cond::set(
                &mut self.status,
                condition(
                    PROGRESSING,
                    "Unknown",
                    cond::RESUMED,
                    "Deployment is resumed".into(),
                    self.now,
                ),
            );
        }
    }

    /// isScalingEvent: an active set records another desired size than the spec's.
    fn is_scaling_event(&mut self) -> bool {
        self.sync_revision(false);
        let want = replicas(self.d);
        let all = self.active((0..self.rss.len()).collect());
        all.iter()
            .any(|i| desired_annotation(&self.rss[*i]).is_some_and(|n| n != want))
    }

    /// sync: scale only (a paused deployment, or one whose size changed), then the status.
    fn sync_scale(&mut self) {
        self.sync_revision(false);
        self.scale_sets();
        if paused(self.d) {
            self.cleanup();
        }
        self.deployment_status();
    }

    /// FindActiveOrLatest: the one set with replicas, or the newest if none has any.
    fn active_or_latest(&self) -> Option<usize> {
        let mut old = self.old();
        if self.new.is_none() && old.is_empty() {
            return None;
        }
        old.reverse();
        let mut all = old.clone();
        all.extend(self.new);
        let active = self.active(all);
        match active.len() {
            0 => self.new.or(old.first().copied()),
            1 => Some(active[0]),
            _ => None,
        }
    }

    fn saturated(&self) -> bool {
        let want = replicas(self.d);
        self.new_rs().is_some_and(|rs| {
            desired_annotation(rs) == Some(want)
                && rs_replicas(rs) == want
                && rs_available(rs) == want
        })
    }

    /// scale: a size change is spread over the active sets in proportion to their sizes,
    /// the rounding leftover going to the largest.
    fn scale_sets(&mut self) {
        let want = replicas(self.d);
        if let Some(i) = self.active_or_latest() {
            self.scale_to(i, want);
            return;
        }
        if self.saturated() {
            for i in self.active(self.old()) {
                self.scale_to(i, 0);
            }
            return;
        }
        if !is_rolling(self.d) {
            return;
        }
        let mut order = self.active((0..self.rss.len()).collect());
        let total: i32 = order.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        let allowed = if want > 0 {
            want + max_surge(self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        let rss = &self.rss;
        order.sort_by(|a, b| {
            let (ra, rb) = (&rss[*a], &rss[*b]);
            rs_replicas(rb).cmp(&rs_replicas(ra)).then_with(|| {
                if to_add > 0 {
                    by_creation(rb, ra)
                } else {
                    by_creation(ra, rb)
                }
            })
        });
        let mut sizes = BTreeMap::new();
        let mut added = 0;
        for i in &order {
            let rs = &self.rss[*i];
            let p = if to_add != 0 {
                arith::proportion(rs, self.d, to_add, added)
            } else {
                0
            };
            sizes.insert(*i, rs_replicas(rs) + p);
            added += p;
        }
        if let (Some(first), true) = (order.first(), to_add != 0) {
            let s = sizes.entry(*first).or_default();
            *s = (*s + to_add - added).max(0);
        }
        for i in order {
            self.scale(i, sizes[&i]);
        }
    }

    /// rolloutRolling: grow the new set within maxSurge, shrink the old ones within
    /// maxUnavailable (the unhealthy first), clean up when complete.
    fn rolling(&mut self) {
        self.sync_revision(true);
        if self.reconcile_new() || self.reconcile_old() {
            self.rollout_status();
            return;
        }
        if cond::complete(self.d, &self.status) {
            self.cleanup();
        }
        self.rollout_status();
    }

    fn reconcile_new(&mut self) -> bool {
        let Some(i) = self.new else { return false };
        let want = replicas(self.d);
        let cur = rs_replicas(&self.rss[i]);
        if cur == want {
            return false;
        }
        if cur > want {
            return self.scale_to(i, want);
        }
        let n = arith::new_rs_replicas(self.d, &self.all_refs(), &self.rss[i]);
        self.scale_to(i, n)
    }

    fn reconcile_old(&mut self) -> bool {
        let old = self.active(self.old());
        if old.iter().map(|i| rs_replicas(&self.rss[*i])).sum::<i32>() == 0 {
            return false;
        }
        let all: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = replicas(self.d) - max_unavailable(self.d);
        let new_unavailable = self
            .new_rs()
            .map(|rs| rs_replicas(rs) - rs_available(rs))
            .unwrap_or(0);
        let max_down = all - min_available - new_unavailable;
        if max_down <= 0 {
            return false;
        }
        // cleanupUnhealthyReplicas: old pods that are not available cost nothing to remove.
        let mut cleaned = 0;
        for i in &old {
            if cleaned >= max_down {
                break;
            }
            let rs = &self.rss[*i];
            let (n, avail) = (rs_replicas(rs), rs_available(rs));
            if n == 0 || n == avail {
                continue;
            }
            let down = (max_down - cleaned).min(n - avail);
            self.scale_to(*i, n - down);
            cleaned += down;
        }
        // scaleDownOldReplicaSetsForRollingUpdate: then available ones, while enough stay.
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for i in &old {
                if scaled >= budget {
                    break;
                }
                let n = rs_replicas(&self.rss[*i]);
                if n == 0 {
                    continue;
                }
                let down = n.min(budget - scaled);
                self.scale_to(*i, n - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    /// rolloutRecreate: all old sets to zero, wait until none of their pods is left
    /// running, then the new set at full size.
    fn recreate(&mut self, pods: &[Pod]) {
        self.sync_revision(false);
        let mut scaled_down = false;
        for i in self.active(self.old()) {
            scaled_down |= self.scale_to(i, 0);
        }
        if scaled_down || self.old_pods_running(pods) {
            self.rollout_status();
            return;
        }
        if self.new.is_none() {
            self.sync_revision(true);
        }
        if let Some(i) = self.new {
            self.scale_to(i, replicas(self.d));
        }
        if cond::complete(self.d, &self.status) {
            self.cleanup();
        }
        self.rollout_status();
    }

    /// oldPodsRunning: an old set still reports pods, or one of its pods is not finished
    /// (terminating pods count: their containers may still run).
    fn old_pods_running(&self, pods: &[Pod]) -> bool {
        let old = self.old();
        if old
            .iter()
            .map(|i| {
                self.rss[*i]
                    .status
                    .as_ref()
                    .map(|s| s.replicas)
                    .unwrap_or(0)
            })
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let new_uid = self.new_rs().and_then(|rs| rs.metadata.uid.as_deref());
        pods.iter()
            .filter(|p| {
                crate::controllers::ownership::controller_of(&p.metadata)
                    .is_none_or(|r| Some(r.uid.as_str()) != new_uid)
            })
            .any(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Failed") | Some("Succeeded"))
            })
    }

    /// cleanupDeployment: old sets beyond revisionHistoryLimit go, lowest revision first,
    /// those that still have pods or an unobserved spec excepted.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        if limit == i32::MAX {
            return;
        }
        let mut cleanable: Vec<&ReplicaSet> = self
            .old()
            .into_iter()
            .map(|i| &self.rss[i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by(|a, b| {
            revision_of(a)
                .unwrap_or(0)
                .cmp(&revision_of(b).unwrap_or(0))
                .then_with(|| by_creation(a, b))
        });
        let mut deletes = Vec::new();
        for rs in cleanable.into_iter().take(excess as usize) {
            let st = rs.status.as_ref();
            let observed = st.and_then(|s| s.observed_generation).unwrap_or(0);
            if st.map(|s| s.replicas).unwrap_or(0) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            deletes.push(Step::Delete(
                name(rs).to_string(),
                rs.metadata.uid.clone().unwrap_or_default(),
            ));
        }
        self.steps.extend(deletes);
    }

    fn calculate(&self) -> DeploymentStatus {
        cond::calculate(
            self.d,
            &self.status,
            &self.all_refs(),
            self.new_rs(),
            self.now,
        )
    }

    /// syncDeploymentStatus: counts and Available only.
    fn deployment_status(&mut self) {
        self.status = self.calculate();
    }

    /// syncRolloutStatus: counts, Available, and the Progressing condition's next state.
    fn rollout_status(&mut self) {
        let d = self.d;
        let mut st = self.calculate();
        if !has_progress_deadline(d) {
            cond::remove(&mut st, PROGRESSING);
        }
        let current = cond::get(&self.status, PROGRESSING).cloned();
        let done = st.replicas == st.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(cond::NEW_RS_AVAILABLE);
        if has_progress_deadline(d) && !done {
            let subject = match self.new_rs() {
                Some(rs) => format!("ReplicaSet {:?}", name(rs)),
                None => format!("Deployment {:?}", d.metadata.name.as_deref().unwrap_or("")),
            };
            if cond::complete(d, &st) {
                let msg = format!("{subject} has successfully progressed.");
                cond::set(
                    &mut st,
                    condition(PROGRESSING, "True", cond::NEW_RS_AVAILABLE, msg, self.now),
                );
            } else if cond::progressing(&self.status, &st) {
                let msg = format!("{subject} is progressing.");
                let mut c = condition(PROGRESSING, "True", cond::RS_UPDATED, msg, self.now);
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    cond::remove(&mut st, PROGRESSING);
                }
                cond::set(&mut st, c);
            } else if cond::timed_out(d, &st, self.now) {
                let msg = format!("{subject} has timed out progressing.");
                cond::set(
                    &mut st,
                    condition(PROGRESSING, "False", cond::TIMED_OUT, msg, self.now),
                );
            }
        }
        match self.replica_failure() {
            Some(c) => cond::set(&mut st, c),
            None => cond::remove(&mut st, cond::REPLICA_FAILURE),
        }
        if st == self.status {
            self.requeue_after = self.stuck_requeue(&st);
        }
        self.status = st;
    }

    /// getReplicaFailures: the new set's ReplicaFailure condition, else an old set's.
    fn replica_failure(&self) -> Option<k8s_openapi::api::apps::v1::DeploymentCondition> {
        let of = |rs: &ReplicaSet| {
            rs.status
                .as_ref()?
                .conditions
                .as_ref()?
                .iter()
                .find(|c| c.type_ == cond::REPLICA_FAILURE)
                .cloned()
        };
        let c = self
            .new_rs()
            .and_then(of)
            .or_else(|| self.rss.iter().find_map(of))?;
        Some(k8s_openapi::api::apps::v1::DeploymentCondition {
            type_: c.type_,
            status: c.status,
            reason: c.reason,
            message: c.message,
            last_update_time: c.last_transition_time.clone(),
            last_transition_time: c.last_transition_time,
        })
    }

    /// requeueStuckDeployment: with no change to write, when to look again for the deadline.
    fn stuck_requeue(&self, st: &DeploymentStatus) -> Option<Duration> {
        let cur = cond::get(&self.status, PROGRESSING)?;
        if !has_progress_deadline(self.d)
            || cond::complete(self.d, st)
            || cur.reason.as_deref() == Some(cond::TIMED_OUT)
        {
            return None;
        }
        let due = cur.last_update_time.as_ref()?.0 + cond::deadline(self.d);
        let left = self.now.duration_until(due);
        let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
        Some(if left < Duration::from_secs(1) {
            Duration::from_secs(1)
        } else {
            left + Duration::from_secs(1)
        })
    }
}

fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) {
    let a = rs.metadata.annotations.get_or_insert_default();
    a.insert(DESIRED_REPLICAS.into(), desired.to_string());
    a.insert(MAX_REPLICAS.into(), max.to_string());
}

/// SetNewReplicaSetAnnotations: the deployment's own annotations, the revision (a lower one
/// raised, the old kept in revision-history: that set is rolled back to), and for a set about
/// to be created its replica annotations. True if anything changed.
fn new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_default();
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned();
    let old_n = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    let new_n: i64 = new_revision.parse().unwrap_or(0);
    if old_n < new_n {
        a.insert(REVISION.into(), new_revision.into());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revs: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revs.push(&old);
            while revs.join(",").len() > MAX_HISTORY_CHARS && revs.len() > 1 {
                revs.remove(0);
            }
            a.insert(REVISION_HISTORY.into(), revs.join(","));
        }
    }
    if !exists {
        let want = replicas(d);
        set_replicas_annotations(rs, want, want + max_surge(d));
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests;
