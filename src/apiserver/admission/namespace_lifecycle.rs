//! NamespaceLifecycle: nothing is created in a namespace that does not exist (404) or is being
//! terminated (403), nothing is updated in a missing one, and the namespaces every cluster
//! relies on (default, kube-system, kube-public) cannot be deleted. Mutating phase, first in
//! the chain, as upstream.

use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;

/// Namespaces that may not be deleted.
pub const IMMORTAL: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        "NamespaceLifecycle"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async move {
            let is_namespace = a.resource.group.is_empty() && a.resource.plural == "namespaces";
            if is_namespace {
                if a.operation == Operation::Delete && IMMORTAL.contains(&a.name.as_str()) {
                    return Err(a.forbidden("this namespace may not be deleted"));
                }
                return Ok(());
            }
            if a.namespace.is_empty()
                || !matches!(a.operation, Operation::Create | Operation::Update)
            {
                return Ok(());
            }
            let info = api
                .registry
                .lookup("", "v1", "namespaces")
                .expect("namespaces are registered");
            let Some((ns, _)) = api.get_object(&info, None, &a.namespace).await? else {
                return Err(ApiError::not_found("", "namespaces", &a.namespace));
            };
            let terminating = ns["metadata"]["deletionTimestamp"].is_string()
                || ns["status"]["phase"] == "Terminating";
            if a.operation == Operation::Create && terminating {
                return Err(a.forbidden(&format!(
                    "unable to create new content in namespace {} because it is being terminated",
                    a.namespace
                )));
            }
            Ok(())
        })
    }
}
