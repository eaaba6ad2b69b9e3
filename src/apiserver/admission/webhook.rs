//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook: the admission plugins that call
//! the webhooks of admissionregistration.k8s.io/v1 Mutating/ValidatingWebhookConfigurations
//! with an admission.k8s.io/v1 AdmissionReview. A webhook is called when one of its `rules`
//! (operations, apiGroups, apiVersions, resources with `*`, `pods/*`, `*/scale` forms, scope)
//! and its namespace and object selectors match. Mutating webhooks run in order (configurations
//! by name, webhooks as listed) and may answer a JSONPatch; one with `reinvocationPolicy:
//! IfNeeded` is called once more when a later webhook changed the object. Validating webhooks
//! run together and may only refuse. A refusal carries the webhook's Status as upstream makes it
//! (`admission webhook "x" denied the request: ...`); a webhook that cannot be called or
//! answers nonsense refuses the request under `failurePolicy: Fail` (500 `failed calling
//! webhook`) and is skipped under `Ignore`.
//!
//! `clientConfig.url` (https, verified against `caBundle`) is called as given; a
//! `clientConfig.service` is called at the service's endpoints (`service_target`).

use super::watched::Watched;
use super::{webhook_client, Attributes, Operation, Outcome, Plugin};
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;

/// One webhook of a configuration, as it will be called.
struct Hook {
    name: String,
    client: Value,
    rules: Vec<Value>,
    namespace_selector: Value,
    object_selector: Value,
    fail: bool,
    timeout: Duration,
    reinvoke: bool,
}

/// The webhooks of the configurations (given by name), in order.
fn hooks_of(configs: Vec<Value>) -> Vec<Hook> {
    let mut out = Vec::new();
    for cfg in configs {
        for w in cfg["webhooks"].as_array().into_iter().flatten() {
            out.push(Hook {
                name: w["name"].as_str().unwrap_or_default().to_string(),
                client: w["clientConfig"].clone(),
                rules: w["rules"].as_array().cloned().unwrap_or_default(),
                namespace_selector: w["namespaceSelector"].clone(),
                object_selector: w["objectSelector"].clone(),
                fail: w["failurePolicy"] != "Ignore",
                timeout: Duration::from_secs(
                    w["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30),
                ),
                reinvoke: w["reinvocationPolicy"] == "IfNeeded",
            });
        }
    }
    out
}

const GROUP: &str = "admissionregistration.k8s.io";

fn listed(list: &Value, want: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|v| v == "*" || v == want)
}

/// Whether a rule's `resources` entry names this resource and subresource.
fn resource_matches(entry: &str, plural: &str, sub: &str) -> bool {
    let (r, s) = entry.split_once('/').unwrap_or((entry, ""));
    match (r, s) {
        ("*", "*") => true,
        ("*", "") => sub.is_empty(),
        (r, "*") => r == plural,
        ("*", s) => s == sub,
        (r, s) => r == plural && s == sub,
    }
}

pub(crate) fn rule_matches(rule: &Value, a: &Attributes) -> bool {
    let resources = rule["resources"].as_array().into_iter().flatten();
    let scope_ok = match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !a.resource.namespaced,
        "Namespaced" => a.resource.namespaced,
        _ => true,
    };
    listed(&rule["operations"], a.operation.as_str())
        && listed(&rule["apiGroups"], &a.resource.group)
        && listed(&rule["apiVersions"], &a.resource.version)
        && resources
            .filter_map(Value::as_str)
            .any(|e| resource_matches(e, &a.resource.plural, &a.subresource))
        && scope_ok
}

/// A metav1.LabelSelector (matchLabels, matchExpressions) against labels; `{}` matches all.
pub(crate) fn selector_matches(sel: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_expressions = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or("");
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                _ => false,
            }
        });
    by_labels && by_expressions
}

fn is_empty_selector(sel: &Value) -> bool {
    sel.as_object().is_none_or(|m| {
        m.get("matchLabels")
            .and_then(Value::as_object)
            .is_none_or(|l| l.is_empty())
            && m.get("matchExpressions")
                .and_then(Value::as_array)
                .is_none_or(|l| l.is_empty())
    })
}

async fn hook_matches(api: &Api, h: &Hook, a: &Attributes) -> Result<bool, ApiError> {
    if !h.rules.iter().any(|r| rule_matches(r, a)) {
        return Ok(false);
    }
    selectors_match(api, &h.namespace_selector, &h.object_selector, a).await
}

