//! admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and its Binding: CEL checks the
//! server runs on writes (`admission::validating_admission_policy`). Defaults as upstream's, and
//! the checks that keep a policy runnable: its expressions must compile.

use super::{Facts, Strategy, NONE};
use crate::apiserver::crd::cel;
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::validation::*;
use serde_json::{json, Value};

pub fn policy() -> ResourceInfo {
    super::entry::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy>(
        Facts {
            status: true,
            ..NONE
        },
        Policy,
    )
}

pub fn binding() -> ResourceInfo {
    super::entry::<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding>(
        NONE, Binding,
    )
}

struct Policy;
struct Binding;

/// Upstream's defaults for a MatchResources: Equivalent matching, empty selectors, any scope.
fn match_resources_defaults(m: Option<&mut Value>) {
    use crate::apiserver::defaults::*;
    let Some(m) = m.filter(|m| m.is_object()) else {
        return;
    };
    set(m, &["matchPolicy"], json!("Equivalent"));
    set(m, &["namespaceSelector"], json!({}));
    set(m, &["objectSelector"], json!({}));
    for key in ["resourceRules", "excludeResourceRules"] {
        for r in items_mut(at(m, &[key])) {
            if r.is_object() {
                set(r, &["scope"], json!("*"));
            }
        }
    }
}

impl Strategy for Policy {
    fn minimal(&self) -> Value {
        json!({"spec": {
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["configmaps"]}]},
            "validations": [{"expression": "true"}]
        }})
    }

    fn defaults(&self, obj: &mut Value) {
        use crate::apiserver::defaults::*;
        if obj["spec"].is_object() {
            set(obj, &["spec", "failurePolicy"], json!("Fail"));
        }
        match_resources_defaults(at(obj, &["spec", "matchConstraints"]));
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        let spec = &obj["spec"];
        let mc = &spec["matchConstraints"];
        if !mc.is_object() {
            errs.push(required("spec.matchConstraints", ""));
        } else if mc["resourceRules"].as_array().is_none_or(|r| r.is_empty()) {
            errs.push(required("spec.matchConstraints.resourceRules", ""));
        }
        let validations = spec["validations"].as_array();
        let audits = spec["auditAnnotations"].as_array();
        if validations.is_none_or(|v| v.is_empty()) && audits.is_none_or(|v| v.is_empty()) {
            errs.push(required(
                "spec.validations",
                "validations or auditAnnotations must contain at least one item",
            ));
        }
        one_of(
            "spec.failurePolicy",
            &spec["failurePolicy"],
            &["Fail", "Ignore"],
            errs,
        );
        let mut expressions = Vec::new();
        for (i, v) in validations.into_iter().flatten().enumerate() {
            expressions.push((
                format!("spec.validations[{i}].expression"),
                &v["expression"],
            ));
            if v.get("messageExpression").is_some() {
                expressions.push((
                    format!("spec.validations[{i}].messageExpression"),
                    &v["messageExpression"],
                ));
            }
            if let Some(r) = v.get("reason") {
                one_of(
                    &format!("spec.validations[{i}].reason"),
                    r,
                    &[
                        "Unauthorized",
                        "Forbidden",
                        "Invalid",
                        "RequestEntityTooLarge",
                    ],
                    errs,
                );
            }
        }
        for (key, what) in [
            ("variables", "expression"),
            ("matchConditions", "expression"),
        ] {
            for (i, v) in spec[key].as_array().into_iter().flatten().enumerate() {
                if v["name"].as_str().unwrap_or("").is_empty() {
                    errs.push(required(&format!("spec.{key}[{i}].name"), ""));
                }
                expressions.push((format!("spec.{key}[{i}].{what}"), &v[what]));
            }
        }
        for (i, a) in audits.into_iter().flatten().enumerate() {
            expressions.push((
                format!("spec.auditAnnotations[{i}].valueExpression"),
                &a["valueExpression"],
            ));
        }
        for (field, e) in expressions {
            match e.as_str() {
                None | Some("") => errs.push(required(&field, "")),
                Some(text) => {
                    if let Err(why) = cel::compile(text) {
                        errs.push(invalid(
                            &field,
                            e,
                            &format!("compilation failed: {}", why.trim()),
                        ));
                    }
                }
            }
        }
    }
}

impl Strategy for Binding {
    fn minimal(&self) -> Value {
        json!({"spec": {"policyName": "none", "validationActions": ["Audit"]}})
    }

    fn defaults(&self, obj: &mut Value) {
        match_resources_defaults(crate::apiserver::defaults::at(
            obj,
            &["spec", "matchResources"],
        ));
        if let Some(p) = obj["spec"]["paramRef"].as_object_mut() {
            p.entry("parameterNotFoundAction").or_insert(json!("Deny"));
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        let spec = &obj["spec"];
        if spec["policyName"].as_str().unwrap_or("").is_empty() {
            errs.push(required("spec.policyName", ""));
        }
        let actions = spec["validationActions"].as_array();
        if actions.is_none_or(|a| a.is_empty()) {
            errs.push(required(
                "spec.validationActions",
                "at least one validation action is required",
            ));
        }
        let mut seen = Vec::new();
        for (i, a) in actions.into_iter().flatten().enumerate() {
            let field = format!("spec.validationActions[{i}]");
            one_of(&field, a, &["Deny", "Warn", "Audit"], errs);
            if seen.contains(&a) {
                errs.push(duplicate(&field, a));
            }
            seen.push(a);
        }
        let has = |a: &str| seen.iter().any(|v| *v == a);
        if has("Deny") && has("Warn") {
            errs.push(invalid(
                "spec.validationActions",
                &spec["validationActions"],
                "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ));
        }
    }
}
