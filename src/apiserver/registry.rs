//! The resource registry: the one list of served kinds. Discovery, routing, storage keys, tables
//! and the OpenAPI documents all read it; each kind's facts and behaviour come from its module
//! under `kinds/`.
//!
//! The list can change while the server runs (CustomResourceDefinitions will add kinds), so it is
//! an immutable `Snapshot` behind a lock that `register`/`unregister` swap. A request takes the
//! snapshot once and works with it; the documents derived from a snapshot (OpenAPI, aggregated
//! discovery) are built on first use and cached in it, so a change rebuilds them with new hashes.

use super::kinds::{self, Strategy};
use k8s_openapi::schemars::SchemaGenerator;
use serde_json::Value;
use std::sync::{Arc, OnceLock, RwLock};

/// Scope of a resource, read from the k8s-openapi `Scope` type.
pub trait ScopeInfo {
    const NAMESPACED: bool;
}
impl ScopeInfo for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl ScopeInfo for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// The verbs of every served resource.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Where a kind's OpenAPI schema comes from.
#[derive(Clone)]
pub enum Schema {
    /// A k8s-openapi type: `add` puts its definition (and those it refers to) into the
    /// generator under `name`, e.g. "io.k8s.api.core.v1.Pod".
    Typed {
        name: String,
        add: fn(&mut SchemaGenerator),
    },
    /// A schema given as JSON (OpenAPI v3, with `$ref`s into components.schemas), as a
    /// CustomResourceDefinition carries it.
    Json { name: String, schema: Value },
}

impl Schema {
    /// The key of the kind's definition in components.schemas.
    pub fn name(&self) -> &str {
        match self {
            Schema::Typed { name, .. } | Schema::Json { name, .. } => name,
        }
    }
}

/// One served resource: the facts discovery and routing need, and the kind's strategy.
#[derive(Clone)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    /// "v1" or "apps/v1": the apiVersion of the objects.
    pub api_version: String,
    pub kind: String,
    pub list_kind: String,
    /// The URL segment, e.g. "deployments".
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Has a /status subresource: the main resource ignores status, /status ignores the rest.
    pub status: bool,
    /// Has a /scale subresource answering autoscaling/v1 Scale.
    pub scale: bool,
    /// Field selector labels beyond metadata.name and metadata.namespace.
    pub field_selectors: Vec<String>,
    /// Store key prefix without the trailing slash, e.g. "/registry/apps/deployments".
    pub storage_prefix: String,
    /// Decodes into the typed k8s-openapi struct and back: rejects wrong types, drops unknown fields.
    pub decode: fn(Value) -> Result<Value, String>,
    pub schema: Schema,
    /// Served in this version, stored in another (see `conversion`).
    pub converted: Option<super::conversion::Converted>,
    /// Defaults, validation, printing: everything that differs between kinds.
    pub strategy: Arc<dyn Strategy>,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

impl ResourceInfo {
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/{}/{}", self.storage_prefix, ns, name),
            _ => format!("{}/{}", self.storage_prefix, name),
        }
    }

    /// Prefix of a list: one namespace, or all of the resource.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}/{}/", self.storage_prefix, ns),
            _ => format!("{}/", self.storage_prefix),
        }
    }

    /// Whether a field selector label is supported for this resource.
    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || field == "metadata.namespace"
            || self.field_selectors.iter().any(|f| f == field)
    }

    fn same_resource(&self, other: &ResourceInfo) -> bool {
        self.group == other.group && self.version == other.version && self.plural == other.plural
    }
}

/// One immutable state of the registry, and what is derived from it.
pub struct Snapshot {
    kinds: Vec<Arc<ResourceInfo>>,
    /// Counts changes, so derived documents can say which state they describe.
    pub generation: u64,
    /// Caches of the documents built from this state (see `openapi` and `discovery`).
    schemas: OnceLock<super::openapi::schemas::Schemas>,
    pub(crate) openapi_v3: OnceLock<super::openapi::Docs>,
    pub(crate) openapi_v2: OnceLock<super::openapi::v2::V2>,
    pub(crate) discovery: super::discovery::Aggregated,
}

impl Snapshot {
    fn new(kinds: Vec<Arc<ResourceInfo>>, generation: u64) -> Self {
        Snapshot {
            kinds,
            generation,
            schemas: OnceLock::new(),
            openapi_v3: OnceLock::new(),
            openapi_v2: OnceLock::new(),
            discovery: Default::default(),
        }
    }

    /// The OpenAPI schemas of this state's kinds, built on first use.
    pub fn schemas(&self) -> &super::openapi::schemas::Schemas {
        self.schemas
            .get_or_init(|| super::openapi::schemas::build(&self.kinds))
    }

    /// All served resources, in discovery order.
    pub fn all(&self) -> &[Arc<ResourceInfo>] {
        &self.kinds
    }

    /// The resource served at /api/v1/<plural> (group "") or /apis/<group>/<version>/<plural>.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.kinds
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
            .cloned()
    }

    /// The resource of a kind in a group-version (for objects that name their kind, e.g.
    /// ownerReferences).
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceInfo>> {
        self.kinds
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
            .cloned()
    }

    /// Served groups in discovery order with their versions, the preferred one first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for r in &self.kinds {
            match out.iter_mut().find(|(g, _)| *g == r.group) {
                Some((_, versions)) => {
                    if !versions.contains(&r.version) {
                        versions.push(r.version.clone());
                    }
                }
                None => out.push((r.group.clone(), vec![r.version.clone()])),
            }
        }
        out
    }

    /// Resources of one group-version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceInfo>> {
        self.kinds
            .iter()
            .filter(|r| r.group == group && r.version == version)
            .cloned()
            .collect()
    }
}

