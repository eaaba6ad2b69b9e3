//! core/v1 LimitRange: per-object resource limits and defaults in a namespace.

use super::{Facts, Strategy, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::LimitRange>(
        Facts {
            short: &["limits"],
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
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        limitrange(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        limitrange(obj, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::Value;

    pub(super) fn columns() -> Vec<Col> {
        vec![NAME, CREATED_AT]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        created_at_row(obj, now)
    }
}
