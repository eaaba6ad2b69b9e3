//! storage.k8s.io/v1 VolumeAttachment: a volume to attach to a node.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::storage::v1::VolumeAttachment>(
        Facts {
            status: true,
            ..NONE
        },
        Kind,
    )
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
            c(
                "Attacher",
                "string",
                0,
                "attacher indicates the name of the volume driver that MUST handle this request.",
            ),
            c(
                "PV",
                "string",
                0,
                "persistentVolumeName represents the name of the persistent volume to attach.",
            ),
            c(
                "Node",
                "string",
                0,
                "nodeName represents the node that the volume should be attached to.",
            ),
            c(
                "Attached",
                "boolean",
                0,
                "attached indicates the volume is successfully attached.",
            ),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        vec![
            name(obj),
            json!(s(&spec["attacher"])),
            json!(s(&spec["source"]["persistentVolumeName"])),
            json!(s(&spec["nodeName"])),
            json!(obj["status"]["attached"].as_bool().unwrap_or(false)),
            age(obj, now),
        ]
    }
}
