//! Writes: create, update (PUT), patch, the status and scale subresources and pods/binding,
//! and what reads and deletes share (modes, metadata helpers, selectors, Scale). Every write
//! is the pipeline's last stages: decode, defaults, mutating admission, `prepare_create` or
//! `merge_update` (server-owned metadata, status/spec split, generation), validation,
//! validating admission, and one compare-and-swap on the store. Updates run all of it again
//! when a concurrent writer got there first and the client did not pin a resourceVersion.

use super::admission::{self, Operation};
use super::auth::User;
use super::handler::{full, json, Api, ResourceRequest, Resp};
use super::registry::ResourceInfo;
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{self, ApiError, Cause};
use super::{allocation, apply, conversion, encoding, strategic_merge, validation};
use crate::store::{self, KeyValue};
use http::StatusCode;
use serde_json::{json, Map, Value};

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The main resource: everything but status (for kinds with a status subresource).
    Main,
    /// /status: only status.
    Status,
    /// namespaces/<n>/finalize: only spec.finalizers.
    Finalize,
    /// pods/<p>/ephemeralcontainers: only spec.ephemeralContainers (`kubectl debug`).
    EphemeralContainers,
    /// certificatesigningrequests/<c>/approval: only status.conditions (`kubectl certificate
    /// approve`).
    Approval,
}

/// DeleteOptions, from the body and the query, and who deletes (for admission).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    pub user: User,
}

pub(crate) const CONFLICT_RETRIES: usize = 16;

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Names become store keys and URL segments: refuse what would break either, whatever the kind's
/// own rules say.
fn path_segment_causes(name: &str, field: &str) -> Vec<Cause> {
    let bad = if name == "." || name == ".." {
        Some(format!("may not be '{name}'"))
    } else if name.contains('/') {
        Some("may not contain '/'".to_string())
    } else if name.contains('%') {
        Some("may not contain '%'".to_string())
    } else {
        None
    };
    bad.map(|m| Cause {
        reason: "FieldValueInvalid".into(),
        message: format!("Invalid value: \"{name}\": {m}"),
        field: field.into(),
    })
    .into_iter()
    .collect()
}

fn invalid(info: &ResourceInfo, name: &str, errs: Vec<validation::FieldError>) -> ApiError {
    let message = validation::invalid_status_message(&info.group, &info.kind, name, &errs);
    let causes = errs
        .into_iter()
        .map(|e| Cause {
            reason: e.reason,
            message: e.message,
            field: e.field,
        })
        .collect();
    ApiError::Invalid {
        message,
        target: status::Target {
            group: info.group.clone(),
            kind: info.kind.clone(),
            name: name.into(),
        },
        causes,
    }
}

fn cannot_handle(info: &ResourceInfo, why: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{} in version \"{}\" cannot be handled as a {}: {why}",
        &info.kind, &info.version, info.kind
    ))
}

/// Five characters from Kubernetes' generateName alphabet (no vowels, no look-alikes).
fn name_suffix() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The `selector` string of a Scale: spec.selector as a label selector string.
fn selector_string(obj: &Value) -> String {
    let sel = &obj["spec"]["selector"];
    let mut terms = Vec::new();
    let labels = if sel.get("matchLabels").is_some() || sel.get("matchExpressions").is_some() {
        &sel["matchLabels"]
    } else {
        sel // ReplicationController: a plain map
    };
    if let Some(m) = labels.as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                terms.push(format!("{k}={v}"));
            }
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e["operator"].as_str() {
            Some("In") => terms.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => terms.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => terms.push(key.to_string()),
            Some("DoesNotExist") => terms.push(format!("!{key}")),
            _ => {}
        }
    }
    terms.join(",")
}

/// autoscaling/v1 Scale of a workload.
pub fn to_scale(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let mut meta = json!({"name": m["name"], "uid": m["uid"], "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"]});
    if let Some(ns) = m.get("namespace") {
        meta["namespace"] = ns.clone();
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector_string(obj)}})
}

/// The fieldValidation directive of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

fn field_validation(r: &ResourceRequest) -> Result<FieldValidation, ApiError> {
    match r.param("fieldValidation") {
        None | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some(other) => Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {other}; valid values are Strict, Warn, Ignore"
        ))),
    }
}

/// Unknown and duplicate fields of a JSON body, as Warning texts or a Strict error.
fn check_fields(
    r: &ResourceRequest,
    raw_json: &[u8],
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    let mode = field_validation(r)?;
    if mode == FieldValidation::Ignore {
        return Ok(());
    }
    let mut found = validation::unknown_or_duplicate_fields(&r.info.group, &r.info.kind, raw_json);
    found.extend(r.info.strategy.unknown_fields(raw_json));
    if found.is_empty() {
        return Ok(());
    }
    let texts: Vec<String> = found
        .iter()
        .map(|f| {
            if f.starts_with("duplicate field") || f.starts_with("unknown field") {
                f.clone()
            } else {
                format!("unknown field \"{f}\"")
            }
        })
        .collect();
    match mode {
        FieldValidation::Strict => Err(cannot_handle(
            &r.info,
            &format!("strict decoding error: {}", texts.join(", ")),
        )),
        _ => {
            warnings.extend(texts);
            Ok(())
        }
    }
}

