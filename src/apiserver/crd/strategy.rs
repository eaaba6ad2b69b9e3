//! The Strategy of one served version of a custom resource: the request path's hooks filled in
//! from the CRD (schema stages, printer columns, /scale paths, the version's apiVersion and
//! deprecation warning). Built by `controller` for every served version.

use super::jsonpath::Path;
use super::{cel, default, prune, validate};
use crate::apiserver::kinds::Strategy;
use crate::apiserver::table::{self, Col};
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One additionalPrinterColumns entry.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: String,
    pub format: String,
    pub description: String,
    pub priority: u8,
    pub path: Path,
}

/// The scale subresource's paths (".spec.replicas", ".status.replicas", ".status.selector").
#[derive(Debug, Clone)]
pub struct ScalePaths {
    pub spec: Vec<String>,
    pub status: Vec<String>,
    pub selector: Option<Vec<String>>,
}

/// ".spec.replicas" as its fields; None for anything but a plain field path.
pub fn field_path(p: &str) -> Option<Vec<String>> {
    let fields: Vec<String> = p
        .strip_prefix('.')?
        .split('.')
        .map(str::to_string)
        .collect();
    fields
        .iter()
        .all(|f| !f.is_empty() && !f.contains('['))
        .then_some(fields)
}

fn at<'a>(obj: &'a Value, path: &[String]) -> &'a Value {
    path.iter().fold(obj, |v, f| &v[f.as_str()])
}

fn set(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for f in path {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(f.clone())
            .or_insert(Value::Null);
    }
    *cur = value;
}

#[derive(Debug)]
pub struct CustomResource {
    pub group: String,
    pub version: String,
    /// The version objects are stored in.
    pub storage_version: String,
    /// The version's openAPIV3Schema.
    pub schema: Value,
    /// Every version's schema, by version: a stored object is pruned by the schema of the
    /// version it was stored in (its apiVersion), as kube-apiserver's storage decoder does;
    /// writes by the storage version's.
    pub schemas: Arc<BTreeMap<String, Value>>,
    pub columns: Vec<Column>,
    pub scale: Option<ScalePaths>,
    pub warning: Option<String>,
    /// Set while the CRD is being deleted: creates are refused.
    pub terminating: Arc<AtomicBool>,
}

impl CustomResource {
    /// Prune, then default: what every write (and, defaulting only, every read) does.
    fn shape(&self, obj: &mut Value) {
        prune::prune(&self.schema, obj);
        default::apply(&self.schema, obj);
    }
}

impl Strategy for CustomResource {
    fn defaults(&self, obj: &mut Value) {
        self.shape(obj)
    }

    fn status_defaults(&self, obj: &mut Value) {
        self.shape(obj)
    }

    fn drop_nulls(&self, obj: &mut Value) {
        crate::apiserver::resources::prune_empty_metadata(obj);
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|_, v| !v.is_null());
        }
        default::drop_nulls(&self.schema, obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        let before = errs.len();
        validate::validate(&self.schema, obj, "", errs);
        // The CEL rules assume the schema holds: upstream runs none of them when a value has the
        // wrong type, an unsupported value, a missing required field or too much, and says so.
        let blocking = errs[before..].iter().any(|e| {
            matches!(
                e.reason.as_str(),
                "FieldValueTypeInvalid"
                    | "FieldValueNotSupported"
                    | "FieldValueRequired"
                    | "FieldValueTooLong"
                    | "FieldValueTooMany"
            )
        });
        if blocking {
            errs.push(FieldError {
                reason: "FieldValueInvalid".into(),
                field: "<nil>".into(),
                message: "Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation".into(),
            });
        } else {
            cel::validate(&self.schema, obj, old, "", errs);
        }
    }

    fn columns(&self) -> Vec<Col> {
        let mut cols = vec![table::NAME];
        for c in &self.columns {
            cols.push(Col {
                name: Cow::Owned(c.name.clone()),
                ty: Cow::Owned(c.ty.clone()),
                format: Cow::Owned(c.format.clone()),
                priority: c.priority,
                description: Cow::Owned(c.description.clone()),
            });
        }
        cols
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut cells = vec![table::name(obj)];
        for c in &self.columns {
            cells.push(match c.path.first(obj) {
                None | Some(Value::Null) => Value::Null,
                Some(v) => cell(&c.ty, v, now),
            });
        }
        cells
    }

    fn read_stored(&self, mut obj: Value) -> Value {
        let stored_in = obj["apiVersion"]
            .as_str()
            .and_then(|av| av.rsplit_once('/'))
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let by = self
            .schemas
            .get(&stored_in)
            .or_else(|| self.schemas.get(&self.storage_version));
        if let Some(schema) = by {
            prune::prune(schema, &mut obj);
        }
        obj["apiVersion"] = json!(format!("{}/{}", self.group, self.version));
        default::apply(&self.schema, &mut obj);
        obj
    }

    fn write_stored(&self, mut obj: Value) -> Value {
        obj["apiVersion"] = json!(format!("{}/{}", self.group, self.storage_version));
        if let Some(schema) = self.schemas.get(&self.storage_version) {
            prune::prune(schema, &mut obj);
        }
        obj
    }

    fn unknown_fields(&self, raw_json: &[u8]) -> Vec<String> {
        match serde_json::from_slice::<Value>(raw_json) {
            Ok(obj) => prune::unknown(&self.schema, &obj),
            Err(_) => Vec::new(),
        }
    }

    fn strategic_merge(&self) -> bool {
        false
    }

    fn warning(&self) -> Option<String> {
        self.warning.clone()
    }

    fn refuse_create(&self) -> Option<String> {
        self.terminating
            .load(Ordering::Relaxed)
            .then(|| "create not allowed while custom resource definition is terminating".into())
    }

    fn scale(&self, obj: &Value) -> Value {
        let Some(p) = &self.scale else {
            return crate::apiserver::resources::to_scale(obj);
        };
        let m = &obj["metadata"];
        let mut meta = json!({"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
            "creationTimestamp": m["creationTimestamp"]});
        if let Some(ns) = m.get("namespace") {
            meta["namespace"] = ns.clone();
        }
        let mut status = json!({"replicas": at(obj, &p.status).as_i64().unwrap_or(0)});
        if let Some(sel) = &p.selector {
            if let Some(s) = at(obj, sel).as_str() {
                status["selector"] = json!(s);
            }
        }
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
            "spec": {"replicas": at(obj, &p.spec).as_i64().unwrap_or(0)}, "status": status})
    }

    fn set_replicas(&self, obj: &mut Value, replicas: i64) {
        match &self.scale {
            Some(p) => set(obj, &p.spec, json!(replicas)),
            None => obj["spec"]["replicas"] = json!(replicas),
        }
    }
}

