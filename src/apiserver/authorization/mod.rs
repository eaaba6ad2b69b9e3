//! Stage 3 of the request pipeline, authorization: may this user do this verb on this resource
//! (or path)? Every authorizer answers through one trait; `Union` asks a chain in order and the
//! first Allow or Deny decides, so RBAC and the Node authorizer plug in later as links of the
//! chain the server builds (`pipeline::Pipeline`), without touching the handler. Anything but
//! Allow is answered 403 with upstream's message (`forbidden`).
//!
//! `reviews` answers SelfSubjectAccessReview and SelfSubjectRulesReview through the same
//! authorizer, so `kubectl auth can-i` tells the truth.

pub mod bootstrap_policy;
pub mod node;
pub mod node_graph;
pub mod rbac;
pub mod reviews;
pub mod store_feed;

use super::auth::User;
use super::request_info::RequestInfo;
use super::status::{ApiError, Target};
use std::sync::Arc;

/// What is asked, as upstream's authorizer.Attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    /// get list watch create update patch delete deletecollection proxy (resource requests),
    /// or the lowercased method (non-resource paths); "*" in an access review means any.
    pub verb: String,
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// Non-resource requests: the path.
    pub path: String,
}

impl Attributes {
    /// The attributes of a request, from its RequestInfo and its user.
    pub fn of(info: &RequestInfo, user: &User) -> Self {
        Attributes {
            user: user.clone(),
            verb: info.api_verb.to_string(),
            resource_request: info.is_resource,
            namespace: info.namespace.clone(),
            api_group: info.group.clone(),
            api_version: info.version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            name: info.name.clone(),
            path: info.path.clone(),
        }
    }
}

/// An authorizer's answer. NoOpinion lets the next authorizer of a chain decide; a chain where
/// nobody allows refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion,
    /// No opinion, with the reason this authorizer would not allow (upstream's reason string
    /// beside DecisionNoOpinion): shown in the 403 when nobody else allows either.
    NoOpinionBecause(String),
}

/// One rule of a SelfSubjectRulesReview: what a user may do on resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// One rule of a SelfSubjectRulesReview: what a user may do on non-resource paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

/// What a user may do in a namespace, as far as an authorizer can say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub resource: Vec<ResourceRule>,
    pub non_resource: Vec<NonResourceRule>,
    /// The authorizer cannot list everything it would allow (as upstream's `incomplete`).
    pub incomplete: bool,
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, a: &Attributes) -> Decision;

    /// The rules behind `authorize` for a user in a namespace (SelfSubjectRulesReview). An
    /// authorizer that cannot enumerate its rules says so with `incomplete`.
    fn rules_for(&self, _user: &User, _namespace: &str) -> Rules {
        Rules {
            incomplete: true,
            ..Rules::default()
        }
    }
}

/// Today's policy: an authenticated user may do anything. Users outside
/// `system:authenticated` get no opinion (and so a 403 from a chain of one).
pub struct AlwaysAllowAuthenticated;

