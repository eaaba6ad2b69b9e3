//! Conversion between the versions of a resource served twice from one storage.
//!
//! Kubernetes keeps one object per name whichever version a client uses: an HPA created through
//! autoscaling/v1 is the same object as through autoscaling/v2, and a core/v1 Event is listed by
//! events.k8s.io/v1. Here the store holds one version of each (autoscaling/v2 HPAs, core/v1
//! Events, the richer or older-and-complete one); requests in the other version are converted
//! from the stored form when read and to it when written. The functions are pure JSON rewrites.
//!
//! autoscaling/v1 has no place for most of v2: its one metric is a CPU utilization target. Like
//! kube-apiserver, the rest travels in annotations of the v1 form (JSON in v2's own field
//! shapes), so a v1 client that reads, changes and writes back an HPA loses none of it.

use super::registry::ResourceInfo;
use super::{encoding, registry};
use serde_json::{json, Map, Value};

/// v2 `spec.metrics` that v1's targetCPUUtilizationPercentage cannot hold.
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// v2 `status.currentMetrics` beyond the current CPU utilization.
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// v2 `status.conditions`.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// v2 `spec.behavior`.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// A served version that is stored as another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Converted {
    /// autoscaling/v1 HorizontalPodAutoscaler, stored as autoscaling/v2.
    HpaV1,
    /// events.k8s.io/v1 Event, stored as core/v1.
    EventsV1,
    /// A custom resource (CRD): read and written through its strategy's `read_stored` and
    /// `write_stored` (apiVersion of the served version, schema pruning and defaults).
    /// `listed` is true for the storage version's entry, the one that namespace cleanup and the
    /// garbage collector walk; the other served versions are the same objects.
    Custom { listed: bool },
}

/// Whether this resource's objects are walked under another entry of the registry (its stored
/// version's), so whole-resource sweeps skip it.
pub fn listed_elsewhere(info: &ResourceInfo) -> bool {
    match of(info) {
        None | Some(Converted::Custom { listed: true }) => false,
        Some(_) => true,
    }
}

/// Whether (and how) objects of this resource are stored in another version.
pub fn of(info: &ResourceInfo) -> Option<Converted> {
    info.converted
}

/// The stored object as the resource's version shows it.
pub fn from_storage(info: &ResourceInfo, obj: Value) -> Value {
    match of(info) {
        Some(Converted::HpaV1) => hpa_v2_to_v1(obj),
        Some(Converted::EventsV1) => core_event_to_events_v1(obj),
        Some(Converted::Custom { .. }) => info.strategy.read_stored(obj),
        None => obj,
    }
}

/// An object of the resource's version as it is stored.
pub fn to_storage(info: &ResourceInfo, obj: Value) -> Value {
    match of(info) {
        Some(Converted::HpaV1) => {
            // The stored version's defaults, as kube-apiserver applies them when it reads the
            // stored object: a v1 HPA without a CPU target gets v2's default metric (and reads
            // back through v1 with that target).
            let mut v2 = hpa_v1_to_v2(obj);
            let stored = registry::builtin("autoscaling", "v2", "horizontalpodautoscalers");
            stored.strategy.defaults(&mut v2);
            v2
        }
        Some(Converted::EventsV1) => events_v1_to_core_event(obj),
        Some(Converted::Custom { .. }) => info.strategy.write_stored(obj),
        None => obj,
    }
}

/// Parses stored bytes as the resource's version shows them, with the resourceVersion set.
pub fn decode(info: &ResourceInfo, stored: &[u8], rv: i64) -> Result<Value, serde_json::Error> {
    let v = encoding::decode_stored(stored, rv)?;
    Ok(match of(info) {
        Some(_) => from_storage(info, v),
        None => v,
    })
}

/// Appends stored bytes as the resource's version shows them, with the resourceVersion spliced
/// in. Resources stored in their own version are copied without parsing.
pub fn write_with_rv(info: &ResourceInfo, out: &mut Vec<u8>, stored: &[u8], rv: i64) {
    if of(info).is_some() {
        if let Ok(v) = decode(info, stored, rv) {
            if serde_json::to_writer(&mut *out, &v).is_ok() {
                return;
            }
        }
    }
    encoding::write_with_rv(out, stored, rv)
}

