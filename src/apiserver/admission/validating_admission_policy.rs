//! ValidatingAdmissionPolicy: CEL expressions, bound to requests by
//! ValidatingAdmissionPolicyBindings, that may refuse a write, as upstream's plugin of that name.
//! For each binding (by name) whose policy matches the request (the policy's matchConstraints,
//! then the binding's matchResources, then the policy's matchConditions), the policy's
//! validations run with `object`, `oldObject`, `request`, `params` (the binding's paramRef),
//! `namespaceObject` and `variables` bound. A false one is acted on as the binding says: Deny
//! refuses the request (`ValidatingAdmissionPolicy 'p' with binding 'b' denied request: ...`),
//! Warn sends a warning, Audit records an audit annotation. An expression that fails to
//! evaluate follows the policy's failurePolicy.

use super::watched::Watched;
use super::webhook::{exempt, namespace_object, rule_matches, selectors_match};
use super::{recorder, Attributes, Outcome, Plugin};
use crate::apiserver::crd::cel::{eval, to_cel};
use crate::apiserver::handler::Api;
use crate::apiserver::status::ApiError;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;

const GROUP: &str = "admissionregistration.k8s.io";

fn by_name(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| (o["metadata"]["name"].as_str().unwrap_or("").to_string(), o))
        .collect()
}

pub struct ValidatingAdmissionPolicy {
    policies: Watched<BTreeMap<String, Value>>,
    bindings: Watched<BTreeMap<String, Value>>,
}

impl Default for ValidatingAdmissionPolicy {
    fn default() -> Self {
        ValidatingAdmissionPolicy {
            policies: Watched::new(GROUP, "validatingadmissionpolicies", by_name),
            bindings: Watched::new(GROUP, "validatingadmissionpolicybindings", by_name),
        }
    }
}

/// Whether a MatchResources (a policy's constraints or a binding's narrowing) takes the request.
/// A binding's matchResources with no resourceRules narrows only by its selectors and
/// exclusions (`all_if_unruled`); a policy's matchConstraints must name its resources.
async fn resources_match(
    api: &Api,
    m: &Value,
    a: &Attributes,
    all_if_unruled: bool,
) -> Result<bool, ApiError> {
    let rules = |k: &str| m[k].as_array().cloned().unwrap_or_default();
    let included = rules("resourceRules");
    let ruled = !(all_if_unruled && included.is_empty());
    if ruled && !included.iter().any(|r| rule_matches(r, a)) {
        return Ok(false);
    }
    if rules("excludeResourceRules")
        .iter()
        .any(|r| rule_matches(r, a))
    {
        return Ok(false);
    }
    selectors_match(api, &m["namespaceSelector"], &m["objectSelector"], a).await
}

/// The `request` variable: the parts of admission.k8s.io AdmissionRequest CEL may read.
fn request(a: &Attributes) -> Value {
    json!({
        "kind": {"group": a.kind.group, "version": a.kind.version, "kind": a.kind.kind},
        "resource": {"group": a.resource.group, "version": a.resource.version, "resource": a.resource.plural},
        "subResource": a.subresource,
        "requestKind": {"group": a.kind.group, "version": a.kind.version, "kind": a.kind.kind},
        "name": a.name,
        "namespace": a.namespace,
        "operation": a.operation.as_str(),
        "userInfo": {"username": a.user.name, "uid": a.user.uid, "groups": a.user.groups},
        "dryRun": a.dry_run,
    })
}

/// What one binding decided.
enum Verdict {
    Pass,
    /// A failed validation: its message and the HTTP code its reason maps to.
    Fail {
        message: String,
        code: u16,
        reason: String,
    },
}

fn code_of(reason: &str) -> (u16, &str) {
    match reason {
        "Unauthorized" => (401, "Unauthorized"),
        "Forbidden" => (403, "Forbidden"),
        "RequestEntityTooLarge" => (413, "RequestEntityTooLarge"),
        _ => (422, "Invalid"),
    }
}

