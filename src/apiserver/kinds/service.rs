//! core/v1 Service: a stable address in front of a set of pods.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::allocation::{self, Allocator};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::{FieldError, NameRule};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Service>(
        Facts {
            short: &["svc"],
            cats: ALL,
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
        serde_json::json!({"spec": {"ports": [{"port": 80}]}})
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }

    fn allocator(&self) -> Option<&dyn Allocator> {
        Some(&allocation::service::Services)
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        service(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        service(obj, old, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("Type", "string", 0, "type determines how the Service is exposed."),
                c("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
                c("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
                c("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
                AGE,
                c("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector."),
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let ty = spec["type"].as_str().unwrap_or("ClusterIP");
        let external_ips: Vec<&str> = arr(&spec["externalIPs"]).iter().map(s).collect();
        let external = match ty {
            "ClusterIP" | "NodePort" => or_none(&external_ips.join(",")),
            "LoadBalancer" => {
                let lb = lb_ingress(&obj["status"]["loadBalancer"]);
                let mut all: Vec<&str> = lb.split(',').filter(|x| !x.is_empty()).collect();
                all.extend(&external_ips);
                if all.is_empty() {
                    "<pending>".into()
                } else {
                    all.join(",")
                }
            }
            "ExternalName" => s(&spec["externalName"]).to_string(),
            _ => "<unknown>".into(),
        };
        let ports: Vec<String> = arr(&spec["ports"])
            .iter()
            .map(|p| {
                let proto = p["protocol"].as_str().unwrap_or("TCP");
                match p["nodePort"].as_i64() {
                    Some(np) if np > 0 => format!("{}:{np}/{proto}", int(&p["port"])),
                    _ => format!("{}/{proto}", int(&p["port"])),
                }
            })
            .collect();
        vec![
            name(obj),
            json!(ty),
            json!(or_none(s(&spec["clusterIP"]))),
            json!(external),
            json!(or_none(&ports.join(","))),
            age(obj, now),
            json!(format_labels(&spec["selector"])),
        ]
    }
}
