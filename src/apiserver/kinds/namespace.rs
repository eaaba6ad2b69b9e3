//! core/v1 Namespace: a scope for names, finalized before it goes.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::{FieldError, NameRule};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Namespace>(
        Facts {
            short: &["ns"],
            status: true,
            fields: &["status.phase"],
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

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn initial_status(&self, obj: &mut Value) {
        obj["status"] = serde_json::json!({"phase": "Active"});
        if obj["spec"]["finalizers"].is_null() {
            obj["spec"]["finalizers"] = serde_json::json!(["kubernetes"]);
        }
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        namespace(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        namespace(obj, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
            NAME,
            c("Status", "string", 0, "The status of the namespace"),
            AGE,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![name(obj), json!(s(&obj["status"]["phase"])), age(obj, now)]
    }
}
