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

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        node(obj, errs);
        if let Some(old) = old {
            update(obj, old, errs);
        }
    }

    /// A node's pod range and provider ID are set once: routes, the bridge and every pod IP on
    /// the node were derived from them, so a second allocation would strand them.
    fn update(obj: &Value, old: &Value, errs: &mut Vec<FieldError>) {
        // Both forms are compared: everything here reads the single podCIDR, and a patch of it
        // alone would leave podCIDRs as it was.
        let old_cidrs = &old["spec"]["podCIDRs"];
        let set = old_cidrs.as_array().is_some_and(|a| !a.is_empty());
        if set
            && (obj["spec"]["podCIDRs"] != *old_cidrs
                || obj["spec"]["podCIDR"] != old["spec"]["podCIDR"])
        {
            errs.push(forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = old["spec"]["providerID"].as_str().unwrap_or("");
        if !old_provider.is_empty() && obj["spec"]["providerID"].as_str() != Some(old_provider) {
            errs.push(forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        fn errs(new: serde_json::Value, old: serde_json::Value) -> Vec<String> {
            let mut errs = Vec::new();
            super::update(&new, &old, &mut errs);
            errs.iter().map(|e| e.full()).collect()
        }

        #[test]
        fn a_pod_range_is_set_once() {
            let none = json!({"spec": {}});
            let a = json!({"spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}});
            let b = json!({"spec": {"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]}});
            assert!(errs(a.clone(), none).is_empty());
            assert!(errs(a.clone(), a.clone()).is_empty());
            assert_eq!(
                errs(b, a.clone()),
                ["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"]
            );
            assert_eq!(errs(json!({"spec": {}}), a.clone()).len(), 1);
            let only_single =
                json!({"spec": {"podCIDR": "10.42.9.0/24", "podCIDRs": ["10.42.1.0/24"]}});
            assert_eq!(errs(only_single, a).len(), 1);
        }
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