/// [`write_with_rv`] into a new buffer.
pub fn with_rv(info: &ResourceInfo, stored: &[u8], rv: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored.len() + 32);
    write_with_rv(info, &mut out, stored, rv);
    out
}

/// The bytes to store for an object of the resource's version.
pub fn to_stored(info: &ResourceInfo, obj: &Value) -> Vec<u8> {
    match of(info) {
        Some(_) => encoding::to_stored(&to_storage(info, obj.clone())),
        None => encoding::to_stored(obj),
    }
}

fn obj_mut(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().expect("made an object")
}

fn take(v: &mut Value, field: &str) -> Option<Value> {
    v.as_object_mut()
        .and_then(|o| o.remove(field))
        .filter(|x| !x.is_null())
}

fn annotations_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let meta = obj_mut(&mut obj["metadata"]);
    obj_mut(meta.entry("annotations").or_insert(Value::Null))
}

/// Removes an annotation holding JSON and parses it (a malformed one is dropped: it came from a
/// client, and kube-apiserver ignores it the same way).
fn take_json_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let meta = obj.get_mut("metadata")?.as_object_mut()?;
    let anns = meta.get_mut("annotations")?.as_object_mut()?;
    let raw = anns.remove(key)?;
    if anns.is_empty() {
        meta.remove("annotations");
    }
    serde_json::from_str(raw.as_str()?).ok()
}

fn is_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m["resource"]["name"] == "cpu"
        && m["resource"]["target"]["type"] == "Utilization"
        && m["resource"]["target"]["averageUtilization"].is_i64()
}

fn is_current_cpu_utilization(m: &Value) -> bool {
    m["type"] == "Resource"
        && m["resource"]["name"] == "cpu"
        && m["resource"]["current"]["averageUtilization"].is_i64()
}

/// autoscaling/v2 → autoscaling/v1.
pub fn hpa_v2_to_v1(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v1");
    let mut extra_annotations: Vec<(&str, Value)> = Vec::new();

    let mut spec = take(&mut obj, "spec").unwrap_or_else(|| json!({}));
    let metrics = take(&mut spec, "metrics");
    let behavior = take(&mut spec, "behavior");
    let mut others = Vec::new();
    for m in metrics
        .and_then(|m| m.as_array().cloned())
        .unwrap_or_default()
    {
        if is_cpu_utilization(&m) && spec.get("targetCPUUtilizationPercentage").is_none() {
            spec["targetCPUUtilizationPercentage"] =
                m["resource"]["target"]["averageUtilization"].clone();
        } else {
            others.push(m);
        }
    }
    if !others.is_empty() {
        extra_annotations.push((METRICS_ANNOTATION, Value::Array(others)));
    }
    if let Some(b) = behavior {
        extra_annotations.push((BEHAVIOR_ANNOTATION, b));
    }
    obj["spec"] = spec;

    if let Some(mut status) = take(&mut obj, "status") {
        let current = take(&mut status, "currentMetrics");
        let conditions = take(&mut status, "conditions");
        let mut others = Vec::new();
        for m in current
            .and_then(|m| m.as_array().cloned())
            .unwrap_or_default()
        {
            if is_current_cpu_utilization(&m)
                && status.get("currentCPUUtilizationPercentage").is_none()
            {
                status["currentCPUUtilizationPercentage"] =
                    m["resource"]["current"]["averageUtilization"].clone();
            } else {
                others.push(m);
            }
        }
        if !others.is_empty() {
            extra_annotations.push((CURRENT_METRICS_ANNOTATION, Value::Array(others)));
        }
        if let Some(c) = conditions.filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
            extra_annotations.push((CONDITIONS_ANNOTATION, c));
        }
        // v1 requires currentReplicas and desiredReplicas (v2 too); keep what was written.
        obj["status"] = status;
    }

    if !extra_annotations.is_empty() {
        let anns = annotations_mut(&mut obj);
        for (k, v) in extra_annotations {
            anns.insert(k.into(), Value::String(v.to_string()));
        }
    }
    obj
}