/// The shared, swappable registry. Clones share one state.
#[derive(Clone)]
pub struct Registry {
    current: Arc<RwLock<Arc<Snapshot>>>,
}

impl Registry {
    /// A registry serving the built-in kinds.
    pub fn builtin() -> Self {
        Registry {
            current: Arc::new(RwLock::new(builtin_snapshot().clone())),
        }
    }

    /// The current state; it stays valid (and unchanged) however the registry changes after.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceInfo>> {
        self.snapshot().lookup(group, version, plural)
    }

    /// Serves a new resource, after the existing ones. Fails when its group, version and plural
    /// are already served.
    pub fn register(&self, info: ResourceInfo) -> Result<(), String> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if cur.kinds.iter().any(|r| r.same_resource(&info)) {
            return Err(format!(
                "{}/{} {} is already served",
                info.group, info.version, info.plural
            ));
        }
        let mut kinds = cur.kinds.clone();
        kinds.push(Arc::new(info));
        *cur = Arc::new(Snapshot::new(kinds, cur.generation + 1));
        Ok(())
    }

    /// In one change (no request sees a state in between): stops serving the resources `drop`
    /// selects and serves `add` after the rest. Fails, changing nothing, when an added resource
    /// is served by one that stays.
    pub fn replace(
        &self,
        drop: impl Fn(&ResourceInfo) -> bool,
        add: Vec<ResourceInfo>,
    ) -> Result<(), String> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut kinds: Vec<Arc<ResourceInfo>> =
            cur.kinds.iter().filter(|r| !drop(r)).cloned().collect();
        for info in add {
            if kinds.iter().any(|r| r.same_resource(&info)) {
                return Err(format!(
                    "{}/{} {} is already served",
                    info.group, info.version, info.plural
                ));
            }
            kinds.push(Arc::new(info));
        }
        *cur = Arc::new(Snapshot::new(kinds, cur.generation + 1));
        Ok(())
    }

    /// Stops serving a resource; answers what was removed. Stored objects stay in the store.
    pub fn unregister(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ResourceInfo>> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        let at = cur
            .kinds
            .iter()
            .position(|r| r.group == group && r.version == version && r.plural == plural)?;
        let mut kinds = cur.kinds.clone();
        let removed = kinds.remove(at);
        *cur = Arc::new(Snapshot::new(kinds, cur.generation + 1));
        Some(removed)
    }
}

/// The built-in kinds, for code that works on them without a server (defaulting an object of a
/// known kind, schemas for strategic merge); shared by every `Registry::builtin`, so the
/// documents built from it are built once per process.
pub fn builtin_snapshot() -> &'static Arc<Snapshot> {
    static BUILTIN: OnceLock<Arc<Snapshot>> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        Arc::new(Snapshot::new(
            kinds::builtin().into_iter().map(Arc::new).collect(),
            0,
        ))
    })
}

/// A built-in resource by group, version and plural.
pub fn builtin(group: &str, version: &str, plural: &str) -> Arc<ResourceInfo> {
    builtin_snapshot()
        .lookup(group, version, plural)
        .unwrap_or_else(|| panic!("{group}/{version} {plural} is a built-in resource"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_give_group_plural_and_scope() {
        let reg = Registry::builtin();
        let d = reg.lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.list_kind, "DeploymentList");
        assert!(d.namespaced && d.scale && d.status);
        let n = reg.lookup("", "v1", "nodes").unwrap();
        assert!(!n.namespaced);
        assert_eq!(n.key(None, "n1"), "/registry/core/nodes/n1");
        let p = reg.lookup("", "v1", "pods").unwrap();
        assert_eq!(p.key(Some("default"), "x"), "/registry/core/pods/default/x");
        assert_eq!(
            p.list_prefix(Some("default")),
            "/registry/core/pods/default/"
        );
    }

    #[test]
    fn decode_rejects_wrong_types() {
        let d = builtin("apps", "v1", "deployments");
        let bad = serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},
            "spec":{"replicas":"three","selector":{},"template":{}}});
        assert!((d.decode)(bad).is_err());
    }

    #[test]
    fn groups_list_core_first_and_autoscaling_v2_preferred() {
        let g = builtin_snapshot().groups();
        assert_eq!(g[0].0, "");
        let auto = g.iter().find(|(n, _)| *n == "autoscaling").unwrap();
        assert_eq!(auto.1, vec!["v2", "v1"]);
    }

    #[test]
    fn register_and_unregister_swap_the_snapshot() {
        let reg = Registry::builtin();
        let before = reg.snapshot();
        let mut extra = (*builtin("", "v1", "configmaps")).clone();
        extra.group = "example.nanokube.io".into();
        extra.api_version = "example.nanokube.io/v1".into();
        reg.register(extra.clone()).unwrap();
        assert!(reg.register(extra).is_err(), "served twice");
        let after = reg.snapshot();
        assert_eq!(after.all().len(), before.all().len() + 1);
        assert!(after.generation > before.generation);
        assert!(before
            .lookup("example.nanokube.io", "v1", "configmaps")
            .is_none());
        assert!(reg
            .unregister("example.nanokube.io", "v1", "configmaps")
            .is_some());
        assert_eq!(reg.snapshot().all().len(), before.all().len());
    }
}
