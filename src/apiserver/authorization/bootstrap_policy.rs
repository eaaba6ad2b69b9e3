//! The roles and bindings every cluster starts with, as upstream's bootstrap policy names them:
//! cluster-admin for `system:masters`, the user-facing admin / edit / view, discovery and the
//! public health paths for everyone, and one role per component of the server (each runs under
//! its own name, see server.rs). They are reconciled at every start: a missing one is created, a
//! present one gains the rules or subjects it lacks, and one annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"` is left exactly as the user made it.

use crate::apiserver::handler::Api;
use crate::apiserver::identity;
use crate::apiserver::lifecycle::internal_request;
use crate::apiserver::resources::Mode;
use crate::apiserver::status::ApiError;
use serde_json::{json, Value};

const GROUP: &str = "rbac.authorization.k8s.io";
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn paths(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn cluster_role(name: &str, rules: Vec<Value>, labels: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"},
            "labels": labels},
        "rules": rules,
    })
}

/// A ClusterRole that aggregates the ClusterRoles labelled
/// `rbac.authorization.k8s.io/aggregate-to-<to>: "true"`.
fn aggregating(name: &str, rules: &[Value], to: &str, labels: Value) -> Value {
    let mut role = cluster_role(name, rules.to_vec(), labels);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{to}"): "true"}}]});
    role
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "annotations": {AUTOUPDATE: "true"},
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": GROUP, "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": GROUP, "kind": "User", "name": name})
}

fn service_account(ns: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "namespace": ns, "name": name})
}

fn defaults() -> Value {
    json!({"kubernetes.io/bootstrapping": "rbac-defaults"})
}

/// What `view` reads: everything namespaced a user works with but Secrets (which would reveal
/// service account tokens) and the RBAC objects.
fn view_rules() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "bindings",
                "configmaps",
                "endpoints",
                "events",
                "limitranges",
                "namespaces",
                "namespaces/status",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "pods/log",
                "pods/status",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
                "serviceaccounts",
                "services",
                "services/status",
            ],
        ),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

/// What `edit` adds: writing those objects, Secrets, and reaching into pods.
fn edit_rules() -> Vec<Value> {
    vec![
        rule(
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
            ],
        ),
        rule(
            &["create"],
            &[""],
            &["pods/eviction", "serviceaccounts/token"],
        ),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
        rule(WRITE, &["discovery.k8s.io"], &["endpointslices"]),
    ]
}

/// What `admin` adds: granting those rights inside the namespace.
fn admin_rules() -> Vec<Value> {
    vec![
        rule(
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            &[GROUP],
            &["rolebindings", "roles"],
        ),
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
    ]
}

