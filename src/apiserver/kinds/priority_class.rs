//! scheduling.k8s.io/v1 PriorityClass: a named pod priority.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::scheduling::v1::PriorityClass>(
        Facts {
            short: &["pc"],
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
        serde_json::json!({"value": 1000})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        set(obj, &["preemptionPolicy"], json!("PreemptLowerPriority"));
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        priorityclass(obj, old, errs);
    }

    fn priorityclass(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        let name = s(&obj["metadata"]["name"]);
        let value = obj["value"].as_i64().unwrap_or(0);
        let system = name == "system-node-critical" || name == "system-cluster-critical";
        if name.starts_with("system-") && !system {
            errs.push(invalid(
                "metadata.name",
                &obj["metadata"]["name"],
                "priority class names with 'system-' prefix are reserved",
            ));
        }
        if value > HIGHEST_USER_PRIORITY && !system {
            errs.push(forbidden(
                "value",
                "maximum allowed value of a user defined priority is 1000000000",
            ));
        }
        match s(&obj["preemptionPolicy"]) {
            "" | "Never" | "PreemptLowerPriority" => {}
            _ => errs.push(not_supported(
                "preemptionPolicy",
                &obj["preemptionPolicy"],
                &["Never", "PreemptLowerPriority"],
            )),
        }
        if let Some(old) = old {
            if obj["value"] != old["value"] {
                errs.push(forbidden("value", "may not be changed in an update."));
            }
            immutable(
                &obj["preemptionPolicy"],
                Some(&old["preemptionPolicy"]),
                "preemptionPolicy",
                errs,
            );
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
                c("Value", "integer", 0, "value represents the integer value of this priority class."),
                c("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
                c("Preemption Policy", "string", 0, "preemptionPolicy is the Policy for preempting pods with lower priority."),
                AGE,
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        vec![
            name(obj),
            json!(int(&obj["value"])),
            json!(obj["globalDefault"].as_bool().unwrap_or(false)),
            json!(obj["preemptionPolicy"]
                .as_str()
                .unwrap_or("PreemptLowerPriority")),
            age(obj, now),
        ]
    }
}
