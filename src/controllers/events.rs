//! Events the workload controllers record about their objects (`kubectl describe` shows them),
//! named as upstream's recorder names them. A failed write is logged, never fatal: the event
//! tells the story, the object's status is the record.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};

/// The object an event is about.
pub struct About<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

pub async fn record(
    client: &kube::Client,
    component: &str,
    about: &About<'_>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let now = k8s_openapi::jiff::Timestamp::now();
    let ev = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", about.name, now.as_nanosecond()),
                     "namespace": about.namespace},
        "involvedObject": {"apiVersion": about.api_version, "kind": about.kind,
                           "name": about.name, "namespace": about.namespace, "uid": about.uid},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": now.to_string(), "lastTimestamp": now.to_string(), "count": 1,
    });
    let ev: Event = match serde_json::from_value(ev) {
        Ok(ev) => ev,
        Err(e) => return tracing::warn!(error = %e, "event shape"),
    };
    let api: Api<Event> = Api::namespaced(client.clone(), about.namespace);
    if let Err(e) = api.create(&PostParams::default(), &ev).await {
        tracing::warn!(error = %e, reason, "recording an event");
    }
}
