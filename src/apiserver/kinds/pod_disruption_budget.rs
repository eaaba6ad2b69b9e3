//! policy/v1 PodDisruptionBudget: how many pods of a set may be down for voluntary disruptions.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(
        Facts {
            short: &["pdb"],
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
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        pdb(obj, errs);
    }

    fn pdb(obj: &Value, errs: &mut Errs) {
        let spec = &obj["spec"];
        if !spec["minAvailable"].is_null() && !spec["maxUnavailable"].is_null() {
            errs.push(invalid(
                "spec",
                spec,
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        int_or_percent(&spec["minAvailable"], "spec.minAvailable", errs);
        int_or_percent(&spec["maxUnavailable"], "spec.maxUnavailable", errs);
        if spec["selector"].is_object() {
            label_selector(&spec["selector"], "spec.selector", errs);
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
                c("Min Available", "string", 0, "The minimum number of pods that must be available simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
                c("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable simultaneously.  This can be either an integer or a string specifying a percentage, e.g. \"28%\"."),
                c("Allowed Disruptions", "integer", 0, "Number of pod disruptions that are currently allowed."),
                AGE,
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let na = |v: &Value| int_or_string(v).unwrap_or_else(|| "N/A".into());
        vec![
            name(obj),
            json!(na(&obj["spec"]["minAvailable"])),
            json!(na(&obj["spec"]["maxUnavailable"])),
            json!(int(&obj["status"]["disruptionsAllowed"])),
            age(obj, now),
        ]
    }
}
