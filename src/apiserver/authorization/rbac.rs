//! The RBAC authorizer: Roles, ClusterRoles and their bindings, indexed by subject so a decision
//! looks only at the bindings of the asking user and its groups, never at the whole store.
//! Rules are purely additive (no deny rules): a request is allowed when one rule of one role
//! bound to the user (cluster-wide, or in the request's namespace) matches it; otherwise RBAC has
//! no opinion and the next authorizer of the chain (or the 403) decides, as upstream.
//!
//! `Policy` is the in-memory index; the server keeps it current from its own store's watch
//! through `upsert_*` / `delete_*` (`start`).

use super::{Attributes, Authorizer, Decision, NonResourceRule, ResourceRule, Rules};
use crate::apiserver::auth::User;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// Whom a binding names, as the index key: service accounts become their user name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    User(String),
    Group(String),
}

fn subject_key(s: &Subject, binding_namespace: &str) -> Option<SubjectKey> {
    match s.kind.as_str() {
        "User" => Some(SubjectKey::User(s.name.clone())),
        "Group" => Some(SubjectKey::Group(s.name.clone())),
        "ServiceAccount" => {
            // Upstream defaults an empty subject namespace to the binding's.
            let ns = s
                .namespace
                .as_deref()
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            if ns.is_empty() {
                return None;
            }
            Some(SubjectKey::User(format!(
                "system:serviceaccount:{ns}:{}",
                s.name
            )))
        }
        _ => None,
    }
}

/// A binding as the index keeps it: where it applies ("" = cluster-wide) and what it grants.
#[derive(Debug, Clone)]
struct Grant {
    namespace: String,
    role_ref: RoleRef,
    subjects: Vec<SubjectKey>,
}

/// Bindings are keyed by (namespace, name); ClusterRoleBindings have namespace "".
type Key = (String, String);

