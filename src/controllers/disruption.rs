//! The disruption controller: keeps each PodDisruptionBudget's status (how many of its pods
//! are healthy, how many must be, how many may be disrupted now), which the eviction
//! subresource (src/apiserver/eviction.rs) reads and spends. As upstream:
//! - an integer minAvailable counts the budget's pods; a percentage, or maxUnavailable, counts
//!   the replicas their controllers want (a Deployment's, ReplicaSet's, StatefulSet's or
//!   ReplicationController's scale);
//! - healthy means Ready and not being deleted, and not just evicted (`status.disruptedPods`,
//!   whose entries the eviction wrote and which expire after two minutes).

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::ResourceExt;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long an eviction's entry in disruptedPods keeps the pod out of the healthy count.
const DISRUPTION_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
}

/// `n` or `p%` of `total`, rounded up as upstream's GetScaledValueFromIntOrPercent(..., true).
pub fn scaled(v: &IntOrString, total: i32) -> Option<i32> {
    match v {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.parse().ok()?;
            Some(((pct * total as i64 + 99) / 100) as i32)
        }
    }
}

/// Whether the budget's expected count comes from controllers' scale (not the pod count).
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// desiredHealthy and disruptionsAllowed from the expected and healthy counts.
pub fn budget(spec: &PodDisruptionBudgetSpec, expected: i32, healthy: i32) -> (i32, i32) {
    let desired = if let Some(max) = &spec.max_unavailable {
        (expected - scaled(max, expected).unwrap_or(0)).max(0)
    } else if let Some(min) = &spec.min_available {
        scaled(min, expected).unwrap_or(0)
    } else {
        0
    };
    (desired, (healthy - desired).max(0))
}

struct Ctx {
    client: kube::Client,
    pods: Store<Pod>,
}

pub async fn run(client: kube::Client) {
    let pdbs: Controller<PodDisruptionBudget> =
        Controller::new(Api::all(client.clone()), watcher::Config::default());
    let pdb_store = pdbs.store();
    let (pods, pod_writer) = kube::runtime::reflector::store();
    use kube::runtime::WatchStreamExt;
    let pod_changes = kube::runtime::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .touched_objects();
    let ctx = Arc::new(Ctx { client, pods });
    pdbs.watches_stream(pod_changes, move |pod: Pod| {
        // A pod's change concerns the budgets of its namespace that select it.
        let ns = pod.namespace().unwrap_or_default();
        let labels = pod.labels().clone();
        pdb_store
            .state()
            .into_iter()
            .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
            .filter(|b| selects(b, &labels))
            .map(|b| ObjectRef::from_obj(&*b))
            .collect::<Vec<_>>()
    })
    .run(reconcile, error_policy, ctx)
    .for_each(|_| async {})
    .await;
}

fn selects(pdb: &PodDisruptionBudget, labels: &BTreeMap<String, String>) -> bool {
    super::ownership::selects(
        pdb.spec.as_ref().and_then(|s| s.selector.as_ref()),
        Some(labels),
    )
}

fn error_policy(_b: Arc<PodDisruptionBudget>, e: &Error, _c: Arc<Ctx>) -> Action {
    tracing::warn!(error = %e, "disruption controller");
    Action::requeue(Duration::from_secs(5))
}

