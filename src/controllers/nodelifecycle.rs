//! Node lifecycle: notices a node whose agent went quiet and makes the cluster act on it, as
//! kube-controller-manager's node lifecycle controller does.
//!
//! - Health. Every agent renews its Lease in `kube-node-lease` and posts its Ready condition.
//!   When neither changes for `--node-monitor-grace-period` (as seen by this controller's own
//!   clock, so clock skew between hosts cannot fake a heartbeat), the node's conditions become
//!   Unknown ("Kubelet stopped posting node status.") and its pods stop being Ready, so Services
//!   stop sending them traffic.
//! - Taints. An unreachable node gets `node.kubernetes.io/unreachable` (NoSchedule and
//!   NoExecute), a node whose agent reports NotReady gets `node.kubernetes.io/not-ready`; both
//!   go when it is Ready again. The scheduler then avoids it.
//! - Eviction (upstream's taint eviction controller). A pod on a node with a NoExecute taint
//!   it does not tolerate is deleted at once; one that tolerates it for `tolerationSeconds`
//!   (300 s by default, from the DefaultTolerationSeconds admission plugin) is deleted when
//!   that runs out, counted from the taint's `timeAdded`. The pod first gets the
//!   DisruptionTarget condition and an event says why. Its ReplicaSet, StatefulSet or Job then
//!   makes a replacement, which the scheduler places on a live node.
//! - Pod garbage: a pod bound to a node that has not existed for 40 s is deleted for good
//!   (nothing could ever confirm its end), as upstream's pod GC does.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The conditions an agent posts, all of which become Unknown when it goes quiet.
const CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a node may be silent before it is Unknown (upstream: 50 s since 1.32).
    pub grace: Duration,
    /// How often each node is looked at (upstream: 5 s).
    pub period: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

/// What the controller concludes about one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The agent itself says NotReady.
    NotReady,
    /// The agent has been silent for longer than the grace period.
    Unknown,
    /// A new node that has not posted a Ready condition yet and is still within its grace.
    Pending,
}

/// Health from the node's Ready status and how long it has been silent.
pub fn assess(ready: Option<&str>, silent_for: Duration, grace: Duration) -> Health {
    if silent_for > grace {
        return Health::Unknown;
    }
    match ready {
        Some("True") => Health::Ready,
        Some("False") => Health::NotReady,
        // Unknown was written by us; the agent has spoken since, so wait for its own verdict.
        Some(_) => Health::Unknown,
        None => Health::Pending,
    }
}

