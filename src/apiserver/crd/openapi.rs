//! A custom resource version's OpenAPI definition, as kube-apiserver publishes it: the CRD's
//! schema with apiVersion, kind and metadata (ObjectMeta) filled in at the root, so `kubectl
//! explain` walks it and kubectl's apply finds the kind in /openapi/v3.

use serde_json::{json, Value};

const API_VERSION_DESC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const OBJECT_META: &str = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The published definition of a version whose schema is `schema` (its openAPIV3Schema).
pub fn definition(schema: &Value) -> Value {
    let mut out = if schema.is_object() {
        schema.clone()
    } else {
        json!({"type": "object"})
    };
    if out.get("type").is_none() {
        out["type"] = json!("object");
    }
    if !out.get("properties").is_some_and(Value::is_object) {
        out["properties"] = json!({});
    }
    let props = out["properties"]
        .as_object_mut()
        .expect("made an object above");
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": API_VERSION_DESC}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": KIND_DESC}),
    );
    // A sibling description beside the $ref becomes allOf when the documents are built.
    props.insert(
        "metadata".into(),
        json!({"$ref": OBJECT_META, "description": METADATA_DESC}),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_gets_type_meta_and_object_meta() {
        let d = definition(&json!({"type": "object", "description": "A database.",
            "properties": {"spec": {"type": "object"}, "metadata": {"type": "object"}}}));
        assert_eq!(d["description"], "A database.");
        assert_eq!(d["properties"]["metadata"]["$ref"], OBJECT_META);
        assert_eq!(d["properties"]["kind"]["type"], "string");
        assert_eq!(d["properties"]["spec"]["type"], "object");
    }
}
