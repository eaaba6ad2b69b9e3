//! The Node authorizer, as upstream's: a kubelet (`system:node:<name>` in `system:nodes`)
//! reads a Secret, ConfigMap, PersistentVolumeClaim or PersistentVolume, or asks for a
//! ServiceAccount token, only when a pod bound to its node needs it (`node_graph`); its Lease
//! only under its own name; everything else a node does is one static rule list for all nodes
//! (upstream's NodeRules, plus what nanokube's agent also is: the service proxy, cluster DNS
//! and NetworkPolicy enforcement read Services, EndpointSlices, NetworkPolicies and
//! Namespaces). What a node may write of the objects it can reach is NodeRestriction
//! admission's business (`admission::node_restriction`).
//!
//! Anything refused here is NoOpinion with upstream's reason, so RBAC may still grant it, as
//! upstream chains `Node,RBAC`.

use super::node_graph::{Kind, Shared};
use super::{Attributes, Decision, Rules};
use crate::apiserver::auth::User;

/// The name of the node a user is, if it is one (upstream's NodeIdentifier): in
/// `system:nodes` and named `system:node:<name>`. Some("") for a node user without a name.
pub fn node_identity(user: &User) -> Option<&str> {
    if !user.in_group("system:nodes") {
        return None;
    }
    Some(user.name.strip_prefix("system:node:").unwrap_or(""))
}

pub struct NodeAuthorizer {
    pub graph: Shared,
}

