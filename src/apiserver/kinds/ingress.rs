//! networking.k8s.io/v1 Ingress: HTTP routes to Services.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::networking::v1::Ingress>(
        Facts {
            short: &["ing"],
            status: true,
            ..NONE
        },
        Kind,
    )
}

struct Kind;

impl Strategy for Kind {
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
        serde_json::json!({"spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}}})
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;
    use crate::apiserver::validation::names::{self};

    use crate::apiserver::validation::*;
    use serde_json::{json, Value};

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        ingress(obj, errs);
    }

    fn ingress(obj: &Value, errs: &mut Errs) {
        let spec = &obj["spec"];
        if spec["defaultBackend"].is_object() {
            ingress_backend(&spec["defaultBackend"], "spec.defaultBackend", errs);
        } else if arr(&spec["rules"]).is_empty() {
            errs.push(invalid(
                "spec.rules",
                &json!([]),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        for (i, r) in arr(&spec["rules"]).iter().enumerate() {
            let rpath = format!("spec.rules[{i}]");
            let host = s(&r["host"]);
            if !host.is_empty() {
                let check = host.strip_prefix("*.").unwrap_or(host);
                for msg in names::dns1123_subdomain(check) {
                    errs.push(invalid(&format!("{rpath}.host"), &r["host"], &msg));
                }
            }
            let http = &r["http"];
            if http.is_object() && arr(&http["paths"]).is_empty() {
                errs.push(required(&format!("{rpath}.http.paths"), ""));
            }
            for (j, p) in arr(&http["paths"]).iter().enumerate() {
                let ppath = format!("{rpath}.http.paths[{j}]");
                match s(&p["pathType"]) {
                    "Exact" | "Prefix" => {
                        if !s(&p["path"]).starts_with('/') {
                            errs.push(invalid(
                                &format!("{ppath}.path"),
                                &p["path"],
                                "must be an absolute path",
                            ));
                        }
                    }
                    "ImplementationSpecific" => {
                        let path = s(&p["path"]);
                        if !path.is_empty() && !path.starts_with('/') {
                            errs.push(invalid(
                                &format!("{ppath}.path"),
                                &p["path"],
                                "must be an absolute path",
                            ));
                        }
                    }
                    "" => errs.push(required(
                        &format!("{ppath}.pathType"),
                        "pathType must be specified",
                    )),
                    _ => errs.push(not_supported(
                        &format!("{ppath}.pathType"),
                        &p["pathType"],
                        &["Exact", "ImplementationSpecific", "Prefix"],
                    )),
                }
                ingress_backend(&p["backend"], &format!("{ppath}.backend"), errs);
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
            c(
                "Class",
                "string",
                0,
                "ingressClassName is the name of an IngressClass cluster resource.",
            ),
            c(
                "Hosts",
                "string",
                0,
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            c(
                "Address",
                "string",
                0,
                "Address is a list containing ingress points for the load-balancer",
            ),
            c(
                "Ports",
                "string",
                0,
                "Ports of TLS configurations that open",
            ),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let rules = arr(&spec["rules"]);
        let hosts: Vec<&str> = rules
            .iter()
            .map(|r| s(&r["host"]))
            .filter(|h| !h.is_empty())
            .take(3)
            .collect();
        let hosts = if hosts.is_empty() {
            "*".to_string()
        } else if rules.len() > 3 {
            format!("{} + {} more...", hosts.join(","), rules.len() - 3)
        } else {
            hosts.join(",")
        };
        let ports = if arr(&spec["tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            name(obj),
            json!(or_none(s(&spec["ingressClassName"]))),
            json!(hosts),
            json!(lb_ingress(&obj["status"]["loadBalancer"])),
            json!(ports),
            age(obj, now),
        ]
    }
}
