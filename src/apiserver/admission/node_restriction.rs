//! NodeRestriction, as upstream's: what the Node authorizer lets every kubelet write, kept to
//! that kubelet's own objects. A node creates only mirror pods bound to itself (that reference
//! no other object), deletes, evicts and updates the status of only pods bound to itself,
//! writes only its own Node (not its taints, nor labels it may not steer workloads with), its
//! own Lease and CSINode, and asks only for tokens bound to pods on itself. The
//! messages are upstream's, since tools match on them.

use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::authorization::node::node_identity;
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::Value;
use std::collections::BTreeSet;

pub struct NodeRestriction;

const MIRROR: &str = "kubernetes.io/config.mirror";

impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async move {
            let Some(node) = node_identity(&a.user) else {
                return Ok(());
            };
            if node.is_empty() {
                return Err(a.forbidden(&format!(
                    "could not determine node from user {:?}",
                    a.user.name
                )));
            }
            let a = &*a;
            match (a.resource.group.as_str(), a.resource.plural.as_str()) {
                ("", "pods") => match a.subresource.as_str() {
                    "" => pod(api, node, a).await,
                    "status" => pod_status(node, a),
                    "eviction" => eviction(api, node, a).await,
                    other => Err(a.forbidden(&format!(
                        "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
                    ))),
                },
                ("", "nodes") => node_object(node, a),
                ("", "persistentvolumeclaims") => match a.subresource.as_str() {
                    "status" => claim_status(node, a),
                    _ => Err(a.forbidden("may only update PVC status")),
                },
                ("", "serviceaccounts") => token(api, node, a).await,
                ("coordination.k8s.io", "leases") => same_name(node, a, "node lease"),
                ("storage.k8s.io", "csinodes") => same_name(node, a, "CSINode"),
                _ => Ok(()),
            }
        })
    }
}

fn node_name_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

async fn stored_pod(api: &Api, ns: &str, name: &str) -> Result<Value, ApiError> {
    let info = api
        .registry
        .lookup("", "v1", "pods")
        .ok_or_else(|| ApiError::Internal("pods are not served".into()))?;
    match api.get_object(&info, Some(ns), name).await? {
        Some((pod, _)) => Ok(pod),
        None => Err(ApiError::not_found("", "pods", name)),
    }
}

async fn pod(api: &Api, node: &str, a: &Attributes) -> Result<(), ApiError> {
    match a.operation {
        Operation::Create => mirror_pod(node, a),
        Operation::Delete => {
            let existing = match &a.old_object {
                Some(p) => p.clone(),
                None => stored_pod(api, &a.namespace, &a.name).await?,
            };
            if node_name_of(&existing) != node {
                return Err(a.forbidden(&format!(
                    "node {node:?} can only delete pods with spec.nodeName set to itself"
                )));
            }
            Ok(())
        }
        op => Err(a.forbidden(&format!(
            "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
            op.as_str()
        ))),
    }
}

fn mirror_pod(node: &str, a: &Attributes) -> Result<(), ApiError> {
    let pod = a.object.as_ref().cloned().unwrap_or_default();
    if pod["metadata"]["annotations"][MIRROR].is_null() {
        return Err(a.forbidden(&format!(
            "pod does not have {MIRROR:?} annotation, node {node:?} can only create mirror pods"
        )));
    }
    if node_name_of(&pod) != node {
        return Err(a.forbidden(&format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        )));
    }
    let owners = pod["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if owners.len() > 1 {
        return Err(a.forbidden(&format!(
            "node {node:?} can only create pods with a single owner reference set to itself"
        )));
    }
    if let Some(owner) = owners.first() {
        if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
            return Err(a.forbidden(&format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            )));
        }
        if owner["controller"] != true {
            return Err(a.forbidden(&format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            )));
        }
        if owner["blockOwnerDeletion"] == true {
            return Err(a.forbidden(&format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            )));
        }
    }
    let spec = &pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(a.forbidden(&format!(
            "node {node:?} can not create pods that reference a service account"
        )));
    }
    // The graph's own reading of a pod's references, so both agree on what a pod names.
    let mut probe = pod.clone();
    probe["spec"]["serviceAccountName"] = Value::Null;
    probe["spec"]["nodeName"] = Value::String(node.to_string());
    let refs = crate::apiserver::authorization::node_graph::pod_edges(&probe)
        .map(|e| e.refs)
        .unwrap_or_default();
    use crate::apiserver::authorization::node_graph::Kind;
    for (kind, what) in [
        (Kind::Secret, "secrets"),
        (Kind::ConfigMap, "configmaps"),
        (Kind::Claim, "persistentvolumeclaims"),
    ] {
        if refs.iter().any(|(k, _)| *k == kind) {
            return Err(a.forbidden(&format!(
                "node {node:?} can not create pods that reference {what}"
            )));
        }
    }
    Ok(())
}

