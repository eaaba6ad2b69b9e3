//! networking.k8s.io/v1 IngressClass: which controller implements an Ingress.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::networking::v1::IngressClass>(NONE, Kind)
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
        serde_json::json!({"spec": {"controller": "example.com/ingress"}})
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        ingressclass(obj, old, errs);
    }

    fn ingressclass(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        let c = &obj["spec"]["controller"];
        let cs = s(c);
        if cs.is_empty() {
            errs.push(required("spec.controller", ""));
        } else if cs.len() > 250 {
            errs.push(too_long("spec.controller", 250));
        }
        if let Some(old) = old {
            immutable(c, Some(&old["spec"]["controller"]), "spec.controller", errs);
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
                "Controller",
                "string",
                0,
                "Controller that is responsible for handling this class",
            ),
            c(
                "Parameters",
                "string",
                0,
                "A reference to a resource with additional parameters",
            ),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let p = &obj["spec"]["parameters"];
        let params = if p.is_object() {
            let group = s(&p["apiGroup"]);
            if group.is_empty() {
                format!("{}/{}", s(&p["kind"]), s(&p["name"]))
            } else {
                format!("{}.{group}/{}", s(&p["kind"]), s(&p["name"]))
            }
        } else {
            "<none>".into()
        };
        vec![
            name(obj),
            json!(s(&obj["spec"]["controller"])),
            json!(params),
            age(obj, now),
        ]
    }
}
