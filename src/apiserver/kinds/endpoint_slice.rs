//! discovery.k8s.io/v1 EndpointSlice: a slice of a Service's endpoints.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::discovery::v1::EndpointSlice>(NONE, Kind)
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
        serde_json::json!({"addressType": "IPv4", "endpoints": []})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        for port in items_mut(at(obj, &["ports"])) {
            set(port, &["protocol"], json!("TCP"));
            set(port, &["name"], json!(""));
        }
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;
    use crate::apiserver::validation::names::{self, port_num_error};
    use crate::apiserver::validation::pods::validate_protocol;
    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        endpointslice(obj, old, errs);
    }

    fn endpointslice(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        let at = &obj["addressType"];
        one_of("addressType", at, &["FQDN", "IPv4", "IPv6"], errs);
        for (i, e) in arr(&obj["endpoints"]).iter().enumerate() {
            let addrs = arr(&e["addresses"]);
            if addrs.is_empty() {
                errs.push(required(
                    &format!("endpoints[{i}].addresses"),
                    "must contain at least 1 address",
                ));
            }
            for (j, a) in addrs.iter().enumerate() {
                let bad = match s(at) {
                    "IPv4" => s(a).parse::<std::net::Ipv4Addr>().is_err(),
                    "IPv6" => s(a).parse::<std::net::Ipv6Addr>().is_err(),
                    _ => !names::dns1123_subdomain(s(a)).is_empty(),
                };
                if bad {
                    errs.push(invalid(
                        &format!("endpoints[{i}].addresses[{j}]"),
                        a,
                        &format!("must be a valid {} address", s(at)),
                    ));
                }
            }
        }
        for (i, p) in arr(&obj["ports"]).iter().enumerate() {
            if let Some(n) = p["port"].as_i64() {
                if !(1..=65535).contains(&n) {
                    errs.push(invalid(
                        &format!("ports[{i}].port"),
                        &p["port"],
                        port_num_error(),
                    ));
                }
            }
            if !p["protocol"].is_null() {
                validate_protocol(&p["protocol"], &format!("ports[{i}].protocol"), errs);
            }
        }
        if let Some(old) = old {
            immutable(at, Some(&old["addressType"]), "addressType", errs);
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
                "AddressType",
                "string",
                0,
                "addressType specifies the type of address carried by this EndpointSlice.",
            ),
            c(
                "Ports",
                "string",
                0,
                "ports specifies the list of network ports exposed by each endpoint in this slice.",
            ),
            c(
                "Endpoints",
                "string",
                0,
                "endpoints is a list of unique endpoints in this slice.",
            ),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let ports: Vec<String> = arr(&obj["ports"])
            .iter()
            .map(|p| match p["port"].as_i64() {
                Some(n) => n.to_string(),
                None => "<unset>".into(),
            })
            .collect();
        let ports = if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        };
        let addrs: Vec<String> = arr(&obj["endpoints"])
            .iter()
            .flat_map(|e| arr(&e["addresses"]).iter().map(|a| s(a).to_string()))
            .collect();
        let count = addrs.len();
        vec![
            name(obj),
            json!(s(&obj["addressType"])),
            json!(ports),
            json!(abbreviate(addrs, count)),
            age(obj, now),
        ]
    }
}
