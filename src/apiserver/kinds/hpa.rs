//! autoscaling HorizontalPodAutoscaler, served as v2 (stored) and v1 (converted): scales a
//! workload between bounds on its metrics. Both versions have the same rules.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::conversion::Converted;
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::{c, Col, AGE, NAME};
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// autoscaling/v2, the preferred and stored version.
pub fn v2() -> ResourceInfo {
    super::entry::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(
        Facts {
            short: &["hpa"],
            cats: ALL,
            status: true,
            ..NONE
        },
        Kind,
    )
}

/// autoscaling/v1, converted to and from v2.
pub fn v1() -> ResourceInfo {
    super::entry::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>(
        Facts {
            short: &["hpa"],
            cats: ALL,
            status: true,
            converted: Some(Converted::HpaV1),
            ..NONE
        },
        Kind,
    )
}

struct Kind;

impl Strategy for Kind {
    fn defaults(&self, obj: &mut Value) {
        crate::apiserver::defaults::hpa(obj)
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>, errs: &mut Vec<FieldError>) {
        crate::apiserver::validation::kinds::hpa(obj, errs)
    }

    #[rustfmt::skip]
    fn columns(&self) -> Vec<Col> {
        vec![
            NAME,
            c("Reference", "string", 0, "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource."),
            c("Targets", "string", 0, "metrics contains the specifications for which to use to calculate the desired replica count."),
            c("MinPods", "string", 0, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down."),
            c("MaxPods", "integer", 0, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up."),
            c("Replicas", "integer", 0, "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
            AGE,
        ]
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        crate::apiserver::table::hpa_row(obj, now)
    }

    fn minimal(&self) -> Value {
        serde_json::json!({"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
            "name": "d"}, "maxReplicas": 2}})
    }
}
