//! Strategic merge patch (application/strategic-merge-patch+json) for built-in kinds.
//!
//! A strategic merge patch is a JSON merge patch whose lists know how to merge: a list field
//! declared `patchStrategy:"merge"` with a `patchMergeKey` merges element by element (the patch's
//! `{"name":"web","image":"nginx:2"}` updates the container named web instead of replacing the
//! whole list); a merge list of primitives (finalizers) is a set union; every other list is
//! replaced. Those declarations live in Kubernetes' Go struct tags, not in the OpenAPI schemas,
//! so `PATCH_META` lists them per schema type; the walk follows the kind's schema (from
//! `openapi::schemas`) to know which type each nested object is.
//!
//! Directives, as kubectl's client-side apply sends them:
//! - `null` deletes a key;
//! - `{"$patch": "replace"}` in a map replaces the map, in a list replaces the list;
//!   `{"$patch": "delete"}` in a map empties it, as a merge-list element deletes the element
//!   with that key;
//! - `$retainKeys: [..]` drops the other keys of the original map (retainKeys strategy: the
//!   Deployment strategy, volumes);
//! - `$deleteFromPrimitiveList/<field>: [..]` removes values from a primitive merge list;
//! - `$setElementOrder/<field>: [..]` orders the merged list; elements only the server had keep
//!   their place relative to the others.

use crate::apiserver::openapi::schemas::{builtin, find_kind, resolve};
use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replaced whole (no patch strategy: atomic).
    Replace,
    /// Merged element by element, matching on this key.
    MergeByKey(&'static str),
    /// A set of primitive values, merged by union.
    MergePrimitives,
}

