//! The built-in kinds, one module per kind: its registry facts (short names, categories,
//! subresources, field selectors), defaults, validation and printer columns, behind the
//! `Strategy` the request path calls. `builtin()` is the only list of them.
mod certificate_signing_request;
mod configmap;
mod controller_revision;
mod cron_job;
mod csi_driver;
mod csi_node;
mod daemon_set;
mod deployment;
mod endpoint_slice;
mod endpoints;
mod event;
mod hpa;
mod ingress;
mod ingress_class;
mod ip_address;
mod job;
mod lease;
mod limit_range;
mod namespace;
mod network_policy;
mod node;
mod persistent_volume;
mod persistent_volume_claim;
mod pod;
mod pod_disruption_budget;
mod pod_template;
mod priority_class;
mod rbac;
mod replica_set;
mod replication_controller;
mod resource_quota;
mod secret;
mod service;
mod service_account;
mod stateful_set;
mod storage_class;
mod validating_admission_policy;
mod volume_attachment;
mod webhook_configuration;

use super::conversion::Converted;
use super::registry::{ResourceInfo, Schema, ScopeInfo};
use super::table::{self, Col};
use super::validation::{FieldError, NameRule};
use chrono::{DateTime, Utc};
use k8s_openapi::schemars::JsonSchema;
use k8s_openapi::{ListableResource, Resource};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What differs between kinds on the request path. Every method has the behaviour of a kind
/// with no rules of its own, so a kind implements only what it has.
pub trait Strategy: Send + Sync {
    /// Fills in defaults, as the real API server does on create and update (see `defaults`).
    /// Only absent or null fields are filled, so running it twice is harmless.
    fn defaults(&self, _obj: &mut Value) {}

    /// What a new object records of the user who creates it (a CertificateSigningRequest's
    /// requester), after defaults.
    fn created_by(&self, _obj: &mut Value, _user: &crate::apiserver::auth::User) {}

    /// Which rule `metadata.name` follows.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// The kind's own rules, after ObjectMeta's; `old` is the stored object on update.
    fn validate(&self, _obj: &Value, _old: Option<&Value>, _errs: &mut Vec<FieldError>) {}

    /// The Table columns, every priority; `row` fills them in the same order.
    fn columns(&self) -> Vec<Col> {
        table::default_columns()
    }

    /// One object's Table cells; `now` is for ages.
    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        table::created_at_row(obj, now)
    }

    /// For kinds with a /status subresource: the status a new object starts with. Clients do
    /// not set status on create, so by default whatever they sent goes.
    fn initial_status(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
    }

    /// The smallest valid object of the kind, without apiVersion, kind and metadata (but for
    /// `metadata.name` when the content dictates it, as a CRD's `<plural>.<group>`): what the
    /// test walking every registered kind creates.
    fn minimal(&self) -> Value {
        Value::Object(Default::default())
    }

    /// Drops null members after defaulting, before validation: all of them (Go's nil pointers
    /// are omitted when kube-apiserver encodes). Custom resources keep those of nullable fields.
    fn drop_nulls(&self, obj: &mut Value) {
        super::resources::prune_nulls(obj)
    }

    /// A /status write, before validation: kinds whose defaults and pruning cover status too
    /// (custom resources) apply them here; built-in kinds keep what the client wrote.
    fn status_defaults(&self, _obj: &mut Value) {}

    /// For `Converted::Custom` entries: the stored object as this version shows it (conversion::from_storage).
    fn read_stored(&self, obj: Value) -> Value {
        obj
    }

    /// For `Converted::Custom` entries: the object as it is stored.
    fn write_stored(&self, obj: Value) -> Value {
        obj
    }

    /// Fields of a written object (its JSON) that the kind's schema does not know, as paths
    /// ("spec.foo"): for kinds whose schema is not a k8s-openapi type (custom resources), where
    /// `fieldValidation` finds unknown fields.
    fn unknown_fields(&self, _raw_json: &[u8]) -> Vec<String> {
        Vec::new()
    }

    /// Whether strategic merge patches apply: they need Go struct tags, which custom resources
    /// do not have (kube-apiserver answers them 415).
    fn strategic_merge(&self) -> bool {
        true
    }

    /// A `Warning` header for every request to this version (a deprecated CRD version).
    fn warning(&self) -> Option<String> {
        None
    }

    /// A delete of an object not yet being deleted, before it is decided: a kind that cleans
    /// up first adds its finalizer here (CRDs: `customresourcecleanup.apiextensions.k8s.io` and
    /// the Terminating condition, as kube-apiserver's CRD storage does).
    fn before_delete(&self, _obj: &mut Value) {}

    /// Why creates are refused now (a custom resource whose definition is being deleted).
    fn refuse_create(&self) -> Option<String> {
        None
    }

    /// The autoscaling/v1 Scale of an object, for kinds whose replicas are elsewhere than
    /// spec.replicas/status.replicas/spec.selector (custom resources' scale subresource).
    fn scale(&self, obj: &Value) -> Value {
        super::resources::to_scale(obj)
    }

    /// Writes the replicas a /scale write asks for into the object.
    fn set_replicas(&self, obj: &mut Value, replicas: i64) {
        obj["spec"]["replicas"] = serde_json::json!(replicas);
    }

    /// For kinds whose objects hold values outside their own key (a Service's cluster IP and
    /// node ports): what takes them before a create or update and frees them after a delete.
    fn allocator(&self) -> Option<&dyn super::allocation::Allocator> {
        None
    }
}

