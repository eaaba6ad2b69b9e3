//! core/v1 Endpoints: the addresses and ports behind a Service.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Endpoints>(
        Facts {
            short: &["ep"],
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
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        for subset in items_mut(at(obj, &["subsets"])) {
            for port in items_mut(at(subset, &["ports"])) {
                set(port, &["protocol"], json!("TCP"));
            }
        }
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;
    use crate::apiserver::validation::names::port_num_error;
    use crate::apiserver::validation::pods::validate_protocol;
    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        endpoints(obj, errs);
    }

    fn endpoints(obj: &Value, errs: &mut Errs) {
        for (i, ss) in arr(&obj["subsets"]).iter().enumerate() {
            for list in ["addresses", "notReadyAddresses"] {
                for (j, a) in arr(&ss[list]).iter().enumerate() {
                    if !is_ip(s(&a["ip"])) {
                        errs.push(invalid(
                            &format!("subsets[{i}].{list}[{j}].ip"),
                            &a["ip"],
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        ));
                    }
                }
            }
            for (j, p) in arr(&ss["ports"]).iter().enumerate() {
                let path = format!("subsets[{i}].ports[{j}]");
                if !(1..=65535).contains(&p["port"].as_i64().unwrap_or(0)) {
                    errs.push(invalid(
                        &format!("{path}.port"),
                        &p["port"],
                        port_num_error(),
                    ));
                }
                validate_protocol(&p["protocol"], &format!("{path}.protocol"), errs);
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
            c("Endpoints", "string", 0, "Endpoints of the service"),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut list = Vec::new();
        let mut count = 0;
        for ss in arr(&obj["subsets"]) {
            let addrs = arr(&ss["addresses"]);
            let ports = arr(&ss["ports"]);
            if ports.is_empty() {
                count += addrs.len();
                list.extend(addrs.iter().map(|a| s(&a["ip"]).to_string()));
                continue;
            }
            for p in ports {
                count += addrs.len();
                list.extend(
                    addrs
                        .iter()
                        .map(|a| join_host_port(s(&a["ip"]), int(&p["port"]))),
                );
            }
        }
        vec![name(obj), json!(abbreviate(list, count)), age(obj, now)]
    }
}
