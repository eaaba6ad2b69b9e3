//! core/v1 PodTemplate: a stored pod template.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::PodTemplate>(NONE, Kind)
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
        serde_json::json!({"template": {"metadata": {"labels": {"app": "min"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        pod_template(at(obj, &["template"]));
    }
}

mod validation {

    use crate::apiserver::validation::pods::validate_pod_template;
    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        validate_pod_template(&obj["template"], "template", errs);
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
                "Containers",
                "string",
                0,
                "Names of each container in the template.",
            ),
            c(
                "Images",
                "string",
                0,
                "Images referenced by each container in the template.",
            ),
            c(
                "Pod Labels",
                "string",
                0,
                "The labels for the pod template.",
            ),
        ]
    }

    pub(super) fn row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
        let (cs, imgs) = containers_images(&obj["template"]["spec"]);
        vec![
            name(obj),
            cs,
            imgs,
            json!(format_labels(&obj["template"]["metadata"]["labels"])),
        ]
    }
}