/// Whether the request's object (or old object) matches `object_selector` and its namespace
/// `namespace_selector`, as upstream's webhook and policy matchers decide it.
pub(crate) async fn selectors_match(
    api: &Api,
    namespace_selector: &Value,
    object_selector: &Value,
    a: &Attributes,
) -> Result<bool, ApiError> {
    if !is_empty_selector(object_selector) {
        let labels = |o: &Option<Value>| {
            o.as_ref()
                .map(|o| o["metadata"]["labels"].clone())
                .unwrap_or(Value::Null)
        };
        let new = a.object.is_some() && selector_matches(object_selector, &labels(&a.object));
        let old =
            a.old_object.is_some() && selector_matches(object_selector, &labels(&a.old_object));
        if !new && !old {
            return Ok(false);
        }
    }
    if !is_empty_selector(namespace_selector) {
        let is_namespace = a.resource.group.is_empty() && a.resource.plural == "namespaces";
        let labels = if is_namespace {
            a.object
                .as_ref()
                .or(a.old_object.as_ref())
                .map(|o| o["metadata"]["labels"].clone())
        } else if a.namespace.is_empty() {
            // Cluster-scoped objects are not in any namespace: the selector does not apply.
            return Ok(true);
        } else {
            namespace_object(api, &a.namespace)
                .await?
                .map(|ns| ns["metadata"]["labels"].clone())
        };
        if !selector_matches(namespace_selector, &labels.unwrap_or(Value::Null)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The Namespace object named `name`, if it exists.
pub(crate) async fn namespace_object(api: &Api, name: &str) -> Result<Option<Value>, ApiError> {
    let info = api
        .registry
        .lookup("", "v1", "namespaces")
        .expect("namespaces are registered");
    Ok(api.get_object(&info, None, name).await?.map(|(ns, _)| ns))
}

fn review(a: &Attributes, uid: &str) -> Value {
    let r = &a.resource;
    let k = &a.kind;
    let mut req = json!({
        "uid": uid,
        "kind": {"group": k.group, "version": k.version, "kind": k.kind},
        "resource": {"group": r.group, "version": r.version, "resource": r.plural},
        "requestKind": {"group": k.group, "version": k.version, "kind": k.kind},
        "requestResource": {"group": r.group, "version": r.version, "resource": r.plural},
        "name": a.name,
        "operation": a.operation.as_str(),
        "userInfo": {"username": a.user.name, "groups": a.user.groups},
        "object": a.object,
        "oldObject": a.old_object,
        "dryRun": a.dry_run,
    });
    if !a.namespace.is_empty() {
        req["namespace"] = json!(a.namespace);
    }
    if !a.subresource.is_empty() {
        req["subResource"] = json!(a.subresource);
        req["requestSubResource"] = json!(a.subresource);
    }
    if !a.user.uid.is_empty() {
        req["userInfo"]["uid"] = json!(a.user.uid);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
}

/// Where a `clientConfig.service` is served: nanokube routes no cluster IPs, so the call goes
/// to the service's endpoints (the first ready address, the port the service port targets),
/// with the certificate checked for `<name>.<namespace>.svc`, as upstream's service resolver
/// names it.
async fn service_target(api: &Api, svc: &Value) -> Result<webhook_client::Target, String> {
    let ns = svc["namespace"].as_str().unwrap_or_default();
    let name = svc["name"].as_str().unwrap_or_default();
    let port = svc["port"].as_i64().unwrap_or(443);
    let path = svc["path"].as_str().unwrap_or("/").to_string();
    let url = format!("https://{name}.{ns}.svc:{port}{path}");
    let get = |plural: &'static str| async move {
        let info = api
            .registry
            .lookup("", "v1", plural)
            .expect("core kinds are registered");
        api.get_object(&info, Some(ns), name)
            .await
            .map_err(|e| e.to_string())?
            .map(|(o, _)| o)
            .ok_or_else(|| format!("{plural} \"{name}\" not found"))
    };
    let service = get("services").await?;
    let sp = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_i64() == Some(port))
        .cloned()
        .ok_or_else(|| format!("service {ns}/{name} has no port {port}"))?;
    let endpoints = get("endpoints").await?;
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let Some(ip) = subset["addresses"][0]["ip"].as_str() else {
            continue;
        };
        let target = subset["ports"].as_array().into_iter().flatten().find(|p| {
            match (&sp["targetPort"], p["name"].as_str()) {
                (Value::String(named), Some(n)) => named == n,
                (Value::Number(t), _) => p["port"].as_i64() == t.as_i64(),
                _ => sp["name"]
                    .as_str()
                    .is_none_or(|n| p["name"].as_str() == Some(n)),
            }
        });
        if let Some(p) = target.and_then(|p| p["port"].as_u64()) {
            return Ok(webhook_client::Target {
                host: ip.to_string(),
                port: p as u16,
                server_name: format!("{name}.{ns}.svc"),
                path,
                url,
            });
        }
    }
    Err(format!("no endpoints available for service {name:?}"))
}

/// Calls one webhook: its AdmissionReview response, or why it could not be had.
async fn call(api: &Api, h: &Hook, a: &Attributes) -> Result<Value, String> {
    let target = match h.client["url"].as_str() {
        Some(url) => webhook_client::Target::url(url)?,
        None => service_target(api, &h.client["service"]).await?,
    };
    let ca = base64::engine::general_purpose::STANDARD
        .decode(h.client["caBundle"].as_str().unwrap_or(""))
        .map_err(|e| format!("caBundle: {e}"))?;
    let uid = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&review(a, &uid)).map_err(|e| e.to_string())?;
    let answer = webhook_client::post(&target, &ca, body, h.timeout).await?;
    let v: Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("the webhook's answer is not an AdmissionReview: {e}"))?;
    let resp = v
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| "webhook response was absent".to_string())?;
    if resp["uid"].as_str() != Some(uid.as_str()) {
        return Err(format!(
            "expected response.uid={uid:?}, got {:?}",
            resp["uid"].as_str().unwrap_or("")
        ));
    }
    Ok(resp.clone())
}