/// The ClusterRoles, then the ClusterRoleBindings, in the order they are made.
pub fn objects() -> Vec<(&'static str, Value)> {
    let all: Vec<&str> = READ.iter().chain(WRITE).copied().collect();
    let view: Vec<Value> = view_rules();
    let edit: Vec<Value> = view.iter().cloned().chain(edit_rules()).collect();
    let admin: Vec<Value> = edit.iter().cloned().chain(admin_rules()).collect();
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let discovery: Vec<&str> = [
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/openapi",
        "/openapi/*",
    ]
    .into_iter()
    .chain(health)
    .collect();
    let roles = vec![
        cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), paths(&["*"], &["*"])],
            defaults(),
        ),
        // As upstream: admin, edit and view aggregate what is labelled for them, and each
        // holds its own rules in a `system:aggregate-to-*` role; edit is labelled for admin,
        // view for edit. They start out with their full rules, so they are whole before the
        // aggregation controller first runs.
        aggregating(
            "admin",
            &admin,
            "admin",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults"}),
        ),
        aggregating(
            "edit",
            &edit,
            "edit",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults",
                "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        ),
        aggregating(
            "view",
            &view,
            "view",
            json!({"kubernetes.io/bootstrapping": "rbac-defaults",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        ),
        cluster_role(
            "system:aggregate-to-admin",
            admin_rules(),
            json!({"kubernetes.io/bootstrapping": "rbac-defaults",
                "rbac.authorization.k8s.io/aggregate-to-admin": "true"}),
        ),
        cluster_role(
            "system:aggregate-to-edit",
            edit_rules(),
            json!({"kubernetes.io/bootstrapping": "rbac-defaults",
                "rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
        ),
        cluster_role(
            "system:aggregate-to-view",
            view_rules(),
            json!({"kubernetes.io/bootstrapping": "rbac-defaults",
                "rbac.authorization.k8s.io/aggregate-to-view": "true"}),
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
            ],
            defaults(),
        ),
        cluster_role(
            "system:discovery",
            vec![paths(&["get"], &discovery)],
            defaults(),
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![paths(&["get"], &health)],
            defaults(),
        ),
        // A joining node asks for its certificates (upstream's roles; the approver asks a
        // SubjectAccessReview whether the requester holds the `nodeclient` or `selfnodeclient`
        // one before it approves a kubelet's client certificate).
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            )],
            defaults(),
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/nodeclient"],
            )],
            defaults(),
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(
                &["create"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests/selfnodeclient"],
            )],
            defaults(),
        ),
        // The controller manager runs every controller under one name (upstream gives each its
        // own service account), so its role is broad: every object verb on every resource, but
        // never bind or impersonate, and no non-resource paths; escalate on ClusterRoles only,
        // which the aggregation controller needs to write rules it does not hold itself.
        cluster_role(
            "system:kube-controller-manager",
            vec![
                rule(&all, &["*"], &["*"]),
                rule(
                    &["escalate"],
                    &["rbac.authorization.k8s.io"],
                    &["clusterroles"],
                ),
            ],
            defaults(),
        ),
        cluster_role(
            "system:kube-scheduler",
            vec![
                rule(
                    READ,
                    &[""],
                    &[
                        "nodes",
                        "namespaces",
                        "services",
                        "replicationcontrollers",
                        "persistentvolumeclaims",
                        "persistentvolumes",
                        "configmaps",
                    ],
                ),
                rule(&["get", "list", "watch", "delete"], &[""], &["pods"]),
                rule(&["create"], &[""], &["bindings", "pods/binding"]),
                rule(&["patch", "update"], &[""], &["pods/status"]),
                rule(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                ),
                rule(READ, &["apps"], &["replicasets", "statefulsets"]),
                rule(READ, &["policy"], &["poddisruptionbudgets"]),
                rule(
                    READ,
                    &["storage.k8s.io"],
                    &[
                        "csidrivers",
                        "csinodes",
                        "csistoragecapacities",
                        "storageclasses",
                    ],
                ),
                rule(
                    &["create", "get", "list", "watch", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
            defaults(),
        ),
        cluster_role(
            "system:nanokube-servicelb",
            vec![
                rule(READ, &[""], &["services", "nodes"]),
                rule(&["patch", "update"], &[""], &["services/status"]),
                rule(
                    &["create", "patch", "update"],
                    &["", "events.k8s.io"],
                    &["events"],
                ),
                rule(
                    &["create", "get", "list", "watch", "update"],
                    &["coordination.k8s.io"],
                    &["leases"],
                ),
            ],
            defaults(),
        ),
        cluster_role(
            "system:controller:generic-garbage-collector",
            vec![rule(
                &["get", "list", "watch", "patch", "update", "delete"],
                &["*"],
                &["*"],
            )],
            defaults(),
        ),
        cluster_role(
            "system:controller:namespace-controller",
            vec![
                rule(
                    &["get", "list", "watch", "delete", "deletecollection"],
                    &["*"],
                    &["*"],
                ),
                rule(
                    &["update"],
                    &[""],
                    &["namespaces/finalize", "namespaces/status"],
                ),
            ],
            defaults(),
        ),
    ];
    let bindings = vec![
        binding(
            "cluster-admin",
            "cluster-admin",
            json!([group("system:masters")]),
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:discovery",
            "system:discovery",
            json!([group("system:authenticated")]),
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            json!([
                group("system:authenticated"),
                group("system:unauthenticated")
            ]),
        ),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            json!([user("system:kube-controller-manager")]),
        ),
        // The join token's user may ask for a node's first certificates, which are approved
        // at once; a node may renew its own (kubeadm binds the same three).
        binding(
            "nanokube:kubelet-bootstrap",
            "system:node-bootstrapper",
            json!([group("system:bootstrappers")]),
        ),
        binding(
            "nanokube:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            json!([group("system:bootstrappers")]),
        ),
        binding(
            "nanokube:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!([group("system:nodes")]),
        ),
        binding(
            "system:kube-scheduler",
            "system:kube-scheduler",
            json!([user("system:kube-scheduler")]),
        ),
        binding(
            "system:nanokube-servicelb",
            "system:nanokube-servicelb",
            json!([user("system:nanokube-servicelb")]),
        ),
        binding(
            "system:controller:generic-garbage-collector",
            "system:controller:generic-garbage-collector",
            json!([service_account("kube-system", "generic-garbage-collector")]),
        ),
        binding(
            "system:controller:namespace-controller",
            "system:controller:namespace-controller",
            json!([service_account("kube-system", "namespace-controller")]),
        ),
    ];
    roles
        .into_iter()
        .map(|r| ("clusterroles", r))
        .chain(bindings.into_iter().map(|b| ("clusterrolebindings", b)))
        .collect()
}