/// The `decode` of custom resource entries: metadata must be an ObjectMeta (what kube-apiserver
/// decodes it as; unknown metadata fields are dropped), the rest is the schema's business.
pub fn decode(mut obj: Value) -> Result<Value, String> {
    if let Some(meta) = obj.get("metadata").filter(|m| !m.is_null()) {
        let typed: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta =
            serde_json::from_value(meta.clone()).map_err(|e| format!("metadata: {e}"))?;
        obj["metadata"] = serde_json::to_value(typed).map_err(|e| e.to_string())?;
    }
    Ok(obj)
}

/// A printer column's cell, typed as upstream's table convertor types it; a value of the wrong
/// type is empty.
fn cell(ty: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match ty {
        "integer" => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        "number" => v.as_f64().map_or(Value::Null, Value::from),
        "boolean" => v.as_bool().map_or(Value::Null, Value::from),
        "date" => match v.as_str() {
            Some(_) => match table::parse_time(v) {
                Some(_) => json!(table::since(v, now)),
                None => json!("<invalid>"),
            },
            None => Value::Null,
        },
        // "string": jsonpath's text output.
        _ => json!(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cr() -> CustomResource {
        CustomResource {
            group: "example.com".into(),
            version: "v1".into(),
            storage_version: "v2".into(),
            schema: json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "size": {"type": "integer", "default": 1}, "count": {"type": "integer"}}},
                "status": {"type": "object", "properties": {"ready": {"type": "integer"}, "sel": {"type": "string"}}}}}),
            schemas: Arc::new(
                [(
                    "v2".to_string(),
                    json!({"type": "object", "properties": {"spec": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}),
                )]
                .into(),
            ),
            columns: vec![Column {
                name: "Size".into(),
                ty: "integer".into(),
                format: String::new(),
                description: String::new(),
                priority: 0,
                path: Path::parse(".spec.size").unwrap(),
            }],
            scale: Some(ScalePaths {
                spec: field_path(".spec.count").unwrap(),
                status: field_path(".status.ready").unwrap(),
                selector: field_path(".status.sel"),
            }),
            warning: None,
            terminating: Default::default(),
        }
    }

    #[test]
    fn reads_default_and_rewrite_the_version_writes_store_in_the_storage_version() {
        let s = cr();
        let stored = json!({"apiVersion": "example.com/v2", "kind": "Db", "metadata": {"name": "a"}, "spec": {}});
        let read = s.read_stored(stored);
        assert_eq!(read["apiVersion"], "example.com/v1");
        assert_eq!(read["spec"]["size"], 1);
        assert_eq!(s.write_stored(read)["apiVersion"], "example.com/v2");
        // Pruned by the schema of the version it was stored in.
        let mut s = s;
        let mut schemas = (*s.schemas).clone();
        schemas.insert("v1".into(), s.schema.clone());
        s.schemas = Arc::new(schemas);
        let old = json!({"apiVersion": "example.com/v1", "kind": "Db", "metadata": {"name": "a"}, "spec": {"extra": 1}});
        assert!(s.read_stored(old)["spec"].get("extra").is_none());
        let new = json!({"apiVersion": "example.com/v2", "kind": "Db", "metadata": {"name": "a"}, "spec": {"extra": 1}});
        assert_eq!(s.read_stored(new)["spec"]["extra"], 1);
        assert_eq!(
            s.row(
                &json!({"metadata": {"name": "a"}, "spec": {"size": 4}}),
                Utc::now()
            ),
            vec![json!("a"), json!(4)]
        );
    }

    #[test]
    fn scale_follows_the_crd_paths() {
        let s = cr();
        let mut obj = json!({"metadata": {"name": "a"}, "spec": {"count": 2}, "status": {"ready": 1, "sel": "app=a"}});
        let scale = s.scale(&obj);
        assert_eq!(scale["spec"]["replicas"], 2);
        assert_eq!(scale["status"], json!({"replicas": 1, "selector": "app=a"}));
        s.set_replicas(&mut obj, 5);
        assert_eq!(obj["spec"]["count"], 5);
    }
}
