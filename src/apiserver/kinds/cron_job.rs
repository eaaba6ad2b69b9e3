//! batch/v1 CronJob: Jobs on a schedule.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::batch::v1::CronJob>(
        Facts {
            short: &["cj"],
            cats: ALL,
            status: true,
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
        serde_json::json!({"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "min"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        cronjob(obj);
    }
}

mod validation {

    use crate::apiserver::validation::kinds::*;

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        cronjob(obj, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
                c("Timezone", "string", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
                c("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
                c("Active", "integer", 0, "A list of pointers to currently running jobs."),
                c("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
                AGE,
                CONTAINERS,
                IMAGES,
                SELECTOR,
            ]
    }

    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let suspend = match spec["suspend"].as_bool() {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = if obj["status"]["lastScheduleTime"].is_string() {
            since(&obj["status"]["lastScheduleTime"], now)
        } else {
            "<none>".into()
        };
        let job_spec = &spec["jobTemplate"]["spec"];
        let (cs, imgs) = containers_images(&job_spec["template"]["spec"]);
        let selector = if job_spec["selector"].is_object() {
            label_selector_string(&job_spec["selector"])
        } else {
            "<none>".into()
        };
        vec![
            name(obj),
            json!(s(&spec["schedule"])),
            json!(or_none(s(&spec["timeZone"]))),
            json!(suspend),
            json!(arr(&obj["status"]["active"]).len()),
            json!(last),
            age(obj, now),
            cs,
            imgs,
            json!(selector),
        ]
    }
}