/// autoscaling/v1 → autoscaling/v2.
pub fn hpa_v1_to_v2(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("autoscaling/v2");
    let more_metrics = take_json_annotation(&mut obj, METRICS_ANNOTATION);
    let behavior = take_json_annotation(&mut obj, BEHAVIOR_ANNOTATION);
    let more_current = take_json_annotation(&mut obj, CURRENT_METRICS_ANNOTATION);
    let conditions = take_json_annotation(&mut obj, CONDITIONS_ANNOTATION);

    let mut spec = take(&mut obj, "spec").unwrap_or_else(|| json!({}));
    let mut metrics = Vec::new();
    if let Some(cpu) = take(&mut spec, "targetCPUUtilizationPercentage") {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if let Some(Value::Array(more)) = more_metrics {
        metrics.extend(more);
    }
    if !metrics.is_empty() {
        spec["metrics"] = Value::Array(metrics);
    }
    if let Some(b) = behavior {
        spec["behavior"] = b;
    }
    obj["spec"] = spec;

    let mut status = take(&mut obj, "status");
    if status.is_some() || more_current.is_some() || conditions.is_some() {
        let st = status.get_or_insert_with(|| json!({}));
        let mut current = Vec::new();
        if let Some(cpu) = take(st, "currentCPUUtilizationPercentage") {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}));
        }
        if let Some(Value::Array(more)) = more_current {
            current.extend(more);
        }
        if !current.is_empty() {
            st["currentMetrics"] = Value::Array(current);
        }
        if let Some(c) = conditions {
            st["conditions"] = c;
        }
        if st.get("desiredReplicas").is_none() {
            // Required in v2's typed status; v1 objects written without it mean 0.
            st["desiredReplicas"] = json!(0);
        }
        obj["status"] = status.expect("set above");
    }
    obj
}

/// core/v1 Event fields and their events.k8s.io/v1 names, where only the name differs.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

fn rename(obj: &mut Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) {
    let Some(o) = obj.as_object_mut() else {
        return;
    };
    // Take every source first so a field renamed into another's old name is not clobbered.
    let moved: Vec<(&str, Value)> = pairs
        .filter_map(|(from, to)| o.remove(from).map(|v| (to, v)))
        .collect();
    for (to, v) in moved {
        if !v.is_null() {
            o.insert(to.into(), v);
        }
    }
}

/// core/v1 Event → events.k8s.io/v1 Event.
pub fn core_event_to_events_v1(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("events.k8s.io/v1");
    rename(&mut obj, EVENT_RENAMES.iter().copied());
    // Go's zero time: core/v1 Events may lack eventTime (older writers), events.k8s.io/v1
    // requires the field and kube-apiserver renders it null.
    if obj.get("eventTime").is_none() {
        obj["eventTime"] = Value::Null;
    }
    obj
}

