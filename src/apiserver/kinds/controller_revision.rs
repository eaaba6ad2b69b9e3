//! apps/v1 ControllerRevision: a saved revision of a StatefulSet's or DaemonSet's template.

use super::{Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::apps::v1::ControllerRevision>(NONE, Kind)
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

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        controllerrevision(obj, old, errs);
    }

    fn controllerrevision(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
        non_negative(&obj["revision"], "revision", errs);
        if let Some(old) = old {
            immutable(&obj["data"], Some(&old["data"]), "data", errs);
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
            c("Controller", "string", 0, "Controller of the object"),
            c(
                "Revision",
                "integer",
                0,
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ]
    }

    /// "kind.group/name" of the controlling owner, as `kubectl get controllerrevisions` shows it.
    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let controller = arr(&obj["metadata"]["ownerReferences"])
            .iter()
            .find(|o| o["controller"].as_bool() == Some(true))
            .map(|o| {
                let group = s(&o["apiVersion"])
                    .rsplit_once('/')
                    .map(|(g, _)| g)
                    .unwrap_or("");
                let kind = s(&o["kind"]).to_lowercase();
                if group.is_empty() {
                    format!("{kind}/{}", s(&o["name"]))
                } else {
                    format!("{kind}.{group}/{}", s(&o["name"]))
                }
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            name(obj),
            json!(controller),
            json!(int(&obj["revision"])),
            age(obj, now),
        ]
    }
}
