//! Rendering objects as meta.k8s.io/v1 Table rows for `kubectl get`: the cells come from the
//! per-kind columns in `table`, the row object is the object's metadata (PartialObjectMetadata)
//! so `-A` and `--show-labels` work.

use super::handler::IncludeObject;
use super::registry::ResourceInfo;
use super::table;
use serde_json::{json, Value};

/// The object a row carries, per `includeObject`.
fn row_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => {
            let mut meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        }
    }
}

pub fn row(
    info: &ResourceInfo,
    obj: &Value,
    include: IncludeObject,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let mut r = json!({"cells": table::row_cells(info.group, info.kind, obj, now)});
    let o = row_object(obj, include);
    if !o.is_null() {
        r["object"] = o;
    }
    r
}

/// A Table of `rows`; `columns` false leaves the definitions out (watch events after the first).
pub fn table(
    info: &ResourceInfo,
    rows: Vec<Value>,
    rv: i64,
    cont: Option<&str>,
    columns: bool,
) -> Value {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(c) = cont {
        meta["continue"] = json!(c);
    }
    let defs = if columns {
        table::column_definitions(info.group, info.kind)
    } else {
        Vec::new()
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}
