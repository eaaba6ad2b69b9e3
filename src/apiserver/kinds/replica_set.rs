//! apps/v1 ReplicaSet: a number of pods from one template.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::apps::v1::ReplicaSet>(
        Facts {
            short: &["rs"],
            cats: ALL,
            status: true,
            scale: true,
            fields: &["status.replicas"],
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
        serde_json::json!({"spec": {"selector": {"matchLabels": {"app": "min"}}, "template": {"metadata": {"labels": {"app": "min"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        set(obj, &["spec", "replicas"], json!(1));
        pod_template(at(obj, &["spec", "template"]));
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        replicated(obj, old, "replicaset", errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("Desired", "integer", 0, "Replicas is the number of desired pods."),
                c("Current", "integer", 0, "Replicas is the most recently observed number of non-terminating pods."),
                c("Ready", "integer", 0, "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let st = &obj["status"];
        let (cs, imgs) = containers_images(&obj["spec"]["template"]["spec"]);
        vec![
            name(obj),
            json!(int(&obj["spec"]["replicas"])),
            json!(int(&st["replicas"])),
            json!(int(&st["readyReplicas"])),
            age(obj, now),
            cs,
            imgs,
            json!(label_selector_string(&obj["spec"]["selector"])),
        ]
    }
}
