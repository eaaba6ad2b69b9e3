//! Object lifecycles that span more than one request: the default namespaces, namespace
//! termination (contents first, then the namespace), and a small in-process garbage collector
//! for ownerReferences (Background: dependents after the owner; Foreground: before it; Orphan:
//! the references are removed).

use super::handler::{Api, Output, ResourceRequest};
use super::registry::ResourceInfo;
use super::resources::{now_rfc3339, DeleteOptions, Mode};
use super::status::ApiError;
use super::{auth::User, authorization, conversion, encoding, identity};
use crate::store;
use serde_json::{json, Value};
use std::sync::Arc;

/// Namespaces every cluster has; the first three may not be deleted (see
/// `admission::namespace_lifecycle`).
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Kinds whose objects are never owners in practice and churn a lot: deleting one does not scan
/// the namespace for dependents.
const LEAF_KINDS: &[&str] = &[
    "events",
    "leases",
    "endpointslices",
    "endpoints",
    "controllerrevisions",
];

/// Pods churn a lot too, and own only PersistentVolumeClaims in practice (a StatefulSet with
/// `whenScaled: Delete` hands a scaled-away pod its claims): only those are scanned.
const POD_DEPENDENTS: &[&str] = &["persistentvolumeclaims"];

fn namespaces(api: &Api) -> Arc<ResourceInfo> {
    api.registry
        .lookup("", "v1", "namespaces")
        .expect("namespaces are registered")
}

/// A request made by the server itself as `user` (see `identity`: the API server, the garbage
/// collector, the namespace controller).
pub(crate) fn internal_request(
    info: Arc<ResourceInfo>,
    ns: Option<&str>,
    name: &str,
    user: User,
) -> ResourceRequest {
    ResourceRequest {
        info,
        namespace: ns.map(str::to_string),
        name: Some(name.to_string()),
        subresource: None,
        query: Default::default(),
        output: Output::Json,
        content_type: "application/json".into(),
        body: Default::default(),
        field_manager: user
            .name
            .rsplit(':')
            .next()
            .unwrap_or("nanokube-apiserver")
            .to_string(),
        user,
    }
}

impl Api {
    /// Asks the authorizer whether a controller of the server's own may do `verb` on an
    /// object, as upstream's controllers are authorized through the API: RBAC will need
    /// their roles, and a denial stops the controller's action (and is logged by it).
    fn controller_may(
        &self,
        user: &User,
        verb: &str,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ApiError> {
        let attrs = authorization::Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: ns.filter(|_| info.namespaced).unwrap_or_default().into(),
            api_group: info.group.clone(),
            api_version: info.version.clone(),
            resource: info.plural.clone(),
            subresource: String::new(),
            name: name.into(),
            path: String::new(),
        };
        authorization::check(self.pipeline.authorizer.as_ref(), &attrs)
    }