/// events.k8s.io/v1 Event → core/v1 Event.
pub fn events_v1_to_core_event(mut obj: Value) -> Value {
    obj["apiVersion"] = json!("v1");
    rename(&mut obj, EVENT_RENAMES.iter().map(|&(core, ev)| (ev, core)));
    if obj.get("involvedObject").is_none() {
        // Required in core/v1; an events.k8s.io/v1 Event may leave regarding empty.
        obj["involvedObject"] = json!({});
    }
    if obj["eventTime"].is_null() {
        if let Some(o) = obj.as_object_mut() {
            o.remove("eventTime");
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa_v2() -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"keep": "me"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "observedGeneration": 4,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "90m"}}}
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}})
    }

    #[test]
    fn hpa_v2_reads_as_v1_with_the_rest_in_annotations() {
        let v1 = hpa_v2_to_v1(hpa_v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["spec"]["maxReplicas"], 5);
        assert!(v1["spec"].get("metrics").is_none());
        assert!(v1["spec"].get("behavior").is_none());
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 45);
        assert_eq!(v1["status"]["desiredReplicas"], 3);
        assert!(v1["status"].get("conditions").is_none());
        let anns = &v1["metadata"]["annotations"];
        assert_eq!(anns["keep"], "me");
        let more: Value = serde_json::from_str(anns[METRICS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(more[0]["resource"]["name"], "memory");
        assert!(anns[CONDITIONS_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("AbleToScale"));
        assert!(anns[BEHAVIOR_ANNOTATION].is_string());
        // The current CPU entry became currentCPUUtilizationPercentage: nothing else is left.
        assert!(anns.get(CURRENT_METRICS_ANNOTATION).is_none());
        // The typed v1 struct accepts it.
        let typed: k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler =
            serde_json::from_value(v1).unwrap();
        assert_eq!(
            typed.spec.unwrap().target_cpu_utilization_percentage,
            Some(60)
        );
    }

    #[test]
    fn hpa_round_trips_through_v1() {
        let mut want = hpa_v2();
        // The one loss: v1 keeps only the CPU utilization of the current CPU metric.
        want["status"]["currentMetrics"][0]["resource"]["current"] =
            json!({"averageUtilization": 45});
        let back = hpa_v1_to_v2(hpa_v2_to_v1(hpa_v2()));
        assert_eq!(back, want);
    }

    #[test]
    fn hpa_v1_writes_become_v2() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3,
                "targetCPUUtilizationPercentage": 70}});
        let v2 = hpa_v1_to_v2(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70}}}])
        );
        assert!(v2["spec"].get("targetCPUUtilizationPercentage").is_none());
        assert!(v2.get("status").is_none());
        assert!(v2["metadata"].get("annotations").is_none());
        let _: k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler =
            serde_json::from_value(v2.clone()).unwrap();
        assert_eq!(hpa_v2_to_v1(v2), v1);
    }

    #[test]
    fn v1_hpa_without_target_is_stored_with_the_v2_default() {
        let info =
            &super::super::registry::builtin("autoscaling", "v1", "horizontalpodautoscalers");
        assert_eq!(of(info), Some(Converted::HpaV1));
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3}});
        let stored = to_storage(info, v1);
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(stored["spec"]["minReplicas"], 1);
        let back = from_storage(info, stored);
        assert_eq!(back["spec"]["targetCPUUtilizationPercentage"], 80);
        assert!(back["metadata"].get("annotations").is_none());
        // Resources stored in their own version pass through untouched.
        let cms = &super::super::registry::builtin("", "v1", "configmaps");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(to_storage(cms, cm.clone()), cm);
        assert_eq!(
            with_rv(cms, &encoding::to_stored(&cm), 5),
            encoding::with_rv(&encoding::to_stored(&cm), 5)
        );
    }

    fn core_event() -> Value {
        json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
            "reason": "Started", "message": "Started container c", "type": "Normal",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:01:00Z",
            "count": 3, "action": "Start", "related": {"kind": "Node", "name": "n1"},
            "reportingComponent": "kubelet", "reportingInstance": "n1",
            "eventTime": "2024-01-01T00:00:00.000000Z"})
    }

    #[test]
    fn core_event_reads_as_events_v1() {
        let ev = core_event_to_events_v1(core_event());
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!(ev["regarding"]["name"], "web");
        assert_eq!(ev["note"], "Started container c");
        assert_eq!(ev["deprecatedSource"]["component"], "kubelet");
        assert_eq!(ev["deprecatedFirstTimestamp"], "2024-01-01T00:00:00Z");
        assert_eq!(ev["deprecatedLastTimestamp"], "2024-01-01T00:01:00Z");
        assert_eq!(ev["deprecatedCount"], 3);
        assert_eq!(ev["reportingController"], "kubelet");
        assert_eq!(ev["reportingInstance"], "n1");
        assert_eq!(ev["reason"], "Started");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["action"], "Start");
        assert_eq!(ev["related"]["kind"], "Node");
        for core_only in [
            "involvedObject",
            "message",
            "source",
            "count",
            "reportingComponent",
        ] {
            assert!(ev.get(core_only).is_none(), "{core_only}");
        }
        let _: k8s_openapi::api::events::v1::Event = serde_json::from_value(ev.clone()).unwrap();
        assert_eq!(events_v1_to_core_event(ev), core_event());
    }

    #[test]
    fn events_v1_without_deprecated_fields_becomes_a_valid_core_event() {
        let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "me/ctl",
            "reportingInstance": "me-1", "action": "Do", "reason": "Done", "note": "did it",
            "type": "Normal", "regarding": {"kind": "Pod", "name": "p"}});
        let core = events_v1_to_core_event(ev.clone());
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "did it");
        assert_eq!(core["reportingComponent"], "me/ctl");
        let _: k8s_openapi::api::core::v1::Event = serde_json::from_value(core.clone()).unwrap();
        assert_eq!(core_event_to_events_v1(core), ev);
    }
}
