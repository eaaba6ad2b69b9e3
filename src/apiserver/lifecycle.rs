//! Object lifecycles that span more than one request, the API server's half: the default
//! namespaces, and namespace termination (a DELETE marks the namespace Terminating; the
//! namespace controller, `src/controllers/namespace.rs`, empties it and removes the
//! `kubernetes` finalizer through namespaces/finalize; the update that leaves no finalizer
//! deletes it). Garbage collection is the controller manager's too
//! (`src/controllers/garbagecollector/`).

use super::handler::{Api, Output, ResourceRequest};
use super::registry::ResourceInfo;
use super::resources::now_rfc3339;
use super::status::ApiError;
use super::{auth::User, encoding, identity};
use crate::store;
use serde_json::{json, Value};
use std::sync::Arc;

/// Namespaces every cluster has; the first three may not be deleted (see
/// `admission::namespace_lifecycle`).
pub const DEFAULT_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

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
    /// Creates the default namespaces that are missing, and gives back Service IPs and node
    /// ports that no Service holds.
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
        Ok(())
    }

    /// DELETE of a namespace: mark it Terminating (deletionTimestamp and status.phase); the
    /// namespace controller empties it and takes its `kubernetes` finalizer off. A namespace
    /// with no finalizer left in spec or metadata goes at once.
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
        let key = namespaces(self).key(None, &name);
        if no_finalizers(cur) {
            if dry_run {
                return Ok(cur.clone());
            }
            return match self.store.delete(&key, Some(rev)).await {
                Ok(_) => {
                    tracing::info!(namespace = %name, "namespace deleted");
                    Ok(cur.clone())
                }
                Err(store::Error::Conflict { .. }) => {
                    Err(ApiError::modified("", "namespaces", &name))
                }
                Err(store::Error::NotFound(_)) => Err(ApiError::not_found("", "namespaces", &name)),
                Err(e) => Err(e.into()),
            };
        }
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
            .update(&key, encoding::to_stored(&new), rev)
            .await
        {
            Ok(kv) => kv,
            Err(store::Error::Conflict { .. }) => {
                return Err(ApiError::modified("", "namespaces", &name))
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(namespace = %name, "namespace terminating");
        encoding::decode_stored(&kv.value, kv.mod_revision)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }
}

/// Whether a namespace is ready to go: no finalizer left in spec.finalizers (the namespace
/// controller's `kubernetes`, or another party's) nor in metadata.finalizers (the garbage
/// collector's). An update that leaves a terminating namespace so removes it, as upstream's
/// `ShouldDeleteNamespaceDuringUpdate`.
pub(crate) fn namespace_finalized(ns: &Value) -> bool {
    ns["metadata"]["deletionTimestamp"].is_string() && no_finalizers(ns)
}

fn no_finalizers(ns: &Value) -> bool {
    let empty = |v: &Value| v.as_array().is_none_or(|a| a.is_empty());
    empty(&ns["spec"]["finalizers"]) && empty(&ns["metadata"]["finalizers"])
}
