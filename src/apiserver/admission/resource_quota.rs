//! ResourceQuota: a create is charged to every quota of its namespace that matches it (object
//! counts `pods`, `services`, ..., `count/<resource>.<group>`; a pod's compute `requests.*`,
//! `limits.*` and bare `cpu`/`memory`; the scopes Terminating, NotTerminating, BestEffort,
//! NotBestEffort and PriorityClass, from `spec.scopes` or `spec.scopeSelector`). Going over a
//! hard limit is refused with upstream's 403 `exceeded quota` message; a pod that omits a
//! compute resource a matching quota limits is refused with `must specify`.
//!
//! Usage stays true under concurrent creates: the creates of one namespace are serialized by a
//! lock held while the quotas are read from the store (not from a cache) and the new
//! `status.used` is written with a compare-and-swap on each quota's revision, so no two creates
//! see the same usage, and a concurrent status write (the controller's) makes the charge start
//! again. The charge is made before the object is stored; an object that then fails to store
//! leaves a charge too many until the quota controller recounts (as upstream).

use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::defaults::{parse_quantity, qos_class};
use crate::apiserver::encoding;
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The legacy names of object counts, by core plural.
const LEGACY_COUNTS: &[&str] = &[
    "pods",
    "services",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// What one object uses, by quota resource name.
pub fn usage(group: &str, plural: &str, obj: &Value) -> BTreeMap<String, f64> {
    let mut u = BTreeMap::new();
    let counted = if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    };
    u.insert(counted, 1.0);
    if group.is_empty() && LEGACY_COUNTS.contains(&plural) {
        u.insert(plural.to_string(), 1.0);
    }
    if group.is_empty() && plural == "services" {
        match obj["spec"]["type"].as_str() {
            Some("NodePort") => {
                u.insert("services.nodeports".into(), 1.0);
            }
            Some("LoadBalancer") => {
                u.insert("services.loadbalancers".into(), 1.0);
                u.insert("services.nodeports".into(), 1.0);
            }
            _ => {}
        }
    }
    if group.is_empty() && plural == "pods" {
        for field in ["requests", "limits"] {
            for res in ["cpu", "memory", "ephemeral-storage"] {
                if let Some(v) = pod_total(&obj["spec"], field, res) {
                    u.insert(format!("{field}.{res}"), v);
                    if field == "requests" {
                        u.insert(res.to_string(), v);
                    }
                }
            }
        }
    }
    if group.is_empty() && plural == "persistentvolumeclaims" {
        if let Some(v) = parse_quantity(&obj["spec"]["resources"]["requests"]["storage"]) {
            u.insert("requests.storage".into(), v);
        }
    }
    u
}

/// A pod's effective request or limit: the sum of its containers, or the largest init
/// container's when that is more, as the scheduler counts.
fn pod_total(spec: &Value, field: &str, res: &str) -> Option<f64> {
    let get = |c: &Value| parse_quantity(&c["resources"][field][res]);
    let mut any = false;
    let mut sum = 0.0;
    for c in spec["containers"].as_array().into_iter().flatten() {
        if let Some(v) = get(c) {
            any = true;
            sum += v;
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        if let Some(v) = get(c) {
            any = true;
            sum = f64::max(sum, v);
        }
    }
    any.then_some(sum)
}

/// Whether a quota's scopes select the object (only pods have scopes; a scoped quota counts
/// only pods).
pub fn matches_scopes(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let mut scopes: Vec<(String, String, Vec<String>)> = quota["spec"]["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota["spec"]["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let values = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        scopes.push((
            e["scopeName"].as_str().unwrap_or_default().into(),
            e["operator"].as_str().unwrap_or_default().into(),
            values,
        ));
    }
    if scopes.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let spec = &obj["spec"];
    let terminating = spec["activeDeadlineSeconds"].as_i64().is_some();
    let best_effort = qos_class(spec) == "BestEffort";
    scopes.iter().all(|(name, op, values)| match name.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = spec["priorityClassName"].as_str().unwrap_or_default();
            match op.as_str() {
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                _ => false,
            }
        }
        _ => false,
    })
}

/// Quantity text: cpu in cores or millicores, byte amounts in the largest binary unit that
/// divides them, counts as integers.
pub fn quantity_text(res: &str, v: f64) -> String {
    let cpu = res == "cpu" || res.ends_with(".cpu");
    if cpu {
        let m = (v * 1000.0).round() as i64;
        return if m % 1000 == 0 {
            (m / 1000).to_string()
        } else {
            format!("{m}m")
        };
    }
    let n = v.round() as i64;
    for (unit, size) in [("Gi", 1i64 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if n != 0 && n % size == 0 && !res.starts_with("count/") && !LEGACY_COUNTS.contains(&res) {
            return format!("{}{unit}", n / size);
        }
    }
    n.to_string()
}

fn pairs(items: &[(String, f64)]) -> String {
    items
        .iter()
        .map(|(k, v)| format!("{k}={}", quantity_text(k, *v)))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Default)]