/// (schema type, field, strategy, retainKeys too): the `patchStrategy`/`patchMergeKey` tags of
/// the built-in types that have one.
pub(crate) const PATCH_META: &[(&str, &str, ListStrategy, bool)] = {
    use ListStrategy::*;
    &[
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "finalizers",
            MergePrimitives,
            false,
        ),
        (
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "ownerReferences",
            MergeByKey("uid"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "volumes",
            MergeByKey("name"),
            true,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "initContainers",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "containers",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "ephemeralContainers",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "imagePullSecrets",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "hostAliases",
            MergeByKey("ip"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "topologySpreadConstraints",
            MergeByKey("topologyKey"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "resourceClaims",
            MergeByKey("name"),
            true,
        ),
        (
            "io.k8s.api.core.v1.PodSpec",
            "schedulingGates",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.Container",
            "ports",
            MergeByKey("containerPort"),
            false,
        ),
        (
            "io.k8s.api.core.v1.Container",
            "env",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.Container",
            "volumeMounts",
            MergeByKey("mountPath"),
            false,
        ),
        (
            "io.k8s.api.core.v1.Container",
            "volumeDevices",
            MergeByKey("devicePath"),
            false,
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "ports",
            MergeByKey("containerPort"),
            false,
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "env",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeMounts",
            MergeByKey("mountPath"),
            false,
        ),
        (
            "io.k8s.api.core.v1.EphemeralContainer",
            "volumeDevices",
            MergeByKey("devicePath"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "podIPs",
            MergeByKey("ip"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "hostIPs",
            MergeByKey("ip"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PodStatus",
            "resourceClaimStatuses",
            MergeByKey("name"),
            true,
        ),
        (
            "io.k8s.api.core.v1.ServiceSpec",
            "ports",
            MergeByKey("port"),
            false,
        ),
        (
            "io.k8s.api.core.v1.ServiceStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.core.v1.ServiceAccount",
            "secrets",
            MergeByKey("name"),
            false,
        ),
        (
            "io.k8s.api.core.v1.NodeSpec",
            "podCIDRs",
            MergePrimitives,
            false,
        ),
        (
            "io.k8s.api.core.v1.NodeStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.core.v1.NodeStatus",
            "addresses",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.core.v1.NamespaceStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.core.v1.PersistentVolumeClaimStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.core.v1.ReplicationControllerStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.apps.v1.DeploymentStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.apps.v1.ReplicaSetStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.apps.v1.StatefulSetStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.apps.v1.DaemonSetStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.batch.v1.JobStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
        (
            "io.k8s.api.policy.v1.PodDisruptionBudgetStatus",
            "conditions",
            MergeByKey("type"),
            false,
        ),
    ]
};

/// The patch strategy of `field` in the object of schema type `ty`.
pub fn list_strategy(ty: Option<&str>, field: &str) -> ListStrategy {
    ty.and_then(|t| {
        PATCH_META
            .iter()
            .find(|(pt, f, _, _)| *pt == t && *f == field)
            .map(|m| m.2)
    })
    .unwrap_or(ListStrategy::Replace)
}

/// The definition name a property schema points at ("io.k8s.api.core.v1.PodSpec"), looking
/// through arrays to their items.
pub fn type_name(schema: &Value) -> Option<String> {
    let s = if schema.get("type").and_then(Value::as_str) == Some("array") {
        schema.get("items")?
    } else {
        schema
    };
    let r = s
        .get("$ref")
        .or_else(|| s.get("allOf")?.get(0)?.get("$ref"))?;
    r.as_str()?.rsplit('/').next().map(str::to_string)
}

/// The schema of `field` inside an object of type `ty`, and that field's own type name.
pub fn child(ty: Option<&str>, field: &str) -> Option<String> {
    let defs = &builtin().definitions;
    let parent = resolve(defs.get(ty?)?);
    let prop = parent.get("properties")?.get(field)?;
    type_name(prop)
}

/// The schema type of a kind's top-level object, if the kind is known.
pub fn kind_type(group: &str, kind: &str, obj: &Value) -> Option<String> {
    let version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .and_then(|av| av.rsplit('/').next());
    find_kind(group, version, kind)
        .or_else(|| find_kind(group, None, kind))
        .map(|k| k.schema.clone())
}

/// Applies a strategic merge patch to `original`. Lists of built-in kinds merge by their patch
/// merge key; directives $patch, $setElementOrder, $retainKeys, $deleteFromPrimitiveList.
pub fn apply(group: &str, kind: &str, original: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Err("strategic merge patch must be a JSON object".into());
    };
    let ty = kind_type(group, kind, original);
    let orig = match original {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(orig, p, ty.as_deref()).map(Value::Object)
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Option<&str>,
) -> Result<Map<String, Value>, String> {
    match patch.get(DIRECTIVE).map(|v| v.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            let mut out = patch.clone();
            out.remove(DIRECTIVE);
            return strip_directives_map(out);
        }
        Some(Some("delete")) => return Ok(Map::new()),
        Some(other) => {
            return Err(format!(
                "Unknown patch type: {}",
                other
                    .map(str::to_string)
                    .unwrap_or_else(|| "<not a string>".into())
            ))
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keys: Vec<&str> = retain
            .as_array()
            .ok_or("$retainKeys must be a list of strings")?
            .iter()
            .map(|k| k.as_str().ok_or("$retainKeys must be a list of strings"))
            .collect::<Result<_, _>>()?;
        original.retain(|k, _| keys.contains(&k.as_str()));
    }
    for (key, value) in patch {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(ORDER_PREFIX) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVE_PREFIX) {
            let remove = value
                .as_array()
                .ok_or_else(|| format!("{key} must be a list"))?;
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if value.is_null() {
            original.remove(key);
            continue;
        }
        let child_ty = child(ty, key);
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(o)), Value::Object(p)) => {
                Value::Object(merge_map(o, p, child_ty.as_deref())?)
            }
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(
                o,
                p,
                list_strategy(ty, key),
                child_ty.as_deref(),
            )?),
            (None, Value::Object(p)) => {
                Value::Object(merge_map(Map::new(), p, child_ty.as_deref())?)
            }
            (None, Value::Array(p)) => Value::Array(merge_list(
                Vec::new(),
                p,
                list_strategy(ty, key),
                child_ty.as_deref(),
            )?),
            (_, v) => strip_directives(v.clone())?,
        };
        original.insert(key.clone(), merged);
    }
    for (key, order) in patch {
        if let Some(field) = key.strip_prefix(ORDER_PREFIX) {
            let order = order
                .as_array()
                .ok_or_else(|| format!("{key} must be a list"))?;
            let strategy = list_strategy(ty, field);
            if let Some(Value::Array(list)) = original.get_mut(field) {
                let merged = std::mem::take(list);
                *list = set_element_order(merged, order, strategy);
            }
        }
    }
    Ok(original)
}

/// Removes directives from a value taken whole from the patch.
fn strip_directives(v: Value) -> Result<Value, String> {
    match v {
        Value::Object(m) => strip_directives_map(m).map(Value::Object),
        Value::Array(a) => a
            .into_iter()
            .filter(|e| e.get(DIRECTIVE).is_none() || e.as_object().is_some_and(|m| m.len() > 1))
            .map(strip_directives)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

fn strip_directives_map(m: Map<String, Value>) -> Result<Map<String, Value>, String> {
    m.into_iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| strip_directives(v).map(|v| (k, v)))
        .collect()
}

fn key_of<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object().and_then(|m| m.get(key))
}

fn merge_list(
    mut original: Vec<Value>,
    patch: &[Value],
    strategy: ListStrategy,
    item_ty: Option<&str>,
) -> Result<Vec<Value>, String> {
    let replace_all = patch
        .iter()
        .any(|e| e.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    if replace_all {
        let rest: Vec<Value> = patch
            .iter()
            .filter(|e| e.get(DIRECTIVE).is_none())
            .cloned()
            .collect();
        return strip_directives(Value::Array(rest)).map(|v| match v {
            Value::Array(a) => a,
            _ => Vec::new(),
        });
    }
    match strategy {
        ListStrategy::Replace => match strip_directives(Value::Array(patch.to_vec()))? {
            Value::Array(a) => Ok(a),
            _ => Ok(Vec::new()),
        },
        ListStrategy::MergePrimitives => {
            for v in patch {
                if !original.contains(v) {
                    original.push(v.clone());
                }
            }
            Ok(original)
        }
        ListStrategy::MergeByKey(key) => {
            for p in patch {
                let Some(pm) = p.as_object() else {
                    return Err(format!("element {p} of a merge list is not an object"));
                };
                let Some(kv) = pm.get(key) else {
                    return Err(format!(
                        "map: {p} does not contain declared merge key: {key}"
                    ));
                };
                let pos = original.iter().position(|o| key_of(o, key) == Some(kv));
                match pm.get(DIRECTIVE).and_then(Value::as_str) {
                    Some("delete") => {
                        original.retain(|o| key_of(o, key) != Some(kv));
                    }
                    Some("replace") => {
                        let mut m = pm.clone();
                        m.remove(DIRECTIVE);
                        let v = Value::Object(strip_directives_map(m)?);
                        match pos {
                            Some(i) => original[i] = v,
                            None => original.push(v),
                        }
                    }
                    _ => match pos {
                        Some(i) => {
                            let o = match std::mem::take(&mut original[i]) {
                                Value::Object(o) => o,
                                _ => Map::new(),
                            };
                            original[i] = Value::Object(merge_map(o, pm, item_ty)?);
                        }
                        None => original.push(Value::Object(merge_map(Map::new(), pm, item_ty)?)),
                    },
                }
            }
            Ok(original)
        }
    }
}

/// Orders `merged` as `order` says. Elements `order` does not name (the server's own) are
/// interleaved as Kubernetes' `mergeSortedSlice` does: one goes first unless the next listed
/// element was before it in the server's list.
fn set_element_order(merged: Vec<Value>, order: &[Value], strategy: ListStrategy) -> Vec<Value> {
    let identity = |v: &Value| -> Value {
        match strategy {
            ListStrategy::MergeByKey(k) => key_of(v, k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(identity).collect();
    let mut listed: Vec<(usize, usize, Value)> = Vec::new();
    let mut others: Vec<(usize, Value)> = Vec::new();
    for (pos, v) in merged.into_iter().enumerate() {
        let id = identity(&v);
        match order_ids.iter().position(|o| *o == id) {
            Some(rank) => listed.push((rank, pos, v)),
            None => others.push((pos, v)),
        }
    }
    listed.sort_by_key(|(rank, _, _)| *rank);
    let mut out = Vec::with_capacity(listed.len() + others.len());
    let mut left = listed.into_iter().peekable();
    let mut right = others.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (Some((_, lpos, _)), Some((rpos, _))) => {
                if lpos < rpos {
                    out.push(left.next().expect("peeked").2);
                } else {
                    out.push(right.next().expect("peeked").1);
                }
            }
            (Some(_), None) => out.push(left.next().expect("peeked").2),
            (None, Some(_)) => out.push(right.next().expect("peeked").1),
            (None, None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1", "imagePullPolicy": "IfNotPresent",
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                        {"name": "side", "image": "busybox"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "x", "operator": "Exists"}]
                }}
            }
        })
    }

    fn patch(p: Value) -> Value {
        apply("apps", "Deployment", &deployment(), &p).unwrap()
    }

    #[test]
    fn containers_merge_by_name_keeping_server_fields() {
        let out = patch(json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "side"}],
            "containers": [{"name": "web", "image": "nginx:2"}]}}}}));
        let cs = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(cs.as_array().unwrap().len(), 2);
        assert_eq!(cs[0]["image"], "nginx:2");
        assert_eq!(
            cs[0]["imagePullPolicy"], "IfNotPresent",
            "fields not in the patch stay"
        );
        assert_eq!(cs[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(cs[1]["name"], "side");
    }

    #[test]
    fn delete_directive_and_new_elements() {
        let out = patch(json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "log"}],
        "containers": [
            {"name": "side", "$patch": "delete"},
            {"name": "log", "image": "fluentd"},
            {"name": "web", "$setElementOrder/env": [{"name": "A"}, {"name": "C"}],
             "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}]}
        ]}}}}));
        let cs = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .clone();
        let names: Vec<&str> = cs.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["web", "log"]);
        assert_eq!(
            cs[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "C", "value": "3"}])
        );
        assert!(cs[1].get("$patch").is_none());
    }

    #[test]
    fn atomic_lists_are_replaced_and_null_deletes() {
        let out = patch(json!({"metadata": {"labels": {"app": null, "tier": "fe"}},
            "spec": {"template": {"spec": {"tolerations": [{"key": "y", "operator": "Exists"}]}}}}));
        assert_eq!(out["metadata"]["labels"], json!({"tier": "fe"}));
        assert_eq!(
            out["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "y", "operator": "Exists"}])
        );
    }

    #[test]
    fn retain_keys_drops_rolling_update() {
        let out = patch(
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn primitive_merge_lists_and_delete_from_primitive_list() {
        let out = patch(json!({"metadata": {
            "$setElementOrder/finalizers": ["b", "c"],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"]}}));
        assert_eq!(out["metadata"]["finalizers"], json!(["b", "c"]));
    }

    #[test]
    fn replace_directives() {
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "x"}]}}}}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let out = patch(json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}));
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        assert!(apply(
            "apps",
            "Deployment",
            &deployment(),
            &json!({"spec": {"$patch": "bogus"}})
        )
        .is_err());
    }

    #[test]
    fn service_ports_merge_by_port_and_pod_ports_by_container_port() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}});
        let out = apply(
            "",
            "Service",
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"][0],
            json!({"name": "http", "port": 80, "targetPort": 9090})
        );
        assert_eq!(out["spec"]["ports"][1]["port"], 443);
        let out = patch(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "ports": [{"containerPort": 443}]}]}}}}));
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let err = apply(
            "apps",
            "Deployment",
            &deployment(),
            &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
        );
        assert!(err
            .unwrap_err()
            .contains("does not contain declared merge key: name"));
    }

    #[test]
    fn kubectl_apply_style_patch_on_volumes_and_new_fields() {
        let out = patch(json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}},
                            {"$retainKeys": ["name", "hostPath"], "name": "data", "hostPath": {"path": "/d"}}]}}}}));
        let vols = &out["spec"]["template"]["spec"]["volumes"];
        assert_eq!(
            vols,
            &json!([{"name": "data", "hostPath": {"path": "/d"}}, {"name": "cfg", "configMap": {"name": "c"}}])
        );
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn element_order_keeps_server_only_items_in_place() {
        let list = vec![
            json!({"name": "a"}),
            json!({"name": "s"}),
            json!({"name": "b"}),
        ];
        let order = [json!({"name": "b"}), json!({"name": "a"})];
        let out = set_element_order(list, &order, ListStrategy::MergeByKey("name"));
        let names: Vec<&str> = out.iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["s", "b", "a"]);
    }
}
