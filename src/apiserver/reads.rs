//! Reads: get (with the scale subresource) and list (revision semantics, selectors,
//! limit/continue at one revision, JSON assembled from stored bytes or a Table).

use super::handler::{full, json, Api, Output, ResourceRequest, Resp};
use super::registry::ResourceInfo;
use super::resources::selectors_of;
use super::status::ApiError;
use super::{conversion, encoding, table_output};
use crate::store::{self, KeyValue};
use base64::Engine;
use http::StatusCode;
use serde_json::{json, Value};

struct ContinueToken {
    revision: i64,
    start: String,
}

fn encode_continue(revision: i64, start: &str) -> String {
    let raw = json!({"rv": revision, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(s: &str) -> Result<ContinueToken, ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid continue token: {s}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok(ContinueToken {
        revision: v["rv"].as_i64().ok_or_else(bad)?,
        start: v["start"].as_str().ok_or_else(bad)?.to_string(),
    })
}

/// An object as meta.k8s.io/v1 PartialObjectMetadata: its metadata only.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"]})
}

fn stored_response(info: &ResourceInfo, code: StatusCode, kv: &KeyValue) -> Resp {
    full(
        code,
        "application/json",
        conversion::with_rv(info, &kv.value, kv.mod_revision),
    )
}

impl Api {
    // ---------------------------------------------------------------- get / list

    pub async fn get(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let name = r.name.as_deref().unwrap_or_default();
        let Some((obj, kv)) = self
            .get_object(&r.info, r.namespace.as_deref(), name)
            .await?
        else {
            return Err(ApiError::not_found(&r.info.group, &r.info.plural, name));
        };
        if r.subresource.as_deref() == Some("scale") {
            return Ok(json(StatusCode::OK, &r.info.strategy.scale(&obj)));
        }
        match r.output {
            Output::Json => Ok(stored_response(&r.info, StatusCode::OK, &kv)),
            Output::Metadata => Ok(json(StatusCode::OK, &partial_metadata(&obj))),
            Output::Table(include) => {
                let row = table_output::row(&r.info, &obj, include, chrono::Utc::now());
                let t = table_output::table(&r.info, vec![row], kv.mod_revision, None, true);
                Ok(full(
                    StatusCode::OK,
                    super::handler::TABLE_CONTENT_TYPE,
                    encoding::json_bytes(&t),
                ))
            }
        }
    }

    /// The revision a list reads at, from resourceVersion and resourceVersionMatch.
    async fn list_revision(&self, r: &ResourceRequest) -> Result<Option<i64>, ApiError> {
        let rv = r.param("resourceVersion");
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion: {s}")))
        };
        match (rv, r.param("resourceVersionMatch")) {
            (Some(v), Some("Exact")) => Ok(Some(parse(v)?)),
            (None, Some(m)) => Err(ApiError::BadRequest(format!(
                "resourceVersionMatch {m} requires resourceVersion"
            ))),
            (None | Some("0"), _) => Ok(None),
            (Some(v), None | Some("NotOlderThan")) => {
                let want = parse(v)?;
                // kube-apiserver waits a little for its cache to catch up; here only a revision
                // the store has not written yet can be too new.
                for _ in 0..30 {
                    if self.store.current_revision().await? >= want {
                        return Ok(None);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(ApiError::Timeout(format!(
                    "Too large resource version: {want}, current: {}",
                    self.store.current_revision().await?
                )))
            }
            (Some(_), Some(m)) => Err(ApiError::BadRequest(format!(
                "unsupported resourceVersionMatch: {m}"
            ))),
        }
    }

    pub async fn list(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let (label, field) = selectors_of(r)?;
        let limit: usize = match r.param("limit") {
            Some(l) => l
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?,
            None => 0,
        };
        let (mut revision, mut start_after) = match r.param("continue") {
            Some(c) => {
                let t = decode_continue(c)?;
                (Some(t.revision), Some(t.start))
            }
            None => (self.list_revision(r).await?, None),
        };
        let continued = start_after.is_some();
        let prefix = r.info.list_prefix(r.namespace.as_deref());
        let filtering = !label.is_empty() || !field.is_empty();

        let mut items: Vec<(KeyValue, Option<Value>)> = Vec::new();
        let mut more = false;
        let mut last_key: Option<String> = None;
        let read_revision;
        'pages: loop {
            let want = if limit == 0 {
                0
            } else if filtering {
                limit.max(500)
            } else {
                limit - items.len()
            };
            let page = match self.store.list(&prefix, start_after.as_deref(), want, revision).await {
                Err(store::Error::Compacted { .. }) if continued => {
                    return Err(ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into()))
                }
                other => other?,
            };
            revision = Some(page.revision);
            let n = page.items.len();
            for (i, kv) in page.items.into_iter().enumerate() {
                last_key = Some(kv.key.clone());
                // Table rows are parsed later, in parallel; only filtering needs it here.
                let parsed = if filtering {
                    let v =
                        conversion::decode(&r.info, &kv.value, kv.mod_revision).map_err(|e| {
                            ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key))
                        })?;
                    if !label.matches(&v) || !field.matches(&v) {
                        None
                    } else {
                        Some(Some(v))
                    }
                } else {
                    Some(None)
                };
                if let Some(p) = parsed {
                    items.push((kv, p));
                }
                if limit > 0 && items.len() >= limit {
                    more = i + 1 < n || page.more;
                    read_revision = page.revision;
                    break 'pages;
                }
            }
            if !page.more || n == 0 {
                read_revision = page.revision;
                break;
            }
            start_after = last_key.clone();
        }
        let cont = if more {
            last_key
                .as_deref()
                .map(|k| encode_continue(read_revision, k))
        } else {
            None
        };

        match r.output {
            Output::Table(include) => {
                let rows = table_output::rows_parallel(r.info.clone(), items, include).await?;
                let t =
                    table_output::table(&r.info, Vec::new(), read_revision, cont.as_deref(), true);
                // The rows are spliced in as bytes: `"rows":[]` is the last member written.
                let mut out = serde_json::to_vec(&t).unwrap_or_default();
                let tail = b"\"rows\":[]}";
                if out.ends_with(tail) {
                    out.truncate(out.len() - 2);
                    out.extend_from_slice(&rows);
                    out.extend_from_slice(b"]}");
                }
                Ok(full(
                    StatusCode::OK,
                    super::handler::TABLE_CONTENT_TYPE,
                    out,
                ))
            }
            Output::Metadata => {
                let mut list = json!({"kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": read_revision.to_string()}, "items": []});
                if let Some(c) = &cont {
                    list["metadata"]["continue"] = json!(c);
                }
                let mut metas = Vec::with_capacity(items.len());
                for (kv, parsed) in items {
                    let v = match parsed {
                        Some(v) => v,
                        None => conversion::decode(&r.info, &kv.value, kv.mod_revision)
                            .map_err(|e| ApiError::Internal(e.to_string()))?,
                    };
                    metas.push(partial_metadata(&v));
                }
                list["items"] = Value::Array(metas);
                Ok(json(StatusCode::OK, &list))
            }
            Output::Json => {
                let size: usize = items.iter().map(|(kv, _)| kv.value.len() + 32).sum();
                let mut out = Vec::with_capacity(size + 256);
                out.extend_from_slice(format!("{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{}\"", &r.info.list_kind, &r.info.api_version, read_revision).as_bytes());
                if let Some(c) = &cont {
                    out.extend_from_slice(format!(",\"continue\":\"{c}\"").as_bytes());
                }
                out.extend_from_slice(b"},\"items\":[");
                for (i, (kv, _)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    conversion::write_with_rv(&r.info, &mut out, &kv.value, kv.mod_revision);
                }
                out.extend_from_slice(b"]}");
                Ok(full(StatusCode::OK, "application/json", out))
            }
        }
    }
}
