//! Validation of a custom resource against its version's structural schema, with kube-openapi's
//! messages as apiextensions-apiserver turns them into field errors
//! (`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer:
//! "string"`). Runs after pruning and defaulting, on the whole object; `metadata` is ObjectMeta's
//! business (checked by the request path).

use super::schema::{self, child};
use crate::apiserver::validation::FieldError;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

fn error(reason: &str, field: &str, message: String) -> FieldError {
    FieldError {
        reason: reason.into(),
        field: field.into(),
        message,
    }
}

/// Go's `%v` of a JSON number: integral values without a fraction.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// A bad value as field.Error renders it: strings quoted, numbers plain.
fn render(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => number(n.as_f64().unwrap_or(0.0)),
        },
        other => crate::apiserver::validation::render(other),
    }
}

/// "Invalid value: <v>: <path> in body <what>": kube-openapi's default message shape.
fn invalid(path: &str, value: &Value, what: &str) -> FieldError {
    error(
        "FieldValueInvalid",
        path,
        format!("Invalid value: {}: {path} in body {what}", render(value)),
    )
}

/// An InvalidType error: the value shown is the JSON type found (or the offending string).
fn type_invalid(path: &str, expected: &str, found: &str) -> FieldError {
    error(
        "FieldValueTypeInvalid",
        path,
        format!("Invalid value: {found:?}: {path} in body must be of type {expected}: {found:?}"),
    )
}

/// The JSON type of a value as kube-openapi names it (Go's int64 is "integer").
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    let found = json_type(v);
    found == expected
        || (expected == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0))
        || (expected == "number" && found == "integer")
}

/// Validates `value` at `path` ("" for the object itself) against `s`.
pub fn validate(s: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if value.is_null() {
        if !schema::nullable(s) && !schema::ty(s).is_empty() {
            errs.push(type_invalid(path, schema::ty(s), "null"));
        }
        return;
    }
    if schema::int_or_string(s) {
        if !matches!(json_type(value), "integer" | "string") {
            errs.push(type_invalid(path, "integer,string", json_type(value)));
            return;
        }
    } else {
        let expected = schema::ty(s);
        if !expected.is_empty() && !type_matches(expected, value) {
            errs.push(type_invalid(path, expected, json_type(value)));
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(x) => format!("{x:?}"),
                    other => format!("{:?}", other.to_string()),
                })
                .collect();
            errs.push(error(
                "FieldValueNotSupported",
                path,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    render(value),
                    list.join(", ")
                ),
            ));
        }
    }
    match value {
        Value::String(text) => string(s, text, value, path, errs),
        Value::Number(n) => numeric(s, n.as_f64().unwrap_or(0.0), value, path, errs),
        Value::Array(items) => array(s, items, value, path, errs),
        Value::Object(_) => object(s, value, path, errs),
        _ => {}
    }
}

fn string(s: &Value, text: &str, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let len = text.chars().count() as u64;
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        if len > max {
            errs.push(error(
                "FieldValueTooLong",
                path,
                format!(
                    "Too long: may not be more than {max} {}",
                    if max == 1 { "byte" } else { "bytes" }
                ),
            ));
        }
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
        if len < min {
            errs.push(invalid(
                path,
                value,
                &format!("should be at least {min} chars long"),
            ));
        }
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
        if !matches_pattern(pattern, text) {
            errs.push(invalid(path, value, &format!("should match '{pattern}'")));
        }
    }
    if let Some(format) = s.get("format").and_then(Value::as_str) {
        if !format_ok(format, text) {
            errs.push(error(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: {}: {path} in body must be of type {format}: {}",
                    render(value),
                    render(value)
                ),
            ));
        }
    }
}