/// One static rule: verbs on resources of API groups ("*" any verb).
struct Rule {
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

/// What every node may do on the resources the graph does not subdivide.
const NODE_RULES: &[Rule] = &[
    // Access checks by the kubelet's own server are non-mutating creates.
    Rule {
        verbs: &["create"],
        groups: &["authentication.k8s.io"],
        resources: &["tokenreviews"],
    },
    Rule {
        verbs: &["create"],
        groups: &["authorization.k8s.io"],
        resources: &["subjectaccessreviews", "localsubjectaccessreviews"],
    },
    // Service environment variables, and the proxy and DNS.
    Rule {
        verbs: READ,
        groups: &[""],
        resources: &["services", "endpoints"],
    },
    Rule {
        verbs: READ,
        groups: &["discovery.k8s.io"],
        resources: &["endpointslices"],
    },
    // Registration and status; NodeRestriction keeps a node to its own Node.
    Rule {
        verbs: &["create", "get", "list", "watch", "update", "patch"],
        groups: &[""],
        resources: &["nodes"],
    },
    Rule {
        verbs: &["update", "patch"],
        groups: &[""],
        resources: &["nodes/status"],
    },
    Rule {
        verbs: &["create", "update", "patch"],
        groups: &["", "events.k8s.io"],
        resources: &["events"],
    },
    // Pods: read all, create and delete mirror pods, report status, evict; NodeRestriction
    // keeps the writes to pods bound to the node.
    Rule {
        verbs: &["get", "list", "watch", "create", "delete"],
        groups: &[""],
        resources: &["pods"],
    },
    Rule {
        verbs: &["update", "patch"],
        groups: &[""],
        resources: &["pods/status"],
    },
    Rule {
        verbs: &["create"],
        groups: &[""],
        resources: &["pods/eviction"],
    },
    Rule {
        verbs: &["create", "get", "list", "watch"],
        groups: &["certificates.k8s.io"],
        resources: &["certificatesigningrequests"],
    },
    Rule {
        verbs: READ,
        groups: &["storage.k8s.io"],
        resources: &["csidrivers"],
    },
    Rule {
        verbs: READ,
        groups: &["node.k8s.io"],
        resources: &["runtimeclasses"],
    },
    // NetworkPolicy enforcement in the agent.
    Rule {
        verbs: READ,
        groups: &["networking.k8s.io"],
        resources: &["networkpolicies"],
    },
    Rule {
        verbs: READ,
        groups: &[""],
        resources: &["namespaces"],
    },
];

/// Paths any node may read (discovery and health, as system:discovery gives everyone).
const NODE_PATHS: &[&str] = &[
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/openapi/*",
];

fn static_rules_allow(a: &Attributes) -> bool {
    if !a.resource_request {
        return a.verb == "get"
            && NODE_PATHS.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => a.path.starts_with(prefix),
                None => a.path == *p,
            });
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    NODE_RULES.iter().any(|r| {
        r.verbs.contains(&a.verb.as_str())
            && r.groups.contains(&a.api_group.as_str())
            && r.resources.contains(&resource.as_str())
    })
}

impl NodeAuthorizer {
    pub fn new(graph: Shared) -> Self {
        NodeAuthorizer { graph }
    }

    /// Objects a node may read only through one of its pods: Secrets and ConfigMaps by get,
    /// list or watch of one name, claims and volumes by get.
    fn through_pods(&self, node: &str, kind: GraphKind, a: &Attributes) -> Decision {
        match kind {
            GraphKind::Namespaced(_) => {
                if !["get", "list", "watch"].contains(&a.verb.as_str()) {
                    return no("can only read resources of this type");
                }
                if !a.subresource.is_empty() {
                    return no("cannot read subresource");
                }
                if a.namespace.is_empty() {
                    return no("can only read namespaced object of this type");
                }
            }
            GraphKind::Claim | GraphKind::Volume => {
                if a.verb != "get" {
                    return no("can only get individual resources of this type");
                }
                if !a.subresource.is_empty() {
                    return no("cannot get subresource");
                }
            }
        }
        if a.name.is_empty() {
            return no("No Object name found");
        }
        let g = self.graph.read();
        let related = match kind {
            GraphKind::Namespaced(k) => g.reaches(node, k, &a.namespace, &a.name),
            GraphKind::Claim => g.reaches(node, Kind::Claim, &a.namespace, &a.name),
            GraphKind::Volume => g.reaches_volume(node, &a.name),
        };
        if related {
            Decision::Allow
        } else {
            unrelated(node)
        }
    }

    fn token(&self, node: &str, a: &Attributes) -> Decision {
        if a.verb != "create" || a.name.is_empty() {
            return no("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return no("can only create token subresource of serviceaccount");
        }
        if self
            .graph
            .read()
            .reaches(node, Kind::ServiceAccount, &a.namespace, &a.name)
        {
            Decision::Allow
        } else {
            unrelated(node)
        }
    }
}

fn lease(node: &str, a: &Attributes) -> Decision {
    if !["get", "create", "update", "patch", "delete"].contains(&a.verb.as_str()) {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != "kube-node-lease" {
        return no("can only access leases in the \"kube-node-lease\" system namespace");
    }
    // A create's name is in its body; NodeRestriction checks it.
    if a.verb != "create" && a.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    Decision::Allow
}

fn csi_node(node: &str, a: &Attributes) -> Decision {
    if !["get", "create", "update", "patch", "delete"].contains(&a.verb.as_str()) {
        return no("can only get, create, update, patch, or delete a CSINode");
    }
    if !a.subresource.is_empty() {
        return no("cannot authorize CSINode subresources");
    }
    if a.verb != "create" && a.name != node {
        return no("can only access CSINode with the same name as the requesting node");
    }
    Decision::Allow
}

#[derive(Clone, Copy)]
enum GraphKind {
    Namespaced(Kind),
    Claim,
    Volume,
}

/// A refusal that leaves the decision to the next authorizer, with upstream's reason (shown
/// after the 403's message when nobody allows).
fn no(reason: &str) -> Decision {
    Decision::NoOpinionBecause(reason.to_string())
}

fn unrelated(node: &str) -> Decision {
    no(&format!(
        "no relationship found between node '{node}' and this object"
    ))
}

impl super::Authorizer for NodeAuthorizer {
    fn authorize(&self, a: &Attributes) -> Decision {
        let Some(node) = node_identity(&a.user) else {
            return Decision::NoOpinion;
        };
        if node.is_empty() {
            return no(&format!("unknown node for user {:?}", a.user.name));
        }
        if a.resource_request {
            let kind = match (a.api_group.as_str(), a.resource.as_str()) {
                ("", "secrets") => Some(GraphKind::Namespaced(Kind::Secret)),
                ("", "configmaps") => Some(GraphKind::Namespaced(Kind::ConfigMap)),
                ("", "persistentvolumeclaims") => Some(GraphKind::Claim),
                ("", "persistentvolumes") => Some(GraphKind::Volume),
                ("", "serviceaccounts") => return self.token(node, a),
                ("coordination.k8s.io", "leases") => return lease(node, a),
                ("storage.k8s.io", "csinodes") => return csi_node(node, a),
                _ => None,
            };
            if let Some(kind) = kind {
                return self.through_pods(node, kind, a);
            }
        }
        if static_rules_allow(a) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    /// As upstream: a node's permissions are not a rule list (what it reaches depends on its
    /// pods), so a review of a node's rules is incomplete and lists none of these.
    fn rules_for(&self, user: &User, _namespace: &str) -> Rules {
        Rules {
            incomplete: node_identity(user).is_some(),
            ..Rules::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{check, Authorizer};
    use super::*;
    use http::Method;
    use serde_json::json;

    fn attrs(m: Method, path: &str, user: &User) -> Attributes {
        let info = crate::apiserver::request_info::classify(&m, path, None, "application/json");
        Attributes::of(&info, user)
    }

    fn node(name: &str) -> User {
        crate::apiserver::identity::node(name)
    }

    fn authorizer() -> NodeAuthorizer {
        let graph = Shared::default();
        {
            let mut g = graph.0.write().unwrap();
            g.put_pod(&json!({
                "metadata": {"namespace": "ns", "name": "web"},
                "spec": {
                    "nodeName": "n1",
                    "serviceAccountName": "web",
                    "volumes": [
                        {"name": "s", "secret": {"secretName": "web-tls"}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}
                    ],
                    "containers": [{"name": "c"}]
                }
            }));
            g.put_claim(&json!({"metadata": {"namespace": "ns", "name": "data"}, "spec": {"volumeName": "pv-9"}}));
        }
        NodeAuthorizer::new(graph)
    }

    #[test]
    fn a_node_reads_only_what_its_pods_use() {
        let z = authorizer();
        let n1 = node("n1");
        let n2 = node("n2");
        let secret = "/api/v1/namespaces/ns/secrets/web-tls";
        assert_eq!(
            z.authorize(&attrs(Method::GET, secret, &n1)),
            Decision::Allow
        );
        let other = attrs(Method::GET, secret, &n2);
        assert_eq!(
            check(&z, &other).unwrap_err().to_string(),
            r#"secrets "web-tls" is forbidden: User "system:node:n2" cannot get resource "secrets" in API group "" in the namespace "ns": no relationship found between node 'n2' and this object"#
        );
        // Reading all secrets is never a node's.
        let all = attrs(Method::GET, "/api/v1/namespaces/ns/secrets", &n1);
        assert_eq!(z.authorize(&all), no("No Object name found"));
        let write = attrs(Method::DELETE, secret, &n1);
        assert_eq!(
            z.authorize(&write),
            no("can only read resources of this type")
        );
        let claim = "/api/v1/namespaces/ns/persistentvolumeclaims/data";
        assert_eq!(
            z.authorize(&attrs(Method::GET, claim, &n1)),
            Decision::Allow
        );
        assert_eq!(
            z.authorize(&attrs(Method::GET, claim, &n2)),
            unrelated("n2")
        );
        let pv = "/api/v1/persistentvolumes/pv-9";
        assert_eq!(z.authorize(&attrs(Method::GET, pv, &n1)), Decision::Allow);
        assert_eq!(z.authorize(&attrs(Method::GET, pv, &n2)), unrelated("n2"));
        let token = "/api/v1/namespaces/ns/serviceaccounts/web/token";
        assert_eq!(
            z.authorize(&attrs(Method::POST, token, &n1)),
            Decision::Allow
        );
        assert_eq!(
            z.authorize(&attrs(Method::POST, token, &n2)),
            unrelated("n2")
        );
        let sa = "/api/v1/namespaces/ns/serviceaccounts/web";
        assert_eq!(
            z.authorize(&attrs(Method::GET, sa, &n1)),
            no("can only create tokens for individual service accounts")
        );
    }

    #[test]
    fn static_rules_and_leases() {
        let z = authorizer();
        let n1 = node("n1");
        for (m, path) in [
            (Method::GET, "/api/v1/pods"),
            (Method::GET, "/api/v1/services"),
            (Method::GET, "/apis/discovery.k8s.io/v1/endpointslices"),
            (Method::PATCH, "/api/v1/namespaces/ns/pods/web/status"),
            (Method::PATCH, "/api/v1/nodes/n1/status"),
            (Method::POST, "/api/v1/namespaces/ns/events"),
            (Method::GET, "/version"),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
            ),
            (
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            ),
        ] {
            assert_eq!(
                z.authorize(&attrs(m.clone(), path, &n1)),
                Decision::Allow,
                "{m} {path}"
            );
        }
        for (m, path) in [
            (Method::DELETE, "/api/v1/namespaces/ns"),
            (Method::POST, "/apis/apps/v1/namespaces/ns/deployments"),
            (Method::PATCH, "/api/v1/namespaces/ns/pods/web"),
            (Method::GET, "/metrics"),
        ] {
            assert_eq!(
                z.authorize(&attrs(m.clone(), path, &n1)),
                Decision::NoOpinion,
                "{m} {path}"
            );
        }
        let other_lease = attrs(
            Method::PUT,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
            &n1,
        );
        assert_eq!(
            z.authorize(&other_lease),
            no("can only access node lease with the same name as the requesting node")
        );
        // Not a node: no opinion at all; a node user without a name: none, with the reason.
        let alice = User::new("alice", &["system:authenticated"]);
        assert_eq!(
            z.authorize(&attrs(Method::GET, "/api/v1/pods", &alice)),
            Decision::NoOpinion
        );
        let nameless = User::new("nanokube-node", &["system:nodes"]);
        assert_eq!(
            z.authorize(&attrs(Method::GET, "/api/v1/pods", &nameless)),
            no("unknown node for user \"nanokube-node\"")
        );
    }
}