/// Adds to `have` every element of `want` it lacks; whether anything was added.
fn add_missing(have: &mut Vec<Value>, want: &[Value]) -> bool {
    let mut changed = false;
    for w in want {
        if !have.contains(w) {
            have.push(w.clone());
            changed = true;
        }
    }
    changed
}

/// The stored object with what the bootstrap version adds, or None when it needs no write
/// (nothing missing, or the user switched autoupdate off).
pub fn reconciled(cur: &Value, want: &Value) -> Option<Value> {
    if cur["metadata"]["annotations"][AUTOUPDATE] == "false" {
        return None;
    }
    let mut new = cur.clone();
    let field = if want.get("rules").is_some() {
        "rules"
    } else {
        "subjects"
    };
    let mut have = new[field].as_array().cloned().unwrap_or_default();
    let mut added = add_missing(&mut have, want[field].as_array().map_or(&[], Vec::as_slice));
    new[field] = Value::Array(have);
    // An aggregating role gets its selectors back (its rules are the controller's business).
    if want.get("aggregationRule").is_some()
        && cur.get("aggregationRule") != want.get("aggregationRule")
    {
        new["aggregationRule"] = want["aggregationRule"].clone();
        added = true;
    }
    added.then_some(new)
}

/// Creates or tops up every bootstrap object, as `system:apiserver`.
pub async fn reconcile(api: &Api) -> Result<(), ApiError> {
    for (plural, want) in objects() {
        let info = api
            .registry
            .lookup(GROUP, "v1", plural)
            .ok_or_else(|| ApiError::Internal(format!("{plural} are not registered")))?;
        let name = want["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let r = internal_request(info.clone(), None, &name, identity::apiserver());
        match api.get_object(&info, None, &name).await? {
            None => match api.create_object(&r, want.clone()).await {
                Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            },
            Some((cur, _)) => {
                if reconciled(&cur, &want).is_some() {
                    api.write_update(&r, Mode::Main, |cur| {
                        Ok(reconciled(cur, &want).unwrap_or_else(|| cur.clone()))
                    })
                    .await?;
                    tracing::info!(%name, "{plural}: added the bootstrap rules it lacked");
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_adds_what_is_missing_and_respects_autoupdate_false() {
        let want = cluster_role("r", vec![rule(&["get"], &[""], &["pods"])], defaults());
        let mut cur = cluster_role("r", vec![rule(&["list"], &[""], &["pods"])], defaults());
        let new = reconciled(&cur, &want).expect("a rule is missing");
        assert_eq!(new["rules"].as_array().unwrap().len(), 2);
        assert_eq!(reconciled(&new, &want), None, "nothing more to add");
        cur["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert_eq!(reconciled(&cur, &want), None);
        let b = binding("b", "r", json!([user("u")]));
        let mut stored = binding("b", "r", json!([user("v")]));
        stored = reconciled(&stored, &b).unwrap();
        assert_eq!(stored["subjects"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn every_object_names_itself() {
        let objs = objects();
        assert!(objs.iter().all(|(_, o)| o["metadata"]["name"].is_string()));
        assert!(objs
            .iter()
            .any(|(p, o)| *p == "clusterrolebindings"
                && o["subjects"][0]["name"] == "system:masters"));
    }
}