/// The params object a binding's paramRef names, for a policy with a paramKind: `Ok(None)`
/// when the policy takes none, `Err` with upstream's words when it cannot be found.
async fn params(
    api: &Api,
    policy: &Value,
    binding: &Value,
    a: &Attributes,
) -> Result<Option<Value>, String> {
    let kind = &policy["spec"]["paramKind"];
    if !kind.is_object() {
        return Ok(None);
    }
    let r = &binding["spec"]["paramRef"];
    let not_found = || {
        if r["parameterNotFoundAction"] == "Allow" {
            Ok(Some(Value::Null))
        } else {
            Err("failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".to_string())
        }
    };
    let (group, version) = match kind["apiVersion"].as_str().unwrap_or("").split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (
            String::new(),
            kind["apiVersion"].as_str().unwrap_or("").to_string(),
        ),
    };
    let Some(info) =
        api.registry
            .snapshot()
            .by_kind(&group, &version, kind["kind"].as_str().unwrap_or(""))
    else {
        return Err(format!(
            "failed to configure policy: failed to find resource referenced by paramKind: '{}, Kind={}'",
            kind["apiVersion"].as_str().unwrap_or(""),
            kind["kind"].as_str().unwrap_or("")
        ));
    };
    let Some(name) = r["name"].as_str() else {
        return not_found();
    };
    // A namespaced paramKind is read from the paramRef's namespace, else the request's.
    let ns = info.namespaced.then(|| {
        r["namespace"]
            .as_str()
            .filter(|n| !n.is_empty())
            .unwrap_or(&a.namespace)
            .to_string()
    });
    match api.get_object(&info, ns.as_deref(), name).await {
        Ok(Some((obj, _))) => Ok(Some(obj)),
        Ok(None) => not_found(),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs one policy through one binding.
async fn judge(
    api: &Api,
    policy: &Value,
    binding: &Value,
    a: &Attributes,
    ns: Option<&Value>,
) -> Result<Verdict, String> {
    let spec = &policy["spec"];
    let mut vars: Vec<(&str, cel::Value)> = vec![
        ("object", to_cel(a.object.as_ref().unwrap_or(&Value::Null))),
        (
            "oldObject",
            to_cel(a.old_object.as_ref().unwrap_or(&Value::Null)),
        ),
        ("request", to_cel(&request(a))),
    ];
    vars.push(("namespaceObject", to_cel(ns.unwrap_or(&Value::Null))));
    let p = params(api, policy, binding, a).await?;
    vars.push(("params", to_cel(p.as_ref().unwrap_or(&Value::Null))));
    // Variables in order, each seeing the ones before it.
    let mut variables: HashMap<cel::objects::Key, cel::Value> = HashMap::new();
    fn with_variables<'v>(
        vars: &[(&'v str, cel::Value)],
        variables: &HashMap<cel::objects::Key, cel::Value>,
    ) -> Vec<(&'v str, cel::Value)> {
        let mut all = vars.to_vec();
        all.push((
            "variables",
            cel::Value::Map(cel::objects::Map {
                map: Arc::new(variables.clone()),
            }),
        ));
        all
    }
    for v in spec["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("");
        let expr = v["expression"].as_str().unwrap_or("");
        // Upstream evaluates a variable only when an expression reads it: one that fails is
        // left out here, so only an expression that uses it fails (with no such key).
        if let Ok(value) = eval(expr, &with_variables(&vars, &variables)) {
            variables.insert(cel::objects::Key::String(Arc::new(name.to_string())), value);
        }
    }
    let all = with_variables(&vars, &variables);
    // Any false condition skips the policy; errors count only when none is false.
    let mut condition_error = None;
    for c in spec["matchConditions"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("");
        match eval(c["expression"].as_str().unwrap_or(""), &all) {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return Ok(Verdict::Pass),
            Ok(_) => {
                condition_error.get_or_insert(format!(
                    "matchCondition '{name}' did not evaluate to a bool"
                ));
            }
            Err(e) => {
                condition_error
                    .get_or_insert(format!("matchCondition '{name}' resulted in error: {e}"));
            }
        }
    }
    if let Some(e) = condition_error {
        return Err(e);
    }
    for v in spec["validations"].as_array().into_iter().flatten() {
        let expr = v["expression"].as_str().unwrap_or("");
        match eval(expr, &all) {
            Ok(cel::Value::Bool(true)) => continue,
            Ok(cel::Value::Bool(false)) => {}
            Ok(_) => return Err(format!("expression '{expr}' did not evaluate to a bool")),
            Err(e) => return Err(format!("expression '{expr}' resulted in error: {e}")),
        }
        let from_expression = v["messageExpression"]
            .as_str()
            .and_then(|m| match eval(m, &all) {
                Ok(cel::Value::String(s)) if !s.trim().is_empty() && !s.contains('\n') => {
                    Some(s.to_string())
                }
                _ => None,
            });
        let message = from_expression
            .or_else(|| {
                v["message"]
                    .as_str()
                    .filter(|m| !m.is_empty())
                    .map(String::from)
            })
            .unwrap_or_else(|| format!("failed expression: {}", expr.trim()));
        let (code, reason) = code_of(v["reason"].as_str().unwrap_or("Invalid"));
        return Ok(Verdict::Fail {
            message,
            code,
            reason: reason.to_string(),
        });
    }
    Ok(Verdict::Pass)
}

/// The refusal as upstream shapes it: for the Invalid reason a 422 Status naming the object
/// with one cause without a field (kubectl prints `The deployments "x" is invalid: : ...`),
/// else the reason's code.
fn refusal(a: &Attributes, message: &str, code: u16, reason: &str) -> ApiError {
    if code != 422 {
        return ApiError::Denied {
            code,
            reason: reason.to_string(),
            message: message.to_string(),
        };
    }
    let what = if a.resource.group.is_empty() {
        a.resource.plural.clone()
    } else {
        format!("{}.{}", a.resource.plural, a.resource.group)
    };
    ApiError::Invalid {
        message: format!("{what} \"{}\" is invalid: : {message}", a.name),
        target: crate::apiserver::status::Target {
            group: a.resource.group.clone(),
            kind: a.resource.plural.clone(),
            name: a.name.clone(),
        },
        causes: vec![crate::apiserver::status::Cause {
            reason: "FieldValueInvalid".into(),
            message: message.to_string(),
            field: String::new(),
        }],
    }
}

impl Plugin for ValidatingAdmissionPolicy {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionPolicy"
    }

    fn validate<'a>(&'a self, api: &'a Api, a: &'a Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if exempt(a) {
                return Ok(());
            }
            let bindings = self.bindings.get(api).await?;
            if bindings.is_empty() {
                return Ok(());
            }
            let policies = self.policies.get(api).await?;
            // The request's Namespace (`namespaceObject`), read once, when a first policy
            // matches.
            let mut namespace: Option<Option<Value>> = None;
            for (bname, binding) in bindings.iter() {
                let pname = binding["spec"]["policyName"].as_str().unwrap_or("");
                let Some(policy) = policies.get(pname) else {
                    continue;
                };
                if !resources_match(api, &policy["spec"]["matchConstraints"], a, false).await? {
                    continue;
                }
                let narrowing = &binding["spec"]["matchResources"];
                if narrowing.is_object() && !resources_match(api, narrowing, a, true).await? {
                    continue;
                }
                let actions: Vec<&str> = binding["spec"]["validationActions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let head = format!(
                    "ValidatingAdmissionPolicy '{pname}' with binding '{bname}' denied request"
                );
                if namespace.is_none() {
                    namespace = Some(if a.namespace.is_empty() {
                        None
                    } else {
                        namespace_object(api, &a.namespace).await.ok().flatten()
                    });
                }
                let ns = namespace.as_ref().and_then(Option::as_ref);
                let (message, code, reason) = match judge(api, policy, binding, a, ns).await {
                    Ok(Verdict::Pass) => continue,
                    Ok(Verdict::Fail {
                        message,
                        code,
                        reason,
                    }) => (message, code, reason),
                    Err(why) if policy["spec"]["failurePolicy"] == "Ignore" => {
                        tracing::warn!(policy = pname, binding = bname, error = %why, "policy ignored");
                        continue;
                    }
                    // A policy that cannot be evaluated refuses whatever the binding's actions.
                    Err(why) => return Err(refusal(a, &format!("{head}: {why}"), 422, "Invalid")),
                };
                if actions.contains(&"Warn") {
                    recorder::warn(format!(
                        "Validation failed for ValidatingAdmissionPolicy '{pname}' with binding '{bname}': {message}"
                    ));
                }
                if actions.contains(&"Audit") {
                    recorder::annotate(
                        "validation.policy.admission.k8s.io/validation_failure",
                        json!([{"message": message, "policy": pname, "binding": bname,
                            "expressionIndex": 0, "validationActions": actions}])
                        .to_string(),
                    );
                }
                if actions.contains(&"Deny") {
                    return Err(refusal(a, &format!("{head}: {message}"), code, &reason));
                }
            }
            Ok(())
        })
    }
}