pub struct ResourceQuota {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ResourceQuota {
    fn lock_for(&self, ns: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(ns.to_string()).or_default().clone()
    }

    /// One attempt: Ok(true) charged, Ok(false) a quota changed meanwhile (try again).
    async fn charge(&self, api: &Api, a: &Attributes, obj: &Value) -> Result<bool, ApiError> {
        let Some(info) = api.registry.lookup("", "v1", "resourcequotas") else {
            return Ok(true);
        };
        let page = api
            .store
            .list(&info.list_prefix(Some(&a.namespace)), None, 0, None)
            .await?;
        let (group, plural) = (&a.resource.group, &a.resource.plural);
        let used_by_obj = usage(group, plural, obj);
        let mut writes = Vec::new();
        for kv in &page.items {
            let mut q = encoding::decode_stored(&kv.value, kv.mod_revision)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if !matches_scopes(&q, group, plural, obj) {
                continue;
            }
            let name = q["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let hard = q["spec"]["hard"].as_object().cloned().unwrap_or_default();
            let is_pod = group.is_empty() && plural == "pods";
            // A compute resource the quota limits must be given by every container.
            if is_pod {
                let mut missing = Vec::new();
                for res in hard.keys() {
                    let (field, r) = match res.split_once('.') {
                        Some((f @ ("requests" | "limits"), r)) => (f, r),
                        None if res == "cpu" || res == "memory" => ("requests", res.as_str()),
                        _ => continue,
                    };
                    let lacking: Vec<&str> = ["initContainers", "containers"]
                        .iter()
                        .flat_map(|k| obj["spec"][*k].as_array().into_iter().flatten())
                        .filter(|c| c["resources"][field][r].is_null())
                        .map(|c| c["name"].as_str().unwrap_or_default())
                        .collect();
                    if !lacking.is_empty() {
                        missing.push(format!("{res} for: {}", lacking.join(",")));
                    }
                }
                if !missing.is_empty() {
                    missing.sort();
                    return Err(a.forbidden(&format!(
                        "failed quota: {name}: must specify {}",
                        missing.join("; ")
                    )));
                }
            }
            let charged: Vec<(&String, f64)> = hard
                .keys()
                .filter_map(|res| used_by_obj.get(res).map(|v| (res, *v)))
                .collect();
            if charged.is_empty() {
                continue;
            }
            let before = q["status"]["used"].clone();
            let used_now = |res: &str| parse_quantity(&before[res]).unwrap_or(0.0);
            let mut requested = Vec::new();
            let mut used = Vec::new();
            let mut limited = Vec::new();
            for (res, v) in &charged {
                let limit = parse_quantity(&hard[res.as_str()]).unwrap_or(0.0);
                if used_now(res) + v > limit + 1e-9 {
                    requested.push(((*res).clone(), *v));
                    used.push(((*res).clone(), used_now(res)));
                    limited.push(((*res).clone(), limit));
                }
            }
            if !requested.is_empty() {
                return Err(a.forbidden(&format!(
                    "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                    pairs(&requested),
                    pairs(&used),
                    pairs(&limited)
                )));
            }
            if !q["status"]["used"].is_object() {
                q["status"]["used"] = json!({});
            }
            for (res, v) in charged {
                let total = used_now(res) + v;
                q["status"]["used"][res.as_str()] = json!(quantity_text(res, total));
            }
            writes.push((kv.key.clone(), kv.mod_revision, q));
        }
        if a.dry_run {
            return Ok(true);
        }
        for (key, rev, q) in writes {
            match api.store.update(&key, encoding::to_stored(&q), rev).await {
                Ok(_) => {}
                Err(crate::store::Error::Conflict { .. }) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }
}

impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if a.operation != Operation::Create
                || !a.subresource.is_empty()
                || a.namespace.is_empty()
            {
                return Ok(());
            }
            let Some(obj) = a.object.as_ref() else {
                return Ok(());
            };
            let lock = self.lock_for(&a.namespace);
            let _held = lock.lock().await;
            for _ in 0..16 {
                if self.charge(api, a, obj).await? {
                    return Ok(());
                }
            }
            Err(ApiError::Internal(
                "resource quota: too many concurrent changes of the namespace's quotas".into(),
            ))
        })
    }
}
