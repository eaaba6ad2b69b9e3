//! meta.k8s.io/v1 Table output: the columns kubectl users know, per kind.
//!
//! The real API server builds tables with the printers of `pkg/printers/internalversion` and
//! always includes the priority-1 ("wide") columns; kubectl hides them unless `-o wide`. We do the
//! same: `column_definitions` and `row_cells` always return every column. Kinds without a printer
//! get the server's default table: NAME and CREATED AT.

use super::registry::ResourceInfo;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// One column: the fields of a Table's columnDefinitions item.
/// Owned text for the columns of kinds defined at run time (CRD printer columns), borrowed for
/// the built-in ones.
pub struct Col {
    pub name: Cow<'static, str>,
    pub ty: Cow<'static, str>,
    pub format: Cow<'static, str>,
    pub priority: u8,
    pub description: Cow<'static, str>,
}

pub(crate) const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

pub const fn c(
    name: &'static str,
    ty: &'static str,
    priority: u8,
    description: &'static str,
) -> Col {
    Col {
        name: Cow::Borrowed(name),
        ty: Cow::Borrowed(ty),
        format: Cow::Borrowed(""),
        priority,
        description: Cow::Borrowed(description),
    }
}
pub const NAME: Col = Col {
    name: Cow::Borrowed("Name"),
    ty: Cow::Borrowed("string"),
    format: Cow::Borrowed("name"),
    priority: 0,
    description: Cow::Borrowed(NAME_DESC),
};
pub const AGE: Col = c("Age", "string", 0, AGE_DESC);
pub const CREATED_AT: Col = c("Created At", "date", 0, AGE_DESC);
pub const CONTAINERS: Col = c(
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
pub const IMAGES: Col = c(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
pub const SELECTOR: Col = c("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.");

/// The server's table for kinds without a printer of their own: NAME and CREATED AT.
pub(crate) fn default_columns() -> Vec<Col> {
    vec![NAME, CREATED_AT]
}

/// A kind's columns as Table's columnDefinitions items.
pub fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    columns_json(info.strategy.columns())
}

pub(crate) fn columns_json(cols: Vec<Col>) -> Vec<Value> {
    cols.into_iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect()
}

/// The cells of one object's row, matching `column_definitions`. `now` is for AGE.
pub fn row_cells(info: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    info.strategy.row(obj, now)
}

/// Kubernetes' `duration.HumanDuration`: a short, coarser-with-age rendering ("5s", "3m2s",
/// "10m", "5h4m", "2d3h", "40d", "2y10d").
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{}h", hours / 24, h)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{}d", hours / 24 / 365, dy)
        };
    }
    format!("{}y", hours / 24 / 365)
}

pub(crate) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `translateTimestampSince`: the age of a timestamp, "<unknown>" when unset.
pub(crate) fn since(v: &Value, now: DateTime<Utc>) -> String {
    match parse_time(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

pub(crate) fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    json!(since(&obj["metadata"]["creationTimestamp"], now))
}

pub(crate) fn name(obj: &Value) -> Value {
    json!(obj["metadata"]["name"].as_str().unwrap_or(""))
}

pub(crate) fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub(crate) fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.into()
    }
}

pub(crate) fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

pub(crate) fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// An IntOrString as printed ("25%", "1"); None when unset.
pub(crate) fn int_or_string(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `labels.FormatLabels`: "k=v,k2=v2" sorted by key, "<none>" when empty.
pub(crate) fn format_labels(v: &Value) -> String {
    let Some(m) = v.as_object() else {
        return "<none>".into();
    };
    let sorted: BTreeMap<_, _> = m.iter().collect();
    let out: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    or_none(&out.join(","))
}

/// A metav1.LabelSelector as its selector string ("app=x,tier in (a,b)"), requirements sorted
/// by key the way `labels.Selector.String()` does.
pub fn label_selector_string(sel: &Value) -> String {
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", s(v))));
        }
    }
    for e in arr(&sel["matchExpressions"]) {
        let key = s(&e["key"]).to_string();
        let mut values: Vec<&str> = arr(&e["values"]).iter().map(s).collect();
        values.sort_unstable();
        let text = match s(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key, text));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|r| r.1).collect::<Vec<_>>().join(",")
}

/// Container names and images of a pod template, comma-joined.
pub(crate) fn containers_images(pod_spec: &Value) -> (Value, Value) {
    let cs = arr(&pod_spec["containers"]);
    let names: Vec<&str> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(&c["image"])).collect();
    (json!(names.join(",")), json!(images.join(",")))
}

pub(crate) fn created_at_row(obj: &Value, _now: DateTime<Utc>) -> Vec<Value> {
    let created = parse_time(&obj["metadata"]["creationTimestamp"])
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![name(obj), json!(created)]
}

