//! PodSecurity: the Pod Security Standards applied per namespace by its labels
//! `pod-security.kubernetes.io/enforce|audit|warn` (with `-version`; every version is evaluated
//! as "latest", the only version nanokube knows). A pod that violates the enforce level is
//! refused (403); a violation of the warn level is a warning for the client, of the audit level
//! an audit annotation. Workload objects (Deployments, Jobs, ...) are checked by their pod
//! template and only warned about and audited, never refused, as upstream, since the pods their
//! controllers make are checked themselves. Setting a namespace's enforce label warns about the
//! pods already there that violate it. Validating phase, as upstream's plugin.
//!
//! Nothing is exempt by default (upstream's default): namespaces without labels, nanokube's own
//! kube-system included, are privileged.

pub mod levels;

use super::recorder;
use super::{Attributes, Operation, Outcome, Plugin};
use crate::apiserver::encoding;
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use levels::{evaluate, Level, Violation};
use serde_json::Value;

const PREFIX: &str = "pod-security.kubernetes.io/";

/// The namespace's levels for each mode.
#[derive(Debug, Default, Clone, Copy)]
struct Policy {
    enforce: Option<Level>,
    audit: Option<Level>,
    warn: Option<Level>,
}

fn policy_of(ns: &Value) -> Policy {
    let label = |mode: &str| {
        ns["metadata"]["labels"][format!("{PREFIX}{mode}")]
            .as_str()
            .and_then(Level::parse)
    };
    Policy {
        enforce: label("enforce"),
        audit: label("audit"),
        warn: label("warn"),
    }
}

/// `baseline:latest`, as upstream names a level and version in its messages.
fn level_name(level: Level) -> String {
    format!("{}:latest", level.as_str())
}

/// Upstream's aggregate: `reason (detail), reason (detail)`.
fn describe(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("{} ({})", v.reason, v.detail))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pod template of a workload object, by resource.
fn template<'a>(group: &str, plural: &str, obj: &'a Value) -> Option<&'a Value> {
    let t = match (group, plural) {
        ("", "podtemplates") => &obj["template"],
        ("", "replicationcontrollers")
        | ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
        | ("batch", "jobs") => &obj["spec"]["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        _ => return None,
    };
    t.is_object().then_some(t)
}

/// The spec fields the Standards look at; an update that changes none of them (labels, status,
/// an image) is not checked again, as upstream skips updates that cannot newly violate.
fn security_relevant(pod: &Value) -> Value {
    let mut spec = pod["spec"].clone();
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(cs) = spec[key].as_array_mut() {
            for c in cs {
                if let Some(o) = c.as_object_mut() {
                    o.remove("image");
                }
            }
        }
    }
    serde_json::json!([spec, pod["metadata"]["annotations"]])
}

#[derive(Default)]
pub struct PodSecurity;

impl PodSecurity {
    async fn namespace(&self, api: &Api, name: &str) -> Result<Option<Value>, ApiError> {
        let info = api
            .registry
            .lookup("", "v1", "namespaces")
            .expect("namespaces are registered");
        Ok(api.get_object(&info, None, name).await?.map(|(ns, _)| ns))
    }

    async fn check_pod(&self, api: &Api, a: &Attributes, pod: &Value) -> Result<(), ApiError> {
        let Some(ns) = self.namespace(api, &a.namespace).await? else {
            return Ok(());
        };
        let policy = policy_of(&ns);
        let (meta, spec) = (&pod["metadata"], &pod["spec"]);
        if let Some(level) = policy.enforce {
            let v = evaluate(level, meta, spec);
            if !v.is_empty() {
                return Err(a.forbidden(&format!(
                    "violates PodSecurity {:?}: {}",
                    level_name(level),
                    describe(&v)
                )));
            }
        }
        self.warn_and_audit(policy, meta, spec);
        Ok(())
    }