/// Upstream's ToStatusErr: the webhook's Status, code at least 400, its message behind
/// "admission webhook ... denied the request".
fn denied(name: &str, resp: &Value) -> ApiError {
    let st = &resp["status"];
    let by = format!("admission webhook {name:?} denied the request");
    let message = match (st["message"].as_str(), st["reason"].as_str()) {
        (Some(m), _) if !m.is_empty() => format!("{by}: {m}"),
        (_, Some(r)) if !r.is_empty() => format!("{by}: {r}"),
        _ => format!("{by} without explanation"),
    };
    ApiError::Denied {
        code: st["code"].as_u64().map_or(400, |c| c.max(400) as u16),
        reason: st["reason"].as_str().unwrap_or_default().to_string(),
        message,
    }
}

fn failed(name: &str, why: &str) -> ApiError {
    ApiError::Internal(format!(
        "Internal error occurred: failed calling webhook {name:?}: failed to call webhook: {why}"
    ))
}

/// Calls `h` and applies what it answers to `a.object` (nothing when the call failed under
/// failurePolicy Ignore).
async fn mutate(api: &Api, h: &Hook, a: &mut Attributes) -> Result<(), ApiError> {
    let resp = match call(api, h, a).await {
        Ok(r) => r,
        Err(why) if h.fail => return Err(failed(&h.name, &why)),
        Err(why) => {
            tracing::warn!(webhook = %h.name, error = %why, "failed calling webhook; ignored (failurePolicy Ignore)");
            return Ok(());
        }
    };
    if resp["allowed"] != true {
        return Err(denied(&h.name, &resp));
    }
    let Some(patch) = resp["patch"].as_str().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    if resp["patchType"] != "JSONPatch" {
        return Err(ApiError::Internal(format!(
            "Internal error occurred: webhook {:?} answered the unsupported patchType {}",
            h.name, resp["patchType"]
        )));
    }
    let Some(obj) = a.object.as_mut() else {
        return Ok(());
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| {
            ApiError::Internal(format!(
                "Internal error occurred: webhook {:?}: patch: {e}",
                h.name
            ))
        })?;
    let ops: json_patch::Patch = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::Internal(format!(
            "Internal error occurred: webhook {:?}: patch: {e}",
            h.name
        ))
    })?;
    let mut patched = obj.clone();
    json_patch::patch(&mut patched, &ops).map_err(|e| {
        ApiError::Internal(format!(
            "Internal error occurred: webhook {:?}: patch: {e}",
            h.name
        ))
    })?;
    // The patched object must still be one of the kind (wrong types refused, unknown fields
    // dropped), as upstream decodes it again. A subresource's object (Scale, Binding) is read
    // back by its own write.
    if a.kind != super::Kind::of(&a.resource) {
        *obj = patched;
        return Ok(());
    }
    *obj = (a.resource.decode)(patched).map_err(|e| {
        ApiError::Internal(format!(
            "Internal error occurred: webhook {:?} made an object that is not a {}: {e}",
            h.name, a.resource.kind
        ))
    })?;
    Ok(())
}

