//! Rendering objects as meta.k8s.io/v1 Table rows for `kubectl get`: the cells come from the
//! per-kind columns in `table`, the row object is the object's metadata (PartialObjectMetadata)
//! so `-A` and `--show-labels` work.

use super::handler::IncludeObject;
use super::registry::ResourceInfo;
use super::status::ApiError;
use super::{conversion, table};
use serde_json::{json, Value};
use std::sync::Arc;

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
    let mut r = json!({"cells": table::row_cells(info, obj, now)});
    let o = row_object(obj, include);
    if !o.is_null() {
        r["object"] = o;
    }
    r
}

/// A row that takes the object's metadata instead of copying it.
pub fn row_owned(
    info: &ResourceInfo,
    mut obj: Value,
    include: IncludeObject,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    if include != IncludeObject::Metadata {
        return row(info, &obj, include, now);
    }
    let cells = table::row_cells(info, &obj, now);
    let mut meta = obj
        .get_mut("metadata")
        .map(Value::take)
        .unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("managedFields");
    }
    json!({"cells": cells,
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
}

/// The rows of a list's Table as comma-separated JSON, built on blocking threads in parallel
/// chunks: parsing thousands of objects is the expensive part of `kubectl get` on a big list.
pub async fn rows_parallel(
    info: Arc<ResourceInfo>,
    items: Vec<(crate::store::KeyValue, Option<Value>)>,
    include: IncludeObject,
) -> Result<Vec<u8>, ApiError> {
    let now = chrono::Utc::now();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = items.len().div_ceil(threads).max(256);
    let mut items = items;
    let mut tasks = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(chunk.min(items.len()));
        let part = std::mem::replace(&mut items, rest);
        let info = info.clone();
        tasks.push(tokio::task::spawn_blocking(
            move || -> Result<Vec<u8>, ApiError> {
                let mut out = Vec::with_capacity(part.len() * 256);
                for (i, (kv, parsed)) in part.into_iter().enumerate() {
                    let obj = match parsed {
                        Some(v) => v,
                        None => {
                            conversion::decode(&info, &kv.value, kv.mod_revision).map_err(|e| {
                                ApiError::Internal(format!(
                                    "stored object {} is corrupt: {e}",
                                    kv.key
                                ))
                            })?
                        }
                    };
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut out, &row_owned(&info, obj, include, now))
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                }
                Ok(out)
            },
        ));
    }
    let mut out = Vec::new();
    for t in tasks {
        let part = t.await.map_err(|e| ApiError::Internal(e.to_string()))??;
        if !out.is_empty() && !part.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(&part);
    }
    Ok(out)
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
        table::column_definitions(info)
    } else {
        Vec::new()
    };
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}