fn pod_status(node: &str, a: &Attributes) -> Result<(), ApiError> {
    if a.operation != Operation::Update {
        return Err(a.forbidden(&format!("unexpected operation {:?}", a.operation.as_str())));
    }
    let old = a.old_object.as_ref().cloned().unwrap_or_default();
    if node_name_of(&old) != node {
        return Err(a.forbidden(&format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        )));
    }
    let new = a.object.as_ref().cloned().unwrap_or_default();
    if labels(&old) != labels(&new) {
        return Err(a.forbidden(&format!(
            "node {node:?} cannot update labels through pod status"
        )));
    }
    Ok(())
}

fn labels(o: &Value) -> Value {
    match &o["metadata"]["labels"] {
        Value::Object(m) if !m.is_empty() => Value::Object(m.clone()),
        _ => Value::Null,
    }
}

async fn eviction(api: &Api, node: &str, a: &Attributes) -> Result<(), ApiError> {
    if a.operation != Operation::Create {
        return Err(a.forbidden(&format!("unexpected operation {}", a.operation.as_str())));
    }
    let name = if a.name.is_empty() {
        a.object
            .as_ref()
            .and_then(|e| e["metadata"]["name"].as_str())
            .unwrap_or("")
            .to_string()
    } else {
        a.name.clone()
    };
    if name.is_empty() {
        return Err(a.forbidden("could not determine pod from request data"));
    }
    let existing = stored_pod(api, &a.namespace, &name).await?;
    if node_name_of(&existing) != node {
        return Err(a.forbidden(&format!(
            "node {node} can only evict pods with spec.nodeName set to itself"
        )));
    }
    Ok(())
}

fn claim_status(node: &str, a: &Attributes) -> Result<(), ApiError> {
    if a.operation != Operation::Update {
        return Err(a.forbidden(&format!("unexpected operation {:?}", a.operation.as_str())));
    }
    // Only the resize-related status fields are a kubelet's to write.
    let strip = |o: Option<&Value>| {
        let mut o = o.cloned().unwrap_or_default();
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        if let Some(s) = o["status"].as_object_mut() {
            s.remove("capacity");
            s.remove("conditions");
        }
        o
    };
    if strip(a.old_object.as_ref()) != strip(a.object.as_ref()) {
        return Err(a.forbidden(&format!(
            "node {node:?} is not allowed to update fields other than status.capacity and status.conditions"
        )));
    }
    Ok(())
}

/// Label keys a kubelet may set on its own Node after it registered (upstream's kubelet
/// labels): the well-known ones, and anything under kubelet.kubernetes.io or
/// node.kubernetes.io.
fn is_kubelet_label(key: &str) -> bool {
    const KNOWN: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "node.kubernetes.io/windows-build",
    ];
    if KNOWN.contains(&key) {
        return true;
    }
    let ns = label_namespace(key);
    ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|allowed| ns == *allowed || ns.ends_with(&format!(".{allowed}")))
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_domain(ns: &str, domain: &str) -> bool {
    ns == domain || ns.ends_with(&format!(".{domain}"))
}