fn numeric(s: &Value, n: f64, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let flag = |k: &str| s.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        if flag("exclusiveMaximum") && n >= max {
            errs.push(invalid(
                path,
                value,
                &format!("should be less than {}", number(max)),
            ));
        } else if n > max {
            errs.push(invalid(
                path,
                value,
                &format!("should be less than or equal to {}", number(max)),
            ));
        }
    }
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        if flag("exclusiveMinimum") && n <= min {
            errs.push(invalid(
                path,
                value,
                &format!("should be greater than {}", number(min)),
            ));
        } else if n < min {
            errs.push(invalid(
                path,
                value,
                &format!("should be greater than or equal to {}", number(min)),
            ));
        }
    }
    if let Some(factor) = s.get("multipleOf").and_then(Value::as_f64) {
        if factor > 0.0 && (n / factor).fract() != 0.0 {
            errs.push(invalid(
                path,
                value,
                &format!("should be a multiple of {}", number(factor)),
            ));
        }
    }
}

fn array(s: &Value, items: &[Value], value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let n = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
        if n > max {
            errs.push(error(
                "FieldValueTooMany",
                path,
                format!(
                    "Too many: {n}: must have at most {max} {}",
                    if max == 1 { "item" } else { "items" }
                ),
            ));
        }
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
        if n < min {
            errs.push(invalid(
                path,
                &Value::from(n),
                &format!("should have at least {min} items"),
            ));
        }
    }
    let _ = value;
    if let Some(item_schema) = schema::items(s) {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), errs);
        }
    }
    list_map_keys(s, items, path, errs);
}

/// `x-kubernetes-list-type: map` lists: no two elements share their keys; `set` lists: no
/// element twice.
fn list_map_keys(s: &Value, items: &[Value], path: &str, errs: &mut Vec<FieldError>) {
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {}
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(error(
                        "FieldValueDuplicate",
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", render(item)),
                    ));
                }
            }
            return;
        }
        _ => return,
    }
    let keys: Vec<&str> = s
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut seen: Vec<Vec<&Value>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
        if seen.contains(&key) {
            let shown: Vec<String> = keys
                .iter()
                .zip(&key)
                .map(|(k, v)| format!("{:?}:{}", k, v))
                .collect();
            errs.push(error(
                "FieldValueDuplicate",
                &format!("{path}[{i}]"),
                format!(
                    "Duplicate value: map[string]interface {{}}{{{}}}",
                    shown.join(", ")
                ),
            ));
        } else {
            seen.push(key);
        }
    }
}

fn object(s: &Value, value: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(map) = value.as_object() else { return };
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                errs.push(error(
                    "FieldValueRequired",
                    &child(path, name),
                    "Required value".into(),
                ));
            }
        }
    }
    if let Some(max) = s.get("maxProperties").and_then(Value::as_u64) {
        if map.len() as u64 > max {
            errs.push(error(
                "FieldValueTooMany",
                path,
                format!("Too many: {}: must have at most {max} items", map.len()),
            ));
        }
    }
    if let Some(min) = s.get("minProperties").and_then(Value::as_u64) {
        if (map.len() as u64) < min {
            errs.push(invalid(
                path,
                &Value::from(map.len()),
                &format!("should have at least {min} properties"),
            ));
        }
    }
    if schema::embedded(s) {
        for f in ["apiVersion", "kind"] {
            if map.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                errs.push(error(
                    "FieldValueRequired",
                    &child(path, f),
                    "Required value: must not be empty".into(),
                ));
            }
        }
    }
    let at_root = path.is_empty();
    for (name, v) in map {
        if (at_root || schema::embedded(s)) && name == "metadata" {
            continue;
        }
        let sub = schema::property(s, name).or_else(|| schema::additional(s));
        if let Some(sub) = sub {
            validate(sub, v, &child(path, name), errs);
        }
    }
}

fn matches_pattern(pattern: &str, text: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if cache.len() > 1024 {
        cache.clear();
    }
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok());
    // A pattern the CRD's validation would have refused cannot fail objects.
    re.as_ref().is_none_or(|r| r.is_match(text))
}

