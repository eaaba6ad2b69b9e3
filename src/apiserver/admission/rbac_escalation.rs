//! RBAC's escalation prevention, as upstream's role and binding storage enforce it: a user may
//! write a Role or ClusterRole only with rules it already holds (or with the `escalate` verb on
//! it), and bind a role only when it holds every rule of that role where the binding applies
//! (or with the `bind` verb on it). Without this, anyone allowed to write roles could grant
//! themselves anything. It sits on the admission seam because that is where a write is seen
//! with its user and its object; it cannot be switched off.

use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::authorization::{self, Authorizer, Decision};
use crate::apiserver::handler::Api;
use serde_json::Value;

const GROUP: &str = "rbac.authorization.k8s.io";

pub struct RbacEscalation;

impl Plugin for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalationPrevention"
    }

    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if a.resource.group != GROUP
                || !a.subresource.is_empty()
                || !matches!(a.operation, Operation::Create | Operation::Update)
            {
                return Ok(());
            }
            let Some(obj) = a.object.as_ref() else {
                return Ok(());
            };
            let z = api.pipeline.authorizer.as_ref();
            let plural = a.resource.plural.as_str();
            let (rules, namespace) = match plural {
                "roles" | "clusterroles" => {
                    if allowed(z, a, "escalate", plural, &a.name, &a.namespace) {
                        return Ok(());
                    }
                    (rules_of(obj), a.namespace.clone())
                }
                "rolebindings" | "clusterrolebindings" => {
                    let kind = obj["roleRef"]["kind"].as_str().unwrap_or_default();
                    let name = obj["roleRef"]["name"].as_str().unwrap_or_default();
                    let (role_plural, role_ns) = if kind == "Role" {
                        ("roles", a.namespace.as_str())
                    } else {
                        ("clusterroles", "")
                    };
                    if allowed(z, a, "bind", role_plural, name, &a.namespace) {
                        return Ok(());
                    }
                    let info = api
                        .registry
                        .lookup(GROUP, "v1", role_plural)
                        .ok_or_else(|| {
                            crate::apiserver::status::ApiError::Internal(format!(
                                "{role_plural} are not registered"
                            ))
                        })?;
                    let ns = (!role_ns.is_empty()).then_some(role_ns);
                    let Some((role, _)) = api.get_object(&info, ns, name).await? else {
                        return Err(
                            a.forbidden(&format!("{role_plural}.{GROUP} {name:?} not found"))
                        );
                    };
                    (rules_of(&role), a.namespace.clone())
                }
                _ => return Ok(()),
            };
            let missing: Vec<String> = rules
                .iter()
                .filter(|r| !covered(z, a, r, &namespace))
                .map(describe)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            Err(a.forbidden(&format!(
                "user {:?} (groups={:?}) is attempting to grant RBAC permissions not currently held:\n{}",
                a.user.name,
                a.user.groups,
                missing.join("\n")
            )))
        })
    }
}

/// Whether the user may use `verb` (escalate, bind) on one role, in the namespace written
/// ("" for cluster-scoped writes).
fn allowed(
    z: &dyn Authorizer,
    a: &Attributes,
    verb: &str,
    plural: &str,
    name: &str,
    ns: &str,
) -> bool {
    let ask = authorization::Attributes {
        user: a.user.clone(),
        verb: verb.into(),
        resource_request: true,
        // Where the write happens: a RoleBinding may bind a ClusterRole by a grant in its
        // own namespace.
        namespace: ns.into(),
        api_group: GROUP.into(),
        api_version: "v1".into(),
        resource: plural.into(),
        name: name.into(),
        ..Default::default()
    };
    z.authorize(&ask) == Decision::Allow
}

fn rules_of(role: &Value) -> Vec<Value> {
    role["rules"].as_array().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Whether the user holds everything one rule grants, where it would apply: every combination
/// of its verbs, groups, resources and names must be allowed as written, so a wildcard is held
/// only through a wildcard.
fn covered(z: &dyn Authorizer, a: &Attributes, rule: &Value, namespace: &str) -> bool {
    let verbs = strings(&rule["verbs"]);
    let urls = strings(&rule["nonResourceURLs"]);
    let base = authorization::Attributes {
        user: a.user.clone(),
        ..Default::default()
    };
    if !urls.is_empty() {
        return verbs.iter().all(|verb| {
            urls.iter().all(|url| {
                let ask = authorization::Attributes {
                    verb: verb.clone(),
                    path: url.clone(),
                    ..base.clone()
                };
                z.authorize(&ask) == Decision::Allow
            })
        });
    }
    let names = {
        let n = strings(&rule["resourceNames"]);
        if n.is_empty() {
            vec![String::new()]
        } else {
            n
        }
    };
    let groups = strings(&rule["apiGroups"]);
    let resources = strings(&rule["resources"]);
    verbs.iter().all(|verb| {
        groups.iter().all(|group| {
            resources.iter().all(|resource| {
                let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
                names.iter().all(|name| {
                    let ask = authorization::Attributes {
                        verb: verb.clone(),
                        resource_request: true,
                        namespace: namespace.into(),
                        api_group: group.clone(),
                        resource: resource.into(),
                        subresource: sub.into(),
                        name: name.clone(),
                        ..base.clone()
                    };
                    z.authorize(&ask) == Decision::Allow
                })
            })
        })
    })
}

/// A rule as upstream's error lists it.
fn describe(rule: &Value) -> String {
    let list = |field: &str| {
        let items: Vec<String> = strings(&rule[field])
            .iter()
            .map(|s| format!("{s:?}"))
            .collect();
        format!("[{}]", items.join(" "))
    };
    let mut parts = Vec::new();
    if !strings(&rule["nonResourceURLs"]).is_empty() {
        parts.push(format!("NonResourceURLs:{}", list("nonResourceURLs")));
    } else {
        parts.push(format!("APIGroups:{}", list("apiGroups")));
        parts.push(format!("Resources:{}", list("resources")));
        if !strings(&rule["resourceNames"]).is_empty() {
            parts.push(format!("ResourceNames:{}", list("resourceNames")));
        }
    }
    parts.push(format!("Verbs:{}", list("verbs")));
    format!("{{{}}}", parts.join(", "))
}
