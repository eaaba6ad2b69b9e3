//! The scheduling queue: pods that want a node, tried in creation order. One that fits nowhere
//! waits with a doubling backoff (1s to 10s) and is tried again only once a node or pod has
//! changed since it failed, or after a minute in case an event was missed.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const FLUSH_UNSCHEDULABLE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub attempts: u32,
    pub failed_at: Instant,
    /// The change count seen when the pod failed.
    pub epoch: u64,
}

pub fn backoff(attempts: u32) -> Duration {
    INITIAL_BACKOFF
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(8))
        .min(MAX_BACKOFF)
}

impl Waiting {
    pub fn due(&self, now: Instant, epoch: u64) -> bool {
        let waited = now.duration_since(self.failed_at);
        waited >= FLUSH_UNSCHEDULABLE || (epoch != self.epoch && waited >= backoff(self.attempts))
    }
}

/// A task that ends with its owner: the scheduler's reflectors stop when the scheduler is
/// stopped (it loses its leader lease).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn spawn_reflector<K>(api: Api<K>, changes: Arc<(AtomicU64, Notify)>) -> (Store<K>, AbortOnDrop)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    let task = tokio::spawn(async move {
        stream
            .for_each(|ev| {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "scheduler watch");
                }
                changes.0.fetch_add(1, Ordering::SeqCst);
                changes.1.notify_one();
                async {}
            })
            .await;
    });
    (reader, AbortOnDrop(task))
}

/// Runs the scheduler until the process ends.
pub async fn run(client: kube::Client) {
    let changes = Arc::new((AtomicU64::new(0), Notify::new()));
    let (nodes, _nodes_task) = spawn_reflector(Api::<Node>::all(client.clone()), changes.clone());
    let (pods, _pods_task) = spawn_reflector(Api::<Pod>::all(client.clone()), changes.clone());
    let _ = nodes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut waiting: HashMap<String, Waiting> = HashMap::new();
    // Bound pods the pod store may not show yet, so two pods don't both take the last room.
    let mut assumed: HashMap<String, Pod> = HashMap::new();
    loop {
        let epoch = changes.0.load(Ordering::SeqCst);
        let node_list: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let mut pod_list: Vec<Pod> = pods.state().iter().map(|p| (**p).clone()).collect();
        assumed.retain(|uid, _| {
            !pod_list
                .iter()
                .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()) && !super::wants_us(p))
                && pod_list
                    .iter()
                    .any(|p| p.metadata.uid.as_deref() == Some(uid.as_str()))
        });
        for a in assumed.values() {
            pod_list.retain(|p| p.metadata.uid != a.metadata.uid);
            pod_list.push(a.clone());
        }
        let mut pending: Vec<Pod> = pod_list
            .iter()
            .filter(|p| super::wants_us(p))
            .cloned()
            .collect();
        pending.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
        });
        let live: std::collections::HashSet<String> = pending
            .iter()
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        waiting.retain(|uid, _| live.contains(uid));
        let now = Instant::now();
        for pod in pending {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if waiting.get(&uid).is_some_and(|w| !w.due(now, epoch)) {
                continue;
            }
            let infos = super::node_infos(&node_list, &pod_list);
            match super::schedule(&pod, &infos) {
                Ok(node) => match super::bind::bind(&client, &pod, &node).await {
                    Ok(()) => {
                        tracing::info!(pod = ?pod.metadata.name, node = %node, "scheduled");
                        waiting.remove(&uid);
                        let mut bound = pod.clone();
                        if let Some(s) = bound.spec.as_mut() {
                            s.node_name = Some(node);
                        }
                        pod_list.retain(|p| p.metadata.uid != bound.metadata.uid);
                        pod_list.push(bound.clone());
                        assumed.insert(uid, bound);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pod = ?pod.metadata.name, "binding");
                        fail(&mut waiting, uid, epoch);
                    }
                },
                Err(msg) => {
                    if let Err(e) = super::bind::report_unschedulable(&client, &pod, &msg).await {
                        tracing::warn!(error = %e, "reporting an unschedulable pod");
                    }
                    fail(&mut waiting, uid, epoch);
                }
            }
        }
        let _ = tokio::time::timeout(INITIAL_BACKOFF, changes.1.notified()).await;
    }
}

fn fail(waiting: &mut HashMap<String, Waiting>, uid: String, epoch: u64) {
    let attempts = waiting.get(&uid).map_or(0, |w| w.attempts) + 1;
    waiting.insert(
        uid,
        Waiting {
            attempts,
            failed_at: Instant::now(),
            epoch,
        },
    );
}