    /// Creates the default namespaces that are missing, resumes the termination of those
    /// that were terminating when the server stopped, and gives back Service IPs and node ports
    /// that no Service holds.
    pub async fn bootstrap(self: &Arc<Self>) -> Result<(), ApiError> {
        if let Some(services) = self.registry.lookup("", "v1", "services") {
            super::allocation::repair(&*self.store, &services).await?;
        }
        let info = namespaces(self);
        for ns in DEFAULT_NAMESPACES {
            if self.get_object(&info, None, ns).await?.is_none() {
                let r = internal_request(info.clone(), None, ns, identity::apiserver());
                let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
                    "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {}});
                match self.create_object(&r, obj).await {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => {
                        tracing::info!(namespace = ns, "created default namespace")
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let page = self
            .store
            .list(&info.list_prefix(None), None, 0, None)
            .await?;
        for kv in page.items {
            let v = encoding::decode_stored(&kv.value, kv.mod_revision)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            if v["metadata"]["deletionTimestamp"].is_string() {
                let name = v["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                tracing::info!(namespace = %name, "resuming namespace termination");
                self.spawn_namespace_cleanup(name);
            }
        }
        Ok(())
    }

    /// DELETE of a namespace: mark it Terminating; its contents and then itself go in the background.
    pub(crate) async fn terminate_namespace(
        &self,
        cur: &Value,
        rev: i64,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let name = cur["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if cur["metadata"]["deletionTimestamp"].is_string() {
            return Ok(cur.clone());
        }
        let mut new = cur.clone();
        new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        new["status"]["phase"] = json!("Terminating");
        if dry_run {
            return Ok(new);
        }
        let kv = match self
            .store
            .update(
                &namespaces(self).key(None, &name),
                encoding::to_stored(&new),
                rev,
            )
            .await
        {
            Ok(kv) => kv,
            Err(store::Error::Conflict { .. }) => {
                return Err(ApiError::modified("", "namespaces", &name))
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(namespace = %name, "namespace terminating");
        self.spawn_namespace_cleanup(name);
        encoding::decode_stored(&kv.value, kv.mod_revision)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    fn spawn_namespace_cleanup(&self, name: String) {
        let Some(api) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let mut shutdown = api.shutdown.clone();
            loop {
                match api.empty_namespace(&name).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(namespace = %name, error = %e, "namespace cleanup"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            let key = namespaces(&api).key(None, &name);
            match api.store.delete(&key, None).await {
                Ok(_) => tracing::info!(namespace = %name, "namespace deleted"),
                Err(e) => {
                    tracing::warn!(namespace = %name, error = %e, "deleting the emptied namespace")
                }
            }
        });
    }

    /// Deletes everything in a namespace; true once nothing is left.
    async fn empty_namespace(&self, ns: &str) -> Result<bool, ApiError> {
        let mut left = 0;
        let as_namespace_controller = DeleteOptions {
            user: identity::namespace_controller(),
            ..DeleteOptions::default()
        };
        // Objects of a resource stored as another version are listed under that one.
        for info in self
            .registry
            .snapshot()
            .all()
            .iter()
            .filter(|i| i.namespaced && !conversion::listed_elsewhere(i))
        {
            let page = self
                .store
                .list(&info.list_prefix(Some(ns)), None, 0, None)
                .await?;
            for kv in page.items {
                left += 1;
                let v = encoding::decode_stored(&kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                if v["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                let name = v["metadata"]["name"].as_str().unwrap_or_default();
                self.controller_may(
                    &as_namespace_controller.user,
                    "delete",
                    info,
                    Some(ns),
                    name,
                )?;
                match self
                    .delete_object(info, Some(ns), name, &as_namespace_controller)
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(left == 0)
    }

    /// Objects whose ownerReferences name `owner`'s uid, with their resource.
    async fn dependents(
        &self,
        info: &ResourceInfo,
        owner: &Value,
    ) -> Result<Vec<(Arc<ResourceInfo>, Value)>, ApiError> {
        let Some(uid) = owner["metadata"]["uid"].as_str() else {
            return Ok(Vec::new());
        };
        if LEAF_KINDS.contains(&info.plural.as_str()) {
            return Ok(Vec::new());
        }
        let ns = owner["metadata"]["namespace"]
            .as_str()
            .filter(|_| info.namespaced);
        let mut out = Vec::new();
        for dep in self.registry.snapshot().all() {
            if (ns.is_some() && !dep.namespaced) || conversion::listed_elsewhere(dep) {
                continue;
            }
            if info.plural == "pods" && !POD_DEPENDENTS.contains(&dep.plural.as_str()) {
                continue;
            }
            let page = self.store.list(&dep.list_prefix(ns), None, 0, None).await?;
            for kv in page.items {
                // Cheap test on the bytes before parsing: most objects name no owner at all.
                if !kv.value.windows(uid.len()).any(|w| w == uid.as_bytes()) {
                    continue;
                }
                let v = encoding::decode_stored(&kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                let owned = v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
                if owned {
                    out.push((dep.clone(), v));
                }
            }
        }
        Ok(out)
    }

    /// Deletes an owner's dependents (each in turn collecting its own).
    /// Boxed: deleting a dependent may collect its own dependents in turn.
    pub(crate) fn delete_dependents<'a>(
        &'a self,
        info: &'a ResourceInfo,
        owner: &'a Value,
    ) -> futures::future::BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let as_collector = DeleteOptions {
                user: identity::garbage_collector(),
                ..DeleteOptions::default()
            };
            for (dep, v) in self.dependents(info, owner).await? {
                let name = v["metadata"]["name"].as_str().unwrap_or_default();
                let ns = v["metadata"]["namespace"].as_str();
                self.controller_may(&as_collector.user, "delete", &dep, ns, name)?;
                match self.delete_object(&dep, ns, name, &as_collector).await {
                    Ok(_) | Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }

    /// Removes the references to an owner that is deleted with propagationPolicy=Orphan.
    pub(crate) async fn orphan_dependents(
        &self,
        info: &ResourceInfo,
        owner: &Value,
    ) -> Result<(), ApiError> {
        let uid = owner["metadata"]["uid"].clone();
        for (dep, v) in self.dependents(info, owner).await? {
            let name = v["metadata"]["name"].as_str().unwrap_or_default();
            let r = internal_request(
                dep,
                v["metadata"]["namespace"].as_str(),
                name,
                identity::garbage_collector(),
            );
            self.controller_may(&r.user, "patch", &r.info, r.namespace.as_deref(), name)?;
            let res = self
                .write_update(&r, Mode::Main, |cur| {
                    let mut new = cur.clone();
                    if let Some(refs) = new["metadata"]["ownerReferences"].as_array_mut() {
                        refs.retain(|x| x["uid"] != uid);
                    }
                    new["metadata"]["resourceVersion"] = Value::Null;
                    Ok(new)
                })
                .await;
            match res {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