fn modified_labels(new: &Value, old: &Value) -> BTreeSet<String> {
    let get = |o: &Value| {
        o["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (n, o) = (get(new), get(old));
    n.iter()
        .filter(|(k, v)| o.get(*k) != Some(*v))
        .chain(o.iter().filter(|(k, v)| n.get(*k) != Some(*v)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Labels a node may not change on its own Node once registered: node-restriction ones, and
/// Kubernetes' own domains beyond the kubelet labels (they steer workloads).
fn forbidden_update_labels(new: &Value, old: &Value) -> Vec<String> {
    modified_labels(new, old)
        .into_iter()
        .filter(|k| {
            let ns = label_namespace(k);
            in_domain(ns, "node-restriction.kubernetes.io")
                || ((in_domain(ns, "kubernetes.io") || in_domain(ns, "k8s.io"))
                    && !is_kubelet_label(k))
        })
        .collect()
}

fn node_object(node: &str, a: &Attributes) -> Result<(), ApiError> {
    let new = a.object.as_ref().cloned().unwrap_or_default();
    let requested = if a.operation == Operation::Create {
        if !new["spec"]["configSource"].is_null() {
            return Err(a.forbidden(&format!(
                "node {node:?} is not allowed to create pods with a non-nil configSource"
            )));
        }
        let forbidden: Vec<String> = modified_labels(&new, &Value::Null)
            .into_iter()
            .filter(|k| in_domain(label_namespace(k), "node-restriction.kubernetes.io"))
            .collect();
        if !forbidden.is_empty() {
            return Err(a.forbidden(&format!(
                "node {node:?} is not allowed to set the following labels: {}",
                forbidden.join(", ")
            )));
        }
        new["metadata"]["name"].as_str().unwrap_or("").to_string()
    } else {
        a.name.clone()
    };
    if requested != node {
        return Err(a.forbidden(&format!(
            "node {node:?} is not allowed to modify node {requested:?}"
        )));
    }
    if a.operation == Operation::Update {
        let old = a.old_object.as_ref().cloned().unwrap_or_default();
        if !new["spec"]["configSource"].is_null()
            && new["spec"]["configSource"] != old["spec"]["configSource"]
        {
            return Err(a.forbidden(&format!(
                "node {node:?} is not allowed to update configSource to a new non-nil configSource"
            )));
        }
        let taints = |o: &Value| match &o["spec"]["taints"] {
            Value::Array(t) if !t.is_empty() => Value::Array(t.clone()),
            _ => Value::Null,
        };
        if taints(&new) != taints(&old) {
            return Err(a.forbidden(&format!("node {node:?} is not allowed to modify taints")));
        }
        let forbidden = forbidden_update_labels(&new, &old);
        if !forbidden.is_empty() {
            return Err(a.forbidden(&format!(
                "is not allowed to modify labels: {}",
                forbidden.join(", ")
            )));
        }
    }
    Ok(())
}

async fn token(api: &Api, node: &str, a: &Attributes) -> Result<(), ApiError> {
    if a.operation != Operation::Create || a.subresource != "token" {
        return Ok(());
    }
    let spec = a
        .object
        .as_ref()
        .map(|o| o["spec"].clone())
        .unwrap_or_default();
    let r = &spec["boundObjectRef"];
    if r["apiVersion"] != "v1" || r["kind"] != "Pod" || r["name"].as_str().unwrap_or("").is_empty()
    {
        return Err(a.forbidden("node requested token not bound to a pod"));
    }
    let uid = r["uid"].as_str().unwrap_or("");
    if uid.is_empty() {
        return Err(a.forbidden("node requested token with a pod binding without a uid"));
    }
    let pod = stored_pod(api, &a.namespace, r["name"].as_str().unwrap_or("")).await?;
    let recorded = pod["metadata"]["uid"].as_str().unwrap_or("");
    if uid != recorded {
        return Err(a.forbidden(&format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record ({recorded}). The object might have been deleted and then recreated"
        )));
    }
    if node_name_of(&pod) != node {
        return Err(
            a.forbidden("node requested token bound to a pod scheduled on a different node")
        );
    }
    Ok(())
}

fn same_name(node: &str, a: &Attributes, what: &str) -> Result<(), ApiError> {
    if a.resource.plural == "leases" && a.namespace != "kube-node-lease" {
        return Err(
            a.forbidden("can only access leases in the \"kube-node-lease\" system namespace")
        );
    }
    let name = if a.operation == Operation::Create {
        a.object
            .as_ref()
            .and_then(|o| o["metadata"]["name"].as_str())
            .unwrap_or("")
            .to_string()
    } else {
        a.name.clone()
    };
    if name != node {
        return Err(a.forbidden(&format!(
            "can only access {what} with the same name as the requesting node"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_a_node_may_change() {
        let old = json!({"metadata": {"labels": {"kubernetes.io/hostname": "n1"}}});
        let new = json!({"metadata": {"labels": {
            "kubernetes.io/hostname": "n1",
            "node.kubernetes.io/exclude-from-external-load-balancers": "true",
            "node-role.kubernetes.io/control-plane": "",
            "example.com/team": "a"
        }}});
        assert_eq!(modified_labels(&new, &old).len(), 3);
        let refused = forbidden_update_labels(&new, &old);
        assert_eq!(refused, vec!["node-role.kubernetes.io/control-plane"]);
    }
}