/// The node's taints with the lifecycle taints made to match `health`; None if nothing changes.
/// Taints that stay keep their timeAdded, so eviction deadlines do not move.
pub fn lifecycle_taints(current: &[Taint], health: Health, now: Timestamp) -> Option<Vec<Taint>> {
    let wanted: &[&str] = match health {
        Health::Ready => &[],
        Health::NotReady => &[NOT_READY],
        Health::Unknown => &[UNREACHABLE],
        Health::Pending => return None,
    };
    let ours = |t: &Taint| t.key == UNREACHABLE || t.key == NOT_READY;
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !ours(t) || wanted.contains(&t.key.as_str()))
        .cloned()
        .collect();
    for key in wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == *key && t.effect == effect) {
                next.push(Taint {
                    key: key.to_string(),
                    effect: effect.to_string(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
    }
    (next != current).then_some(next)
}

/// The NoSchedule taints upstream's TaintNodesByCondition keeps in step with the pressure
/// conditions the agent posts.
pub const CONDITION_TAINTS: &[(&str, &str)] = &[
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
];

/// `current` with the condition taints made to match `conditions`; None if nothing changes.
pub fn condition_taints(current: &[Taint], conditions: &[NodeCondition]) -> Option<Vec<Taint>> {
    let holds = |t: &str| {
        conditions
            .iter()
            .any(|c| c.type_ == t && c.status == "True")
    };
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| {
            CONDITION_TAINTS
                .iter()
                .find(|(_, key)| *key == t.key)
                .is_none_or(|(cond, _)| holds(cond))
        })
        .cloned()
        .collect();
    for (cond, key) in CONDITION_TAINTS {
        if holds(cond)
            && !next
                .iter()
                .any(|t| t.key == *key && t.effect == "NoSchedule")
        {
            next.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                time_added: None,
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

/// Whether `tol` tolerates `taint`, by upstream's rules (an empty key with Exists matches
/// every taint; an empty effect matches every effect).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    let effect = tol.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = tol.key.as_deref().unwrap_or("");
    match tol.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// What the taint eviction controller does with a pod on a tainted node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    Keep,
    Now,
    /// Tolerated for this much longer.
    After(Duration),
}

pub fn eviction(tolerations: &[Toleration], taints: &[Taint], now: Timestamp) -> Eviction {
    let mut deadline: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let tolerating: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if tolerating.is_empty() {
            return Eviction::Now;
        }
        // The most generous toleration wins; one without seconds tolerates forever.
        if tolerating.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let seconds = tolerating
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .max()
            .unwrap_or(0)
            .max(0);
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let until = added + Duration::from_secs(seconds as u64);
        deadline = Some(deadline.map_or(until, |d| d.min(until)));
    }
    match deadline {
        None => Eviction::Keep,
        Some(d) if d <= now => Eviction::Now,
        Some(d) => {
            Eviction::After(Duration::try_from(d.duration_since(now)).unwrap_or(Duration::ZERO))
        }
    }
}

/// The last heartbeat value seen for a node, and when (by our clock) it last changed.
struct Heartbeat {
    seen: String,
    at: Instant,
}

struct Ctx {
    client: kube::Client,
    settings: Settings,
    leases: Store<Lease>,
    pods: Store<Pod>,
    heartbeats: Mutex<HashMap<String, Heartbeat>>,
}

/// Runs the node health monitor, the taint eviction controller and the pod GC until the
/// process ends.
pub async fn run(client: kube::Client, settings: Settings) {
    let (leases, lease_writer) = kube::runtime::reflector::store();
    let lease_api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease_stream =
        kube::runtime::reflector(lease_writer, watcher(lease_api, watcher::Config::default()));
    let nodes: Controller<Node> =
        Controller::new(Api::all(client.clone()), watcher::Config::default());
    let pods_ctl: Controller<Pod> =
        Controller::new(Api::all(client.clone()), watcher::Config::default());
    let pod_store = pods_ctl.store();
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        settings,
        leases: leases.clone(),
        pods: pod_store.clone(),
        heartbeats: Mutex::new(HashMap::new()),
    });
    let health = nodes
        .run(reconcile_node, node_error, ctx.clone())
        .for_each(|_| async {});
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "taint-eviction-controller".into(),
            instance: None,
        },
    );
    // The eviction side keeps its own node cache, fed by the same stream that triggers it, so
    // a pod woken by a node's change (or deletion) always sees that change.
    let (evict_nodes, evict_writer) = kube::runtime::reflector::store();
    let node_changes = kube::runtime::reflector(
        evict_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .touched_objects();
    let evict_ctx = Arc::new(EvictCtx {
        client,
        nodes: evict_nodes,
        recorder,
        orphans: Mutex::new(HashMap::new()),
    });
    // A node's taints changing re-examines the pods bound to it.
    let pods_on_node = pod_store.clone();
    let eviction = pods_ctl
        .watches_stream(node_changes, move |node: Node| {
            let name = node.name_any();
            pods_on_node
                .state()
                .into_iter()
                .filter(|p| node_of(p) == Some(name.as_str()))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .run(reconcile_pod, pod_error, evict_ctx)
        .for_each(|_| async {});
    let leases_done = lease_stream.for_each(|_| async {});
    tokio::join!(health, eviction, leases_done);
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn node_error(_n: Arc<Node>, e: &Error, ctx: Arc<Ctx>) -> Action {
    tracing::warn!(error = %e, "node lifecycle");
    Action::requeue(ctx.settings.period)
}

async fn reconcile_node(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = node.name_any();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let ready = conditions.iter().find(|c| c.type_ == "Ready");
    let silent_for = {
        let lease = ctx
            .leases
            .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
        let renew = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let posted = ready
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        let seen = format!("{renew}/{posted}");
        let mut beats = ctx.heartbeats.lock().unwrap();
        let beat = beats.entry(name.clone()).or_insert_with(|| Heartbeat {
            seen: seen.clone(),
            at: Instant::now(),
        });
        if beat.seen != seen {
            beat.seen = seen;
            beat.at = Instant::now();
        }
        beat.at.elapsed()
    };
    let health = assess(
        ready.map(|c| c.status.as_str()),
        silent_for,
        ctx.settings.grace,
    );
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let now = Timestamp::now();
    if health == Health::Unknown
        && (ready.is_none() || conditions.iter().any(|c| c.status != "Unknown"))
    {
        tracing::info!(node = %name, "node stopped posting status: conditions Unknown");
        nodes
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(
                    json!({"status": {"conditions": unknown_conditions(&conditions, now)}}),
                ),
            )
            .await?;
        mark_pods_not_ready(&ctx, &name, now).await?;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let after_lifecycle = lifecycle_taints(&taints, health, now);
    let base = after_lifecycle.clone().unwrap_or_else(|| taints.clone());
    // Unknown conditions (a silent node) are not pressure: the pressure taints then go.
    let next = condition_taints(&base, &conditions).or(after_lifecycle);
    if let Some(next) = next {
        tracing::info!(node = %name, ?health, "node lifecycle taints change");
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": next},
        });
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(Action::requeue(ctx.settings.period))
}

/// Every posted condition (and Ready, even if never posted) as Unknown, with upstream's words.
fn unknown_conditions(current: &[NodeCondition], now: Timestamp) -> Vec<NodeCondition> {
    CONDITIONS
        .iter()
        .map(|ty| {
            let old = current.iter().find(|c| c.type_ == *ty);
            let (reason, message) = if old.is_some() {
                ("NodeStatusUnknown", "Kubelet stopped posting node status.")
            } else {
                (
                    "NodeStatusNeverUpdated",
                    "Kubelet never posted node status.",
                )
            };
            NodeCondition {
                type_: ty.to_string(),
                status: "Unknown".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: old.and_then(|c| c.last_heartbeat_time.clone()),
                last_transition_time: Some(Time(now)),
            }
        })
        .collect()
}

/// Pods on an unreachable node can no longer be trusted to serve: Ready goes False.
async fn mark_pods_not_ready(ctx: &Ctx, node: &str, now: Timestamp) -> Result<(), Error> {
    for pod in ctx.pods.state() {
        if node_of(&pod) != Some(node) {
            continue;
        }
        if !super::owned_pods::is_ready(&pod) {
            continue;
        }
        let api: Api<Pod> =
            Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": Time(now)}
        ]}});
        match api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