    /// A workload's template: enforce and warn become warnings, audit an annotation.
    async fn check_template(
        &self,
        api: &Api,
        a: &Attributes,
        tmpl: &Value,
    ) -> Result<(), ApiError> {
        let Some(ns) = self.namespace(api, &a.namespace).await? else {
            return Ok(());
        };
        let policy = policy_of(&ns);
        let (meta, spec) = (&tmpl["metadata"], &tmpl["spec"]);
        if let Some(level) = policy.enforce {
            let v = evaluate(level, meta, spec);
            if !v.is_empty() {
                recorder::warn(format!(
                    "would violate PodSecurity {:?}: {}",
                    level_name(level),
                    describe(&v)
                ));
            }
        }
        self.warn_and_audit(policy, meta, spec);
        Ok(())
    }

    fn warn_and_audit(&self, policy: Policy, meta: &Value, spec: &Value) {
        if let Some(level) = policy.warn {
            let v = evaluate(level, meta, spec);
            if !v.is_empty() {
                recorder::warn(format!(
                    "would violate PodSecurity {:?}: {}",
                    level_name(level),
                    describe(&v)
                ));
            }
        }
        if let Some(level) = policy.audit {
            let v = evaluate(level, meta, spec);
            if !v.is_empty() {
                recorder::annotate(
                    "pod-security.kubernetes.io/audit-violations",
                    format!(
                        "would violate PodSecurity {:?}: {}",
                        level_name(level),
                        describe(&v)
                    ),
                );
            }
        }
    }

    /// A namespace given a (new, stricter) enforce level: warns about the pods already in it
    /// that violate the level, as upstream: one line naming the level, then one per distinct
    /// set of violations, naming a pod and how many others share it.
    async fn check_namespace(&self, api: &Api, a: &Attributes) -> Result<(), ApiError> {
        let Some(new) = a.object.as_ref().and_then(|o| policy_of(o).enforce) else {
            return Ok(());
        };
        let old = a.old_object.as_ref().and_then(|o| policy_of(o).enforce);
        if old == Some(new) || new == Level::Privileged {
            return Ok(());
        }
        let Some(info) = api.registry.lookup("", "v1", "pods") else {
            return Ok(());
        };
        let page = api
            .store
            .list(&info.list_prefix(Some(&a.name)), None, 0, None)
            .await?;
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for kv in &page.items {
            let Ok(pod) = encoding::decode_stored(&kv.value, kv.mod_revision) else {
                continue;
            };
            let v = evaluate(new, &pod["metadata"], &pod["spec"]);
            if v.is_empty() {
                continue;
            }
            let text = v.iter().map(|v| v.reason).collect::<Vec<_>>().join(", ");
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            match groups.iter_mut().find(|(t, _)| *t == text) {
                Some((_, pods)) => pods.push(name),
                None => groups.push((text, vec![name])),
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        recorder::warn(format!(
            "existing pods in namespace {:?} violate the new PodSecurity enforce level {:?}",
            a.name,
            level_name(new)
        ));
        for (text, pods) in groups {
            let who = match pods.len() {
                1 => pods[0].clone(),
                2 => format!("{} (and 1 other pod)", pods[0]),
                n => format!("{} (and {} other pods)", pods[0], n - 1),
            };
            recorder::warn(format!("{who}: {text}"));
        }
        Ok(())
    }
}

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            // Of a pod's subresources only ephemeralcontainers is checked, as upstream: a
            // debug container is a container like the others.
            if !matches!(a.operation, Operation::Create | Operation::Update)
                || !(a.subresource.is_empty() || a.subresource == "ephemeralcontainers")
            {
                return Ok(());
            }
            let Some(obj) = a.object.as_ref() else {
                return Ok(());
            };
            if a.is("", "namespaces") {
                return self.check_namespace(api, a).await;
            }
            if a.is("", "pods") {
                let unchanged = a
                    .old_object
                    .as_ref()
                    .is_some_and(|old| security_relevant(old) == security_relevant(obj));
                if unchanged {
                    return Ok(());
                }
                return self.check_pod(api, a, obj).await;
            }
            let Some(tmpl) = template(&a.resource.group, &a.resource.plural, obj) else {
                return Ok(());
            };
            let unchanged = a.old_object.as_ref().is_some_and(|old| {
                template(&a.resource.group, &a.resource.plural, old)
                    .is_some_and(|t| security_relevant(t) == security_relevant(tmpl))
            });
            if unchanged {
                return Ok(());
            }
            self.check_template(api, a, tmpl).await
        })
    }
}
