//! core/v1 PersistentVolume: a piece of storage in the cluster.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::PersistentVolume>(
        Facts {
            short: &["pv"],
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
        serde_json::json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/tmp/min"}}})
    }

    fn initial_status(&self, obj: &mut Value) {
        obj["status"] = serde_json::json!({"phase": "Pending"})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        set(
            obj,
            &["spec", "persistentVolumeReclaimPolicy"],
            json!("Retain"),
        );
        set(obj, &["spec", "volumeMode"], json!("Filesystem"));
        set(obj, &["status", "phase"], json!("Pending"));
        if obj["spec"]["hostPath"].is_object() {
            set(&mut obj["spec"]["hostPath"], &["type"], json!(""));
        }
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        pv(obj, errs);
    }

    fn pv(obj: &Value, errs: &mut Errs) {
        let spec = &obj["spec"];
        access_modes(&spec["accessModes"], "spec.accessModes", errs);
        if spec["capacity"]["storage"].is_null() {
            errs.push(required("spec.capacity", ""));
        }
        let sources: Vec<&&str> = PV_SOURCES.iter().filter(|k| !spec[**k].is_null()).collect();
        if sources.is_empty() {
            errs.push(required("spec", "must specify a volume type"));
        } else if sources.len() > 1 {
            errs.push(forbidden(
                &format!("spec.{}", sources[1]),
                "may not specify more than 1 volume type",
            ));
        }
        match s(&spec["persistentVolumeReclaimPolicy"]) {
            "" | "Delete" | "Recycle" | "Retain" => {}
            _ => errs.push(not_supported(
                "spec.persistentVolumeReclaimPolicy",
                &spec["persistentVolumeReclaimPolicy"],
                &["Delete", "Recycle", "Retain"],
            )),
        }
        if spec["hostPath"].is_object() && s(&spec["hostPath"]["path"]).is_empty() {
            errs.push(required("spec.hostPath.path", ""));
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
                c("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity."),
                c("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted."),
                c("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
                c("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
                c("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
                c("StorageClass", "string", 0, "storageClassName is the name of StorageClass to which this persistent volume belongs."),
                c("VolumeAttributesClass", "string", 0, "Name of VolumeAttributesClass to which this persistent volume belongs."),
                c("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
                AGE,
                c("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state."),
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let claim = if spec["claimRef"].is_object() {
            format!(
                "{}/{}",
                s(&spec["claimRef"]["namespace"]),
                s(&spec["claimRef"]["name"])
            )
        } else {
            String::new()
        };
        let mut phase = s(&obj["status"]["phase"]).to_string();
        if obj["metadata"]["deletionTimestamp"].is_string() {
            phase = "Terminating".into();
        }
        vec![
            name(obj),
            json!(s(&spec["capacity"]["storage"])),
            json!(access_modes(&spec["accessModes"])),
            json!(s(&spec["persistentVolumeReclaimPolicy"])),
            json!(phase),
            json!(claim),
            json!(storage_class(obj)),
            json!(spec["volumeAttributesClassName"]
                .as_str()
                .unwrap_or("<unset>")),
            json!(s(&obj["status"]["reason"])),
            age(obj, now),
            json!(spec["volumeMode"].as_str().unwrap_or("<unset>")),
        ]
    }
}
