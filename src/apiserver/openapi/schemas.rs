//! The schemas of the served kinds (the registry's), generated from k8s-openapi's `schemars`
//! impls (which carry the upstream descriptions), reshaped the way Kubernetes publishes them: a `$ref` with a
//! description beside it becomes `allOf: [{$ref}]` plus the description, and top-level kinds
//! carry `x-kubernetes-group-version-kind`.

use crate::apiserver::registry::{builtin_snapshot, ResourceInfo, Schema};
use k8s_openapi::schemars::{generate::SchemaSettings, SchemaGenerator};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Where a kind lives and what its schema is called.
#[derive(Debug, Clone)]
pub struct KindInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Key in components.schemas, e.g. "io.k8s.api.core.v1.Pod".
    pub schema: String,
    /// PATCH accepts strategic merge patches (custom resources do not; kubectl reads this to
    /// choose its patch type).
    pub strategic_merge: bool,
}

/// The kinds of one registry state and their definitions.
pub struct Schemas {
    pub kinds: Vec<KindInfo>,
    pub definitions: Map<String, Value>,
}

/// The schemas of every kind in `kinds` (a registry snapshot's), with the definitions they
/// refer to.
pub fn build(kinds: &[Arc<ResourceInfo>]) -> Schemas {
    let settings = SchemaSettings::openapi3().with(|s| s.transforms.clear());
    let mut gen = SchemaGenerator::new(settings);
    let mut given = Vec::new();
    let mut infos = Vec::new();
    for r in kinds {
        match &r.schema {
            Schema::Typed { add, .. } => add(&mut gen),
            Schema::Json { name, schema } => given.push((name.clone(), schema.clone())),
        }
        infos.push(KindInfo {
            group: r.group.clone(),
            version: r.version.clone(),
            kind: r.kind.clone(),
            plural: r.plural.clone(),
            namespaced: r.namespaced,
            schema: r.schema.name().to_string(),
            strategic_merge: r.strategy.strategic_merge(),
        });
    }
    let mut definitions = gen.take_definitions(false);
    definitions.extend(given);
    for schema in definitions.values_mut() {
        reshape_refs(schema);
    }
    add_patch_extensions(&mut definitions);
    for k in &infos {
        if let Some(Value::Object(m)) = definitions.get_mut(&k.schema) {
            m.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": k.group, "kind": k.kind, "version": k.version}]),
            );
        }
    }
    Schemas {
        kinds: infos,
        definitions,
    }
}

/// The `x-kubernetes-patch-strategy`/`-merge-key` and `x-kubernetes-list-type`/`-map-keys`
/// extensions Kubernetes publishes on list fields. kubectl's client-side apply reads them from
/// this document to compute its strategic merge patch; without them it treats every list as
/// atomic and sends whole lists.
fn add_patch_extensions(definitions: &mut Map<String, Value>) {
    use crate::apiserver::apply::list_keys;
    use crate::apiserver::strategic_merge::{ListStrategy, PATCH_META};
    for (ty, field, strategy, retain) in PATCH_META {
        let Some(prop) = definitions
            .get_mut(*ty)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let patch_strategy = if *retain { "merge,retainKeys" } else { "merge" };
        prop.insert("x-kubernetes-patch-strategy".into(), json!(patch_strategy));
        match strategy {
            ListStrategy::MergeByKey(key) => {
                prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                prop.insert("x-kubernetes-list-type".into(), json!("map"));
                let keys = list_keys(Some(ty), field).unwrap_or_else(|| vec![key]);
                prop.insert("x-kubernetes-list-map-keys".into(), json!(keys));
            }
            ListStrategy::MergePrimitives => {
                prop.insert("x-kubernetes-list-type".into(), json!("set"));
            }
            ListStrategy::Replace => {}
        }
    }
    for (ty, field) in RETAIN_KEYS_FIELDS {
        if let Some(prop) = definitions
            .get_mut(*ty)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut)
        {
            prop.insert("x-kubernetes-patch-strategy".into(), json!("retainKeys"));
        }
    }
}

/// Struct fields (not lists) with the retainKeys patch strategy.
const RETAIN_KEYS_FIELDS: &[(&str, &str)] = &[("io.k8s.api.apps.v1.DeploymentSpec", "strategy")];

/// `{"$ref": X, "description": D}` becomes `{"allOf": [{"$ref": X}], "description": D}`, the form
/// Kubernetes' own OpenAPI v3 documents use (siblings of `$ref` are ignored in OpenAPI 3.0).
fn reshape_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.len() > 1 {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            for child in m.values_mut() {
                reshape_refs(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(reshape_refs),
        _ => {}
    }
}

/// The schemas of the built-in kinds, built on first use: what strategic merge and field
/// validation walk.
pub fn builtin() -> &'static Schemas {
    builtin_snapshot().schemas()
}

/// The kind served as `group/version` `kind`; with `version` None, the first version served.
pub fn find_kind(group: &str, version: Option<&str>, kind: &str) -> Option<&'static KindInfo> {
    builtin()
        .kinds
        .iter()
        .find(|k| k.group == group && k.kind == kind && version.is_none_or(|v| v == k.version))
}

/// Follows `$ref` and single-element `allOf` to the schema they name.
pub fn resolve(schema: &Value) -> &Value {
    let mut cur = schema;
    for _ in 0..8 {
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap_or(r);
            match builtin().definitions.get(name) {
                Some(s) => cur = s,
                None => return cur,
            }
        } else if let Some([one]) = cur
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            cur = one;
        } else {
            return cur;
        }
    }
    cur
}

/// Names of the definitions reachable from `roots`, for a group-version's document.
pub fn reachable(defs: &Map<String, Value>, roots: &[&str]) -> BTreeSet<String> {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.rsplit('/').next().unwrap_or(r).to_string());
                }
                m.values().for_each(|c| refs(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
            _ => {}
        }
    }
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(s) = defs.get(&name) {
            refs(s, &mut todo);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_schemas_with_descriptions() {
        let pod = find_kind("", Some("v1"), "Pod").expect("pods registered");
        assert!(pod.namespaced);
        assert_eq!(pod.plural, "pods");
        let schema = &builtin().definitions[&pod.schema];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "Pod", "version": "v1"}])
        );
        let spec = &schema["properties"]["spec"];
        assert!(spec["description"]
            .as_str()
            .unwrap()
            .starts_with("Specification"));
        assert_eq!(
            spec["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.PodSpec"
        );
        let containers = &resolve(spec)["properties"]["containers"];
        assert_eq!(containers["type"], "array");
        assert!(resolve(&containers["items"])["properties"]["image"].is_object());
        assert!(!find_kind("", None, "Namespace").unwrap().namespaced);
        assert_eq!(
            find_kind("autoscaling", Some("v1"), "HorizontalPodAutoscaler")
                .unwrap()
                .version,
            "v1"
        );
    }

    #[test]
    fn list_fields_carry_patch_extensions() {
        let defs = &builtin().definitions;
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let volumes = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let ports = &defs["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(
            ports["x-kubernetes-list-map-keys"],
            json!(["containerPort", "protocol"])
        );
        let strategy = &defs["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        let finalizers =
            &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
        assert_eq!(finalizers["x-kubernetes-list-type"], "set");
    }

    #[test]
    fn reachability_includes_meta() {
        let set = reachable(&builtin().definitions, &["io.k8s.api.apps.v1.Deployment"]);
        assert!(set.contains("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"));
        assert!(set.contains("io.k8s.api.core.v1.Container"));
        assert!(!set.contains("io.k8s.api.core.v1.Service"));
    }
}
