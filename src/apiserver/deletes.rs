//! Deletes: one object (preconditions, finalizers and deletionTimestamp, graceful pod
//! deletion, propagation policy) and collections.

use super::handler::{json, Api, ResourceRequest, Resp};
use super::registry::ResourceInfo;
use super::resources::{
    finalizers, meta_mut, meta_str, now_rfc3339, selectors_of, DeleteOptions, CONFLICT_RETRIES,
};
use super::status::ApiError;
use super::{admission, allocation, conversion};
use crate::store::{self, KeyValue};
use http::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

impl Api {
    // ---------------------------------------------------------------- delete

    pub async fn delete(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        if r.subresource.is_some() {
            return Err(ApiError::MethodNotAllowed(
                "DELETE is not supported on subresources".into(),
            ));
        }
        let opts = delete_options(r)?;
        let name = r.name.clone().unwrap_or_default();
        let obj = self
            .delete_object(&r.info, r.namespace.as_deref(), &name, &opts)
            .await?;
        Ok(json(StatusCode::OK, &obj))
    }

    pub async fn delete_collection(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let (label, field) = selectors_of(r)?;
        let opts = delete_options(r)?;
        let prefix = r.info.list_prefix(r.namespace.as_deref());
        let page = self.store.list(&prefix, None, 0, None).await?;
        let mut deleted = Vec::new();
        for kv in page.items {
            let v = conversion::decode(&r.info, &kv.value, kv.mod_revision)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if !label.matches(&v) || !field.matches(&v) {
                continue;
            }
            let name = meta_str(&v, "name").unwrap_or_default().to_string();
            let ns = meta_str(&v, "namespace").map(str::to_string);
            match self
                .delete_object(&r.info, ns.as_deref(), &name, &opts)
                .await
            {
                Ok(o) => deleted.push(o),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let rev = self.store.current_revision().await?;
        Ok(json(
            StatusCode::OK,
            &json!({"kind": &r.info.list_kind, "apiVersion": &r.info.api_version,
            "metadata": {"resourceVersion": rev.to_string()}, "items": deleted}),
        ))
    }

    /// Deletes one object as Kubernetes does: preconditions; finalizers (and graceful pod
    /// termination) turn the delete into setting deletionTimestamp; namespaces terminate first.
    /// Returns the object as last seen (or as now marked).
    pub(crate) async fn delete_object(
        &self,
        info: &Arc<ResourceInfo>,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = info.key(ns, name);
        for _ in 0..CONFLICT_RETRIES {
            let Some((cur, kv)) = self.get_object(info, ns, name).await? else {
                return Err(ApiError::not_found(&info.group, &info.plural, name));
            };
            if let Some(uid) = &opts.uid {
                let have = meta_str(&cur, "uid").unwrap_or("");
                if uid != have {
                    return Err(ApiError::conflict(&info.group, &info.plural, name, &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                    )));
                }
            }
            if let Some(rv) = &opts.resource_version {
                if *rv != kv.mod_revision.to_string() {
                    return Err(ApiError::conflict(&info.group, &info.plural, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        kv.mod_revision
                    )));
                }
            }
            // Admission sees each attempt's object, as upstream's delete does inside its retry.
            let mut attrs = admission::Attributes {
                user: opts.user.clone(),
                operation: admission::Operation::Delete,
                kind: admission::Kind::of(info),
                resource: info.clone(),
                subresource: String::new(),
                namespace: ns.unwrap_or_default().to_string(),
                name: name.to_string(),
                object: None,
                old_object: Some(cur),
                dry_run: opts.dry_run,
            };
            self.pipeline.admission.admit(self, &mut attrs).await?;
            self.pipeline.admission.validate(self, &attrs).await?;
            let cur = attrs.old_object.take().expect("set above");
            if info.plural == "namespaces" {
                return self
                    .terminate_namespace(&cur, kv.mod_revision, opts.dry_run)
                    .await;
            }
            let mut cur = cur;
            if meta_str(&cur, "deletionTimestamp").is_none() {
                info.strategy.before_delete(&mut cur);
            }
            // Foreground and Orphan are finalizers the garbage collector works off; the
            // delete itself only records them (upstream's deletionFinalizersForGarbageCollection).
            let gc_changed = match gc_finalizers(info, &cur, opts) {
                Some(fins) => {
                    meta_mut(&mut cur).insert("finalizers".into(), json!(fins));
                    true
                }
                None => false,
            };
            let fins = finalizers(&cur);
            let graceful = self.pod_grace(info, &cur, opts).await?;
            // A pod's grace period runs whether or not finalizers hold it, as upstream: its
            // kubelet stops it gracefully and finishes the delete; finalizers keep the object.
            if let Some(grace) = graceful {
                let mut new = cur.clone();
                let m = meta_mut(&mut new);
                let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                let shorter = m
                    .get("deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_none_or(|g| grace < g);
                if !shorter && !gc_changed {
                    return Ok(cur);
                }
                if shorter {
                    m.insert(
                        "deletionTimestamp".into(),
                        json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    );
                    m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                }
                m.remove("resourceVersion");
                if opts.dry_run {
                    return Ok(new);
                }
                match self
                    .store
                    .update(&key, conversion::to_stored(info, &new), kv.mod_revision)
                    .await
                {
                    Ok(kv) => return decode(info, &kv),
                    Err(store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if !fins.is_empty() {
                let held_grace = cur["metadata"]["deletionGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(0);
                let going = meta_str(&cur, "deletionTimestamp").is_some();
                // Already going: only an immediate delete (it ends the grace period, as the
                // kubelet's final delete does) or a new propagation policy changes anything.
                let ends_grace = going && held_grace != 0 && opts.grace_period == Some(0);
                if going && !ends_grace && !gc_changed {
                    return Ok(cur);
                }
                let mut new = cur.clone();
                let m = meta_mut(&mut new);
                if !going || ends_grace {
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                }
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                m.remove("resourceVersion");
                if opts.dry_run {
                    return Ok(new);
                }
                match self
                    .store
                    .update(&key, conversion::to_stored(info, &new), kv.mod_revision)
                    .await
                {
                    Ok(kv) => return decode(info, &kv),
                    Err(store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            if opts.dry_run {
                return Ok(cur);
            }
            match self.store.delete(&key, Some(kv.mod_revision)).await {
                Ok((_, _rev)) => {
                    allocation::free_held(info, &*self.store, &cur).await;
                    return Ok(cur);
                }
                Err(store::Error::Conflict { .. }) => continue,
                Err(store::Error::NotFound(_)) => {
                    return Err(ApiError::not_found(&info.group, &info.plural, name))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::modified(&info.group, &info.plural, name))
    }

    /// A pod bound to an existing node is deleted gracefully (its kubelet finishes the delete);
    /// unbound pods, pods on unknown nodes and finished pods go at once, as in Kubernetes.
    async fn pod_grace(
        &self,
        info: &ResourceInfo,
        pod: &Value,
        opts: &DeleteOptions,
    ) -> Result<Option<i64>, ApiError> {
        if info.plural != "pods" || !info.group.is_empty() {
            return Ok(None);
        }
        let grace = opts
            .grace_period
            .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if grace <= 0 || node.is_empty() || finished {
            return Ok(None);
        }
        let nodes = self
            .registry
            .lookup("", "v1", "nodes")
            .expect("nodes are registered");
        if self.get_object(&nodes, None, node).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(grace))
    }
}

/// The finalizer that has the garbage collector remove every dependent's reference to an
/// object before it goes (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that keeps an object until the garbage collector has deleted its blocking
/// dependents (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// Whether deleting an object of this resource orphans its dependents when the request names
/// no policy: only ReplicationControllers of core/v1 still do, for backward compatibility, as
/// upstream's `DefaultGarbageCollectionPolicy` (every other built-in kind deletes them).
fn orphans_by_default(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.version == "v1" && info.plural == "replicationcontrollers"
}

/// The object's finalizers once a delete with `opts` has recorded its propagation policy, or
/// None when they do not change. An explicit policy wins; else a GC finalizer the object
/// already carries; else the kind's default (upstream's shouldOrphanDependents and
/// shouldDeleteDependents).
fn gc_finalizers(info: &ResourceInfo, obj: &Value, opts: &DeleteOptions) -> Option<Vec<String>> {
    let have = finalizers(obj);
    let carried = have
        .iter()
        .find(|f| *f == ORPHAN_FINALIZER || *f == FOREGROUND_FINALIZER)
        .map(String::as_str);
    let (orphan, foreground) = match opts.propagation.as_deref() {
        Some("Orphan") => (true, false),
        Some("Foreground") => (false, true),
        Some(_) => (false, false),
        None => match carried {
            Some(ORPHAN_FINALIZER) => (true, false),
            Some(_) => (false, true),
            None => (orphans_by_default(info), false),
        },
    };
    let mut want: Vec<String> = have
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    if orphan {
        want.push(ORPHAN_FINALIZER.into());
    }
    if foreground {
        want.push(FOREGROUND_FINALIZER.into());
    }
    let same = want.len() == have.len() && want.iter().all(|f| have.contains(f));
    (!same).then_some(want)
}

fn decode(info: &ResourceInfo, kv: &KeyValue) -> Result<Value, ApiError> {
    conversion::decode(info, &kv.value, kv.mod_revision)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

fn delete_options(r: &ResourceRequest) -> Result<DeleteOptions, ApiError> {
    let mut o = DeleteOptions {
        dry_run: r.dry_run(),
        user: r.user.clone(),
        ..Default::default()
    };
    if !r.body.iter().all(u8::is_ascii_whitespace) {
        let v: Value = if super::protobuf::is_protobuf(&r.content_type) {
            // kubectl 1.32+ sends its DeleteOptions (drain, delete) in protobuf.
            let v = super::protobuf::decode_request(&r.body).map_err(|e| {
                ApiError::BadRequest(format!("DeleteOptions could not be decoded: protobuf: {e}"))
            })?;
            if v["kind"] != "DeleteOptions" {
                return Err(ApiError::BadRequest(format!(
                    "DeleteOptions could not be decoded: the body is a {}",
                    v["kind"].as_str().unwrap_or("?")
                )));
            }
            v
        } else {
            serde_json::from_slice(&r.body).map_err(|e| {
                ApiError::BadRequest(format!("DeleteOptions could not be decoded: {e}"))
            })?
        };
        o.grace_period = v["gracePeriodSeconds"].as_i64();
        o.propagation = v["propagationPolicy"].as_str().map(str::to_string);
        if v["orphanDependents"].as_bool() == Some(true) {
            o.propagation = Some("Orphan".into());
        }
        o.uid = v["preconditions"]["uid"].as_str().map(str::to_string);
        o.resource_version = v["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        if v["dryRun"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            o.dry_run = true;
        }
    }
    if let Some(g) = r.param("gracePeriodSeconds") {
        o.grace_period = Some(
            g.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds: {g}")))?,
        );
    }
    if let Some(p) = r.param("propagationPolicy") {
        o.propagation = Some(p.to_string());
    }
    if let Some(p) = &o.propagation {
        if !matches!(p.as_str(), "Background" | "Foreground" | "Orphan") {
            return Err(ApiError::BadRequest(format!(
                "unsupported propagationPolicy: {p}"
            )));
        }
    }
    Ok(o)
}
