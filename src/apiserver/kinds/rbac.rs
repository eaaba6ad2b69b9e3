//! rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding and ClusterRoleBinding: rules
//! and who they are granted to. RBAC names are path segments, not DNS names.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::{c, Col, AGE, NAME};
use crate::apiserver::validation::{kinds, FieldError, NameRule};
use chrono::{DateTime, Utc};
use k8s_openapi::api::rbac::v1;
use serde_json::Value;

pub fn role() -> ResourceInfo {
    super::entry::<v1::Role>(NONE, Rules { namespaced: true })
}

pub fn role_binding() -> ResourceInfo {
    super::entry::<v1::RoleBinding>(NONE, Binding { namespaced: true })
}

pub fn cluster_role() -> ResourceInfo {
    super::entry::<v1::ClusterRole>(NONE, Rules { namespaced: false })
}

pub fn cluster_role_binding() -> ResourceInfo {
    super::entry::<v1::ClusterRoleBinding>(NONE, Binding { namespaced: false })
}

/// Role and ClusterRole.
struct Rules {
    namespaced: bool,
}

impl Strategy for Rules {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        kinds::rules(obj, self.namespaced, errs)
    }
}

/// RoleBinding and ClusterRoleBinding.
struct Binding {
    namespaced: bool,
}

impl Strategy for Binding {
    fn defaults(&self, obj: &mut Value) {
        crate::apiserver::defaults::rolebinding(obj)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        kinds::binding(obj, old, self.namespaced, errs)
    }

    fn columns(&self) -> Vec<Col> {
        vec![
            NAME,
            c(
                "Role",
                "string",
                0,
                "Role references the Role or ClusterRole being bound.",
            ),
            AGE,
            c("Users", "string", 1, "Users in the roleBinding"),
            c("Groups", "string", 1, "Groups in the roleBinding"),
            c(
                "ServiceAccounts",
                "string",
                1,
                "ServiceAccounts in the roleBinding",
            ),
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        crate::apiserver::table::rolebinding_row(obj, now)
    }

    fn minimal(&self) -> Value {
        serde_json::json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole", "name": "view"}})
    }
}
