//! core/v1 Pod: containers run together on one node.

use super::{Facts, Strategy, ALL, NONE};
use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::table::Col;
use crate::apiserver::validation::FieldError;
use chrono::{DateTime, Utc};
use serde_json::Value;

pub fn info() -> ResourceInfo {
    super::entry::<k8s_openapi::api::core::v1::Pod>(
        Facts {
            short: &["po"],
            cats: ALL,
            status: true,
            fields: &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
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
        serde_json::json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    }

    fn initial_status(&self, obj: &mut Value) {
        obj["status"] = serde_json::json!({"phase": "Pending"})
    }
}

mod defaults {
    use crate::apiserver::defaults::*;
    use serde_json::Value;

    pub(super) fn apply(obj: &mut Value) {
        pod(obj);
    }
}

mod validation {

    use crate::apiserver::validation::*;
    use serde_json::Value;

    pub(super) fn check(obj: &Value, old: Option<&Value>, errs: &mut Vec<FieldError>) {
        pods::validate_pod(obj, old, errs);
    }
}

mod printer {
    use crate::apiserver::table::*;
    use chrono::{DateTime, Utc};
    use serde_json::{json, Value};

    pub(super) fn columns() -> Vec<Col> {
        vec![
                NAME,
                c("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
                c("Status", "string", 0, "The aggregate status of the containers in this pod."),
                c("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
                AGE,
                c("IP", "string", 1, "podIP is the IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
                c("Node", "string", 1, "NodeName indicates in which node this pod is scheduled."),
                c("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
                c("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
            ]
    }

    /// The STATUS column of `kubectl get pods`, computed as kubectl's printer does: the phase, or
    /// the reason of the first failing init container ("Init:1/2", "Init:CrashLoopBackOff"), or
    /// the last waiting/terminated reason of the app containers ("ContainerCreating",
    /// "CrashLoopBackOff", "Completed"), or "Terminating" once deletion started.
    pub(super) fn row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let spec = &obj["spec"];
        let status = &obj["status"];
        let mut restarts = 0i64;
        let mut ready = 0;
        let mut total = arr(&spec["containers"]).len();
        let mut last_restart: Option<DateTime<Utc>> = None;
        let mut reason = s(&status["phase"]).to_string();
        if !s(&status["reason"]).is_empty() {
            reason = s(&status["reason"]).to_string();
        }
        for cond in arr(&status["conditions"]) {
            if s(&cond["type"]) == "PodScheduled" && s(&cond["reason"]) == "SchedulingGated" {
                reason = "SchedulingGated".into();
            }
        }
        let init_specs = arr(&spec["initContainers"]);
        total += init_specs
            .iter()
            .filter(|c| s(&c["restartPolicy"]) == "Always")
            .count();

        let mut sidecar_restarts = 0i64;
        let mut sidecar_last_restart: Option<DateTime<Utc>> = None;
        let mut initializing = false;
        for (i, cs) in arr(&status["initContainerStatuses"]).iter().enumerate() {
            restarts += int(&cs["restartCount"]);
            let finished = parse_time(&cs["lastState"]["terminated"]["finishedAt"]);
            last_restart = latest(last_restart, finished);
            let sidecar = restartable_init(spec, s(&cs["name"]));
            if sidecar {
                sidecar_restarts += int(&cs["restartCount"]);
                sidecar_last_restart = latest(sidecar_last_restart, finished);
            }
            let terminated = &cs["state"]["terminated"];
            let waiting_reason = s(&cs["state"]["waiting"]["reason"]);
            if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
                continue;
            }
            if sidecar && cs["started"].as_bool() == Some(true) {
                if cs["ready"].as_bool() == Some(true) {
                    ready += 1;
                }
                continue;
            }
            if terminated.is_object() {
                reason = if !s(&terminated["reason"]).is_empty() {
                    format!("Init:{}", s(&terminated["reason"]))
                } else if int(&terminated["signal"]) != 0 {
                    format!("Init:Signal:{}", int(&terminated["signal"]))
                } else {
                    format!("Init:ExitCode:{}", int(&terminated["exitCode"]))
                };
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                reason = format!("Init:{waiting_reason}");
            } else {
                reason = format!("Init:{i}/{}", init_specs.len());
            }
            initializing = true;
            break;
        }

        if !initializing || has_condition(status, "Initialized") {
            restarts = sidecar_restarts;
            last_restart = sidecar_last_restart;
            let mut has_running = false;
            for cs in arr(&status["containerStatuses"]).iter().rev() {
                restarts += int(&cs["restartCount"]);
                last_restart = latest(
                    last_restart,
                    parse_time(&cs["lastState"]["terminated"]["finishedAt"]),
                );
                let waiting = &cs["state"]["waiting"];
                let terminated = &cs["state"]["terminated"];
                if !s(&waiting["reason"]).is_empty() {
                    reason = s(&waiting["reason"]).into();
                } else if !s(&terminated["reason"]).is_empty() {
                    reason = s(&terminated["reason"]).into();
                } else if terminated.is_object() {
                    reason = if int(&terminated["signal"]) != 0 {
                        format!("Signal:{}", int(&terminated["signal"]))
                    } else {
                        format!("ExitCode:{}", int(&terminated["exitCode"]))
                    };
                } else if cs["ready"].as_bool() == Some(true) && cs["state"]["running"].is_object()
                {
                    has_running = true;
                    ready += 1;
                }
            }
            if reason == "Completed" && has_running {
                reason = if has_condition(status, "Ready") {
                    "Running".into()
                } else {
                    "NotReady".into()
                };
            }
        }

        let phase = s(&status["phase"]);
        if obj["metadata"]["deletionTimestamp"].is_string() {
            if s(&status["reason"]) == "NodeLost" {
                reason = "Unknown".into();
            } else if phase != "Succeeded" && phase != "Failed" {
                reason = "Terminating".into();
            }
        }

        let restarts_cell = match last_restart {
            Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
            _ => restarts.to_string(),
        };
        let ip = arr(&status["podIPs"])
            .first()
            .map(|p| s(&p["ip"]))
            .unwrap_or_else(|| s(&status["podIP"]));
        let gates = arr(&spec["readinessGates"]);
        let gates_cell = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let true_count = gates
                .iter()
                .filter(|g| has_condition(status, s(&g["conditionType"])))
                .count();
            format!("{true_count}/{}", gates.len())
        };
        vec![
            name(obj),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            age(obj, now),
            json!(or_none(ip)),
            json!(or_none(s(&spec["nodeName"]))),
            json!(or_none(s(&status["nominatedNodeName"]))),
            json!(gates_cell),
        ]
    }
}
