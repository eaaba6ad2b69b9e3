//! core/v1 ResourceQuota: limits on a namespace's total resource use.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::ResourceQuota>(
        Facts {
            short: &["quota"],
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
    use crate::apiserver::defaults::parse_quantity;
    use crate::apiserver::validation::kinds::*;
    use crate::apiserver::validation::names::{self};

    use crate::apiserver::validation::*;
    use serde_json::{json, Value};

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        resourcequota(obj, errs);
    }

    fn resourcequota(obj: &Value, errs: &mut Errs) {
        for part in ["hard"] {
            if let Some(m) = obj["spec"][part].as_object() {
                for (k, q) in m {
                    if parse_quantity(q).is_none() {
                        errs.push(invalid(
                            &format!("spec.{part}[{k}]"),
                            q,
                            "must be a valid quantity",
                        ));
                    }
                    for msg in names::qualified_name(k) {
                        errs.push(invalid(&format!("spec.{part}[{k}]"), &json!(k), &msg));
                    }
                }
            }
        }
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};
    use std::collections::BTreeMap;

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                AGE,
                c("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
                c("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let hard = obj["status"]["hard"].as_object();
        let used = &obj["status"]["used"];
        let mut requests = Vec::new();
        let mut limits = Vec::new();
        if let Some(hard) = hard {
            let sorted: BTreeMap<_, _> = hard.iter().collect();
            for (res, q) in sorted {
                let used_q = used[res.as_str()].as_str().unwrap_or("0");
                let text = format!("{res}: {used_q}/{}", s(q));
                if res.starts_with("limits") {
                    limits.push(text);
                } else {
                    requests.push(text);
                }
            }
        }
        vec![
            name(obj),
            age(obj, now),
            json!(requests.join(", ")),
            json!(limits.join(", ")),
        ]
    }
}