struct EvictCtx {
    client: kube::Client,
    nodes: Store<Node>,
    recorder: Recorder,
    /// Pods whose node was missing, by uid, and since when (the pod GC's quarantine).
    orphans: Mutex<HashMap<String, Instant>>,
}

/// How long a pod's node must be missing before the pod is deleted (upstream's 40 s).
const ORPHAN_QUARANTINE: Duration = Duration::from_secs(40);

fn pod_error(_p: Arc<Pod>, e: &Error, _c: Arc<EvictCtx>) -> Action {
    tracing::warn!(error = %e, "taint eviction");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile_pod(pod: Arc<Pod>, ctx: Arc<EvictCtx>) -> Result<Action, Error> {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if pod.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Succeeded" | "Failed")) {
        return Ok(Action::await_change());
    }
    let Some(node_name) = node_of(&pod) else {
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(node) = ctx.nodes.get(&ObjectRef::new(node_name)) else {
        // As upstream's pod GC: the node must stay missing for a quarantine (a node object
        // may be re-created, or a pod bound ahead of its node's registration), and the API,
        // not just our cache, must agree before the pod is deleted for good.
        let first = *ctx
            .orphans
            .lock()
            .unwrap()
            .entry(uid.clone())
            .or_insert_with(Instant::now);
        let waited = first.elapsed();
        if waited < ORPHAN_QUARANTINE {
            return Ok(Action::requeue(ORPHAN_QUARANTINE - waited));
        }
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        if nodes.get_opt(node_name).await?.is_none() {
            tracing::info!(pod = %pod.name_any(), node = node_name, "pod GC: its node is gone");
            delete(&api, &pod.name_any(), Some(0)).await?;
            ctx.orphans.lock().unwrap().remove(&uid);
            return Ok(Action::await_change());
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    };
    ctx.orphans.lock().unwrap().remove(&uid);
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    match eviction(&tolerations, &taints, Timestamp::now()) {
        Eviction::Keep => Ok(Action::await_change()),
        Eviction::After(d) => Ok(Action::requeue(d + Duration::from_millis(100))),
        Eviction::Now => {
            let name = pod.name_any();
            tracing::info!(pod = %name, node = node_name, "taint eviction");
            let patch = json!({"status": {"conditions": [{
                "type": "DisruptionTarget", "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": Time(Timestamp::now()),
            }]}});
            match api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
            let ev = Event {
                type_: EventType::Normal,
                reason: "TaintManagerEviction".into(),
                note: Some(format!(
                    "Marking for deletion Pod {}/{name}",
                    pod.namespace().unwrap_or_default()
                )),
                action: "Evict".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&ev, &pod.object_ref(&())).await {
                tracing::debug!(error = %e, "eviction event");
            }
            delete(&api, &name, None).await?;
            Ok(Action::await_change())
        }
    }
}

async fn delete(api: &Api<Pod>, name: &str, grace: Option<u32>) -> Result<(), Error> {
    let dp = DeleteParams {
        grace_period_seconds: grace,
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressure_conditions_bring_and_take_their_no_schedule_taints() {
        let cond = |t: &str, s: &str| NodeCondition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        };
        let other = taint("dedicated", "NoSchedule", None);
        let on = condition_taints(
            std::slice::from_ref(&other),
            &[
                cond("MemoryPressure", "True"),
                cond("DiskPressure", "False"),
            ],
        )
        .unwrap();
        assert_eq!(
            on,
            vec![
                other.clone(),
                taint("node.kubernetes.io/memory-pressure", "NoSchedule", None)
            ]
        );
        assert_eq!(
            condition_taints(&on, &[cond("MemoryPressure", "True")]),
            None
        );
        let off = condition_taints(&on, &[cond("MemoryPressure", "False")]).unwrap();
        assert_eq!(off, vec![other]);
    }

    fn taint(key: &str, effect: &str, added: Option<Timestamp>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            time_added: added.map(Time),
            value: None,
        }
    }

    fn tol(key: &str, op: &str, effect: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: (!key.is_empty()).then(|| key.into()),
            operator: Some(op.into()),
            effect: (!effect.is_empty()).then(|| effect.into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[test]
    fn health_follows_silence_then_the_agents_word() {
        let g = Duration::from_secs(50);
        assert_eq!(
            assess(Some("True"), Duration::from_secs(10), g),
            Health::Ready
        );
        assert_eq!(
            assess(Some("True"), Duration::from_secs(51), g),
            Health::Unknown
        );
        assert_eq!(
            assess(Some("False"), Duration::from_secs(1), g),
            Health::NotReady
        );
        assert_eq!(assess(None, Duration::from_secs(1), g), Health::Pending);
        assert_eq!(assess(None, Duration::from_secs(60), g), Health::Unknown);
    }

    #[test]
    fn lifecycle_taints_come_and_go_keeping_others_and_their_time() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let other = taint("dedicated", "NoSchedule", None);
        let next = lifecycle_taints(std::slice::from_ref(&other), Health::Unknown, t0).unwrap();
        assert_eq!(next.len(), 3);
        assert!(next.contains(&other));
        assert!(next.contains(&taint(UNREACHABLE, "NoExecute", Some(t0))));
        assert!(next.contains(&taint(UNREACHABLE, "NoSchedule", None)));
        // Still unknown later: nothing changes, so the NoExecute time stays t0.
        assert_eq!(lifecycle_taints(&next, Health::Unknown, t1), None);
        // The agent reports NotReady: unreachable goes, not-ready comes.
        let nr = lifecycle_taints(&next, Health::NotReady, t1).unwrap();
        assert!(nr.iter().all(|t| t.key != UNREACHABLE));
        assert!(nr.contains(&taint(NOT_READY, "NoExecute", Some(t1))));
        // Ready again: only the user's taint is left.
        assert_eq!(
            lifecycle_taints(&nr, Health::Ready, t1).unwrap(),
            vec![other.clone()]
        );
        assert_eq!(lifecycle_taints(&[other], Health::Ready, t1), None);
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = Taint {
            value: Some("v".into()),
            ..taint("k", "NoExecute", None)
        };
        assert!(tolerates(&tol("", "Exists", "", None), &t));
        assert!(tolerates(&tol("k", "Exists", "NoExecute", None), &t));
        assert!(!tolerates(&tol("k", "Exists", "NoSchedule", None), &t));
        assert!(!tolerates(&tol("k", "Equal", "", None), &t));
        let eq = Toleration {
            value: Some("v".into()),
            ..tol("k", "Equal", "", None)
        };
        assert!(tolerates(&eq, &t));
        assert!(!tolerates(&tol("other", "Exists", "", None), &t));
    }

    #[test]
    fn eviction_waits_for_the_tolerated_time_from_the_taint() {
        let added = Timestamp::from_second(1_000).unwrap();
        let taints = [taint(UNREACHABLE, "NoExecute", Some(added))];
        let at = |s: i64| Timestamp::from_second(s).unwrap();
        assert_eq!(eviction(&[], &taints, at(1_001)), Eviction::Now);
        let tols = [tol(UNREACHABLE, "Exists", "NoExecute", Some(300))];
        assert_eq!(
            eviction(&tols, &taints, at(1_100)),
            Eviction::After(Duration::from_secs(200))
        );
        assert_eq!(eviction(&tols, &taints, at(1_300)), Eviction::Now);
        let forever = [tol(UNREACHABLE, "Exists", "NoExecute", None)];
        assert_eq!(eviction(&forever, &taints, at(9_999)), Eviction::Keep);
        // NoSchedule taints never evict.
        let soft = [taint(UNREACHABLE, "NoSchedule", None)];
        assert_eq!(eviction(&[], &soft, at(1_001)), Eviction::Keep);
    }
}
