//! One object, two versions: autoscaling/v1 and autoscaling/v2 HorizontalPodAutoscalers, and
//! core/v1 and events.k8s.io/v1 Events, are the same objects whichever version wrote them, in
//! get, list, watch, update and delete. kubectl and raw HTTPS requests.

mod api_support;

use api_support::{raw::curl, Server};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};

static BODIES: AtomicUsize = AtomicUsize::new(0);

fn req(s: &Server, method: &str, path: &str, ctype: &str, body: Option<Value>) -> (u16, Value) {
    let file = body.map(|b| {
        let n = BODIES.fetch_add(1, Ordering::Relaxed);
        s.file(&format!("body-{n}.json"), &b.to_string())
    });
    let (code, text, _) = curl(s, "admin", method, path, ctype, file.as_deref());
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (code, v)
}

fn get(s: &Server, path: &str) -> Value {
    let (code, v) = req(s, "GET", path, "application/json", None);
    assert_eq!(code, 200, "GET {path}: {v}");
    v
}

/// The watch events after `rv`, replayed from the store's log until the watch times out.
fn watch_after(s: &Server, collection: &str, rv: &str) -> Vec<Value> {
    let path = format!("{collection}?watch=true&resourceVersion={rv}&timeoutSeconds=1");
    let (code, text, _) = curl(s, "admin", "GET", &path, "application/json", None);
    assert_eq!(code, 200, "{text}");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const HPA_V1: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
const HPA_V2: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

fn cpu_target(m: &Value) -> Value {
    let metrics = m["spec"]["metrics"].as_array().cloned().unwrap_or_default();
    metrics
        .iter()
        .find(|m| m["resource"]["name"] == "cpu")
        .map(|m| m["resource"]["target"]["averageUtilization"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn hpa_is_one_object_in_v1_and_v2() {
    let s = Server::start();
    let start_rv = get(&s, HPA_V2)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // Created through v1 (kubectl apply), seen through v2.
    s.apply_ok(
        "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: from-v1\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: web\n  minReplicas: 2\n  maxReplicas: 6\n  targetCPUUtilizationPercentage: 70\n",
    );
    let v2 = get(&s, &format!("{HPA_V2}/from-v1"));
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(cpu_target(&v2), 70, "{v2}");
    assert_eq!(v2["spec"]["metrics"][0]["type"], "Resource");
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["type"],
        "Utilization"
    );
    assert_eq!(v2["spec"]["maxReplicas"], 6);
    assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());
    let v1 = get(&s, &format!("{HPA_V1}/from-v1"));
    assert_eq!(v1["metadata"]["uid"], v2["metadata"]["uid"]);
    assert_eq!(
        v1["metadata"]["resourceVersion"],
        v2["metadata"]["resourceVersion"]
    );
    // kubectl names the version explicitly, too.
    let out = s.ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "from-v1",
        "-o",
        "jsonpath={.spec.metrics[0].resource.target.averageUtilization}",
    ]);
    assert_eq!(out, "70");

    // Created through v2 with a metric v1 cannot express, seen through v1.
    let (code, created) = req(
        &s,
        "POST",
        HPA_V2,
        "application/json",
        Some(
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "from-v2"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
                "minReplicas": 1, "maxReplicas": 4,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 55}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "200Mi"}}}
                ]}}),
        ),
    );
    assert_eq!(code, 201, "{created}");
    let v1 = get(&s, &format!("{HPA_V1}/from-v2"));
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 55, "{v1}");
    assert!(v1["spec"].get("metrics").is_none());
    let more = v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .expect("v2-only metrics kept in an annotation");
    assert!(more.contains("memory") && more.contains("200Mi"), "{more}");

    // A v1 update (kubectl patch through v1; kubectl maps a short name to the preferred
    // version, so the full resource name) changes the v2 object and keeps the memory metric.
    s.ok(&[
        "patch",
        "horizontalpodautoscalers.v1.autoscaling",
        "from-v2",
        "--type=merge",
        "-p",
        r#"{"spec":{"targetCPUUtilizationPercentage":65}}"#,
    ]);
    let v2 = get(&s, &format!("{HPA_V2}/from-v2"));
    assert_eq!(cpu_target(&v2), 65, "{v2}");
    let metrics = v2["spec"]["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), 2, "{v2}");
    assert_eq!(metrics[1]["resource"]["name"], "memory");
    assert!(v2["metadata"]["annotations"]
        .get("autoscaling.alpha.kubernetes.io/metrics")
        .is_none());
    assert_eq!(v2["metadata"]["generation"], 2);

    // Status written through v2 reads through v1.
    let (code, st) = req(
        &s,
        "PATCH",
        &format!("{HPA_V2}/from-v2/status"),
        "application/merge-patch+json",
        Some(
            json!({"status": {"currentReplicas": 2, "desiredReplicas": 3,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": 40, "averageValue": "80m"}}}]}}),
        ),
    );
    assert_eq!(code, 200, "{st}");
    let v1 = get(&s, &format!("{HPA_V1}/from-v2"));
    assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40, "{v1}");
    assert_eq!(v1["status"]["desiredReplicas"], 3);

    // Lists through either version hold both objects, each in the list's version.
    for (coll, version) in [(HPA_V1, "autoscaling/v1"), (HPA_V2, "autoscaling/v2")] {
        let list = get(&s, coll);
        let items = list["items"].as_array().unwrap();
        let names: Vec<&str> = items
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["from-v1", "from-v2"], "{coll}");
        for i in items {
            assert_eq!(i["apiVersion"], version, "{i}");
        }
    }
    let table = s.ok(&["get", "horizontalpodautoscalers.v1.autoscaling"]);
    assert!(
        table.contains("from-v1") && table.contains("from-v2"),
        "{table}"
    );

    // Watches through either version see every write, converted.
    let v1_events = watch_after(&s, HPA_V1, &start_rv);
    let v2_events = watch_after(&s, HPA_V2, &start_rv);
    assert_eq!(v1_events.len(), v2_events.len());
    assert!(v1_events.len() >= 4, "{v1_events:?}");
    for (a, b) in v1_events.iter().zip(&v2_events) {
        assert_eq!(a["type"], b["type"]);
        assert_eq!(a["object"]["apiVersion"], "autoscaling/v1");
        assert_eq!(b["object"]["apiVersion"], "autoscaling/v2");
        assert!(
            a["object"]["spec"]["targetCPUUtilizationPercentage"].is_i64(),
            "{a}"
        );
        assert!(b["object"]["spec"]["metrics"].is_array(), "{b}");
    }

    // Deleted through v1: gone through v2.
    s.ok(&[
        "delete",
        "horizontalpodautoscalers.v1.autoscaling",
        "from-v1",
    ]);
    let (code, _) = req(
        &s,
        "GET",
        &format!("{HPA_V2}/from-v1"),
        "application/json",
        None,
    );
    assert_eq!(code, 404);
    let left = s.ok(&["get", "hpa", "-o", "name"]);
    assert_eq!(left.trim(), "horizontalpodautoscaler.autoscaling/from-v2");
}

const CORE_EVENTS: &str = "/api/v1/namespaces/default/events";
const NEW_EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

#[test]
fn core_and_events_k8s_io_events_are_one_set() {
    let s = Server::start();
    let start_rv = get(&s, NEW_EVENTS)["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, v) = req(
        &s,
        "POST",
        CORE_EVENTS,
        "application/json",
        Some(json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.started"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Started", "message": "Started container c", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z",
            "count": 3, "reportingComponent": "kubelet", "reportingInstance": "n1"})),
    );
    assert_eq!(code, 201, "{v}");

    let list = get(&s, NEW_EVENTS);
    assert_eq!(list["apiVersion"], "events.k8s.io/v1");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let ev = &items[0];
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["metadata"]["name"], "web.started");
    assert_eq!(ev["regarding"]["name"], "web");
    assert_eq!(ev["note"], "Started container c");
    assert_eq!(ev["reason"], "Started");
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["deprecatedSource"]["component"], "kubelet");
    assert_eq!(ev["deprecatedCount"], 3);
    assert_eq!(ev["deprecatedFirstTimestamp"], "2024-01-01T00:00:00Z");
    assert_eq!(ev["deprecatedLastTimestamp"], "2024-01-01T00:01:00Z");
    assert_eq!(ev["reportingController"], "kubelet");
    assert_eq!(ev["reportingInstance"], "n1");
    assert!(ev.get("involvedObject").is_none() && ev.get("message").is_none());

    // Written through events.k8s.io/v1, read through core/v1 (and kubectl get events).
    let (code, v) = req(
        &s,
        "POST",
        NEW_EVENTS,
        "application/json",
        Some(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "web.scaled"},
            "eventTime": "2024-01-01T00:02:00.000000Z", "reportingController": "nanokube/test",
            "reportingInstance": "test-1", "action": "Scale", "reason": "Scaled",
            "note": "scaled up to 3", "type": "Warning",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "default"}})),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["apiVersion"], "events.k8s.io/v1");
    assert_eq!(v["note"], "scaled up to 3");
    let core = get(&s, &format!("{CORE_EVENTS}/web.scaled"));
    assert_eq!(core["apiVersion"], "v1");
    assert_eq!(core["message"], "scaled up to 3");
    assert_eq!(core["involvedObject"]["kind"], "Deployment");
    assert_eq!(core["reportingComponent"], "nanokube/test");
    assert_eq!(core["action"], "Scale");
    assert_eq!(core["eventTime"], "2024-01-01T00:02:00.000000Z");
    let out = s.ok(&["get", "events", "-o", "name"]);
    assert!(
        out.contains("event/web.scaled") && out.contains("event/web.started"),
        "{out}"
    );
    let out = s.ok(&[
        "get",
        "events.v1.events.k8s.io",
        "web.started",
        "-o",
        "jsonpath={.note}",
    ]);
    assert_eq!(out, "Started container c");

    // Table output through either version shows both, with the core columns' content.
    for resource in ["events", "events.v1.events.k8s.io"] {
        let table = s.ok(&["get", resource]);
        assert!(
            table.contains("Started container c") && table.contains("scaled up to 3"),
            "{resource}: {table}"
        );
        assert!(
            table.contains("pod/web") && table.contains("deployment/web"),
            "{table}"
        );
    }

    // Core field selectors still find the events.k8s.io-written one.
    let sel = get(
        &s,
        &format!("{CORE_EVENTS}?fieldSelector=involvedObject.kind%3DDeployment"),
    );
    let names: Vec<&str> = sel["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web.scaled"]);

    // A watch through events.k8s.io/v1 sees the core-written event, converted.
    let events = watch_after(&s, NEW_EVENTS, &start_rv);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["note"], "Started container c");
    assert_eq!(events[1]["object"]["note"], "scaled up to 3");

    // Deleted through one, gone from the other.
    let (code, v) = req(
        &s,
        "DELETE",
        &format!("{NEW_EVENTS}/web.started"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{v}");
    let (code, _) = req(
        &s,
        "GET",
        &format!("{CORE_EVENTS}/web.started"),
        "application/json",
        None,
    );
    assert_eq!(code, 404);
}
