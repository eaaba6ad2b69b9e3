//! ResourceQuota controller: keeps each quota's `status.hard` equal to its spec and recounts
//! `status.used` from the objects really in the namespace, so that deletes (which admission
//! does not charge back) and creates that failed after admission charged them are corrected.
//! A quota is recounted when it changes, when a pod of its namespace changes, and every
//! `RESYNC` for the other object kinds.

use crate::apiserver::admission::resource_quota::{matches_scopes, quantity_text, usage};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

/// A quota's spec (and identity), as the predicate of its own changes: the charges admission
/// writes to `status.used` do not make a recount, which, while creates are in flight (charged,
/// not yet stored), would count fewer objects than charged and let the quota be exceeded.
fn spec_hash(q: &ResourceQuota) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    q.metadata.uid.hash(&mut h);
    serde_json::to_string(&q.spec).ok()?.hash(&mut h);
    Some(h.finish())
}

pub async fn run(client: kube::Client) {
    use kube::runtime::{reflector, PredicateConfig, WatchStreamExt};
    let (quotas, writer) = reflector::store();
    let quota_changes = reflector(
        writer,
        watcher(
            Api::<ResourceQuota>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .applied_objects()
    .predicate_filter(spec_hash, PredicateConfig::default());
    // Pods that stop using quota: deleted or finished. Creates are charged by admission.
    let pod_releases = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .filter_map(|ev| async move {
            match ev {
                Ok(watcher::Event::Delete(p)) => Some(Ok(p)),
                Ok(watcher::Event::Apply(p)) if terminal(&p) => Some(Ok(p)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        });
    let store = quotas.clone();
    Controller::for_stream(quota_changes, quotas)
        .watches_stream(pod_releases, move |pod: Pod| {
            let ns = pod.metadata.namespace.clone();
            store
                .state()
                .into_iter()
                .filter(|q| q.metadata.namespace == ns)
                .map(|q| ObjectRef::from_obj(&*q))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {})
        .await;
}

fn terminal(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

fn error_policy(_q: Arc<ResourceQuota>, e: &Error, _c: Arc<kube::Client>) -> Action {
    tracing::warn!(error = %e, "resource quota");
    Action::requeue(Duration::from_secs(5))
}

/// The (group, plural) a quota resource name counts, if it is an object count.
fn counted(res: &str) -> Option<(String, String)> {
    if let Some(rest) = res.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    let legacy = [
        "services",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    ];
    legacy
        .contains(&res)
        .then(|| (String::new(), res.to_string()))
}

async fn list(
    client: &kube::Client,
    ns: &str,
    group: &str,
    plural: &str,
) -> Result<Vec<Value>, Error> {
    // Every kind a quota counts here is served as v1 in its group.
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let ar = ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version,
        kind: String::new(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let list = api.list(&ListParams::default()).await?;
    list.items
        .into_iter()
        .map(|o| serde_json::to_value(o).map_err(Error::from))
        .collect()
}

async fn reconcile(quota: Arc<ResourceQuota>, client: Arc<kube::Client>) -> Result<Action, Error> {
    if quota.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = quota.metadata.namespace.clone().unwrap_or_default();
    let name = quota.metadata.name.clone().unwrap_or_default();
    let q = serde_json::to_value(&*quota)?;
    let hard = q["spec"]["hard"].as_object().cloned().unwrap_or_default();
    let mut used: BTreeMap<String, f64> = hard.keys().map(|k| (k.clone(), 0.0)).collect();
    // Pods give compute and the pod counts; terminal pods use nothing, as upstream.
    let pods: Api<Pod> = Api::namespaced((*client).clone(), &ns);
    for pod in pods.list(&ListParams::default()).await?.items {
        if terminal(&pod) {
            continue;
        }
        let p = serde_json::to_value(&pod)?;
        if !matches_scopes(&q, "", "pods", &p) {
            continue;
        }
        for (res, v) in usage("", "pods", &p) {
            if let Some(u) = used.get_mut(&res) {
                *u += v;
            }
        }
    }
    for res in hard.keys() {
        let Some((group, plural)) = counted(res) else {
            continue;
        };
        if group.is_empty() && plural == "pods" {
            continue;
        }
        let objects = list(&client, &ns, &group, &plural).await?;
        let n = objects
            .iter()
            .filter(|o| matches_scopes(&q, &group, &plural, o))
            .count();
        used.insert(res.clone(), n as f64);
    }
    let used_text: serde_json::Map<String, Value> = used
        .iter()
        .map(|(k, v)| (k.clone(), json!(quantity_text(k, *v))))
        .collect();
    let status = json!({"status": {"hard": hard, "used": used_text}});
    let current = json!({"status": {"hard": q["status"]["hard"], "used": q["status"]["used"]}});
    if status != current {
        let api: Api<ResourceQuota> = Api::namespaced((*client).clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    Ok(Action::requeue(super::RESYNC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_names_map_to_resources() {
        assert_eq!(
            counted("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            counted("count/configmaps"),
            Some((String::new(), "configmaps".into()))
        );
        assert_eq!(counted("secrets"), Some((String::new(), "secrets".into())));
        assert_eq!(counted("requests.cpu"), None);
    }
}
