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
}
