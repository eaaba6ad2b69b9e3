//! The resource registry: every served resource, described from the k8s-openapi type that defines
//! it (group, version, kind, plural, scope) plus what the types do not say (short names,
//! categories, subresources, field selectors). Discovery, routing and storage keys all read it.

use k8s_openapi::{ClusterResourceScope, ListableResource, NamespaceResourceScope, Resource};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::sync::OnceLock;

/// Scope of a resource, read from the k8s-openapi `Scope` type.
pub trait ScopeInfo {
    const NAMESPACED: bool;
}
impl ScopeInfo for NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl ScopeInfo for ClusterResourceScope {
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

/// One served resource.
#[derive(Debug)]
pub struct ResourceInfo {
    pub group: &'static str,
    pub version: &'static str,
    /// "v1" or "apps/v1": the apiVersion of the objects.
    pub api_version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// The URL segment, e.g. "deployments".
    pub plural: &'static str,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a /status subresource: the main resource ignores status, /status ignores the rest.
    pub status: bool,
    /// Has a /scale subresource answering autoscaling/v1 Scale.
    pub scale: bool,
    /// Field selector labels beyond metadata.name and metadata.namespace.
    pub field_selectors: &'static [&'static str],
    /// Store key prefix without the trailing slash, e.g. "/registry/apps/deployments".
    pub storage_prefix: String,
    /// Decodes into the typed k8s-openapi struct and back: rejects wrong types, drops unknown fields.
    pub decode: fn(Value) -> Result<Value, String>,
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
            || self.field_selectors.contains(&field)
    }
}

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// What a registry entry adds to the type's own facts.
struct Extra {
    short: &'static [&'static str],
    cats: &'static [&'static str],
    status: bool,
    scale: bool,
    fields: &'static [&'static str],
    /// Stored with another group's objects of the same plural (events.k8s.io/v1 Events are
    /// core/v1 Events): the group directory of the storage prefix. `conversion` converts.
    stored_with: Option<&'static str>,
}

const NONE: Extra = Extra {
    short: &[],
    cats: &[],
    status: false,
    scale: false,
    fields: &[],
    stored_with: None,
};

fn entry<T>(extra: Extra) -> ResourceInfo
where
    T: Resource + ListableResource + DeserializeOwned + Serialize,
    T::Scope: ScopeInfo,
{
    // One prefix per group and plural, whatever the version: a resource served in two versions
    // is one set of objects, stored in one version (see `conversion`).
    let group_dir = match (extra.stored_with, T::GROUP) {
        (Some(dir), _) => dir,
        (None, "") => "core",
        (None, g) => g,
    };
    let storage_prefix = format!("/registry/{group_dir}/{}", T::URL_PATH_SEGMENT);
    ResourceInfo {
        group: T::GROUP,
        version: T::VERSION,
        api_version: T::API_VERSION,
        kind: T::KIND,
        list_kind: T::LIST_KIND,
        plural: T::URL_PATH_SEGMENT,
        singular: T::KIND.to_ascii_lowercase(),
        namespaced: <T::Scope as ScopeInfo>::NAMESPACED,
        short_names: extra.short,
        categories: extra.cats,
        status: extra.status,
        scale: extra.scale,
        field_selectors: extra.fields,
        storage_prefix,
        decode: roundtrip::<T>,
    }
}

const ALL: &[&str] = &["all"];

