//! core/v1 Event and events.k8s.io/v1 Event: one set of objects (stored as core/v1 Events and
//! converted), one printer; only the events.k8s.io form has rules of its own.

use super::{Facts, Strategy, NONE};
use crate::apiserver::conversion::Converted;
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::{c, Col, NAME};
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// core/v1 Event.
pub fn core() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Event>(
        Facts {
            short: &["ev"],
            fields: &[
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            ..NONE
        },
        Core,
    )
}

/// events.k8s.io/v1 Event: the core/v1 Events, converted.
pub fn events_v1() -> ResourceInfo {
    super::entry::<k8s_openapi::api::events::v1::Event>(
        Facts {
            short: &["ev"],
            stored_with: Some("core"),
            converted: Some(Converted::EventsV1),
            ..NONE
        },
        EventsV1,
    )
}

struct Core;

impl Strategy for Core {
    fn columns(&self) -> Vec<Col> {
        columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        crate::apiserver::table::event_row(obj, now)
    }
}

struct EventsV1;

impl Strategy for EventsV1 {
    fn validate(&self, obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        crate::apiserver::validation::kinds::new_event(obj, errs)
    }

    fn columns(&self) -> Vec<Col> {
        columns()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        crate::apiserver::table::event_row(obj, now)
    }

    fn minimal(&self) -> Value {
        serde_json::json!({"eventTime": "2024-05-01T12:00:00.000000Z",
            "reportingController": "example.com/min", "reportingInstance": "min-1",
            "action": "Test", "reason": "Test", "type": "Normal"})
    }
}

#[rustfmt::skip]
fn columns() -> Vec<Col> {
    vec![
        c("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
        c("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
        c("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        c("Object", "string", 0, "The object that this event is about."),
        c("Subobject", "string", 1, "The field of the object that this event is about."),
        c("Source", "string", 1, "The component reporting this event."),
        c("Message", "string", 0, "A human-readable description of the status of this operation."),
        c("First Seen", "string", 1, "The time at which the event was first recorded."),
        c("Count", "string", 1, "The number of times this event has occurred."),
        Col { priority: 1, ..NAME },
    ]
}
