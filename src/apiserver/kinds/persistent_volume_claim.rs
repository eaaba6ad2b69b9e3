//! core/v1 PersistentVolumeClaim: a request for storage, bound to a PersistentVolume.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(
        Facts {
            short: &["pvc"],
            status: true,
            ..NONE
        },
        Kind,
    )
}

struct Kind;

impl Strategy for Kind {
    fn defaults(&self, obj: &mut Value) {
        defaults::apply(obj)
    }

    fn validate(&self, obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        validation::check(obj, old, errs)
    }

    fn columns(&self) -> Vec<Col> {
        printer::columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        printer::row(obj, now)
    }

    fn minimal(&self) -> Value {
        serde_json::json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn initial_status(&self, obj: &mut Value) {
        obj["status"] = serde_json::json!({"phase": "Pending"})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        set(obj, &["spec", "volumeMode"], json!("Filesystem"));
        set(obj, &["status", "phase"], json!("Pending"));
    }
}

mod validation {
    use crate::apiserver::defaults::parse_quantity;
    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        pvc(obj, old, errs);
    }

    fn pvc(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        let spec = &obj["spec"];
        access_modes(&spec["accessModes"], "spec.accessModes", errs);
        let storage = &spec["resources"]["requests"]["storage"];
        if storage.is_null() {
            errs.push(required("spec.resources[storage]", ""));
        } else if parse_quantity(storage).is_none_or(|q| q <= 0.0) {
            errs.push(invalid(
                "spec.resources[storage]",
                storage,
                "must be greater than zero",
            ));
        }
        if !matches!(s(&spec["volumeMode"]), "" | "Block" | "Filesystem") {
            errs.push(not_supported(
                "spec.volumeMode",
                &spec["volumeMode"],
                &["Block", "Filesystem"],
            ));
        }
        if let Some(old) = old {
            let strip = |v: &Value, old_volume_empty: bool| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("resources");
                    m.remove("volumeAttributesClassName");
                    if old_volume_empty {
                        m.remove("volumeName");
                    }
                }
                v
            };
            let unbound = s(&old["spec"]["volumeName"]).is_empty();
            if strip(spec, unbound) != strip(&old["spec"], unbound) {
                errs.push(forbidden(
                "spec",
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
            ));
            }
            let old_storage = parse_quantity(&old["spec"]["resources"]["requests"]["storage"]);
            if let (Some(n), Some(o)) = (parse_quantity(storage), old_storage) {
                if n < o {
                    errs.push(forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than previous value",
                    ));
                }
            }
        }
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
                c("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
                c("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
                c("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has."),
                c("StorageClass", "string", 0, "storageClassName is the name of the StorageClass required by the claim."),
                c("VolumeAttributesClass", "string", 0, "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
                AGE,
                c("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim."),
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let st = &obj["status"];
        let mut phase = s(&st["phase"]).to_string();
        if obj["metadata"]["deletionTimestamp"].is_string() {
            phase = "Terminating".into();
        }
        let bound = !s(&spec["volumeName"]).is_empty();
        let (capacity, modes) = if bound {
            (
                s(&st["capacity"]["storage"]).to_string(),
                access_modes(&st["accessModes"]),
            )
        } else {
            (String::new(), String::new())
        };
        vec![
            name(obj),
            json!(phase),
            json!(s(&spec["volumeName"])),
            json!(capacity),
            json!(modes),
            json!(storage_class(obj)),
            json!(spec["volumeAttributesClassName"]
                .as_str()
                .unwrap_or("<unset>")),
            age(obj, now),
            json!(spec["volumeMode"].as_str().unwrap_or("<unset>")),
        ]
    }
}