/// Adds `Warning: 299 - "..."` headers.
pub(crate) fn with_warnings(mut resp: Resp, warnings: &[String]) -> Resp {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}

impl Api {
    fn key(&self, r: &ResourceRequest, name: &str) -> String {
        r.info.key(r.namespace.as_deref(), name)
    }

    pub(crate) async fn get_object(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<(Value, KeyValue)>, ApiError> {
        match self.store.get(&info.key(ns, name)).await? {
            None => Ok(None),
            Some(kv) => {
                let v = conversion::decode(info, &kv.value, kv.mod_revision).map_err(|e| {
                    ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key))
                })?;
                Ok(Some((v, kv)))
            }
        }
    }

    /// Parses a write's body into the kind's typed form (as JSON), checking apiVersion/kind and
    /// unknown fields.
    fn decode_body(
        &self,
        r: &ResourceRequest,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        if super::protobuf::is_protobuf(&r.content_type) {
            let mut obj = super::protobuf::decode_request(&r.body).map_err(|e| match e {
                super::protobuf::Error::UnknownKind { .. }
                | super::protobuf::Error::ContentEncoding(_) => {
                    ApiError::UnsupportedMediaType(e.to_string())
                }
                other => ApiError::BadRequest(format!(
                    "the body of the request could not be decoded: protobuf: {other}"
                )),
            })?;
            self.check_type(&r.info, &mut obj)?;
            return (r.info.decode)(obj).map_err(|e| cannot_handle(&r.info, &e));
        }
        let format = encoding::body_format(&r.content_type).ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({})", r.content_type))
        })?;
        if r.body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::BadRequest(
                "the body of the request was empty".into(),
            ));
        }
        let mut obj = encoding::parse_body(&r.body, format).map_err(|e| {
            ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
        })?;
        self.check_type(&r.info, &mut obj)?;
        let raw = encoding::body_as_json_bytes(&r.body, &obj, format);
        check_fields(r, &raw, warnings)?;
        (r.info.decode)(obj).map_err(|e| cannot_handle(&r.info, &e))
    }

    /// The body must be an object of this resource's apiVersion and kind (filled in when absent).
    fn check_type(&self, info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::BadRequest(format!(
                "the body of the request must be a JSON object, not {}",
                obj
            )));
        };
        match map.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v != info.api_version => {
                return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                info.api_version
            )))
            }
            Some(_) => {}
            None => {
                map.insert("apiVersion".into(), json!(&info.api_version));
            }
        }
        match map.get("kind").and_then(Value::as_str) {
            Some(k) if k != info.kind => {
                return Err(ApiError::BadRequest(format!(
                    "{k} in version \"{}\" cannot be handled as a {}: the kind in the data ({k}) does not match the expected kind ({})",
                    &info.version, &info.kind, info.kind
                )))
            }
            Some(_) => {}
            None => {
                map.insert("kind".into(), json!(&info.kind));
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- create

    pub async fn create(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        if r.subresource.is_some() {
            return Err(ApiError::MethodNotAllowed(
                "POST is not supported on subresources".into(),
            ));
        }
        let mut warnings = Vec::new();
        let obj = self.decode_body(r, &mut warnings)?;
        let (code, body) = self.create_object(r, obj).await?;
        Ok(with_warnings(
            full(code, "application/json", body),
            &warnings,
        ))
    }

    /// Creates a decoded object: namespace and name checks, server metadata, defaults,
    /// validation, then the store. Returns 201 and the stored object.
    pub(crate) async fn create_object(
        &self,
        r: &ResourceRequest,
        mut obj: Value,
    ) -> Result<(StatusCode, Vec<u8>), ApiError> {
        let info = &r.info;
        if let Some(why) = info.strategy.refuse_create() {
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            return Err(ApiError::forbidden(&info.group, &info.plural, &name, &why));
        }
        if info.namespaced {
            let ns = r.namespace.clone().ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{} must be created in a namespace: POST to .../namespaces/<namespace>/{}",
                    &info.plural, info.plural
                ))
            })?;
            match meta_str(&obj, "namespace") {
                Some(body_ns) if body_ns != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ))
                }
                _ => {}
            }
            meta_mut(&mut obj).insert("namespace".into(), json!(ns));
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        let generate = meta_str(&obj, "name").is_none();
        let generate_name = meta_str(&obj, "generateName").map(str::to_string);
        if generate && generate_name.is_none() {
            return Err(ApiError::invalid(
                &info.group,
                &info.kind,
                "",
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
        // The decoded object is defaulted (upstream's decoder does it), then mutating admission.
        info.strategy.defaults(&mut obj);
        let mut attrs = admission::Attributes {
            user: r.user.clone(),
            operation: Operation::Create,
            kind: admission::Kind::of(info),
            resource: info.clone(),
            subresource: r.subresource.clone().unwrap_or_default(),
            namespace: r
                .namespace
                .clone()
                .filter(|_| info.namespaced)
                .unwrap_or_default(),
            name: meta_str(&obj, "name").unwrap_or_default().to_string(),
            object: Some(obj),
            old_object: None,
            dry_run: r.dry_run(),
        };
        self.pipeline.admission.admit(self, &mut attrs).await?;
        let obj = attrs.object.take().unwrap_or_default();

        for _attempt in 0..8 {
            let mut o = obj.clone();
            if generate {
                let n = format!(
                    "{}{}",
                    generate_name.as_deref().unwrap_or(""),
                    name_suffix()
                );
                meta_mut(&mut o).insert("name".into(), json!(n));
            }
            let name = meta_str(&o, "name").unwrap_or_default().to_string();
            prepare_create(info, &mut o);
            info.strategy.created_by(&mut o, &r.user);
            // Values held outside the object (a Service's cluster IP) are taken before
            // validation, as upstream allocates, and given back unless the object is stored.
            let taken = allocation::allocate(info, &*self.store, &mut o, None, r.dry_run()).await?;
            let outcome = async {
                let mut errs: Vec<Cause> = path_segment_causes(&name, "metadata.name");
                errs.extend(
                    validation::validate_with(&*info.strategy, &o, None)
                        .into_iter()
                        .map(|e| Cause {
                            reason: e.reason,
                            message: e.message,
                            field: e.field,
                        }),
                );
                if !errs.is_empty() {
                    return Err(ApiError::invalid(&info.group, &info.kind, &name, errs));
                }
                attrs.name = name.clone();
                attrs.object = Some(o);
                self.pipeline.admission.validate(self, &attrs).await?;
                let mut o = attrs.object.take().unwrap_or_default();
                // Server-side apply has recorded its own entry; other creates are Update entries.
                if o["metadata"].get("managedFields").is_none() {
                    apply::track_update(
                        &info.group,
                        &info.kind,
                        None,
                        &mut o,
                        &r.field_manager,
                        None,
                        apply_schema(info),
                    );
                }
                if r.dry_run() {
                    return Ok(Some((
                        StatusCode::CREATED,
                        serde_json::to_vec(&o).unwrap_or_default(),
                    )));
                }
                let key = info.key(r.namespace.as_deref(), &name);
                match self
                    .store
                    .create(&key, conversion::to_stored(info, &o))
                    .await
                {
                    Ok(kv) => Ok(Some((
                        StatusCode::CREATED,
                        conversion::with_rv(info, &kv.value, kv.mod_revision),
                    ))),
                    // A generated name was taken: another attempt.
                    Err(store::Error::AlreadyExists(_)) if generate => Ok(None),
                    Err(store::Error::AlreadyExists(_)) => {
                        Err(ApiError::already_exists(&info.group, &info.plural, &name))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            .await;
            allocation::settle(taken, &*self.store, matches!(outcome, Ok(Some(_)))).await;
            match outcome {
                Ok(Some(created)) => return Ok(created),
                Ok(None) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Internal(
            "could not generate a unique name; try again".into(),
        ))
    }

    // ---------------------------------------------------------------- update / patch

    pub async fn update(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let name = r.name.clone().unwrap_or_default();
        let mut warnings = Vec::new();
        if r.subresource.as_deref() == Some("scale") {
            let body = encoding::parse_body(
                &r.body,
                encoding::body_format(&r.content_type).unwrap_or(encoding::BodyFormat::Json),
            )
            .map_err(|e| {
                ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
            })?;
            let scale: k8s_openapi::api::autoscaling::v1::Scale =
                serde_json::from_value(body.clone()).map_err(|e| {
                    ApiError::BadRequest(format!(
                        "Scale in version \"v1\" cannot be handled as a Scale: {e}"
                    ))
                })?;
            let replicas = i64::from(scale.spec.and_then(|s| s.replicas).unwrap_or(0));
            let rv = body["metadata"]["resourceVersion"].clone();
            return self
                .scale_write(r, move |_| Ok((replicas, rv.clone())))
                .await;
        }
        let obj = self.decode_body(r, &mut warnings)?;
        match meta_str(&obj, "name") {
            Some(n) if n != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )))
            }
            _ => {}
        }
        if let (Some(ns), Some(body_ns)) = (r.namespace.as_deref(), meta_str(&obj, "namespace")) {
            if ns != body_ns {
                return Err(ApiError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
            }
        }
        let mode = mode_of(r);
        // A few kinds are created by PUT when missing, as kube-apiserver allows for them.
        let create_on_update = mode == Mode::Main
            && matches!(
                r.info.plural.as_str(),
                "leases" | "endpoints" | "events" | "endpointslices"
            );
        if create_on_update
            && self
                .get_object(&r.info, r.namespace.as_deref(), &name)
                .await?
                .is_none()
        {
            let mut o = obj.clone();
            meta_mut(&mut o).insert("name".into(), json!(name));
            let (code, body) = self.create_object(r, o).await?;
            return Ok(with_warnings(
                full(code, "application/json", body),
                &warnings,
            ));
        }
        let body = self.write_update(r, mode, |_cur| Ok(obj.clone())).await?;
        Ok(with_warnings(
            full(StatusCode::OK, "application/json", body),
            &warnings,
        ))
    }

    pub async fn patch(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let name = r.name.clone().unwrap_or_default();
        let media = r
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let kind = match media.as_str() {
            "application/json-patch+json" => PatchKind::Json,
            "application/merge-patch+json" => PatchKind::Merge,
            "application/strategic-merge-patch+json" if !r.info.strategy.strategic_merge() => {
                return Err(ApiError::UnsupportedMediaType(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                ))
            }
            "application/strategic-merge-patch+json" => PatchKind::Strategic,
            "application/apply-patch+yaml" => PatchKind::Apply,
            other => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the server does not support the patch type {other:?}: use application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json or application/apply-patch+yaml"
                )))
            }
        };
        let format = if kind == PatchKind::Apply {
            encoding::BodyFormat::Yaml
        } else {
            encoding::BodyFormat::Json
        };
        let patch = encoding::parse_body(&r.body, format).map_err(|e| {
            ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
        })?;
        let mut warnings = Vec::new();

        if r.subresource.as_deref() == Some("scale") {
            if kind == PatchKind::Apply {
                return Err(ApiError::UnsupportedMediaType(
                    "apply patches are not supported on scale".into(),
                ));
            }
            let info = &r.info;
            return self
                .scale_write(r, move |cur| {
                    let scale = info.strategy.scale(cur);
                    let patched = apply_patch(info, kind, &scale, &patch)?;
                    let replicas = patched["spec"]["replicas"].as_i64().ok_or_else(|| {
                        ApiError::BadRequest("Scale in version \"v1\" cannot be handled as a Scale: spec.replicas must be an integer".into())
                    })?;
                    Ok((replicas, patched["metadata"]["resourceVersion"].clone()))
                })
                .await;
        }

        if kind == PatchKind::Apply {
            let manager = r
                .param("fieldManager")
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "PATCH requests with apply content type require fieldManager to be set"
                            .into(),
                    )
                })?
                .to_string();
            let force = r.param("force") == Some("true");
            let mut applied = patch.clone();
            self.check_type(&r.info, &mut applied)?;
            check_fields(
                r,
                &serde_json::to_vec(&applied).unwrap_or_default(),
                &mut warnings,
            )?;
            if self
                .get_object(&r.info, r.namespace.as_deref(), &name)
                .await?
                .is_none()
                && mode_of(r) == Mode::Main
            {
                let created = apply::server_side_apply_detailed(
                    &r.info.group,
                    &r.info.kind,
                    None,
                    &applied,
                    &manager,
                    force,
                    None,
                    apply_schema(&r.info),
                )
                .map_err(|e| apply_error(&r.info, &name, e))?;
                let mut created =
                    (r.info.decode)(created).map_err(|e| cannot_handle(&r.info, &e))?;
                if meta_str(&created, "name").is_none() {
                    meta_mut(&mut created).insert("name".into(), json!(name));
                }
                let (code, body) = self.create_object(r, created).await?;
                return Ok(with_warnings(
                    full(code, "application/json", body),
                    &warnings,
                ));
            }
            let info = &r.info;
            let pins = patch_names_rv(PatchKind::Apply, &applied);
            let body = self
                .write_update(r, mode_of(r), |cur| {
                    let out = apply::server_side_apply_detailed(
                        &info.group,
                        &info.kind,
                        Some(cur),
                        &applied,
                        &manager,
                        force,
                        r.subresource.as_deref().filter(|s| *s == "status"),
                        apply_schema(info),
                    )
                    .map_err(|e| apply_error(info, &name, e))?;
                    let mut out = (info.decode)(out).map_err(|e| cannot_handle(info, &e))?;
                    if !pins {
                        meta_mut(&mut out).remove("resourceVersion");
                    }
                    Ok(out)
                })
                .await?;
            return Ok(with_warnings(
                full(StatusCode::OK, "application/json", body),
                &warnings,
            ));
        }

        let info = &r.info;
        let strict = field_validation(r)?;
        let found_unknown = std::sync::Mutex::new(Vec::new());
        let pins = patch_names_rv(kind, &patch);
        let body = self
            .write_update(r, mode_of(r), |cur| {
                let mut patched = apply_patch(info, kind, cur, &patch)?;
                // The current object's resourceVersion came along; only one the patch itself
                // names is a precondition, so a lost race re-applies the patch.
                if !pins {
                    meta_mut(&mut patched).remove("resourceVersion");
                }
                if strict != FieldValidation::Ignore {
                    let raw = serde_json::to_vec(&patched).unwrap_or_default();
                    let mut w = Vec::new();
                    check_fields(r, &raw, &mut w)?;
                    *found_unknown.lock().expect("not poisoned") = w;
                }
                self.check_type(info, &mut patched)?;
                (info.decode)(patched).map_err(|e| cannot_handle(info, &e))
            })
            .await?;
        warnings.extend(found_unknown.into_inner().unwrap_or_default());
        Ok(with_warnings(
            full(StatusCode::OK, "application/json", body),
            &warnings,
        ))
    }

    /// POST pods/<name>/binding: the scheduler's way to set spec.nodeName, once.
    pub async fn bind(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let name = r.name.clone().unwrap_or_default();
        let body = encoding::parse_body(
            &r.body,
            encoding::body_format(&r.content_type).unwrap_or(encoding::BodyFormat::Json),
        )
        .map_err(|e| {
            ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
        })?;
        let typed = |v: Value| -> Result<k8s_openapi::api::core::v1::Binding, ApiError> {
            serde_json::from_value(v).map_err(|e| {
                ApiError::BadRequest(format!(
                    "Binding in version \"v1\" cannot be handled as a Binding: {e}"
                ))
            })
        };
        typed(body.clone())?;
        // Admitted as upstream does: a CREATE of pods/binding whose object is the Binding (not
        // an update of the pod).
        let mut attrs = admission::Attributes {
            user: r.user.clone(),
            operation: Operation::Create,
            kind: admission::Kind::new("", "v1", "Binding"),
            resource: r.info.clone(),
            subresource: "binding".into(),
            namespace: r.namespace.clone().unwrap_or_default(),
            name: name.clone(),
            object: Some(body),
            old_object: None,
            dry_run: r.dry_run(),
        };
        self.pipeline.admission.admit(self, &mut attrs).await?;
        let binding = typed(attrs.object.clone().unwrap_or_default())?;
        let node = binding.target.name.clone().unwrap_or_default();
        if node.is_empty() {
            return Err(ApiError::invalid(
                "",
                "Binding",
                &name,
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value".into(),
                    field: "target.name".into(),
                }],
            ));
        }
        self.pipeline.admission.validate(self, &attrs).await?;
        let uid = binding.metadata.uid.clone();
        self.write_update(r, Mode::Main, |cur| {
            if let Some(uid) = &uid {
                if cur["metadata"]["uid"].as_str() != Some(uid.as_str()) {
                    return Err(ApiError::conflict(
                        "",
                        "pods",
                        &name,
                        "the UID of the binding does not match the pod",
                    ));
                }
            }
            if cur["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
            {
                return Err(ApiError::conflict(
                    "",
                    "pods/binding",
                    &name,
                    &format!(
                        "pod {name} is already assigned to node \"{}\"",
                        cur["spec"]["nodeName"].as_str().unwrap_or_default()
                    ),
                ));
            }
            if cur["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::conflict(
                    "",
                    "pods/binding",
                    &name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let mut new = cur.clone();
            new["spec"]["nodeName"] = json!(node);
            meta_mut(&mut new).remove("resourceVersion");
            Ok(new)
        })
        .await?;
        Ok(json(StatusCode::CREATED, &status::success_plain()))
    }

    /// Writes the replicas a scale request asks for into the workload, answering a Scale.
    async fn scale_write<F>(&self, r: &ResourceRequest, compute: F) -> Result<Resp, ApiError>
    where
        F: Fn(&Value) -> Result<(i64, Value), ApiError>,
    {
        let body = self
            .write_update(r, Mode::Main, |cur| {
                let (replicas, rv) = compute(cur)?;
                let mut new = cur.clone();
                r.info.strategy.set_replicas(&mut new, replicas);
                // The Scale's resourceVersion is the workload's: a stale one is a conflict.
                match rv.as_str().filter(|s| !s.is_empty()) {
                    Some(v) => meta_mut(&mut new).insert("resourceVersion".into(), json!(v)),
                    None => meta_mut(&mut new).remove("resourceVersion"),
                };
                Ok(new)
            })
            .await?;
        let obj: Value =
            serde_json::from_slice(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(json(StatusCode::OK, &r.info.strategy.scale(&obj)))
    }

    /// The read-modify-write loop of every update: `compute` turns the current object into the
    /// wanted one; a resourceVersion left in it is a precondition.
    pub(crate) async fn write_update<F>(
        &self,
        r: &ResourceRequest,
        mode: Mode,
        mut compute: F,
    ) -> Result<Vec<u8>, ApiError>
    where
        F: FnMut(&Value) -> Result<Value, ApiError>,
    {
        let info = &r.info;
        let name = r.name.clone().unwrap_or_default();
        let key = self.key(r, &name);
        for _ in 0..CONFLICT_RETRIES {
            let Some((cur, kv)) = self.get_object(info, r.namespace.as_deref(), &name).await?
            else {
                return Err(ApiError::not_found(&info.group, &info.plural, &name));
            };
            let mut new = compute(&cur)?;
            let pinned = match new["metadata"]["resourceVersion"]
                .as_str()
                .filter(|s| !s.is_empty())
            {
                Some(v) => {
                    let want: i64 = v.parse().map_err(|_| {
                        ApiError::BadRequest(format!("invalid resourceVersion: {v}"))
                    })?;
                    if want != kv.mod_revision {
                        return Err(ApiError::modified(&info.group, &info.plural, &name));
                    }
                    true
                }
                None => false,
            };
            // Mutating admission on this attempt's object, then the server's merge, validation
            // and validating admission: all inside the retry, as upstream's GuaranteedUpdate.
            if mode == Mode::Main {
                info.strategy.defaults(&mut new);
            }
            // pods/binding was admitted as the Binding's create (`bind`); /scale writes are
            // admitted as the Scale they are.
            let admitted = r.subresource.as_deref() != Some("binding");
            let scale = r.subresource.as_deref() == Some("scale");
            let mut attrs = admission::Attributes {
                user: r.user.clone(),
                operation: Operation::Update,
                kind: if scale {
                    admission::Kind::new("autoscaling", "v1", "Scale")
                } else {
                    admission::Kind::of(info)
                },
                resource: info.clone(),
                subresource: r.subresource.clone().unwrap_or_default(),
                namespace: r
                    .namespace
                    .clone()
                    .filter(|_| info.namespaced)
                    .unwrap_or_default(),
                name: name.clone(),
                object: None,
                old_object: None,
                dry_run: r.dry_run(),
            };
            let mut cur = cur;
            if admitted && scale {
                attrs.object = Some(to_scale(&new));
                attrs.old_object = Some(to_scale(&cur));
                self.pipeline.admission.admit(self, &mut attrs).await?;
                if let Some(n) = attrs.object.as_ref().map(|s| &s["spec"]["replicas"]) {
                    new["spec"]["replicas"] = n.clone();
                }
            } else if admitted {
                attrs.object = Some(new);
                attrs.old_object = Some(cur);
                self.pipeline.admission.admit(self, &mut attrs).await?;
                cur = attrs.old_object.take().unwrap_or_default();
                new = attrs.object.take().unwrap_or_default();
            }
            merge_update(info, mode, &cur, &mut new);
            // As on create: taken before validation, kept only if this attempt writes.
            let taken = if mode == Mode::Main && admitted && !scale {
                allocation::allocate(info, &*self.store, &mut new, Some(&cur), r.dry_run()).await?
            } else {
                None
            };
            let outcome = async {
                if mode == Mode::EphemeralContainers {
                    let name = cur["metadata"]["name"].as_str().unwrap_or("");
                    let errs = validation::pods::validate_ephemeral_update(&new, &cur);
                    if !errs.is_empty() {
                        return Err(invalid(info, name, errs));
                    }
                } else {
                    validate_update(info, &cur, &new)?;
                }
                if admitted && scale {
                    attrs.object = Some(to_scale(&new));
                    self.pipeline.admission.validate(self, &attrs).await?;
                } else if admitted {
                    attrs.object = Some(new);
                    attrs.old_object = Some(cur);
                    self.pipeline.admission.validate(self, &attrs).await?;
                    cur = attrs.old_object.take().unwrap_or_default();
                    new = attrs.object.take().unwrap_or_default();
                }
                if !r.content_type.starts_with("application/apply-patch") {
                    apply::track_update(
                        &info.group,
                        &info.kind,
                        Some(&cur),
                        &mut new,
                        &r.field_manager,
                        r.subresource.as_deref(),
                        apply_schema(info),
                    );
                }
                meta_mut(&mut new).remove("resourceVersion");
                let mut cur_cmp = cur.clone();
                meta_mut(&mut cur_cmp).remove("resourceVersion");
                if new == cur_cmp {
                    // Nothing changed: no write, no event, same resourceVersion.
                    return Ok(Written::Unchanged(conversion::with_rv(
                        info,
                        &kv.value,
                        kv.mod_revision,
                    )));
                }
                if r.dry_run() {
                    // What the write would store, at the resourceVersion it would replace.
                    return Ok(Written::Unchanged(encoding::with_rv(
                        &encoding::to_stored(&new),
                        kv.mod_revision,
                    )));
                }
                if deletes_on_update(info, &cur, &new) {
                    // The last finalizer is gone from an object being deleted: it goes now.
                    return match self.store.delete(&key, Some(kv.mod_revision)).await {
                        Ok((_, rev)) => {
                            allocation::free_held(info, &*self.store, &cur).await;
                            Ok(Written::Unchanged(encoding::with_rv(
                                &encoding::to_stored(&new),
                                rev,
                            )))
                        }
                        Err(store::Error::Conflict { .. }) if !pinned => Ok(Written::Retry),
                        Err(store::Error::Conflict { .. }) => {
                            Err(ApiError::modified(&info.group, &info.plural, &name))
                        }
                        Err(store::Error::NotFound(_)) => {
                            Err(ApiError::not_found(&info.group, &info.plural, &name))
                        }
                        Err(e) => Err(e.into()),
                    };
                }
                match self
                    .store
                    .update(&key, conversion::to_stored(info, &new), kv.mod_revision)
                    .await
                {
                    Ok(kv) => Ok(Written::Stored(conversion::with_rv(
                        info,
                        &kv.value,
                        kv.mod_revision,
                    ))),
                    Err(store::Error::Conflict { .. }) if !pinned => Ok(Written::Retry),
                    Err(store::Error::Conflict { .. }) => {
                        Err(ApiError::modified(&info.group, &info.plural, &name))
                    }
                    Err(store::Error::NotFound(_)) => {
                        Err(ApiError::not_found(&info.group, &info.plural, &name))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            .await;
            let stored = matches!(outcome, Ok(Written::Stored(_)));
            allocation::settle(taken, &*self.store, stored).await;
            match outcome {
                Ok(Written::Stored(body) | Written::Unchanged(body)) => return Ok(body),
                Ok(Written::Retry) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::modified(&info.group, &info.plural, &name))
    }
}

/// How one attempt of `write_update` ended.
enum Written {
    /// The new object was stored: what the allocation gave up is freed.
    Stored(Vec<u8>),
    /// Nothing new was stored (no change, a dry run, or the object went with its last
    /// finalizer): what the allocation took goes back.
    Unchanged(Vec<u8>),
    /// Another writer got there first: the loop runs again.
    Retry,
}

/// Whether an update ends an object's deletion: it takes the last finalizer off an object
/// whose deletion waited for them, or leaves a terminating namespace with none in spec or
/// metadata.
fn deletes_on_update(info: &ResourceInfo, cur: &Value, new: &Value) -> bool {
    if info.group.is_empty() && info.plural == "namespaces" {
        return super::lifecycle::namespace_finalized(new);
    }
    removes_last_finalizer(cur, new)
}

/// Whether an update takes the last finalizer off an object whose deletion waited for them.
/// A pod in its grace period (no finalizers, deletionGracePeriodSeconds > 0) is updated as
/// usual: its kubelet finishes the delete.
fn removes_last_finalizer(cur: &Value, new: &Value) -> bool {
    meta_str(cur, "deletionTimestamp").is_some()
        && !finalizers(cur).is_empty()
        && finalizers(new).is_empty()
        && cur["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            == 0
}

/// The schema server-side apply reads list semantics from: a kind defined at run time's own
/// (a custom resource's structural schema); built-in kinds use the strategic-merge table.
fn apply_schema(info: &ResourceInfo) -> Option<&Value> {
    match &info.schema {
        super::registry::Schema::Json { schema, .. } => Some(schema),
        super::registry::Schema::Typed { .. } => None,
    }
}

/// A failed server-side apply as its Status: a field ownership conflict (409) or an applied
/// configuration that cannot be applied (422).
fn apply_error(info: &ResourceInfo, name: &str, e: apply::ApplyError) -> ApiError {
    let target = status::Target {
        group: info.group.clone(),
        kind: info.plural.clone(),
        name: name.into(),
    };
    match e {
        apply::ApplyError::Conflict { message, .. } => ApiError::Conflict { message, target },
        apply::ApplyError::Invalid(message) => ApiError::Invalid {
            message,
            target,
            causes: Vec::new(),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn apply_patch(
    info: &ResourceInfo,
    kind: PatchKind,
    cur: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::BadRequest(format!("the JSON patch could not be decoded: {e}"))
            })?;
            let mut doc = cur.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| ApiError::Invalid {
                message: format!(
                    "the server rejected our request due to an error in our request: {e}"
                ),
                target: Default::default(),
                causes: Vec::new(),
            })?;
            Ok(doc)
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            let mut doc = cur.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            strategic_merge::apply(&info.group, &info.kind, cur, patch)
                .map_err(ApiError::BadRequest)
        }
        PatchKind::Apply => unreachable!("apply patches go through server_side_apply"),
    }
}

/// Whether a patch sets metadata.resourceVersion (a precondition, as upstream).
fn patch_names_rv(kind: PatchKind, patch: &Value) -> bool {
    match kind {
        PatchKind::Json => patch.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["path"] == "/metadata/resourceVersion" && op["op"] != "test")
        }),
        _ => patch["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
    }
}

fn mode_of(r: &ResourceRequest) -> Mode {
    match r.subresource.as_deref() {
        Some("status") => Mode::Status,
        Some("finalize") => Mode::Finalize,
        Some("ephemeralcontainers") => Mode::EphemeralContainers,
        Some("approval") => Mode::Approval,
        _ => Mode::Main,
    }
}

pub(crate) fn selectors_of(
    r: &ResourceRequest,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let label = LabelSelector::parse(r.param("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("invalid labelSelector: {e}")))?;
    let field = FieldSelector::parse(r.param("fieldSelector").unwrap_or(""), |f| {
        r.info.supports_field(f)
    })
    .map_err(|e| {
        ApiError::BadRequest(match e {
            super::selectors::Error::UnsupportedField(f) => {
                format!("field label not supported: {f}")
            }
            other => format!("invalid fieldSelector: {other}"),
        })
    })?;
    Ok((label, field))
}

/// Server-owned fields of a new object, and the status it starts with.
pub(crate) fn prepare_create(info: &ResourceInfo, obj: &mut Value) {
    let m = meta_mut(obj);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(now_rfc3339()));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        m.remove(f);
    }
    if info.status {
        info.strategy.initial_status(obj);
    }
    info.strategy.defaults(obj);
    info.strategy.drop_nulls(obj);
    if obj.get("spec").is_some() {
        meta_mut(obj).insert("generation".into(), json!(1));
    }
}

/// Merges a wanted object with the current one per write mode: server-owned metadata kept,
/// status or spec kept from the current object, generation bumped on spec changes, defaults.
pub(crate) fn merge_update(info: &ResourceInfo, mode: Mode, cur: &Value, new: &mut Value) {
    match mode {
        Mode::Status => {
            let mut base = cur.clone();
            match new.get("status") {
                Some(s) => base["status"] = s.clone(),
                None => {
                    if let Some(o) = base.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            if info.group.is_empty() && info.plural == "pods" {
                // kube-apiserver's pods/status keeps only spec, deletionTimestamp and
                // ownerReferences: kubelets may label and annotate their pods through it.
                let m = meta_mut(&mut base);
                for f in ["labels", "annotations", "finalizers"] {
                    match new["metadata"].get(f) {
                        Some(v) => m.insert(f.into(), v.clone()),
                        None => m.remove(f),
                    };
                }
            }
            *new = base;
            info.strategy.status_defaults(new);
        }
        Mode::Finalize => {
            let mut base = cur.clone();
            base["spec"]["finalizers"] = new["spec"]["finalizers"].clone();
            *new = base;
        }
        Mode::Approval => {
            // As upstream's csrApprovalStrategy: the conditions, nothing else.
            let mut base = cur.clone();
            base["status"]["conditions"] = new["status"]["conditions"].clone();
            if base["status"]["conditions"].is_null() {
                if let Some(st) = base["status"].as_object_mut() {
                    st.remove("conditions");
                }
            }
            *new = base;
        }
        Mode::EphemeralContainers => {
            // As upstream's ephemeralContainersStrategy: everything else stays as it was.
            let mut base = cur.clone();
            match new["spec"].get("ephemeralContainers") {
                Some(list) => base["spec"]["ephemeralContainers"] = list.clone(),
                None => {
                    if let Some(spec) = base["spec"].as_object_mut() {
                        spec.remove("ephemeralContainers");
                    }
                }
            }
            *new = base;
            info.strategy.defaults(new);
        }
        Mode::Main => {
            let cm = &cur["metadata"];
            let keep_managed = new["metadata"].get("managedFields").is_none();
            let m = meta_mut(new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ] {
                match cm.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            if keep_managed {
                if let Some(mf) = cm.get("managedFields") {
                    m.insert("managedFields".into(), mf.clone());
                }
            }
            if info.status {
                match cur.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(o) = new.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
            }
            info.strategy.defaults(new);
            info.strategy.drop_nulls(new);
            if new.get("spec") != cur.get("spec") {
                if let Some(g) = cur["metadata"]["generation"].as_i64() {
                    meta_mut(new).insert("generation".into(), json!(g + 1));
                }
            }
        }
    }
}

/// The kind's validation of an update against the stored object (422 with one cause a field).
pub(crate) fn validate_update(
    info: &ResourceInfo,
    cur: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let name = cur["metadata"]["name"].as_str().unwrap_or("");
    let errs = validation::validate_with(&*info.strategy, new, Some(cur));
    if !errs.is_empty() {
        return Err(invalid(info, name, errs));
    }
    Ok(())
}

/// Drops null members of objects: a null field means an absent one (Go's nil pointers are
/// omitted when kube-apiserver encodes), and stored objects stay free of them.
pub(crate) fn prune_nulls(v: &mut Value) {
    prune_empty_metadata(v);
    prune_null_members(v);
}

/// Empty label and annotation maps and finalizer lists are omitted in Kubernetes' encoding.
pub(crate) fn prune_empty_metadata(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match m.get(f) {
                Some(Value::Object(o)) => o.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if empty {
                m.remove(f);
            }
        }
    }
}

fn prune_null_members(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_null_members);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_null_members),
        _ => {}
    }
}

/// The Status of a delete that had nothing left to return (deletecollection of nothing).
pub fn deleted_status(info: &ResourceInfo, name: &str, uid: &str) -> Value {
    status::success(&info.group, &info.plural, name, uid)
}