/// The string formats apiextensions-apiserver checks (strfmt's); others are not checked.
fn format_ok(format: &str, s: &str) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr};
    match format {
        "int32" | "int64" | "float" | "double" | "password" | "" => true,
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            let bits: Option<u8> = bits.parse().ok();
            match (ip.parse::<std::net::IpAddr>(), bits) {
                (Ok(std::net::IpAddr::V4(_)), Some(b)) => b <= 32,
                (Ok(std::net::IpAddr::V6(_)), Some(b)) => b <= 128,
                _ => false,
            }
        }),
        "uuid" | "uuid3" | "uuid4" | "uuid5" => uuid::Uuid::parse_str(s).is_ok() && s.len() == 36,
        "email" => s.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        }),
        "hostname" => {
            !s.is_empty()
                && s.len() <= 255
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
        "mac" => {
            let parts: Vec<&str> = s.split([':', '-']).collect();
            parts.len() == 6
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        "uri" => s.split_once(':').is_some_and(|(scheme, _)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }),
        "duration" => duration_ok(s),
        _ => true,
    }
}

/// strfmt's duration: Go durations ("1h30m") or "<n> <unit>" forms.
fn duration_ok(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = rest[digits..].trim_start();
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let u = rest[..unit].trim();
        let known = [
            "ns", "us", "µs", "ms", "s", "m", "h", "d", "w", "sec", "second", "seconds", "min",
            "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks",
        ];
        if !known.contains(&u) {
            return false;
        }
        rest = &rest[unit..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(s: Value, obj: Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate(&s, &obj, "", &mut errs);
        errs.iter().map(FieldError::full).collect()
    }

    #[test]
    fn messages_are_kube_openapis() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object",
            "required": ["size"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5, "minLength": 2},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "email": {"type": "string", "format": "email"},
                "ratio": {"type": "number", "exclusiveMaximum": true, "maximum": 1},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "port": {"x-kubernetes-int-or-string": true},
                "note": {"type": "string", "nullable": true},
                "size": {"type": "integer"}}}}});
        assert_eq!(
            check(s.clone(), json!({"spec": {"replicas": "3", "size": 1}})),
            vec![
                r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
            ]
        );
        let errs = check(
            s.clone(),
            json!({"spec": {"replicas": 11, "name": "ABCDEFG", "mode": "medium", "email": "x",
                "ratio": 1, "tags": ["a", "b", "c"], "port": true, "note": null}}),
        );
        let want = [
            "spec.size: Required value",
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
            "spec.name: Too long: may not be more than 5 bytes",
            "spec.name: Invalid value: \"ABCDEFG\": spec.name in body should match '^[a-z]+$'",
            "spec.mode: Unsupported value: \"medium\": supported values: \"fast\", \"slow\"",
            "spec.email: Invalid value: \"x\": spec.email in body must be of type email: \"x\"",
            "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1",
            "spec.tags: Too many: 3: must have at most 2 items",
            "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
        ];
        for w in want {
            assert!(errs.iter().any(|e| e == w), "missing {w:?} in {errs:#?}");
        }
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        assert!(check(
            s,
            json!({"spec": {"size": 1, "port": "http", "replicas": 2.0}})
        )
        .is_empty());
    }

    #[test]
    fn map_lists_refuse_duplicate_keys_and_embedded_resources_need_a_type() {
        let s = json!({"type": "object", "properties": {
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "x-kubernetes-preserve-unknown-fields": true}}});
        let errs = check(
            s,
            json!({"ports": [{"name": "a"}, {"name": "a"}], "template": {"kind": "Pod"}, "tags": ["x", "y", "x"]}),
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].starts_with("ports[1]: Duplicate value"));
        assert_eq!(errs[1], "tags[2]: Duplicate value: \"x\"");
        assert_eq!(
            errs[2],
            "template.apiVersion: Required value: must not be empty"
        );
    }
}