/// The replicas the pods' controllers want, each controller counted once.
async fn controllers_scale(
    client: &kube::Client,
    ns: &str,
    pods: &[Arc<Pod>],
) -> Result<i32, String> {
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            return Err(format!("found no controllers for pod {:?}", pod.name_any()));
        };
        let (kind, name, replicas) = match owner.kind.as_str() {
            "ReplicaSet" => {
                let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(|e| e.to_string())?;
                match rs
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                {
                    Some(d) => {
                        let dep = Api::<Deployment>::namespaced(client.clone(), ns)
                            .get(&d.name)
                            .await
                            .map_err(|e| e.to_string())?;
                        (
                            "Deployment",
                            d.name.clone(),
                            dep.spec.and_then(|s| s.replicas).unwrap_or(1),
                        )
                    }
                    None => (
                        "ReplicaSet",
                        owner.name.clone(),
                        rs.spec.and_then(|s| s.replicas).unwrap_or(1),
                    ),
                }
            }
            "StatefulSet" => {
                let s = Api::<StatefulSet>::namespaced(client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(|e| e.to_string())?;
                (
                    "StatefulSet",
                    owner.name.clone(),
                    s.spec.and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            "ReplicationController" => {
                let rc = Api::<ReplicationController>::namespaced(client.clone(), ns)
                    .get(&owner.name)
                    .await
                    .map_err(|e| e.to_string())?;
                (
                    "ReplicationController",
                    owner.name.clone(),
                    rc.spec.and_then(|s| s.replicas).unwrap_or(1),
                )
            }
            other => {
                return Err(format!(
                    "{other} {:?} has no scale the budget can count",
                    owner.name
                ))
            }
        };
        if seen.insert((kind, name)) {
            total += replicas;
        }
    }
    Ok(total)
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pdb.namespace().unwrap_or_default();
    let spec = pdb.spec.clone().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selects(&pdb, p.labels()))
        .collect();
    let now = Timestamp::now();
    let old = pdb.status.clone().unwrap_or_default();
    // Evictions still in flight: the pod exists, is not yet being deleted, and was evicted
    // less than the timeout ago.
    let mut disrupted = BTreeMap::new();
    let mut next_expiry: Option<Duration> = None;
    for (name, at) in old.disrupted_pods.clone().unwrap_or_default() {
        let Some(pod) = pods.iter().find(|p| p.name_any() == name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let age = Duration::try_from(now.duration_since(at.0)).unwrap_or(Duration::ZERO);
        if age < DISRUPTION_TIMEOUT {
            let left = DISRUPTION_TIMEOUT - age;
            next_expiry = Some(next_expiry.map_or(left, |n| n.min(left)));
            disrupted.insert(name, at);
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && super::owned_pods::is_ready(p))
        .filter(|p| !disrupted.contains_key(&p.name_any()))
        .count() as i32;
    let (expected, failure) = if needs_scale(&spec) {
        match controllers_scale(&ctx.client, &ns, &pods).await {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e)),
        }
    } else {
        (pods.len() as i32, None)
    };
    let (desired, allowed) = budget(&spec, expected, healthy);
    let allowed = if failure.is_some() { 0 } else { allowed };
    let (cond_status, reason, message) = match &failure {
        Some(e) => ("False", "SyncFailed", e.clone()),
        None if allowed > 0 => ("True", "SufficientPods", String::new()),
        None => ("False", "InsufficientPods", String::new()),
    };
    let old_cond = old
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed");
    let transition = match old_cond {
        Some(c) if c.status == cond_status => c.last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: "DisruptionAllowed".into(),
        status: cond_status.into(),
        reason: reason.into(),
        message,
        last_transition_time: transition,
        observed_generation: pdb.metadata.generation,
    };
    let status = json!({
        "observedGeneration": pdb.metadata.generation,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "disruptionsAllowed": allowed,
        "disruptedPods": disrupted,
        "conditions": [condition],
    });
    let before = serde_json::to_value(&old).unwrap_or_default();
    let changed = [
        "observedGeneration",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
        "disruptionsAllowed",
    ]
    .iter()
    .any(|k| before[k] != status[k])
        || before["disruptedPods"].as_object().map_or(0, |m| m.len()) != disrupted.len()
        || old_cond.is_none_or(|c| c.status != cond_status || c.reason != reason);
    if changed {
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &ns);
        // A merge patch would leave expired disruptedPods entries behind: replace the map.
        let patch =
            json!({"metadata": {"resourceVersion": pdb.resource_version()}, "status": status});
        match api
            .patch_status(
                &pdb.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            // The eviction spent a disruption meanwhile: look again.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                return Ok(Action::requeue(Duration::from_millis(200)))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(match next_expiry {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
        PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            ..Default::default()
        }
    }

    #[test]
    fn budgets_as_upstream_counts_them() {
        use IntOrString::{Int, String as Pct};
        assert_eq!(budget(&spec(Some(Int(2)), None), 3, 3), (2, 1));
        assert_eq!(budget(&spec(Some(Int(2)), None), 3, 2), (2, 0));
        assert_eq!(budget(&spec(Some(Int(5)), None), 3, 3), (5, 0));
        // Percentages round up.
        assert_eq!(budget(&spec(Some(Pct("50%".into())), None), 3, 3), (2, 1));
        assert_eq!(budget(&spec(None, Some(Int(1))), 4, 4), (3, 1));
        assert_eq!(budget(&spec(None, Some(Pct("30%".into()))), 4, 4), (2, 2));
        assert_eq!(budget(&spec(None, Some(Int(0))), 2, 2), (2, 0));
        assert!(!needs_scale(&spec(Some(Int(1)), None)));
        assert!(needs_scale(&spec(Some(Pct("10%".into())), None)));
        assert!(needs_scale(&spec(None, Some(Int(1)))));
    }
}
