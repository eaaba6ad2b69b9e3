//! Reading a structural schema (a CRD version's `openAPIV3Schema`, as JSON): the pieces the
//! stages walk. A structural schema gives every node a type (or int-or-string, or
//! preserve-unknown-fields) and describes objects by `properties` or `additionalProperties`.

use serde_json::{Map, Value};

/// The node's `type`, "" when absent.
pub fn ty(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

pub fn properties(s: &Value) -> Option<&Map<String, Value>> {
    s.get("properties").and_then(Value::as_object)
}

pub fn property<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    properties(s).and_then(|p| p.get(name))
}

pub fn items(s: &Value) -> Option<&Value> {
    s.get("items").filter(|i| i.is_object())
}

/// `additionalProperties` when it is a schema (a map's values).
pub fn additional(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|a| a.is_object())
}

fn flag(s: &Value, name: &str) -> bool {
    s.get(name).and_then(Value::as_bool).unwrap_or(false)
}

pub fn preserves_unknown(s: &Value) -> bool {
    flag(s, "x-kubernetes-preserve-unknown-fields")
}

pub fn int_or_string(s: &Value) -> bool {
    flag(s, "x-kubernetes-int-or-string")
}

pub fn embedded(s: &Value) -> bool {
    flag(s, "x-kubernetes-embedded-resource")
}

pub fn nullable(s: &Value) -> bool {
    flag(s, "nullable")
}

/// `Field.child`: "spec" + "replicas" = "spec.replicas"; the root is "".
pub fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Structural-schema errors of a CRD version's schema, as (field, message) under `path`
/// (`spec.versions[0].schema.openAPIV3Schema`): every specified node needs a type, except
/// int-or-string and preserve-unknown-fields nodes.
pub fn structural_errors(s: &Value, path: &str, root: bool, out: &mut Vec<(String, String)>) {
    let typed = !ty(s).is_empty() || int_or_string(s) || (preserves_unknown(s) && !root);
    if !typed {
        let why = if root {
            "must not be empty at the root"
        } else if path.ends_with(".items") {
            "must not be empty for specified array items"
        } else {
            "must not be empty for specified object fields"
        };
        out.push((format!("{path}.type"), format!("Required value: {why}")));
    }
    if root && !ty(s).is_empty() && ty(s) != "object" {
        out.push((
            format!("{path}.type"),
            format!(
                "Invalid value: {:?}: must be object at the root",
                ty(s).to_string()
            ),
        ));
    }
    if root || embedded(s) {
        type_meta_errors(s, path, root, out);
    }
    if s.get("uniqueItems") == Some(&Value::Bool(true)) {
        out.push((
            format!("{path}.uniqueItems"),
            "Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic".into(),
        ));
    }
    if additional(s).is_some() && properties(s).is_some_and(|p| !p.is_empty()) {
        out.push((
            format!("{path}.additionalProperties"),
            "Forbidden: additionalProperties and properties are mutual exclusive".into(),
        ));
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(pattern) {
            out.push((
                format!("{path}.pattern"),
                format!(
                    "Invalid value: {pattern:?}: must be a valid regular expression, but isn't: {}",
                    e.to_string().lines().last().unwrap_or("").trim()
                ),
            ));
        }
    }
    if let Some(props) = properties(s) {
        for (name, p) in props {
            structural_errors(p, &format!("{path}.properties[{name}]"), false, out);
        }
    }
    if let Some(i) = items(s) {
        structural_errors(i, &format!("{path}.items"), false, out);
    }
    if let Some(a) = additional(s) {
        structural_errors(a, &format!("{path}.additionalProperties"), false, out);
    }
}

/// apiVersion and kind are strings and metadata an object wherever an object is a resource; at
/// the root, metadata's schema may only restrict name and generateName (the server owns the
/// rest of ObjectMeta).
fn type_meta_errors(s: &Value, path: &str, root: bool, out: &mut Vec<(String, String)>) {
    for f in ["apiVersion", "kind"] {
        if let Some(p) = property(s, f) {
            if ty(p) != "string" {
                out.push((
                    format!("{path}.properties[{f}].type"),
                    format!("Invalid value: {:?}: must be string", ty(p)),
                ));
            }
        }
    }
    let Some(meta) = property(s, "metadata") else {
        return;
    };
    if ty(meta) != "object" {
        out.push((
            format!("{path}.properties[metadata].type"),
            format!("Invalid value: {:?}: must be object", ty(meta)),
        ));
    }
    if !root {
        return;
    }
    let only_names =
        properties(meta).is_none_or(|p| p.keys().all(|k| k == "name" || k == "generateName"));
    let only_allowed = meta.as_object().is_some_and(|m| {
        m.keys()
            .all(|k| matches!(k.as_str(), "type" | "default" | "properties"))
    });
    if !only_names || !only_allowed {
        out.push((
            format!("{path}.properties[metadata]"),
            "Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified".into(),
        ));
    }
}