#[derive(Default)]
pub struct Policy {
    roles: HashMap<Key, Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    grants: HashMap<Key, Grant>,
    /// Binding keys per subject: what makes a decision independent of the number of bindings.
    by_subject: HashMap<SubjectKey, HashSet<Key>>,
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl Policy {
    pub fn upsert_role(&mut self, r: &Role) {
        self.roles
            .insert(key_of(&r.metadata), r.rules.clone().unwrap_or_default());
    }
    pub fn delete_role(&mut self, r: &Role) {
        self.roles.remove(&key_of(&r.metadata));
    }
    pub fn upsert_cluster_role(&mut self, r: &ClusterRole) {
        let name = r.metadata.name.clone().unwrap_or_default();
        self.cluster_roles
            .insert(name, r.rules.clone().unwrap_or_default());
    }
    pub fn delete_cluster_role(&mut self, r: &ClusterRole) {
        self.cluster_roles
            .remove(r.metadata.name.as_deref().unwrap_or_default());
    }
    pub fn upsert_role_binding(&mut self, b: &RoleBinding) {
        let key = key_of(&b.metadata);
        let subjects = b.subjects.clone().unwrap_or_default();
        self.insert_grant(key, b.role_ref.clone(), &subjects);
    }
    pub fn delete_role_binding(&mut self, b: &RoleBinding) {
        self.remove_grant(&key_of(&b.metadata));
    }
    pub fn upsert_cluster_role_binding(&mut self, b: &ClusterRoleBinding) {
        let key = (String::new(), b.metadata.name.clone().unwrap_or_default());
        let subjects = b.subjects.clone().unwrap_or_default();
        self.insert_grant(key, b.role_ref.clone(), &subjects);
    }
    pub fn delete_cluster_role_binding(&mut self, b: &ClusterRoleBinding) {
        self.remove_grant(&(String::new(), b.metadata.name.clone().unwrap_or_default()));
    }

    fn insert_grant(&mut self, key: Key, role_ref: RoleRef, subjects: &[Subject]) {
        self.remove_grant(&key);
        let subjects: Vec<SubjectKey> = subjects
            .iter()
            .filter_map(|s| subject_key(s, &key.0))
            .collect();
        for s in &subjects {
            self.by_subject
                .entry(s.clone())
                .or_default()
                .insert(key.clone());
        }
        let grant = Grant {
            namespace: key.0.clone(),
            role_ref,
            subjects,
        };
        self.grants.insert(key, grant);
    }

    fn remove_grant(&mut self, key: &Key) {
        let Some(old) = self.grants.remove(key) else {
            return;
        };
        for s in &old.subjects {
            if let Some(set) = self.by_subject.get_mut(s) {
                set.remove(key);
                if set.is_empty() {
                    self.by_subject.remove(s);
                }
            }
        }
    }

    fn rules_of(&self, g: &Grant) -> &[PolicyRule] {
        let found = match g.role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&g.role_ref.name),
            "Role" => self
                .roles
                .get(&(g.namespace.clone(), g.role_ref.name.clone())),
            _ => None,
        };
        found.map(Vec::as_slice).unwrap_or_default()
    }

    /// Every grant bound to the user or one of its groups, with the namespace it applies in.
    fn grants_for<'a>(&'a self, user: &User) -> impl Iterator<Item = &'a Grant> + 'a {
        let mut keys: Vec<SubjectKey> = vec![SubjectKey::User(user.name.clone())];
        keys.extend(user.groups.iter().cloned().map(SubjectKey::Group));
        let mut seen = HashSet::new();
        keys.into_iter()
            .filter_map(|k| self.by_subject.get(&k))
            .flatten()
            .filter(move |k| seen.insert((*k).clone()))
            .filter_map(|k| self.grants.get(k))
    }

    /// Whether the user's grants allow the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        self.grants_for(&a.user).any(|g| {
            // A RoleBinding grants only inside its namespace, never on non-resource paths.
            let applies =
                g.namespace.is_empty() || (a.resource_request && g.namespace == a.namespace);
            applies && self.rules_of(g).iter().any(|r| rule_allows(r, a))
        })
    }

    /// The rules the user holds in a namespace ("" = cluster-wide only).
    pub fn rules_for(&self, user: &User, namespace: &str) -> Rules {
        let mut out = Rules::default();
        for g in self.grants_for(user) {
            if !g.namespace.is_empty() && g.namespace != namespace {
                continue;
            }
            for r in self.rules_of(g) {
                let v = |x: &Option<Vec<String>>| x.clone().unwrap_or_default();
                if r.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    out.non_resource.push(NonResourceRule {
                        verbs: r.verbs.clone(),
                        non_resource_urls: v(&r.non_resource_urls),
                    });
                } else {
                    out.resource.push(ResourceRule {
                        verbs: r.verbs.clone(),
                        api_groups: v(&r.api_groups),
                        resources: v(&r.resources),
                        resource_names: v(&r.resource_names),
                    });
                }
            }
        }
        out
    }
}

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

