//! Defaulting from a structural schema: an absent field whose schema has a `default` gets it
//! (and the defaults inside it), as apiextensions-apiserver does on writes and when it reads
//! an object from storage. A null field that is not nullable counts as absent.

use super::schema;
use serde_json::Value;

pub fn apply(s: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema::properties(s) {
                for (name, sub) in props {
                    let Some(default) = sub.get("default") else {
                        continue;
                    };
                    let absent = match map.get(name) {
                        None => true,
                        Some(Value::Null) => !schema::nullable(sub),
                        Some(_) => false,
                    };
                    if absent {
                        map.insert(name.clone(), default.clone());
                    }
                }
                for (name, sub) in props {
                    if let Some(v) = map.get_mut(name) {
                        apply(sub, v);
                    }
                }
            }
            if let Some(sub) = schema::additional(s) {
                for v in map.values_mut() {
                    apply(sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema::items(s) {
                items.iter_mut().for_each(|item| apply(sub, item));
            }
        }
        _ => {}
    }
}

/// Drops the nulls the schema does not allow (upstream's PruneNonNullableNullsWithoutDefaults,
/// run after defaulting has replaced those that have a default); nulls of nullable fields and
/// inside preserve-unknown-fields subtrees stay.
pub fn drop_nulls(s: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            let additional = schema::additional(s);
            map.retain(|name, v| {
                !v.is_null()
                    || schema::property(s, name)
                        .or(additional)
                        .map_or(schema::preserves_unknown(s), schema::nullable)
            });
            for (name, v) in map.iter_mut() {
                if let Some(sub) = schema::property(s, name).or(additional) {
                    drop_nulls(sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema::items(s) {
                items.iter_mut().for_each(|item| drop_nulls(sub, item));
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
    fn absent_and_null_fields_get_defaults_nested_too() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "default": {},
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "mode": {"type": "string", "default": "fast"},
                "note": {"type": "string", "nullable": true, "default": "n"},
                "ports": {"type": "array", "items": {"type": "object",
                    "properties": {"protocol": {"type": "string", "default": "TCP"}}}}}}}});
        let mut empty = json!({});
        apply(&s, &mut empty);
        assert_eq!(
            empty,
            json!({"spec": {"replicas": 1, "mode": "fast", "note": "n"}})
        );
        let mut obj = json!({"spec": {"replicas": 3, "mode": null, "note": null, "ports": [{}]}});
        apply(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"replicas": 3, "mode": "fast", "note": null, "ports": [{"protocol": "TCP"}]}})
        );
    }

    #[test]
    fn nulls_stay_only_where_the_schema_allows_them() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string"}, "b": {"type": "string", "nullable": true},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}});
        let mut obj = json!({"metadata": {"name": null}, "spec": {"a": null, "b": null, "free": {"x": null}}});
        drop_nulls(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"metadata": {"name": null}, "spec": {"b": null, "free": {"x": null}}})
        );
    }
}
