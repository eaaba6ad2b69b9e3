//! The scheduler's writes: binding a pod (POST pods/binding) and its Scheduled event,
//! reporting one that fits nowhere, and carrying out a preemption.

use crate::controllers::events::{record, About};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let _: serde_json::Value = api
        .create_subresource("binding", name, &PostParams::default(), &binding)
        .await?;
    record(
        client,
        COMPONENT,
        &about(pod),
        "Normal",
        "Scheduled",
        &format!("Successfully assigned {ns}/{name} to {node}"),
    )
    .await;
    Ok(())
}

const COMPONENT: &str = "default-scheduler";

fn about(pod: &Pod) -> About<'_> {
    About {
        api_version: "v1",
        kind: "Pod",
        namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
        name: pod.metadata.name.as_deref().unwrap_or(""),
        uid: pod.metadata.uid.as_deref().unwrap_or(""),
    }
}

/// Nominates the node for the preemptor, then marks each victim DisruptionTarget (so its
/// controller and `kubectl describe` say why it went), deletes it with its own grace period,
/// and records a Preempted event on it.
pub async fn preempt(
    client: &kube::Client,
    pod: &Pod,
    node: &str,
    victims: &[std::sync::Arc<Pod>],
) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let nominate = json!({"status": {"nominatedNodeName": node}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&nominate))
        .await?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for v in victims {
        let vns = v.metadata.namespace.as_deref().unwrap_or("default");
        let vname = v.metadata.name.as_deref().unwrap_or("");
        let vapi: Api<Pod> = Api::namespaced(client.clone(), vns);
        let cond = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": "default-scheduler: preempting to accommodate a higher priority pod",
            "lastTransitionTime": now}]}});
        if let Err(e) = vapi
            .patch_status(vname, &PatchParams::default(), &Patch::Strategic(&cond))
            .await
        {
            tracing::warn!(error = %e, pod = vname, "marking a preemption victim");
        }
        match vapi.delete(vname, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => continue,
            Err(e) => return Err(e),
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        record(
            client,
            COMPONENT,
            &about(v),
            "Normal",
            "Preempted",
            &format!("Preempted by pod {uid} on node {node}"),
        )
        .await;
    }
    Ok(())
}

pub async fn report_unschedulable(
    client: &kube::Client,
    pod: &Pod,
    message: &str,
) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.message.as_deref() == Some(message)
            })
        });
    if already {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let status = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastProbeTime": null, "lastTransitionTime": now}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await?;
    record(
        client,
        COMPONENT,
        &about(pod),
        "Warning",
        "FailedScheduling",
        message,
    )
    .await;
    Ok(())
}
