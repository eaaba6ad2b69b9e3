//! Admission: the stages of a write between decoding and the store. Mutating admission (`admit`)
//! runs on the decoded, defaulted object; then the kind's validation; then validating admission
//! (`validate`); then the store. For updates and patches both run inside the compare-and-swap
//! retry loop, on each attempt's object, as upstream. Deletes run both with the object being
//! deleted as `old_object`; connect requests (exec, attach, ...) with no object.
//!
//! Every plugin is one file here behind `Plugin`; `Chain::standard` is the server's list, in
//! upstream's order. A webhook or a policy engine is one more `Plugin` in the chain.

pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod node_restriction;
pub mod pod_security;
pub mod priority;
pub mod rbac_escalation;
pub mod recorder;
pub mod resource_quota;
pub mod service_account;
pub mod validating_admission_policy;
pub mod watched;
pub mod webhook;
pub mod webhook_client;

use super::auth::User;
use super::handler::Api;
use super::registry::ResourceInfo;
use super::status::ApiError;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The name upstream's AdmissionReview carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The kind of the object admission sees: the resource's own, or a subresource's (autoscaling/v1
/// Scale for /scale, v1 Binding for pods/binding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Kind {
    pub fn of(info: &ResourceInfo) -> Self {
        Kind {
            group: info.group.clone(),
            version: info.version.clone(),
            kind: info.kind.clone(),
        }
    }

    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }
}

/// What a plugin is asked about, as upstream's admission.Attributes.
#[derive(Debug, Clone)]
pub struct Attributes {
    pub user: User,
    pub operation: Operation,
    /// The object's kind (see `Kind`).
    pub kind: Kind,
    /// The resource written: group, version, plural, scope.
    pub resource: Arc<ResourceInfo>,
    pub subresource: String,
    /// "" for cluster-scoped objects.
    pub namespace: String,
    /// "" on a create with generateName.
    pub name: String,
    /// The object to write (create, update), of `kind`; None for delete and connect.
    pub object: Option<Value>,
    /// The stored object (update, delete).
    pub old_object: Option<Value>,
    pub dry_run: bool,
}

impl Attributes {
    /// Whether this is `group`/`plural` itself (not one of its subresources).
    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.resource.group == group
            && self.resource.plural == plural
            && self.subresource.is_empty()
    }

    /// Upstream's admission.NewForbidden: `pods "x" is forbidden: why` (`pods is forbidden` when
    /// the name is not known yet).
    pub fn forbidden(&self, why: &str) -> ApiError {
        ApiError::forbidden(&self.resource.group, &self.resource.plural, &self.name, why)
    }
}

pub type Outcome<'a> = BoxFuture<'a, Result<(), ApiError>>;

/// One admission plugin. A plugin implements the phases it takes part in.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Mutating phase: may change `a.object`, or refuse.
    fn admit<'a>(&'a self, _api: &'a Api, _a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async { Ok(()) })
    }

    /// Validating phase, after the kind's own validation: may only refuse.
    fn validate<'a>(&'a self, _api: &'a Api, _a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The plugins of a server, in order.
#[derive(Clone, Default)]
pub struct Chain {
    pub plugins: Vec<Arc<dyn Plugin>>,
}

impl Chain {
    /// The server's plugins, in kube-apiserver's recommended order.
    pub fn standard() -> Self {
        Chain {
            plugins: vec![
                Arc::new(namespace_lifecycle::NamespaceLifecycle),
                Arc::new(limit_ranger::LimitRanger::default()),
                Arc::new(service_account::ServiceAccount),
                Arc::new(node_restriction::NodeRestriction),
                Arc::new(default_toleration_seconds::DefaultTolerationSeconds),
                Arc::new(priority::Priority::default()),
                Arc::new(pod_security::PodSecurity),
                Arc::new(webhook::MutatingAdmissionWebhook::default()),
                Arc::new(validating_admission_policy::ValidatingAdmissionPolicy::default()),
                Arc::new(webhook::ValidatingAdmissionWebhook::default()),
                Arc::new(resource_quota::ResourceQuota::default()),
                Arc::new(rbac_escalation::RbacEscalation),
            ],
        }
    }

    /// A chain with one more plugin at the end.
    pub fn with(mut self, p: Arc<dyn Plugin>) -> Self {
        self.plugins.push(p);
        self
    }

    pub async fn admit(&self, api: &Api, a: &mut Attributes) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.admit(api, a).await?;
        }
        Ok(())
    }

    pub async fn validate(&self, api: &Api, a: &Attributes) -> Result<(), ApiError> {
        for p in &self.plugins {
            p.validate(api, a).await?;
        }
        Ok(())
    }
}

/// A pod's spec being created (the plugins that default pods act on creates of the pod itself).
pub(crate) fn created_pod_spec(a: &mut Attributes) -> Option<&mut Value> {
    if a.operation != Operation::Create || !a.is("", "pods") {
        return None;
    }
    a.object
        .as_mut()
        .and_then(|o| o.get_mut("spec"))
        .filter(|s| s.is_object())
}
