//! Events about pods as the kubelet reports them (Pulling, Pulled, Created, Started, Killing,
//! BackOff, Unhealthy, Failed, FailedMount), so `kubectl describe pod` and `kubectl get events`
//! tell what happened. A repeat of the same reason and message for the same object raises the
//! first event's count instead of adding one, as upstream's event correlator does.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::Mutex;

/// (object uid, reason, message) -> (event name, count).
type Seen = HashMap<(String, String, String), (String, i32)>;

/// Events already sent, so a repeat raises the count of the first.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Seen>,
}

/// What one event says.
#[derive(Debug, Clone)]
pub struct Note {
    /// `spec.containers{name}` when it is about a container.
    pub field_path: Option<String>,
    /// Normal or Warning.
    pub kind: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl Recorder {
    /// Records an event about `pod` (and, with `field_path`, one of its containers). Failures
    /// to record are logged, never fatal.
    pub async fn record(&self, client: &kube::Client, node: &str, pod: &Pod, note: Note) {
        let Note {
            field_path,
            kind,
            reason,
            message,
        } = note;
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        let key = (uid.clone(), reason.to_string(), message.clone());
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let prior = self.seen.lock().expect("events lock").get(&key).cloned();
        if let Some((name, count)) = prior {
            let patch = serde_json::json!({"count": count + 1, "lastTimestamp": now});
            if api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                self.seen
                    .lock()
                    .expect("events lock")
                    .insert(key, (name, count + 1));
                return;
            }
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let ev = Event {
            metadata: ObjectMeta {
                // As upstream names them: the object's name, then a unique suffix.
                name: Some(format!("{pod_name}.{:x}", rand::random::<u64>())),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod_name),
                namespace: Some(ns),
                uid: Some(uid),
                resource_version: pod.metadata.resource_version.clone(),
                field_path,
            },
            reason: Some(reason.into()),
            message: Some(message),
            type_: Some(kind.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some("kubelet".into()),
                host: Some(node.into()),
            }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(node.into()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &ev).await {
            Ok(created) => {
                let name = created.metadata.name.unwrap_or_default();
                self.seen
                    .lock()
                    .expect("events lock")
                    .insert(key, (name, 1));
            }
            Err(e) => tracing::debug!(error = %e, reason, "recording an event"),
        }
    }

    /// Forgets the events of a pod that is gone.
    pub fn forget(&self, uid: &str) {
        self.seen
            .lock()
            .expect("events lock")
            .retain(|k, _| k.0 != uid);
    }
}

/// The fieldPath of a container, as events name it.
pub fn container_path(pod: &Pod, name: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == name));
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}