/// What a kind's registry entry adds to its type's own facts.
pub struct Facts {
    pub short: &'static [&'static str],
    pub cats: &'static [&'static str],
    pub status: bool,
    pub scale: bool,
    pub fields: &'static [&'static str],
    /// Stored with another group's objects of the same plural (events.k8s.io/v1 Events are
    /// core/v1 Events): the group directory of the storage prefix. `conversion` converts.
    pub stored_with: Option<&'static str>,
    /// Served in this version, stored in another (see `conversion`).
    pub converted: Option<Converted>,
}

pub const NONE: Facts = Facts {
    short: &[],
    cats: &[],
    status: false,
    scale: false,
    fields: &[],
    stored_with: None,
    converted: None,
};

/// The "all" category: `kubectl get all` lists these.
pub const ALL: &[&str] = &["all"];

fn roundtrip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

fn add_schema<T: JsonSchema>(g: &mut k8s_openapi::schemars::SchemaGenerator) {
    g.subschema_for::<T>();
}

/// A registry entry for the k8s-openapi type `T`: group, version, kind, plural and scope from
/// the type, the rest from `facts` and `strategy`.
pub fn entry<T>(facts: Facts, strategy: impl Strategy + 'static) -> ResourceInfo
where
    T: Resource + ListableResource + DeserializeOwned + Serialize + JsonSchema,
    T::Scope: ScopeInfo,
{
    // One prefix per group and plural, whatever the version: a resource served in two versions
    // is one set of objects, stored in one version (see `conversion`).
    let group_dir = match (facts.stored_with, T::GROUP) {
        (Some(dir), _) => dir,
        (None, "") => "core",
        (None, g) => g,
    };
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    ResourceInfo {
        group: T::GROUP.into(),
        version: T::VERSION.into(),
        api_version: T::API_VERSION.into(),
        kind: T::KIND.into(),
        list_kind: T::LIST_KIND.into(),
        plural: T::URL_PATH_SEGMENT.into(),
        singular: T::KIND.to_ascii_lowercase(),
        namespaced: <T::Scope as ScopeInfo>::NAMESPACED,
        short_names: strs(facts.short),
        categories: strs(facts.cats),
        status: facts.status,
        scale: facts.scale,
        field_selectors: strs(facts.fields),
        storage_prefix: format!("/registry/{group_dir}/{}", T::URL_PATH_SEGMENT),
        decode: roundtrip::<T>,
        schema: Schema::Typed {
            name: T::schema_name().into_owned(),
            add: add_schema::<T>,
        },
        converted: facts.converted,
        strategy: Arc::new(strategy),
    }
}

/// A kind defined at run time (as a CustomResourceDefinition will): JSON objects kept as sent,
/// `schema` its OpenAPI v3 schema, stored under its group and plural.
pub fn custom(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    schema: Value,
    strategy: Arc<dyn Strategy>,
) -> ResourceInfo {
    ResourceInfo {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        plural: plural.into(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: Vec::new(),
        categories: Vec::new(),
        status: false,
        scale: false,
        field_selectors: Vec::new(),
        storage_prefix: format!("/registry/{group}/{plural}"),
        decode: Ok,
        schema: Schema::Json {
            // The form Kubernetes names CRD schemas in: reversed group, version, kind.
            name: format!(
                "{}.{version}.{kind}",
                group.split('.').rev().collect::<Vec<_>>().join(".")
            ),
            schema,
        },
        converted: None,
        strategy,
    }
}

/// Every built-in kind, in discovery order: the one list (discovery, OpenAPI, tables and the
/// tests walking all kinds read it).
pub fn builtin() -> Vec<ResourceInfo> {
    vec![
        // core/v1
        namespace::info(),
        pod::info(),
        service::info(),
        endpoints::info(),
        configmap::info(),
        secret::info(),
        node::info(),
        event::core(),
        service_account::info(),
        persistent_volume::info(),
        persistent_volume_claim::info(),
        resource_quota::info(),
        limit_range::info(),
        replication_controller::info(),
        pod_template::info(),
        // apps/v1
        deployment::info(),
        replica_set::info(),
        stateful_set::info(),
        daemon_set::info(),
        controller_revision::info(),
        // batch/v1
        job::info(),
        cron_job::info(),
        // networking.k8s.io/v1
        ingress::info(),
        ingress_class::info(),
        network_policy::info(),
        ip_address::info(),
        // discovery.k8s.io/v1
        endpoint_slice::info(),
        // coordination.k8s.io/v1
        lease::info(),
        // autoscaling: v2 first, the preferred version
        hpa::v2(),
        hpa::v1(),
        // policy/v1
        pod_disruption_budget::info(),
        // rbac.authorization.k8s.io/v1
        rbac::role(),
        rbac::role_binding(),
        rbac::cluster_role(),
        rbac::cluster_role_binding(),
        // storage.k8s.io/v1
        storage_class::info(),
        csi_driver::info(),
        csi_node::info(),
        volume_attachment::info(),
        // scheduling.k8s.io/v1
        priority_class::info(),
        // events.k8s.io/v1: the core/v1 Events, converted
        event::events_v1(),
        // certificates.k8s.io/v1
        certificate_signing_request::info(),
        // admissionregistration.k8s.io/v1
        webhook_configuration::mutating(),
        webhook_configuration::validating(),
        validating_admission_policy::policy(),
        validating_admission_policy::binding(),
        // apiextensions.k8s.io/v1: the kinds defined at run time
        super::crd::definition::info(),
    ]
}

/// A kind with no rules of its own: no defaults, only ObjectMeta validated, NAME and CREATED AT
/// columns. What a kind registered at run time gets unless it brings a strategy.
pub struct Plain;

impl Strategy for Plain {}
