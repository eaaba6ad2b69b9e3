//! Validation with field paths, per kind, answered as 422 Status causes.
//!
//! The rules and messages follow `pkg/apis/*/validation` of Kubernetes: a `FieldError` is one
//! `field.Error`, its `message` the error body the real server puts in a Status cause
//! (`Invalid value: "Foo": a lowercase RFC 1123 subdomain must ...`), so kubectl prints what a
//! Kubernetes user expects. `validate` runs after defaulting. The server's own concerns (namespace
//! present or forbidden by scope, resourceVersion, uid) are not checked here.

mod fields;
pub(crate) mod kinds;
pub mod names;
pub(crate) mod pods;

use serde_json::Value;

pub use fields::unknown_or_duplicate_fields;

/// One invalid field, as a Status cause: reason is e.g. "FieldValueRequired", "FieldValueInvalid",
/// "FieldValueNotSupported", "FieldValueForbidden", "FieldValueDuplicate", "FieldValueTooLong";
/// field is a path like "spec.containers[0].image"; message is the human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub reason: String,
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(reason: &str, field: &str, message: String) -> Self {
        FieldError {
            reason: reason.into(),
            field: field.into(),
            message,
        }
    }

    /// `field.Error.Error()`: "<field>: <body>", as it appears in the Status message.
    pub fn full(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A value as Go's `%q`/`%d`/`%v` render it inside field errors.
pub(crate) fn render(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn with_detail(head: &str, detail: &str) -> String {
    if detail.is_empty() {
        head.to_string()
    } else {
        format!("{head}: {detail}")
    }
}

pub(crate) fn required(field: &str, detail: &str) -> FieldError {
    FieldError::new(
        "FieldValueRequired",
        field,
        with_detail("Required value", detail),
    )
}

pub(crate) fn invalid(field: &str, value: &Value, detail: &str) -> FieldError {
    let head = format!("Invalid value: {}", render(value));
    FieldError::new("FieldValueInvalid", field, with_detail(&head, detail))
}

pub(crate) fn not_supported(field: &str, value: &Value, supported: &[&str]) -> FieldError {
    let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
    let msg = format!(
        "Unsupported value: {}: supported values: {}",
        render(value),
        list.join(", ")
    );
    FieldError::new("FieldValueNotSupported", field, msg)
}

/// An enumerated field: absent or empty is "Required", anything outside `supported` is
/// "Unsupported" (listing `supported` in the order given, as Kubernetes' message does).
pub(crate) fn one_of(field: &str, value: &Value, supported: &[&str], errs: &mut Vec<FieldError>) {
    match value.as_str().unwrap_or("") {
        "" => errs.push(required(field, "")),
        v if supported.contains(&v) => {}
        _ => errs.push(not_supported(field, value, supported)),
    }
}

pub(crate) fn duplicate(field: &str, value: &Value) -> FieldError {
    FieldError::new(
        "FieldValueDuplicate",
        field,
        format!("Duplicate value: {}", render(value)),
    )
}

pub(crate) fn forbidden(field: &str, detail: &str) -> FieldError {
    FieldError::new(
        "FieldValueForbidden",
        field,
        with_detail("Forbidden", detail),
    )
}

pub(crate) fn too_long(field: &str, max: usize) -> FieldError {
    FieldError::new(
        "FieldValueTooLong",
        field,
        format!("Too long: may not be more than {max} bytes"),
    )
}

pub(crate) fn not_found(field: &str, value: &Value) -> FieldError {
    FieldError::new(
        "FieldValueNotFound",
        field,
        format!("Not found: {}", render(value)),
    )
}

/// `Kind.group "name" is invalid: <errors>`: the message of the 422 Status the real server
/// answers (one error alone, several as `[a, b]`).
pub fn invalid_status_message(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> String {
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let mut seen = Vec::new();
    for e in errs {
        let text = e.full();
        if !seen.contains(&text) {
            seen.push(text);
        }
    }
    let agg = if seen.len() == 1 {
        seen.remove(0)
    } else {
        format!("[{}]", seen.join(", "))
    };
    format!("{qualified} {name:?} is invalid: {agg}")
}

/// Which rule a kind's `metadata.name` follows.
#[derive(Clone, Copy)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    PathSegment,
}

fn name_errors(rule: NameRule, name: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => names::dns1123_subdomain(name),
        NameRule::Label => names::dns1123_label(name),
        NameRule::Dns1035 => names::dns1035_label(name),
        NameRule::PathSegment => names::path_segment_name(name),
    }
}

/// generateName is checked as a prefix: the random suffix will end it, so a trailing dash is fine.
fn mask_trailing_dash(s: &str) -> String {
    match s.strip_suffix('-') {
        Some(rest) if !rest.is_empty() => format!("{rest}a"),
        _ => s.to_string(),
    }
}

const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Labels as `ValidateLabels` checks them: qualified-name keys, label values.
pub(crate) fn validate_labels(labels: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = labels.as_object() else { return };
    for (k, v) in m {
        for msg in names::qualified_name(k) {
            errs.push(invalid(field, &Value::String(k.clone()), &msg));
        }
        let val = v.as_str().unwrap_or("");
        for msg in names::label_value(val) {
            errs.push(invalid(field, v, &msg));
        }
    }
}

fn validate_annotations(ann: &Value, field: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = ann.as_object() else { return };
    let mut total = 0;
    for (k, v) in m {
        for msg in names::qualified_name(&k.to_lowercase()) {
            errs.push(invalid(field, &Value::String(k.clone()), &msg));
        }
        total += k.len() + v.as_str().map(str::len).unwrap_or(0);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(field, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

/// `ValidateObjectMeta` without the namespace/scope part, which the server owns.
pub(crate) fn validate_meta(meta: &Value, path: &str, rule: NameRule, errs: &mut Vec<FieldError>) {
    let name = meta["name"].as_str().unwrap_or("");
    let generate = meta["generateName"].as_str().unwrap_or("");
    if !generate.is_empty() {
        for msg in name_errors(rule, &mask_trailing_dash(generate)) {
            errs.push(invalid(
                &format!("{path}.generateName"),
                &meta["generateName"],
                &msg,
            ));
        }
    }
    if name.is_empty() {
        if generate.is_empty() {
            errs.push(required(
                &format!("{path}.name"),
                "name or generateName is required",
            ));
        }
    } else {
        for msg in name_errors(rule, name) {
            errs.push(invalid(&format!("{path}.name"), &meta["name"], &msg));
        }
    }
    validate_labels(&meta["labels"], &format!("{path}.labels"), errs);
    validate_annotations(&meta["annotations"], &format!("{path}.annotations"), errs);
    if let Some(finalizers) = meta["finalizers"].as_array() {
        let fpath = format!("{path}.finalizers");
        let mut seen = Vec::new();
        for f in finalizers {
            let s = f.as_str().unwrap_or("");
            for msg in names::qualified_name(s) {
                errs.push(invalid(&fpath, f, &msg));
            }
            if seen.contains(&s) {
                errs.push(duplicate(&fpath, f));
            }
            seen.push(s);
        }
    }
}

fn validate_meta_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    for f in ["name", "namespace", "uid", "creationTimestamp"] {
        let (n, o) = (&new["metadata"][f], &old["metadata"][f]);
        if !o.is_null() && !n.is_null() && n != o {
            errs.push(invalid(&format!("metadata.{f}"), n, "field is immutable"));
        }
    }
}

/// Validates an object of a built-in kind on create (`old` None) or update (immutable fields
/// checked against `old`). The request path calls `validate_with` with the served kind.
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let info = crate::apiserver::registry::builtin_snapshot()
        .all()
        .iter()
        .find(|r| r.group == group && r.kind == kind)
        .cloned()
        .unwrap_or_else(|| panic!("{kind}.{group} is not a built-in kind"));
    validate_with(&*info.strategy, obj, old)
}

/// Validates an object with its kind's rules: ObjectMeta, then the strategy's own.
pub fn validate_with(
    strategy: &dyn crate::apiserver::kinds::Strategy,
    obj: &Value,
    old: Option<&Value>,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if !obj.is_object() {
        errs.push(invalid("", obj, "must be an object"));
        return errs;
    }
    validate_meta(
        &obj["metadata"],
        "metadata",
        strategy.name_rule(),
        &mut errs,
    );
    if let Some(old) = old {
        validate_meta_update(obj, old, &mut errs);
    }
    strategy.validate(obj, old, &mut errs);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invalid_name_reads_like_kubernetes() {
        let errs = validate("", "ConfigMap", &json!({"metadata": {"name": "Foo"}}), None);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].reason, "FieldValueInvalid");
        assert_eq!(errs[0].field, "metadata.name");
        assert!(errs[0]
            .message
            .starts_with("Invalid value: \"Foo\": a lowercase RFC 1123 subdomain must consist of"));
        assert_eq!(
            invalid_status_message("", "ConfigMap", "Foo", &errs),
            format!(
                "ConfigMap \"Foo\" is invalid: metadata.name: {}",
                errs[0].message
            )
        );
    }

    #[test]
    fn name_or_generate_name_required() {
        let errs = validate("", "ConfigMap", &json!({"metadata": {}}), None);
        assert_eq!(errs[0].field, "metadata.name");
        assert_eq!(
            errs[0].message,
            "Required value: name or generateName is required"
        );
        let ok = validate(
            "",
            "ConfigMap",
            &json!({"metadata": {"generateName": "cfg-"}}),
            None,
        );
        assert!(ok.is_empty(), "{ok:?}");
        let bad = validate(
            "",
            "ConfigMap",
            &json!({"metadata": {"generateName": "Cfg-"}}),
            None,
        );
        assert_eq!(bad[0].field, "metadata.generateName");
    }

    #[test]
    fn services_and_namespaces_use_labels() {
        let errs = validate(
            "",
            "Service",
            &json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}),
            None,
        );
        assert!(errs[0].message.contains("a DNS-1035 label"), "{errs:?}");
        let errs = validate("", "Namespace", &json!({"metadata": {"name": "a.b"}}), None);
        assert!(errs[0].message.contains("RFC 1123 label"));
        let errs = validate(
            "apps",
            "Deployment",
            &json!({"metadata": {"name": "a.b"}}),
            None,
        );
        assert!(errs.iter().all(|e| e.field != "metadata.name"));
    }

    #[test]
    fn labels_and_annotations() {
        let errs = validate(
            "",
            "ConfigMap",
            &json!({"metadata": {"name": "c", "labels": {"bad key": "ok", "k": "-bad"},
                     "annotations": {"big": "x".repeat(300 * 1024)}}}),
            None,
        );
        let fields: Vec<(&str, &str)> = errs
            .iter()
            .map(|e| (e.field.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("metadata.labels", "FieldValueInvalid"),
                ("metadata.labels", "FieldValueInvalid"),
                ("metadata.annotations", "FieldValueTooLong")
            ]
        );
        assert_eq!(errs[0].message.split(':').nth(1).unwrap(), " \"bad key\"");
        assert_eq!(
            errs[2].message,
            "Too long: may not be more than 262144 bytes"
        );
    }

    #[test]
    fn multiple_errors_aggregate_in_brackets() {
        let errs = vec![required("a", ""), required("b", "")];
        assert_eq!(
            invalid_status_message("apps", "Deployment", "d", &errs),
            "Deployment.apps \"d\" is invalid: [a: Required value, b: Required value]"
        );
    }
}
