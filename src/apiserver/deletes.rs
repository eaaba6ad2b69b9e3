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
            let fins = finalizers(&cur);
            let policy = opts.propagation.as_deref().unwrap_or("Background");
            if policy == "Orphan" {
                self.orphan_dependents(info, &cur).await?;
            } else if policy == "Foreground" && !opts.dry_run {
                // Dependents go first (synchronously), then the owner.
                self.delete_dependents(info, &cur).await?;
            }
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
                if !shorter {
                    return Ok(cur);
                }
                m.insert(
                    "deletionTimestamp".into(),
                    json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
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
                // Already going: only an immediate delete changes anything (it ends the grace
                // period, as the kubelet's final delete does).
                if meta_str(&cur, "deletionTimestamp").is_some()
                    && (held_grace == 0 || opts.grace_period != Some(0))
                {
                    return Ok(cur);
                }
                let mut new = cur.clone();
                let m = meta_mut(&mut new);
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
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
                    if policy == "Background" {
                        self.after_delete(info, &cur);
                    }
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

    /// Work that follows an object's removal: its dependents are collected in the background.
    pub(crate) fn after_delete(&self, info: &Arc<ResourceInfo>, obj: &Value) {
        let Some(api) = self.me.upgrade() else { return };
        let obj = obj.clone();
        let info = info.clone();
        tokio::spawn(async move {
            if let Err(e) = api.delete_dependents(&info, &obj).await {
                tracing::warn!(error = %e, "garbage collection of dependents failed");
            }
        });
    }
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