impl Authorizer for AlwaysAllowAuthenticated {
    fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.in_group("system:authenticated") {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    fn rules_for(&self, user: &User, _namespace: &str) -> Rules {
        if !user.in_group("system:authenticated") {
            return Rules::default();
        }
        let any = || vec!["*".to_string()];
        Rules {
            resource: vec![ResourceRule {
                verbs: any(),
                api_groups: any(),
                resources: any(),
                resource_names: Vec::new(),
            }],
            non_resource: vec![NonResourceRule {
                verbs: any(),
                non_resource_urls: any(),
            }],
            incomplete: false,
        }
    }
}

/// The server's chain for `--authorization-mode` (kube-apiserver's names, default `Node,RBAC`):
/// `system:masters` first, always allowed as upstream, then each mode in the order given.
pub fn chain(
    modes: &str,
    node_graph: node_graph::Shared,
    rbac: &rbac::RbacAuthorizer,
) -> Result<Arc<dyn Authorizer>, String> {
    let mut links: Vec<Arc<dyn Authorizer>> = vec![Arc::new(PrivilegedGroup("system:masters"))];
    for mode in modes.split(',').map(str::trim) {
        links.push(match mode {
            "Node" => Arc::new(node::NodeAuthorizer::new(node_graph.clone())),
            "RBAC" => Arc::new(rbac.clone()),
            "AlwaysAllow" => Arc::new(AlwaysAllowAuthenticated),
            "AlwaysDeny" => Arc::new(AlwaysDeny),
            other => {
                return Err(format!(
                    "--authorization-mode: unknown mode {other:?} (known: Node, RBAC, AlwaysAllow, AlwaysDeny)"
                ))
            }
        });
    }
    Ok(Arc::new(Union(links)))
}

/// Members of one group may do anything (upstream's privileged-group authorizer, which puts
/// `system:masters` beyond the reach of a broken RBAC policy).
pub struct PrivilegedGroup(pub &'static str);

impl Authorizer for PrivilegedGroup {
    fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.in_group(self.0) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    fn rules_for(&self, user: &User, namespace: &str) -> Rules {
        if user.in_group(self.0) {
            AlwaysAllowAuthenticated.rules_for(user, namespace)
        } else {
            Rules::default()
        }
    }
}

/// Refuses everything, with upstream's AlwaysDeny reason.
pub struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _a: &Attributes) -> Decision {
        Decision::Deny("Everything is forbidden.".into())
    }

    fn rules_for(&self, _user: &User, _namespace: &str) -> Rules {
        Rules::default()
    }
}

/// A chain of authorizers asked in order: the first Allow or Deny decides; when all have no
/// opinion, so does the chain.
#[derive(Clone, Default)]
pub struct Union(pub Vec<Arc<dyn Authorizer>>);

impl Authorizer for Union {
    fn authorize(&self, a: &Attributes) -> Decision {
        let mut reasons = Vec::new();
        for z in &self.0 {
            match z.authorize(a) {
                Decision::NoOpinion => continue,
                Decision::NoOpinionBecause(why) => reasons.push(why),
                decided => return decided,
            }
        }
        if reasons.is_empty() {
            Decision::NoOpinion
        } else {
            Decision::NoOpinionBecause(reasons.join("\n"))
        }
    }

    fn rules_for(&self, user: &User, namespace: &str) -> Rules {
        let mut out = Rules::default();
        for z in &self.0 {
            let r = z.rules_for(user, namespace);
            out.resource.extend(r.resource);
            out.non_resource.extend(r.non_resource);
            out.incomplete |= r.incomplete;
        }
        out
    }
}

/// Upstream's 403 for a refused request (responsewriters.Forbidden): `pods is forbidden: User
/// "x" cannot list resource "pods" in API group "" in the namespace "default"`, the
/// authorizer's reason after a colon when it gave one.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let user = &a.user.name;
    let what = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let mut resource = a.resource.clone();
        if !a.subresource.is_empty() {
            resource = format!("{resource}/{}", a.subresource);
        }
        if a.namespace.is_empty() {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                a.verb, a.api_group
            )
        } else {
            format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                a.verb, a.api_group, a.namespace
            )
        }
    };
    let what = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    // apierrors.NewForbidden's three forms: no resource, no name, both.
    let message = if !a.resource_request || a.resource.is_empty() {
        format!("forbidden: {what}")
    } else {
        let qualified = if a.api_group.is_empty() {
            a.resource.clone()
        } else {
            format!("{}.{}", a.resource, a.api_group)
        };
        if a.name.is_empty() {
            format!("{qualified} is forbidden: {what}")
        } else {
            format!("{qualified} {:?} is forbidden: {what}", a.name)
        }
    };
    ApiError::Forbidden {
        message,
        target: Target {
            group: a.api_group.clone(),
            kind: a.resource.clone(),
            name: a.name.clone(),
        },
    }
}

/// Runs the authorizer on a request: Ok when allowed, else the 403.
pub fn check(z: &dyn Authorizer, a: &Attributes) -> Result<(), ApiError> {
    enforce(z.authorize(a), a)
}

