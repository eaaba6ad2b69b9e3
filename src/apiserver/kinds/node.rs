//! core/v1 Node: a machine that runs pods.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Node>(
        Facts {
            short: &["no"],
            status: true,
            fields: &["spec.unschedulable"],
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

    /// Nodes report their own status at registration.
    fn initial_status(&self, _obj: &mut Value) {}
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        node(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        node(obj, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};
    use std::collections::BTreeSet;

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("Status", "string", 0, "The status of the node"),
                c("Roles", "string", 0, "The roles of the node"),
                AGE,
                c("Version", "string", 0, "Kubelet Version reported by the node."),
                c("Internal-IP", "string", 1, "List of addresses reachable to the node."),
                c("External-IP", "string", 1, "List of addresses reachable to the node."),
                c("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
                c("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                c("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut status: Vec<String> = Vec::new();
        // Only the last Ready condition counts, like the printer's map keyed by type.
        if let Some(c) = arr(&obj["status"]["conditions"])
            .iter()
            .rev()
            .find(|c| s(&c["type"]) == "Ready")
        {
            status.push(if s(&c["status"]) == "True" {
                "Ready".into()
            } else {
                "NotReady".into()
            });
        }
        if status.is_empty() {
            status.push("Unknown".into());
        }
        if obj["spec"]["unschedulable"].as_bool() == Some(true) {
            status.push("SchedulingDisabled".into());
        }
        let mut roles = BTreeSet::new();
        if let Some(labels) = obj["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                    if !role.is_empty() {
                        roles.insert(role.to_string());
                    }
                } else if k == "kubernetes.io/role" && !s(v).is_empty() {
                    roles.insert(s(v).to_string());
                }
            }
        }
        let info = &obj["status"]["nodeInfo"];
        let unknown = |v: &Value| {
            let v = s(v);
            if v.is_empty() {
                "<unknown>".to_string()
            } else {
                v.to_string()
            }
        };
        vec![
            name(obj),
            json!(status.join(",")),
            json!(or_none(&roles.into_iter().collect::<Vec<_>>().join(","))),
            age(obj, now),
            json!(s(&info["kubeletVersion"])),
            json!(node_address(obj, "InternalIP")),
            json!(node_address(obj, "ExternalIP")),
            json!(unknown(&info["osImage"])),
            json!(unknown(&info["kernelVersion"])),
            json!(unknown(&info["containerRuntimeVersion"])),
        ]
    }
}