/// Webhook configurations are never sent to webhooks: a broken webhook could not be removed.
pub(crate) fn exempt(a: &Attributes) -> bool {
    a.resource.group == "admissionregistration.k8s.io"
}

pub struct MutatingAdmissionWebhook(Watched<Vec<Hook>>);

impl Default for MutatingAdmissionWebhook {
    fn default() -> Self {
        MutatingAdmissionWebhook(Watched::new(
            GROUP,
            "mutatingwebhookconfigurations",
            hooks_of,
        ))
    }
}

impl Plugin for MutatingAdmissionWebhook {
    fn name(&self) -> &'static str {
        "MutatingAdmissionWebhook"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if exempt(a) {
                return Ok(());
            }
            let hooks = self.0.get(api).await?;
            // The object as each IfNeeded webhook left it: changed later means call again.
            let mut left: Vec<(usize, Option<Value>)> = Vec::new();
            for (i, h) in hooks.iter().enumerate() {
                if !hook_matches(api, h, a).await? {
                    continue;
                }
                mutate(api, h, a).await?;
                if h.reinvoke {
                    left.push((i, a.object.clone()));
                }
            }
            for (i, seen) in left {
                if a.object != seen && a.operation != Operation::Delete {
                    mutate(api, &hooks[i], a).await?;
                }
            }
            Ok(())
        })
    }
}

pub struct ValidatingAdmissionWebhook(Watched<Vec<Hook>>);

impl Default for ValidatingAdmissionWebhook {
    fn default() -> Self {
        ValidatingAdmissionWebhook(Watched::new(
            GROUP,
            "validatingwebhookconfigurations",
            hooks_of,
        ))
    }
}

impl Plugin for ValidatingAdmissionWebhook {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionWebhook"
    }

    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if exempt(a) {
                return Ok(());
            }
            let mut matching = Vec::new();
            let hooks = self.0.get(api).await?;
            for h in hooks.iter() {
                if hook_matches(api, h, a).await? {
                    matching.push(h);
                }
            }
            let answers = futures::future::join_all(
                matching
                    .iter()
                    .map(|h| async move { (h, call(api, h, a).await) }),
            )
            .await;
            for (h, answer) in answers {
                match answer {
                    Ok(resp) if resp["allowed"] == true => {}
                    Ok(resp) => return Err(denied(&h.name, &resp)),
                    Err(why) if h.fail => return Err(failed(&h.name, &why)),
                    Err(why) => {
                        tracing::warn!(webhook = %h.name, error = %why, "failed calling webhook; ignored (failurePolicy Ignore)")
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_and_selectors() {
        assert!(resource_matches("pods", "pods", ""));
        assert!(!resource_matches("pods", "pods", "status"));
        assert!(resource_matches("pods/*", "pods", "status"));
        assert!(resource_matches("*", "configmaps", ""));
        assert!(!resource_matches("*", "pods", "exec"));
        assert!(resource_matches("*/*", "pods", "exec"));
        assert!(resource_matches("*/scale", "deployments", "scale"));
        assert!(!resource_matches("*/scale", "deployments", ""));
        let labels = json!({"env": "prod", "team": "a"});
        assert!(selector_matches(&json!({}), &labels));
        assert!(selector_matches(
            &json!({"matchLabels": {"env": "prod"}}),
            &labels
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"env": "dev"}}),
            &labels
        ));
        let expr = |op: &str, values: Value| json!({"matchExpressions": [{"key": "env", "operator": op, "values": values}]});
        assert!(selector_matches(&expr("In", json!(["prod", "x"])), &labels));
        assert!(!selector_matches(&expr("NotIn", json!(["prod"])), &labels));
        assert!(selector_matches(&expr("Exists", json!([])), &labels));
        assert!(selector_matches(
            &expr("DoesNotExist", json!([])),
            &json!({})
        ));
        assert!(is_empty_selector(&json!({})));
        assert!(!is_empty_selector(&json!({"matchLabels": {"a": "b"}})));
    }

    #[test]
    fn denials_are_upstreams() {
        let e = denied(
            "v.example.com",
            &json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "no latest tags"}}),
        );
        assert_eq!(e.code(), 403);
        assert_eq!(e.reason(), "Forbidden");
        assert_eq!(
            e.to_string(),
            r#"admission webhook "v.example.com" denied the request: no latest tags"#
        );
        let bare = denied("w", &json!({"allowed": false}));
        assert_eq!(bare.code(), 400);
        assert_eq!(
            bare.to_string(),
            r#"admission webhook "w" denied the request without explanation"#
        );
    }
}
