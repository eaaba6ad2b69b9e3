//! apps/v1 StatefulSet: pods with stable names and storage, in order.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::apps::v1::StatefulSet>(
        Facts {
            short: &["sts"],
            cats: ALL,
            status: true,
            scale: true,
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
        serde_json::json!({"spec": {"selector": {"matchLabels": {"app": "min"}}, "serviceName": "min", "template": {"metadata": {"labels": {"app": "min"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        statefulset(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        statefulset(obj, old, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
            NAME,
            c("Ready", "string", 0, "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let (cs, imgs) = containers_images(&obj["spec"]["template"]["spec"]);
        vec![
            name(obj),
            json!(format!(
                "{}/{}",
                int(&obj["status"]["readyReplicas"]),
                int(&obj["spec"]["replicas"])
            )),
            age(obj, now),
            cs,
            imgs,
        ]
    }
}
