//! admissionregistration.k8s.io/v1 MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration: the admission webhooks the server calls
//! (`admission::webhook`). Defaults and the checks that keep a configuration callable.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::validation::FieldError;
use serde_json::Value;

pub fn mutating() -> ResourceInfo {
    super::entry::<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration>(
        NONE,
        Kind { mutating: true },
    )
}

pub fn validating() -> ResourceInfo {
    super::entry::<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration>(
        NONE,
        Kind { mutating: false },
    )
}

struct Kind {
    mutating: bool,
}

impl Strategy for Kind {
    fn defaults(&self, obj: &mut Value) {
        defaults::apply(obj, self.mutating)
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        validation::check(obj, errs)
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    /// Upstream's SetDefaults_*Webhook: failurePolicy Fail, matchPolicy Equivalent, empty
    /// selectors, 10 s, rules of any scope, service port 443, and Never reinvoked.
    pub(super) fn apply(obj: &mut Value, mutating: bool) {
        for w in items_mut(at(obj, &["webhooks"])) {
            if !w.is_object() {
                continue;
            }
            set(w, &["failurePolicy"], json!("Fail"));
            set(w, &["matchPolicy"], json!("Equivalent"));
            set(w, &["namespaceSelector"], json!({}));
            set(w, &["objectSelector"], json!({}));
            set(w, &["timeoutSeconds"], json!(10));
            if mutating {
                set(w, &["reinvocationPolicy"], json!("Never"));
            }
            if w["clientConfig"]["service"].is_object() {
                set(w, &["clientConfig", "service", "port"], json!(443));
            }
            for r in items_mut(at(w, &["rules"])) {
                if r.is_object() {
                    set(r, &["scope"], json!("*"));
                }
            }
        }
    }
}

mod validation {
    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, errs: &mut Vec<FieldError>) {
        let mut names = std::collections::HashSet::new();
        for (i, w) in obj["webhooks"].as_array().into_iter().flatten().enumerate() {
            let at = |f: &str| format!("webhooks[{i}].{f}");
            match w["name"].as_str().unwrap_or("") {
                "" => errs.push(required(&at("name"), "")),
                n if !names.insert(n.to_string()) => errs.push(duplicate(&at("name"), &w["name"])),
                _ => {}
            }
            let cc = &w["clientConfig"];
            match (cc["url"].as_str(), cc["service"].is_object()) {
                (Some(_), true) | (None, false) => errs.push(required(
                    &at("clientConfig"),
                    "exactly one of url or service is required",
                )),
                (Some(url), false) if !url.starts_with("https://") => errs.push(invalid(
                    &at("clientConfig.url"),
                    &cc["url"],
                    "'https' is the only allowed URL scheme",
                )),
                _ => {}
            }
            match w["sideEffects"].as_str().unwrap_or("") {
                "None" | "NoneOnDryRun" => {}
                "" => errs.push(required(
                    &at("sideEffects"),
                    "must specify one of None, NoneOnDryRun",
                )),
                _ => errs.push(not_supported(
                    &at("sideEffects"),
                    &w["sideEffects"],
                    &["None", "NoneOnDryRun"],
                )),
            }
            let versions: Vec<&str> = w["admissionReviewVersions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !versions.iter().any(|v| *v == "v1" || *v == "v1beta1") {
                errs.push(required(
                    &at("admissionReviewVersions"),
                    "must specify one of v1, v1beta1",
                ));
            }
            if let Some(t) = w["timeoutSeconds"].as_i64() {
                if !(1..=30).contains(&t) {
                    errs.push(invalid(
                        &at("timeoutSeconds"),
                        &w["timeoutSeconds"],
                        "the timeout value must be between 1 and 30 seconds",
                    ));
                }
            }
        }
    }
}
