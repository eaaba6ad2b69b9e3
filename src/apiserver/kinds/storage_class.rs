//! storage.k8s.io/v1 StorageClass: how volumes of a class are provisioned.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::storage::v1::StorageClass>(
        Facts {
            short: &["sc"],
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
        serde_json::json!({"provisioner": "example.com/disk"})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        set(obj, &["reclaimPolicy"], json!("Delete"));
        set(obj, &["volumeBindingMode"], json!("Immediate"));
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        storageclass(obj, old, errs);
    }

    fn storageclass(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        if s(&obj["provisioner"]).is_empty() {
            errs.push(required("provisioner", ""));
        }
        if !matches!(s(&obj["reclaimPolicy"]), "" | "Delete" | "Retain") {
            errs.push(not_supported(
                "reclaimPolicy",
                &obj["reclaimPolicy"],
                &["Delete", "Retain"],
            ));
        }
        if !matches!(
            s(&obj["volumeBindingMode"]),
            "" | "Immediate" | "WaitForFirstConsumer"
        ) {
            errs.push(not_supported(
                "volumeBindingMode",
                &obj["volumeBindingMode"],
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
        if let Some(old) = old {
            for f in ["parameters", "provisioner", "reclaimPolicy"] {
                if obj[f] != old[f] {
                    errs.push(forbidden(f, &format!("updates to {f} are forbidden.")));
                }
            }
            if obj["volumeBindingMode"] != old["volumeBindingMode"] {
                errs.push(forbidden("volumeBindingMode", "field is immutable"));
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
                c("Provisioner", "string", 0, "provisioner indicates the type of the provisioner."),
                c("ReclaimPolicy", "string", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
                c("VolumeBindingMode", "string", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
                c("AllowVolumeExpansion", "string", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
                AGE,
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut n = s(&obj["metadata"]["name"]).to_string();
        let ann = &obj["metadata"]["annotations"];
        if s(&ann["storageclass.kubernetes.io/is-default-class"]) == "true"
            || s(&ann["storageclass.beta.kubernetes.io/is-default-class"]) == "true"
        {
            n.push_str(" (default)");
        }
        vec![
            json!(n),
            json!(s(&obj["provisioner"])),
            json!(obj["reclaimPolicy"].as_str().unwrap_or("Delete")),
            json!(obj["volumeBindingMode"].as_str().unwrap_or("Immediate")),
            json!(obj["allowVolumeExpansion"]
                .as_bool()
                .unwrap_or(false)
                .to_string()),
            age(obj, now),
        ]
    }
}
