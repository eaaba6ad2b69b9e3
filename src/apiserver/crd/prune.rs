//! Pruning: fields a structural schema does not specify are dropped from custom resources, as
//! apiextensions-apiserver does on every write, unless a `x-kubernetes-preserve-unknown-fields`
//! subtree keeps them. The root's (and embedded resources') apiVersion, kind and metadata are
//! always kept.

use super::schema::{self, child};
use serde_json::Value;

/// Drops the unknown fields of `value` (the whole object) and answers their paths
/// ("spec.foo", "spec.items[0].bar"), the form `fieldValidation` reports them in.
pub fn prune(s: &Value, value: &mut Value) -> Vec<String> {
    let mut dropped = Vec::new();
    // No schema (a version that is gone) prunes nothing rather than everything.
    if !s.is_object() {
        return dropped;
    }
    walk(s, value, "", true, &mut dropped);
    dropped
}

/// The unknown fields of `value` without changing it.
pub fn unknown(s: &Value, value: &Value) -> Vec<String> {
    let mut copy = value.clone();
    prune(s, &mut copy)
}

fn walk(s: &Value, value: &mut Value, path: &str, resource: bool, dropped: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let preserve = schema::preserves_unknown(s);
            let additional = schema::additional(s);
            let mut gone = Vec::new();
            for (name, v) in map.iter_mut() {
                if resource && matches!(name.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match schema::property(s, name).or(additional) {
                    Some(sub) => walk(sub, v, &child(path, name), schema::embedded(sub), dropped),
                    None if preserve => {}
                    None => gone.push(name.clone()),
                }
            }
            for name in gone {
                map.remove(&name);
                dropped.push(child(path, &name));
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema::items(s) {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(
                        item_schema,
                        item,
                        &format!("{path}[{i}]"),
                        schema::embedded(item_schema),
                        dropped,
                    );
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_go_except_in_preserved_subtrees() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                "properties": {"inner": {"type": "object", "properties": {"a": {"type": "string"}}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                "properties": {"spec": {"type": "object"}}}}}}});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"bogus": 1, "items": [{"name": "a", "extra": true}], "labels": {"k": "v"},
                "config": {"anything": {"deep": 1}, "inner": {"a": "x", "b": "gone"}},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "junk": 1}},
            "status": {"x": 1}});
        let mut dropped = prune(&s, &mut obj);
        dropped.sort();
        assert_eq!(
            dropped,
            vec![
                "spec.bogus",
                "spec.config.inner.b",
                "spec.items[0].extra",
                "spec.template.junk",
                "status"
            ]
        );
        assert_eq!(obj["spec"]["config"]["anything"]["deep"], 1);
        assert_eq!(obj["spec"]["template"]["metadata"]["name"], "p");
        assert_eq!(obj["metadata"]["name"], "a");
    }
}