/// A decision made: Ok when allowed, else the 403.
pub fn enforce(d: Decision, a: &Attributes) -> Result<(), ApiError> {
    match d {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(forbidden(a, &reason)),
        Decision::NoOpinion => Err(forbidden(a, "")),
        Decision::NoOpinionBecause(reason) => Err(forbidden(a, &reason)),
    }
}

/// The audit annotations of a decision, as upstream's: `authorization.k8s.io/decision`
/// (allow or forbid) and `authorization.k8s.io/reason` (the authorizer's reason, if it gave one).
pub fn audit_annotations(d: &Decision) -> [(&'static str, String); 2] {
    let (verdict, reason) = match d {
        Decision::Allow => ("allow", ""),
        Decision::Deny(r) | Decision::NoOpinionBecause(r) => ("forbid", r.as_str()),
        Decision::NoOpinion => ("forbid", ""),
    };
    [
        ("authorization.k8s.io/decision", verdict.to_string()),
        ("authorization.k8s.io/reason", reason.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn attrs(m: Method, path: &str, user: &User) -> Attributes {
        let info = super::super::request_info::classify(&m, path, None, "application/json");
        Attributes::of(&info, user)
    }

    #[test]
    fn messages_are_upstreams() {
        let x = User::new("x", &["system:authenticated"]);
        let list = attrs(Method::GET, "/api/v1/namespaces/default/pods", &x);
        let e = check(&Union(vec![]), &list).unwrap_err();
        assert_eq!(e.code(), 403);
        assert_eq!(
            e.to_string(),
            r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let get = attrs(
            Method::GET,
            "/apis/apps/v1/namespaces/ns/deployments/web/scale",
            &x,
        );
        assert_eq!(
            forbidden(&get, "").to_string(),
            r#"deployments.apps "web" is forbidden: User "x" cannot get resource "deployments/scale" in API group "apps" in the namespace "ns""#
        );
        let nodes = attrs(Method::DELETE, "/api/v1/nodes", &x);
        assert_eq!(
            check(&AlwaysDeny, &nodes).unwrap_err().to_string(),
            r#"nodes is forbidden: User "x" cannot deletecollection resource "nodes" in API group "" at the cluster scope: Everything is forbidden."#
        );
        let path = attrs(Method::GET, "/metrics", &x);
        assert_eq!(
            forbidden(&path, "").to_string(),
            r#"forbidden: User "x" cannot get path "/metrics""#
        );
        let s = forbidden(&get, "").to_status();
        assert_eq!(s["reason"], "Forbidden");
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["name"], "web");
    }

    struct Only(&'static str, Decision);
    impl Authorizer for Only {
        fn authorize(&self, a: &Attributes) -> Decision {
            if a.resource == self.0 {
                self.1.clone()
            } else {
                Decision::NoOpinion
            }
        }
    }

    #[test]
    fn union_asks_in_order_and_the_first_decision_wins() {
        let x = User::new("x", &["system:authenticated"]);
        let chain = Union(vec![
            Arc::new(Only("secrets", Decision::Deny("no secrets".into()))),
            Arc::new(Only("pods", Decision::Allow)),
            Arc::new(AlwaysAllowAuthenticated),
        ]);
        let secrets = attrs(Method::GET, "/api/v1/namespaces/a/secrets/s", &x);
        assert_eq!(
            chain.authorize(&secrets),
            Decision::Deny("no secrets".into())
        );
        let pods = attrs(Method::GET, "/api/v1/namespaces/a/pods", &x);
        assert_eq!(chain.authorize(&pods), Decision::Allow);
        let stranger = User::new("y", &[]);
        let cm = attrs(Method::GET, "/api/v1/namespaces/a/configmaps", &stranger);
        assert_eq!(chain.authorize(&cm), Decision::NoOpinion);
        assert!(
            chain.rules_for(&x, "a").incomplete,
            "Only cannot list its rules"
        );
        let allow = Union(vec![Arc::new(AlwaysAllowAuthenticated)]);
        assert!(!allow.rules_for(&x, "a").incomplete);
        assert_eq!(allow.rules_for(&x, "a").resource[0].verbs, vec!["*"]);
        assert!(allow.rules_for(&stranger, "a").resource.is_empty());
    }
}