/// Whether one rule allows a request, as upstream's RuleAllows.
pub fn rule_allows(r: &PolicyRule, a: &Attributes) -> bool {
    if !has(&r.verbs, &a.verb) {
        return false;
    }
    if !a.resource_request {
        let urls = r.non_resource_urls.as_deref().unwrap_or_default();
        return urls.iter().any(|u| {
            u == "*" || *u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
        });
    }
    let groups = r.api_groups.as_deref().unwrap_or_default();
    if !has(groups, &a.api_group) {
        return false;
    }
    let resources = r.resources.as_deref().unwrap_or_default();
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = resources.iter().any(|x| {
        x == "*"
            || *x == combined
            // "*/scale" is the scale subresource of any resource.
            || (!a.subresource.is_empty()
                && x.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource_ok {
        return false;
    }
    let names = r.resource_names.as_deref().unwrap_or_default();
    names.is_empty() || names.contains(&a.name)
}

/// The authorizer over a shared, watch-maintained Policy.
#[derive(Clone, Default)]
pub struct RbacAuthorizer {
    pub policy: Arc<RwLock<Policy>>,
}

impl Authorizer for RbacAuthorizer {
    fn authorize(&self, a: &Attributes) -> Decision {
        let policy = self.policy.read().unwrap_or_else(|e| e.into_inner());
        if policy.allows(a) {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    fn rules_for(&self, user: &User, namespace: &str) -> Rules {
        let policy = self.policy.read().unwrap_or_else(|e| e.into_inner());
        policy.rules_for(user, namespace)
    }
}

/// The four kinds the policy is fed, in the order of their prefixes.
const KINDS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

impl RbacAuthorizer {
    /// Fills the policy from the store before returning, then follows every change of the
    /// four RBAC kinds until the server stops.
    pub async fn start(&self, api: &std::sync::Arc<crate::apiserver::handler::Api>) {
        let mut prefixes = Vec::new();
        for plural in KINDS {
            match api
                .registry
                .lookup("rbac.authorization.k8s.io", "v1", plural)
            {
                Some(info) => prefixes.push(info.list_prefix(None)),
                None => return,
            }
        }
        super::store_feed::start(api, prefixes, Arc::new(self.clone())).await;
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Policy> {
        self.policy.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// One stored object into (or out of) the policy; objects that do not parse are skipped, as
/// validation keeps them from being stored.
fn apply_object(p: &mut Policy, which: usize, obj: &serde_json::Value, deleted: bool) {
    fn parse<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
        serde_json::from_value(v.clone()).ok()
    }
    match (which, deleted) {
        (0, false) => parse(obj).map(|r| p.upsert_role(&r)),
        (0, true) => parse(obj).map(|r| p.delete_role(&r)),
        (1, false) => parse(obj).map(|r| p.upsert_cluster_role(&r)),
        (1, true) => parse(obj).map(|r| p.delete_cluster_role(&r)),
        (2, false) => parse(obj).map(|b| p.upsert_role_binding(&b)),
        (2, true) => parse(obj).map(|b| p.delete_role_binding(&b)),
        (_, false) => parse(obj).map(|b| p.upsert_cluster_role_binding(&b)),
        (_, true) => parse(obj).map(|b| p.delete_cluster_role_binding(&b)),
    };
}

impl super::store_feed::Index for RbacAuthorizer {
    fn reset(&self, lists: Vec<Vec<serde_json::Value>>) {
        let mut fresh = Policy::default();
        for (which, list) in lists.iter().enumerate() {
            for obj in list {
                apply_object(&mut fresh, which, obj, false);
            }
        }
        *self.write() = fresh;
    }

    fn apply(&self, which: usize, obj: &serde_json::Value, deleted: bool) {
        apply_object(&mut self.write(), which, obj, deleted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn s(x: &[&str]) -> Option<Vec<String>> {
        Some(x.iter().map(|v| v.to_string()).collect())
    }

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: s(verbs).unwrap(),
            api_groups: s(groups),
            resources: s(resources),
            resource_names: if names.is_empty() { None } else { s(names) },
            non_resource_urls: None,
        }
    }

    fn req(
        user: &User,
        verb: &str,
        ns: &str,
        group: &str,
        res: &str,
        sub: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: ns.into(),
            api_group: group.into(),
            resource: res.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    fn path(user: &User, verb: &str, p: &str) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            path: p.into(),
            ..Attributes::default()
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let u = User::new("alice", &[]);
        let r = rule(&["get", "list"], &[""], &["pods", "pods/log"], &[]);
        assert!(rule_allows(&r, &req(&u, "list", "a", "", "pods", "", "")));
        assert!(rule_allows(
            &r,
            &req(&u, "get", "a", "", "pods", "log", "p")
        ));
        assert!(!rule_allows(
            &r,
            &req(&u, "get", "a", "", "pods", "exec", "p")
        ));
        assert!(!rule_allows(
            &r,
            &req(&u, "delete", "a", "", "pods", "", "p")
        ));
        assert!(!rule_allows(
            &r,
            &req(&u, "get", "a", "apps", "pods", "", "p")
        ));
        let scale = rule(&["update"], &["*"], &["*/scale"], &[]);
        assert!(rule_allows(
            &scale,
            &req(&u, "update", "a", "apps", "deployments", "scale", "d")
        ));
        assert!(!rule_allows(
            &scale,
            &req(&u, "update", "a", "apps", "deployments", "", "d")
        ));
        let named = rule(&["get"], &[""], &["configmaps"], &["one"]);
        assert!(rule_allows(
            &named,
            &req(&u, "get", "a", "", "configmaps", "", "one")
        ));
        assert!(!rule_allows(
            &named,
            &req(&u, "get", "a", "", "configmaps", "", "two")
        ));
        assert!(!rule_allows(
            &named,
            &req(&u, "list", "a", "", "configmaps", "", "")
        ));
        let urls = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: s(&["/healthz", "/apis/*"]),
            ..PolicyRule::default()
        };
        assert!(rule_allows(&urls, &path(&u, "get", "/healthz")));
        assert!(rule_allows(&urls, &path(&u, "get", "/apis/apps/v1")));
        assert!(!rule_allows(&urls, &path(&u, "get", "/healthz/etcd")));
        assert!(!rule_allows(&urls, &path(&u, "post", "/healthz")));
    }

    fn meta(ns: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            namespace: if ns.is_empty() { None } else { Some(ns.into()) },
            name: Some(name.into()),
            ..ObjectMeta::default()
        }
    }

    fn subject(kind: &str, name: &str, ns: Option<&str>) -> Subject {
        Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(Into::into),
            api_group: None,
        }
    }

    #[test]
    fn bindings_grant_by_subject_and_namespace_and_follow_updates() {
        let z = RbacAuthorizer::default();
        let mut p = z.policy.write().unwrap();
        p.upsert_role(&Role {
            metadata: meta("a", "reader"),
            rules: Some(vec![rule(&["get", "list"], &[""], &["pods"], &[])]),
        });
        p.upsert_cluster_role(&ClusterRole {
            metadata: meta("", "nodes"),
            rules: Some(vec![rule(&["list"], &[""], &["nodes"], &[])]),
            aggregation_rule: None,
        });
        let rb = RoleBinding {
            metadata: meta("a", "r"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "reader".into(),
            },
            subjects: Some(vec![
                subject("User", "alice", None),
                subject("ServiceAccount", "bot", None),
            ]),
        };
        p.upsert_role_binding(&rb);
        p.upsert_cluster_role_binding(&ClusterRoleBinding {
            metadata: meta("", "ops"),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "nodes".into(),
            },
            subjects: Some(vec![subject("Group", "ops", None)]),
        });
        drop(p);
        let alice = User::new("alice", &["system:authenticated"]);
        let bot = User::new("system:serviceaccount:a:bot", &[]);
        let op = User::new("bob", &["ops"]);
        let allow = |a: &Attributes| z.authorize(a) == Decision::Allow;
        assert!(allow(&req(&alice, "list", "a", "", "pods", "", "")));
        assert!(allow(&req(&bot, "get", "a", "", "pods", "", "p")));
        assert!(!allow(&req(&alice, "list", "b", "", "pods", "", "")));
        assert!(!allow(&req(&alice, "list", "", "", "pods", "", "")));
        assert!(!allow(&req(&alice, "list", "", "", "nodes", "", "")));
        assert!(allow(&req(&op, "list", "", "", "nodes", "", "")));
        assert_eq!(z.rules_for(&alice, "a").resource.len(), 1);
        assert!(z.rules_for(&alice, "b").resource.is_empty());
        z.policy.write().unwrap().delete_role_binding(&rb);
        assert!(!allow(&req(&alice, "list", "a", "", "pods", "", "")));
        assert!(!z
            .policy
            .read()
            .unwrap()
            .by_subject
            .contains_key(&SubjectKey::User("alice".into())));
    }
}
