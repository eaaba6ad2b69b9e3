//! storage.k8s.io/v1 CSIDriver: a CSI volume driver on the cluster.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::storage::v1::CSIDriver>(NONE, Kind)
}

struct Kind;

impl Strategy for Kind {
    fn columns(&self) -> Vec<Col> {
        printer::columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        printer::row(obj, now)
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("AttachRequired", "boolean", 0, "attachRequired indicates this CSI volume driver requires an attach operation."),
                c("PodInfoOnMount", "boolean", 0, "podInfoOnMount indicates this CSI volume driver requires additional pod information during mount operations."),
                c("StorageCapacity", "boolean", 0, "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity."),
                c("TokenRequests", "string", 0, "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for."),
                c("RequiresRepublish", "boolean", 0, "requiresRepublish indicates the CSI driver wants NodePublishVolume being periodically called."),
                c("Modes", "string", 0, "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports."),
                AGE,
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let audiences: Vec<&str> = arr(&spec["tokenRequests"])
            .iter()
            .map(|t| s(&t["audience"]))
            .collect();
        let modes: Vec<&str> = arr(&spec["volumeLifecycleModes"]).iter().map(s).collect();
        vec![
            name(obj),
            json!(spec["attachRequired"].as_bool().unwrap_or(true)),
            json!(spec["podInfoOnMount"].as_bool().unwrap_or(false)),
            json!(spec["storageCapacity"].as_bool().unwrap_or(false)),
            json!(if audiences.is_empty() {
                "<unset>".to_string()
            } else {
                audiences.join(",")
            }),
            json!(spec["requiresRepublish"].as_bool().unwrap_or(false)),
            json!(if modes.is_empty() {
                "Persistent".to_string()
            } else {
                modes.join(",")
            }),
            age(obj, now),
        ]
    }
}