fn build() -> Vec<ResourceInfo> {
    use k8s_openapi::api::*;
    vec![
        // core/v1
        entry::<core::v1::Namespace>(Extra {
            short: &["ns"],
            status: true,
            fields: &["status.phase"],
            ..NONE
        }),
        entry::<core::v1::Pod>(Extra {
            short: &["po"],
            cats: ALL,
            status: true,
            fields: &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            ..NONE
        }),
        entry::<core::v1::Service>(Extra {
            short: &["svc"],
            cats: ALL,
            status: true,
            ..NONE
        }),
        entry::<core::v1::Endpoints>(Extra {
            short: &["ep"],
            ..NONE
        }),
        entry::<core::v1::ConfigMap>(Extra {
            short: &["cm"],
            ..NONE
        }),
        entry::<core::v1::Secret>(Extra {
            fields: &["type"],
            ..NONE
        }),
        entry::<core::v1::Node>(Extra {
            short: &["no"],
            status: true,
            fields: &["spec.unschedulable"],
            ..NONE
        }),
        entry::<core::v1::Event>(Extra {
            short: &["ev"],
            fields: &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ..NONE
        }),
        entry::<core::v1::ServiceAccount>(Extra {
            short: &["sa"],
            ..NONE
        }),
        entry::<core::v1::PersistentVolume>(Extra {
            short: &["pv"],
            status: true,
            ..NONE
        }),
        entry::<core::v1::PersistentVolumeClaim>(Extra {
            short: &["pvc"],
            status: true,
            ..NONE
        }),
        entry::<core::v1::ResourceQuota>(Extra {
            short: &["quota"],
            status: true,
            ..NONE
        }),
        entry::<core::v1::LimitRange>(Extra {
            short: &["limits"],
            ..NONE
        }),
        entry::<core::v1::ReplicationController>(Extra {
            short: &["rc"],
            cats: ALL,
            status: true,
            scale: true,
            fields: &["status.replicas"],
            ..NONE
        }),
        entry::<core::v1::PodTemplate>(NONE),
        // apps/v1
        entry::<apps::v1::Deployment>(Extra {
            short: &["deploy"],
            cats: ALL,
            status: true,
            scale: true,
            ..NONE
        }),
        entry::<apps::v1::ReplicaSet>(Extra {
            short: &["rs"],
            cats: ALL,
            status: true,
            scale: true,
            fields: &["status.replicas"],
            ..NONE
        }),
        entry::<apps::v1::StatefulSet>(Extra {
            short: &["sts"],
            cats: ALL,
            status: true,
            scale: true,
            ..NONE
        }),
        entry::<apps::v1::DaemonSet>(Extra {
            short: &["ds"],
            cats: ALL,
            status: true,
            ..NONE
        }),
        entry::<apps::v1::ControllerRevision>(NONE),
        // batch/v1
        entry::<batch::v1::Job>(Extra {
            cats: ALL,
            status: true,
            fields: &["status.successful"],
            ..NONE
        }),
        entry::<batch::v1::CronJob>(Extra {
            short: &["cj"],
            cats: ALL,
            status: true,
            ..NONE
        }),
        // networking.k8s.io/v1
        entry::<networking::v1::Ingress>(Extra {
            short: &["ing"],
            status: true,
            ..NONE
        }),
        entry::<networking::v1::IngressClass>(NONE),
        entry::<networking::v1::NetworkPolicy>(Extra {
            short: &["netpol"],
            ..NONE
        }),
        // discovery.k8s.io/v1
        entry::<discovery::v1::EndpointSlice>(NONE),
        // coordination.k8s.io/v1
        entry::<coordination::v1::Lease>(NONE),
        // autoscaling: v2 first, the preferred version
        entry::<autoscaling::v2::HorizontalPodAutoscaler>(Extra {
            short: &["hpa"],
            cats: ALL,
            status: true,
            ..NONE
        }),
        entry::<autoscaling::v1::HorizontalPodAutoscaler>(Extra {
            short: &["hpa"],
            cats: ALL,
            status: true,
            ..NONE
        }),
        // policy/v1
        entry::<policy::v1::PodDisruptionBudget>(Extra {
            short: &["pdb"],
            status: true,
            ..NONE
        }),
        // rbac.authorization.k8s.io/v1
        entry::<rbac::v1::Role>(NONE),
        entry::<rbac::v1::RoleBinding>(NONE),
        entry::<rbac::v1::ClusterRole>(NONE),
        entry::<rbac::v1::ClusterRoleBinding>(NONE),
        // storage.k8s.io/v1
        entry::<storage::v1::StorageClass>(Extra {
            short: &["sc"],
            ..NONE
        }),
        entry::<storage::v1::CSIDriver>(NONE),
        entry::<storage::v1::CSINode>(NONE),
        entry::<storage::v1::VolumeAttachment>(Extra {
            status: true,
            ..NONE
        }),
        // scheduling.k8s.io/v1
        entry::<scheduling::v1::PriorityClass>(Extra {
            short: &["pc"],
            ..NONE
        }),
        // events.k8s.io/v1: the core/v1 Events, converted
        entry::<events::v1::Event>(Extra {
            short: &["ev"],
            stored_with: Some("core"),
            ..NONE
        }),
        // certificates.k8s.io/v1
        entry::<certificates::v1::CertificateSigningRequest>(Extra {
            short: &["csr"],
            status: true,
            fields: &["spec.signerName"],
            ..NONE
        }),
    ]
}

/// All served resources, in discovery order.
pub fn all() -> &'static [ResourceInfo] {
    static REGISTRY: OnceLock<Vec<ResourceInfo>> = OnceLock::new();
    REGISTRY.get_or_init(build)
}

/// The resource served at /api/v1/<plural> (group "") or /apis/<group>/<version>/<plural>.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of a kind in a group-version (for objects that name their kind, e.g. ownerReferences).
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Served group-versions in discovery order: (group, [versions], preferred version).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in all() {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// Resources of one group-version.
pub fn in_group_version(group: &str, version: &str) -> Vec<&'static ResourceInfo> {
    all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_give_group_plural_and_scope() {
        let d = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(d.kind, "Deployment");
        assert_eq!(d.list_kind, "DeploymentList");
        assert!(d.namespaced && d.scale && d.status);
        let n = lookup("", "v1", "nodes").unwrap();
        assert!(!n.namespaced);
        assert_eq!(n.key(None, "n1"), "/registry/core/nodes/n1");
        let p = lookup("", "v1", "pods").unwrap();
        assert_eq!(p.key(Some("default"), "x"), "/registry/core/pods/default/x");
        assert_eq!(
            p.list_prefix(Some("default")),
            "/registry/core/pods/default/"
        );
    }

    #[test]
    fn decode_rejects_wrong_types() {
        let d = lookup("apps", "v1", "deployments").unwrap();
        let bad = serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"},
            "spec":{"replicas":"three","selector":{},"template":{}}});
        assert!((d.decode)(bad).is_err());
    }

    #[test]
    fn groups_list_core_first_and_autoscaling_v2_preferred() {
        let g = groups();
        assert_eq!(g[0].0, "");
        let auto = g.iter().find(|(n, _)| *n == "autoscaling").unwrap();
        assert_eq!(auto.1, vec!["v2", "v1"]);
    }
}
