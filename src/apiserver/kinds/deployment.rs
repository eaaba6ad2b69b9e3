//! apps/v1 Deployment: a replicated pod template rolled out through ReplicaSets.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::apps::v1::Deployment>(
        Facts {
            short: &["deploy"],
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
        serde_json::json!({"spec": {"selector": {"matchLabels": {"app": "min"}}, "template": {"metadata": {"labels": {"app": "min"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::{json, Value};

    pub(super) fn apply(obj: &mut Value) {
        set(obj, &["spec", "replicas"], json!(1));
        set(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
        if obj["spec"]["strategy"]["type"] == "RollingUpdate" {
            set(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                json!("25%"),
            );
            set(
                obj,
                &["spec", "strategy", "rollingUpdate", "maxSurge"],
                json!("25%"),
            );
        }
        set(obj, &["spec", "revisionHistoryLimit"], json!(10));
        set(obj, &["spec", "progressDeadlineSeconds"], json!(600));
        pod_template(at(obj, &["spec", "template"]));
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        replicated(obj, old, "deployment", errs);
        let spec = &obj["spec"];
        let strategy = &spec["strategy"];
        match s(&strategy["type"]) {
            "RollingUpdate" => {
                let ru = &strategy["rollingUpdate"];
                let unavailable = int_or_percent(
                    &ru["maxUnavailable"],
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    errs,
                );
                let surge = int_or_percent(
                    &ru["maxSurge"],
                    "spec.strategy.rollingUpdate.maxSurge",
                    errs,
                );
                if unavailable == Some(0.0) && surge == Some(0.0) {
                    errs.push(invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        &ru["maxUnavailable"],
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
            "Recreate" => {
                if !strategy["rollingUpdate"].is_null() {
                    errs.push(forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "" => errs.push(required("spec.strategy.type", "")),
            _ => errs.push(not_supported(
                "spec.strategy.type",
                &strategy["type"],
                &["Recreate", "RollingUpdate"],
            )),
        }
        non_negative(
            &spec["revisionHistoryLimit"],
            "spec.revisionHistoryLimit",
            errs,
        );
        if let Some(pd) = spec["progressDeadlineSeconds"].as_i64() {
            if pd <= spec["minReadySeconds"].as_i64().unwrap_or(0) {
                errs.push(invalid(
                    "spec.progressDeadlineSeconds",
                    &spec["progressDeadlineSeconds"],
                    "must be greater than minReadySeconds",
                ));
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
                c("Ready", "string", 0, "Number of the pod with ready state"),
                c("Up-to-date", "integer", 0, "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
                c("Available", "integer", 0, "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
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
            json!(format!(
                "{}/{}",
                int(&st["readyReplicas"]),
                int(&obj["spec"]["replicas"])
            )),
            json!(int(&st["updatedReplicas"])),
            json!(int(&st["availableReplicas"])),
            age(obj, now),
            cs,
            imgs,
            json!(label_selector_string(&obj["spec"]["selector"])),
        ]
    }
}
