//! networking.k8s.io/v1 IPAddress: one Service cluster IP in use, named by the address, with
//! the Service holding it in `spec.parentRef`. The Service allocator (`allocation/`) writes
//! them; they are served so `kubectl get ipaddresses` shows what is taken.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::{FieldError, NameRule};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::networking::v1::IPAddress>(
        Facts {
            short: &["ip"],
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

    fn name_rule(&self) -> NameRule {
        // The name is an address; `validation::check` says which.
        NameRule::PathSegment
    }

    fn columns(&self) -> Vec<Col> {
        printer::columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        printer::row(obj, now)
    }

    fn minimal(&self) -> Value {
        serde_json::json!({"metadata": {"name": "192.0.2.1"},
            "spec": {"parentRef": {"resource": "services", "namespace": "default", "name": "x"}}})
    }
}

mod validation {
    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        let name = &obj["metadata"]["name"];
        let canonical = name
            .as_str()
            .and_then(|n| n.parse::<std::net::IpAddr>().ok().map(|ip| ip.to_string()))
            .is_some_and(|c| Some(c.as_str()) == name.as_str());
        if !canonical {
            errs.push(invalid(
                "metadata.name",
                name,
                "must be a canonical format IP address",
            ));
        }
        let parent = &obj["spec"]["parentRef"];
        if !parent.is_object() {
            errs.push(required("spec.parentRef", ""));
        } else {
            for f in ["resource", "name"] {
                if parent[f].as_str().unwrap_or("").is_empty() {
                    errs.push(required(&format!("spec.parentRef.{f}"), ""));
                }
            }
        }
        if let Some(old) = old {
            if old["spec"]["parentRef"] != *parent {
                errs.push(invalid("spec.parentRef", parent, "field is immutable"));
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
                "ParentRef",
                "string",
                0,
                "The object this address is held by.",
            ),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let p = &obj["spec"]["parentRef"];
        let group = p["group"].as_str().filter(|g| !g.is_empty());
        let resource = match group {
            Some(g) => format!("{}.{g}", s(&p["resource"])),
            None => s(&p["resource"]).to_string(),
        };
        let parent = format!("{resource}/{}/{}", s(&p["namespace"]), s(&p["name"]));
        vec![name(obj), json!(parent), age(obj, now)]
    }
}
