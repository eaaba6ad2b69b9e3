//! batch/v1 Job: pods run to completion.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::batch::v1::Job>(
        Facts {
            cats: ALL,
            status: true,
            fields: &["status.successful"],
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
        serde_json::json!({"spec": {"template": {"metadata": {"labels": {"app": "min"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        job(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        job(obj, old, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
            NAME,
            c("Status", "string", 0, "Status of the job."),
            c(
                "Completions",
                "string",
                0,
                "The number of pods which reached phase Succeeded.",
            ),
            c(
                "Duration",
                "string",
                0,
                "Time required to complete the job.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let st = &obj["status"];
        let succeeded = int(&st["succeeded"]);
        let completions = if let Some(n) = spec["completions"].as_i64() {
            format!("{succeeded}/{n}")
        } else {
            let parallelism = int(&spec["parallelism"]);
            if parallelism > 1 {
                format!("{succeeded}/1 of {parallelism}")
            } else {
                format!("{succeeded}/1")
            }
        };
        let duration = match (
            parse_time(&st["startTime"]),
            parse_time(&st["completionTime"]),
        ) {
            (None, _) => String::new(),
            (Some(start), None) => human_duration(now - start),
            (Some(start), Some(end)) => human_duration(end - start),
        };
        let status = if has_condition(st, "Complete") {
            "Complete"
        } else if has_condition(st, "Failed") {
            "Failed"
        } else if obj["metadata"]["deletionTimestamp"].is_string() {
            "Terminating"
        } else if has_condition(st, "Suspended") {
            "Suspended"
        } else if has_condition(st, "FailureTarget") {
            "FailureTarget"
        } else if has_condition(st, "SuccessCriteriaMet") {
            "SuccessCriteriaMet"
        } else {
            "Running"
        };
        let (cs, imgs) = containers_images(&spec["template"]["spec"]);
        vec![
            name(obj),
            json!(status),
            json!(completions),
            json!(duration),
            age(obj, now),
            cs,
            imgs,
            json!(label_selector_string(&spec["selector"])),
        ]
    }
}
