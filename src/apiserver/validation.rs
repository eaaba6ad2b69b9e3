//! Validation with field paths, per kind, answered as 422 Status causes.

use serde_json::Value;

/// One invalid field, as a Status cause: reason is e.g. "FieldValueRequired", "FieldValueInvalid",
/// "FieldValueNotSupported", "FieldValueForbidden", "FieldValueDuplicate", "FieldValueTooLong";
/// field is a path like "spec.containers[0].image"; message is the human text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub reason: String,
    pub field: String,
    pub message: String,
}

/// Validates an object on create (`old` None) or update (immutable fields checked against `old`).
pub fn validate(_group: &str, _kind: &str, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    Vec::new()
}

/// Fields of the raw request body that the kind's schema does not know, and duplicated keys,
/// as paths; used for fieldValidation=Strict|Warn.
pub fn unknown_or_duplicate_fields(_group: &str, _kind: &str, _raw: &[u8]) -> Vec<String> {
    Vec::new()
}
