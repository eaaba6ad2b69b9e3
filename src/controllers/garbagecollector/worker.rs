//! What the garbage collector does for one work item, through the API. Every decision is
//! made on live reads (the graph only says where to look): the cache may lag, and deleting
//! an object because a stale cache missed its owner would lose data. Writes carry the
//! resourceVersion they were decided on, so a change in between is a 409 and a retry.

use super::graph::{self, Node, OwnerRef, OwnerState, Policy, Verdict, Work, FOREGROUND, ORPHAN};
use super::{group_of, Collector, Error, Resource};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use serde_json::json;

impl Collector {
    pub(super) async fn process(&mut self, work: &Work) -> Result<(), Error> {
        match work {
            Work::Delete(uid) => self.attempt_delete(uid).await,
            Work::Orphan(uid) => self.attempt_orphan(uid).await,
        }
    }

    /// The API for a resource, in `namespace` when it is namespaced.
    fn api(&self, r: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| r.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &r.api),
            None => Api::all_with(self.client.clone(), &r.api),
        }
    }

    fn kind(&self, api_version: &str, kind: &str) -> Result<&Resource, Error> {
        self.resources
            .kinds
            .get(&(group_of(api_version).to_string(), kind.to_string()))
            .ok_or_else(|| Error::UnknownKind {
                api_version: api_version.into(),
                kind: kind.into(),
            })
    }

    fn api_of(&self, node: &Node) -> Result<Api<DynamicObject>, Error> {
        let r = match node
            .resource
            .as_ref()
            .and_then(|k| self.resources.watched.get(k))
        {
            Some(r) => r,
            None => self.kind(&node.at.api_version, &node.at.kind)?,
        };
        Ok(self.api(r, node.at.namespace.as_deref()))
    }

    /// The object's metadata now, if it is still the object with this uid.
    async fn latest(
        api: &Api<DynamicObject>,
        name: &str,
        uid: &str,
    ) -> Result<Option<ObjectMeta>, Error> {
        Ok(api
            .get_metadata_opt(name)
            .await?
            .map(|o| o.metadata)
            .filter(|m| m.uid.as_deref() == Some(uid)))
    }

    /// Upstream's attemptToDeleteItem.
    async fn attempt_delete(&mut self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.node(uid).cloned() else {
            return Ok(());
        };
        let api = self.api_of(&node)?;
        let Some(latest) = Self::latest(&api, &node.at.name, uid).await? else {
            // Gone (or a namesake with another uid): as if its watcher had said so, which for
            // a virtual node is the only way to learn it. Its dependents are looked at next.
            let work = self.graph.remove(uid);
            self.queue.extend(work);
            return Ok(());
        };
        if node.is_virtual() {
            // The owner exists: its own watcher will report it.
            return Ok(());
        }
        let finalizers = latest.finalizers.clone().unwrap_or_default();
        if latest.deletion_timestamp.is_some() {
            if finalizers.iter().any(|f| f == FOREGROUND) {
                return self.finish_foreground(uid, &api, &latest).await;
            }
            // Being deleted some other way: nothing for us to do.
            return Ok(());
        }
        let refs = latest.owner_references.clone().unwrap_or_default();
        let mut owners = Vec::new();
        for r in &refs {
            let state = self.owner_state(node.at.namespace.as_deref(), r).await?;
            owners.push((own(r), state));
        }
        let dependent_deleting = node
            .dependents
            .iter()
            .any(|d| self.graph.node(d).is_some_and(|n| n.deleting_dependents));
        let name = &node.at.name;
        match graph::verdict(
            &owners,
            &finalizers,
            !node.dependents.is_empty(),
            dependent_deleting,
        ) {
            Verdict::Keep => Ok(()),
            Verdict::DropReferences(gone) => {
                let kept: Vec<&OwnerReference> =
                    refs.iter().filter(|r| !gone.contains(&r.uid)).collect();
                tracing::info!(object = %describe(&node), owners = ?gone, "removing references to owners that are gone or being deleted");
                patch_owner_refs(&api, &latest, json!(kept)).await
            }
            Verdict::Delete { policy, unblock } => {
                let mut rv = latest.resource_version.clone();
                if unblock {
                    let unblocked: Vec<OwnerReference> = refs
                        .iter()
                        .cloned()
                        .map(|mut r| {
                            if r.block_owner_deletion == Some(true) {
                                r.block_owner_deletion = Some(false);
                            }
                            r
                        })
                        .collect();
                    patch_owner_refs(&api, &latest, json!(unblocked)).await?;
                    rv = None;
                }
                tracing::info!(object = %describe(&node), policy = policy.name(), "deleting: its owners are gone or being deleted");
                let dp = DeleteParams {
                    propagation_policy: Some(match policy {
                        Policy::Background => PropagationPolicy::Background,
                        Policy::Foreground => PropagationPolicy::Foreground,
                        Policy::Orphan => PropagationPolicy::Orphan,
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.to_string()),
                        resource_version: rv,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// Reads an owner live: there with the same uid, being deleted in foreground, or gone.
    async fn owner_state(
        &self,
        namespace: Option<&str>,
        r: &OwnerReference,
    ) -> Result<OwnerState, Error> {
        let kind = self.kind(&r.api_version, &r.kind)?;
        if kind.namespaced && namespace.is_none() {
            // A cluster-scoped object cannot be owned by a namespaced one: no such owner.
            return Ok(OwnerState::Dangling);
        }
        let api = self.api(kind, namespace);
        Ok(match Self::latest(&api, &r.name, &r.uid).await? {
            None => OwnerState::Dangling,
            Some(m) if m.deletion_timestamp.is_some() && has(&m, FOREGROUND) => OwnerState::Waiting,
            Some(_) => OwnerState::Solid,
        })
    }

    /// An owner deleting in foreground: its blocking dependents are sent to be deleted; once
    /// none is left, the finalizer comes off and the API server removes the owner.
    async fn finish_foreground(
        &mut self,
        uid: &str,
        api: &Api<DynamicObject>,
        latest: &ObjectMeta,
    ) -> Result<(), Error> {
        let blocking = self.graph.blocking_dependents(uid);
        if blocking.is_empty() {
            tracing::info!(object = %latest.name.as_deref().unwrap_or(""), "no blocking dependents left: removing the foregroundDeletion finalizer");
            return remove_finalizer(api, latest, FOREGROUND).await;
        }
        for d in blocking {
            if !self.graph.node(&d).is_some_and(|n| n.deleting_dependents) {
                self.queue.push(Work::Delete(d));
            }
        }
        Ok(())
    }

    /// Upstream's attemptToOrphan: the owner's uid comes off every dependent's
    /// ownerReferences, then the orphan finalizer off the owner.
    async fn attempt_orphan(&mut self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.node(uid).cloned() else {
            return Ok(());
        };
        for d in &node.dependents {
            let Some(dep) = self.graph.node(d).cloned() else {
                continue;
            };
            let api = self.api_of(&dep)?;
            let Some(latest) = Self::latest(&api, &dep.at.name, d).await? else {
                continue;
            };
            let refs = latest.owner_references.clone().unwrap_or_default();
            if !refs.iter().any(|r| r.uid == uid) {
                continue;
            }
            let kept: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
            patch_owner_refs(&api, &latest, json!(kept)).await?;
        }
        let api = self.api_of(&node)?;
        let Some(latest) = Self::latest(&api, &node.at.name, uid).await? else {
            return Ok(());
        };
        if has(&latest, ORPHAN) {
            tracing::info!(object = %describe(&node), dependents = node.dependents.len(), "dependents orphaned: removing the orphan finalizer");
            remove_finalizer(&api, &latest, ORPHAN).await?;
        }
        Ok(())
    }
}

fn own(r: &OwnerReference) -> OwnerRef {
    OwnerRef {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
        block: r.block_owner_deletion == Some(true),
    }
}

fn has(m: &ObjectMeta, finalizer: &str) -> bool {
    m.finalizers.iter().flatten().any(|f| f == finalizer)
}

fn describe(n: &Node) -> String {
    match &n.at.namespace {
        Some(ns) => format!("{} {ns}/{}", n.at.kind, n.at.name),
        None => format!("{} {}", n.at.kind, n.at.name),
    }
}

/// A merge patch carrying the resourceVersion read: a precondition, as upstream's patches
/// carry the uid.
async fn patch_meta(
    api: &Api<DynamicObject>,
    latest: &ObjectMeta,
    meta: serde_json::Value,
) -> Result<(), Error> {
    let mut meta = meta;
    meta["resourceVersion"] = json!(latest.resource_version);
    let name = latest.name.as_deref().unwrap_or_default();
    match api
        .patch_metadata(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": meta})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn patch_owner_refs(
    api: &Api<DynamicObject>,
    latest: &ObjectMeta,
    refs: serde_json::Value,
) -> Result<(), Error> {
    patch_meta(api, latest, json!({"ownerReferences": refs})).await
}

async fn remove_finalizer(
    api: &Api<DynamicObject>,
    latest: &ObjectMeta,
    finalizer: &str,
) -> Result<(), Error> {
    let kept: Vec<&String> = latest
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .collect();
    patch_meta(api, latest, json!({"finalizers": kept})).await
}