/// Is a pod's init container a sidecar (restartPolicy Always)?
pub(crate) fn restartable_init(spec: &Value, container_name: &str) -> bool {
    arr(&spec["initContainers"])
        .iter()
        .any(|c| s(&c["name"]) == container_name && s(&c["restartPolicy"]) == "Always")
}

pub(crate) fn has_condition(status: &Value, ty: &str) -> bool {
    arr(&status["conditions"])
        .iter()
        .any(|c| s(&c["type"]) == ty && s(&c["status"]) == "True")
}

/// Later of two optional times.
pub(crate) fn latest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Ingress points of a load balancer status: IPs or hostnames, comma-joined.
pub(crate) fn lb_ingress(status: &Value) -> String {
    arr(&status["ingress"])
        .iter()
        .filter_map(|i| {
            let ip = s(&i["ip"]);
            let host = s(&i["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !host.is_empty() {
                Some(host)
            } else {
                None
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Up to three entries, then " + N more...", as kubectl abbreviates endpoint lists.
pub(crate) fn abbreviate(list: Vec<String>, count: usize) -> String {
    if list.is_empty() {
        return "<none>".into();
    }
    let shown = list.into_iter().take(3).collect::<Vec<_>>().join(",");
    if count > 3 {
        format!("{shown} + {} more...", count - 3)
    } else {
        shown
    }
}

pub(crate) fn join_host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub(crate) fn node_address(obj: &Value, ty: &str) -> String {
    arr(&obj["status"]["addresses"])
        .iter()
        .find(|a| s(&a["type"]) == ty)
        .map(|a| s(&a["address"]).to_string())
        .unwrap_or_else(|| "<none>".into())
}

pub(crate) fn map_len(v: &Value) -> usize {
    v.as_object().map(|m| m.len()).unwrap_or(0)
}

/// Works for core/v1 Events and events.k8s.io/v1 Events, whose fields differ in name only.
pub(crate) fn event_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let core = obj["involvedObject"].is_object() || !obj["regarding"].is_object();
    let (involved, message, count, source) = if core {
        let src = &obj["source"];
        let mut source = s(&src["component"]).to_string();
        if source.is_empty() {
            source = s(&obj["reportingComponent"]).to_string();
        }
        let host = if s(&src["host"]).is_empty() {
            s(&obj["reportingInstance"])
        } else {
            s(&src["host"])
        };
        if !host.is_empty() {
            source = format!("{source}, {host}");
        }
        (
            &obj["involvedObject"],
            s(&obj["message"]),
            int(&obj["count"]),
            source,
        )
    } else {
        let mut source = s(&obj["reportingController"]).to_string();
        if !s(&obj["reportingInstance"]).is_empty() {
            source = format!("{source}, {}", s(&obj["reportingInstance"]));
        }
        (
            &obj["regarding"],
            s(&obj["note"]),
            int(&obj["deprecatedCount"]),
            source,
        )
    };
    let first_ts = if core {
        &obj["firstTimestamp"]
    } else {
        &obj["deprecatedFirstTimestamp"]
    };
    let last_ts = if core {
        &obj["lastTimestamp"]
    } else {
        &obj["deprecatedLastTimestamp"]
    };
    let first_seen = if first_ts.is_string() {
        since(first_ts, now)
    } else {
        since(&obj["eventTime"], now)
    };
    let last_seen = if obj["series"].is_object() {
        since(&obj["series"]["lastObservedTime"], now)
    } else if last_ts.is_string() {
        since(last_ts, now)
    } else {
        first_seen.clone()
    };
    let count = if obj["series"].is_object() {
        int(&obj["series"]["count"])
    } else {
        count
    };
    vec![
        json!(last_seen),
        json!(s(&obj["type"])),
        json!(s(&obj["reason"])),
        json!(format!(
            "{}/{}",
            s(&involved["kind"]).to_lowercase(),
            s(&involved["name"])
        )),
        json!(s(&involved["fieldPath"])),
        json!(source),
        json!(message.trim()),
        json!(first_seen),
        json!(count.to_string()),
        name(obj),
    ]
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, deduplicated.
pub(crate) fn access_modes(v: &Value) -> String {
    let modes: Vec<&str> = arr(v).iter().map(s).collect();
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| modes.contains(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

pub(crate) fn storage_class(obj: &Value) -> String {
    let spec_class = s(&obj["spec"]["storageClassName"]);
    if !spec_class.is_empty() {
        return spec_class.into();
    }
    s(&obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]).into()
}

/// TARGETS of an HPA, autoscaling/v1 (targetCPUUtilizationPercentage) or v2 (metrics).
pub(crate) fn hpa_targets(obj: &Value) -> String {
    let spec = &obj["spec"];
    let st = &obj["status"];
    if let Some(target) = spec["targetCPUUtilizationPercentage"].as_i64() {
        let current = st["currentCPUUtilizationPercentage"]
            .as_i64()
            .map(|c| format!("{c}%"))
            .unwrap_or_else(|| "<unknown>".into());
        return format!("cpu: {current}/{target}%");
    }
    let metrics = arr(&spec["metrics"]);
    if metrics.is_empty() {
        return "<none>".into();
    }
    let mut parts = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        if s(&m["type"]) != "Resource" {
            parts.push(format!("<unknown>/{}", s(&m["type"]).to_lowercase()));
            continue;
        }
        let res = s(&m["resource"]["name"]);
        let target = &m["resource"]["target"];
        let cur = &arr(&st["currentMetrics"])
            .get(i)
            .map(|c| c["resource"]["current"].clone())
            .unwrap_or(Value::Null);
        let text = if let Some(u) = target["averageUtilization"].as_i64() {
            let c = cur["averageUtilization"]
                .as_i64()
                .map(|c| format!("{c}%"))
                .unwrap_or_else(|| "<unknown>".into());
            format!("{c}/{u}%")
        } else {
            let t = int_or_string(&target["averageValue"])
                .or_else(|| int_or_string(&target["value"]))
                .unwrap_or_default();
            let c = int_or_string(&cur["averageValue"]).unwrap_or_else(|| "<unknown>".into());
            format!("{c}/{t}")
        };
        parts.push(format!("{res}: {text}"));
    }
    parts.join(", ")
}

pub(crate) fn hpa_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let r = &obj["spec"]["scaleTargetRef"];
    let min = obj["spec"]["minReplicas"]
        .as_i64()
        .map(|m| m.to_string())
        .unwrap_or_else(|| "<unset>".into());
    vec![
        name(obj),
        json!(format!("{}/{}", s(&r["kind"]), s(&r["name"]))),
        json!(hpa_targets(obj)),
        json!(min),
        json!(int(&obj["spec"]["maxReplicas"])),
        json!(int(&obj["status"]["currentReplicas"])),
        age(obj, now),
    ]
}

pub(crate) fn rolebinding_row(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let r = &obj["roleRef"];
    let mut users = Vec::new();
    let mut groups = Vec::new();
    let mut sas = Vec::new();
    for subj in arr(&obj["subjects"]) {
        match s(&subj["kind"]) {
            "User" => users.push(s(&subj["name"]).to_string()),
            "Group" => groups.push(s(&subj["name"]).to_string()),
            "ServiceAccount" => sas.push(format!("{}/{}", s(&subj["namespace"]), s(&subj["name"]))),
            _ => {}
        }
    }
    vec![
        name(obj),
        json!(format!("{}/{}", s(&r["kind"]), s(&r["name"]))),
        age(obj, now),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::{Plain, Strategy};
    use crate::apiserver::registry::builtin_snapshot;
    use std::sync::Arc;

    fn strategy(group: &str, kind: &str) -> Arc<dyn Strategy> {
        builtin_snapshot()
            .all()
            .iter()
            .find(|r| r.group == group && r.kind == kind)
            .map(|r| r.strategy.clone())
            .unwrap_or_else(|| Arc::new(Plain))
    }

    fn column_definitions(group: &str, kind: &str) -> Vec<Value> {
        columns_json(strategy(group, kind).columns())
    }

    fn row_cells(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        strategy(group, kind).row(obj, now)
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn human_duration_matches_kubernetes() {
        assert_eq!(human_duration(secs(-5)), "<invalid>");
        assert_eq!(human_duration(secs(0)), "0s");
        assert_eq!(human_duration(secs(5)), "5s");
        assert_eq!(human_duration(secs(119)), "119s");
        assert_eq!(human_duration(secs(182)), "3m2s");
        assert_eq!(human_duration(secs(180)), "3m");
        assert_eq!(human_duration(secs(600)), "10m");
        assert_eq!(human_duration(secs(179 * 60)), "179m");
        assert_eq!(human_duration(secs(5 * 3600 + 4 * 60)), "5h4m");
        assert_eq!(human_duration(secs(20 * 3600)), "20h");
        assert_eq!(human_duration(secs(51 * 3600)), "2d3h");
        assert_eq!(human_duration(secs(48 * 3600)), "2d");
        assert_eq!(human_duration(secs(40 * 86400)), "40d");
        assert_eq!(human_duration(secs((365 * 2 + 10) * 86400)), "2y10d");
        assert_eq!(human_duration(secs(365 * 9 * 86400)), "9y");
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:57:00Z"},
            "spec": {"containers": [{"name": "a", "image": "nginx"}], "nodeName": "n1"},
            "status": status,
        })
    }

    #[test]
    fn pod_columns_and_wide_cells() {
        let cols = column_definitions("", "Pod");
        let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[5]["priority"], 1);
        let p = pod(
            json!({"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2024-05-01T11:57:05Z"}}}
            ]}),
        );
        let cells = row_cells("", "Pod", &p, now());
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("3m"),
                json!("10.42.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pod_status_reasons() {
        let creating = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}
        ]}));
        assert_eq!(
            row_cells("", "Pod", &creating, now())[2],
            "ContainerCreating"
        );
        assert_eq!(
            row_cells("", "Pod", &pod(json!({"phase": "Pending"})), now())[2],
            "Pending"
        );

        let crash = pod(json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 4,
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2024-05-01T11:59:00Z"}},
             "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]}));
        let cells = row_cells("", "Pod", &crash, now());
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], "4 (60s ago)");

        let done = pod(json!({"phase": "Succeeded", "containerStatuses": [
            {"name": "a", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
        ]}));
        assert_eq!(row_cells("", "Pod", &done, now())[2], "Completed");

        let mut deleting = pod(json!({"phase": "Running"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2024-05-01T11:59:00Z");
        assert_eq!(row_cells("", "Pod", &deleting, now())[2], "Terminating");
    }

    #[test]
    fn pod_init_container_progress() {
        let mut p = pod(json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "i2", "restartCount": 0, "state": {"running": {}}}
        ]}));
        p["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
        assert_eq!(row_cells("", "Pod", &p, now())[2], "Init:1/2");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(row_cells("", "Pod", &p, now())[2], "Init:CrashLoopBackOff");
    }

    #[test]
    fn deployment_and_service_rows() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T11:59:55Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "tier": "fe"}},
                     "template": {"spec": {"containers": [{"name": "a", "image": "nginx:1"}, {"name": "b", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
        });
        assert_eq!(
            row_cells("apps", "Deployment", &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("5s"),
                json!("a,b"),
                json!("nginx:1,busybox"),
                json!("app=web,tier=fe")
            ]
        );
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": "2024-05-01T10:00:00Z"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.10", "selector": {"app": "web"},
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}
        });
        assert_eq!(
            row_cells("", "Service", &svc, now()),
            vec![
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("120m"),
                json!("app=web")
            ]
        );
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.11", "ports": []}});
        let cells = row_cells("", "Service", &lb, now());
        assert_eq!(cells[3], "<pending>");
        assert_eq!(cells[4], "<none>");
        assert_eq!(cells[5], "<unknown>");
    }

    #[test]
    fn node_row_shows_roles_and_status() {
        let n = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2024-04-29T09:00:00Z",
                         "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "true"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1", "containerRuntimeVersion": "nanokube://0.1"}}
        });
        assert_eq!(
            row_cells("", "Node", &n, now()),
            vec![
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,master"),
                json!("2d3h"),
                json!("v1.33.0"),
                json!("192.0.2.1"),
                json!("<none>"),
                json!("Debian"),
                json!("6.1"),
                json!("nanokube://0.1")
            ]
        );
    }

    #[test]
    fn job_cronjob_and_misc_rows() {
        let j = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2024-05-01T11:00:00Z"},
            "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}}, "template": {"spec": {"containers": []}}},
            "status": {"succeeded": 1, "startTime": "2024-05-01T11:00:00Z", "completionTime": "2024-05-01T11:00:42Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let cells = row_cells("batch", "Job", &j, now());
        assert_eq!(
            cells[1..5],
            [json!("Complete"), json!("1/1"), json!("42s"), json!("60m")]
        );
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "y"}]}}}}}});
        let cells = row_cells("batch", "CronJob", &cj, now());
        assert_eq!(
            cells[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>")
            ]
        );
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(row_cells("", "ConfigMap", &cm, now())[1], 3);
        let ep = json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}, {"ip": "10.0.0.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(
            row_cells("", "Endpoints", &ep, now())[1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."
        );
        let other = column_definitions("example.com", "Widget");
        assert_eq!(other[1]["name"], "Created At");
        assert_eq!(other[1]["type"], "date");
    }

    #[test]
    fn selector_string_sorts_requirements() {
        let sel = json!({"matchLabels": {"z": "1"}, "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "dev"]},
            {"key": "gone", "operator": "DoesNotExist"}
        ]});
        assert_eq!(label_selector_string(&sel), "env in (dev,prod),!gone,z=1");
    }

    #[test]
    fn every_row_matches_its_columns() {
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2024-05-01T11:00:00Z"}});
        for info in builtin_snapshot().all() {
            assert_eq!(
                super::column_definitions(info).len(),
                super::row_cells(info, &obj, now()).len(),
                "{}/{}",
                info.group,
                info.kind
            );
        }
    }
}
