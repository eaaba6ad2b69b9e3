//! The scheduling queue: pods that want a node, tried by priority, then in creation order. One that fits nowhere
//! waits with a doubling backoff (1s to 10s) and is tried again only once a node or pod has
//! changed since it failed, or after a minute in case an event was missed.

use super::requests::priority;
use super::snapshot::{uid_of, Nominated, Snapshot};
use super::{Cycle, Decision};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify, Semaphore};

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

/// Binds and reports in flight at once: enough to keep the API server busy, few enough that
/// a burst of pods does not open thousands of requests.
const IN_FLIGHT: usize = 64;

/// Runs the scheduler until the process ends.
pub async fn run(client: kube::Client) {
    let changes = Arc::new((AtomicU64::new(0), Notify::new()));
    let (nodes, _nodes_task) = spawn_reflector(Api::<Node>::all(client.clone()), changes.clone());
    let (pods, _pods_task) = spawn_reflector(Api::<Pod>::all(client.clone()), changes.clone());
    let (namespaces, _ns_task) =
        spawn_reflector(Api::<Namespace>::all(client.clone()), changes.clone());
    let (budgets, _pdb_task) = spawn_reflector(
        Api::<PodDisruptionBudget>::all(client.clone()),
        changes.clone(),
    );
    let _ = nodes.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let _ = namespaces.wait_until_ready().await;
    let _ = budgets.wait_until_ready().await;
    let mut waiting: HashMap<String, Waiting> = HashMap::new();
    // Pods this scheduler placed whose binding the pod store does not show yet: the snapshot
    // counts them on their node, so two pods don't both take the last room.
    let mut assumed: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut start = 0usize;
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, bool)>();
    loop {
        let epoch = changes.0.load(Ordering::SeqCst);
        while let Ok((uid, bound)) = done_rx.try_recv() {
            if !bound {
                assumed.remove(&uid);
                fail(&mut waiting, uid, epoch);
            }
        }
        let pod_list = pods.state();
        let by_uid: HashMap<&str, &Arc<Pod>> = pod_list.iter().map(|p| (uid_of(p), p)).collect();
        assumed.retain(|uid, _| by_uid.get(uid.as_str()).is_some_and(|p| super::wants_us(p)));
        let overlay: Vec<Arc<Pod>> = pod_list
            .iter()
            .map(|p| assumed.get(uid_of(p)).unwrap_or(p).clone())
            .collect();
        let ns_labels = namespaces
            .state()
            .iter()
            .map(|n| {
                (
                    n.metadata.name.clone().unwrap_or_default(),
                    n.metadata.labels.clone().unwrap_or_default(),
                )
            })
            .collect();
        let mut snap = Snapshot::build(nodes.state(), overlay.iter(), ns_labels);
        let pdbs: Vec<PodDisruptionBudget> =
            budgets.state().iter().map(|b| (**b).clone()).collect();
        let mut pending: Vec<Arc<Pod>> = pod_list
            .iter()
            .filter(|p| super::wants_us(p) && !assumed.contains_key(uid_of(p)))
            .cloned()
            .collect();
        // Higher priority first, then first come first served (upstream's PrioritySort).
        pending.sort_by(|a, b| {
            priority(b).cmp(&priority(a)).then_with(|| {
                a.metadata
                    .creation_timestamp
                    .cmp(&b.metadata.creation_timestamp)
            })
        });
        let live: HashSet<&str> = pending.iter().map(|p| uid_of(p)).collect();
        waiting.retain(|uid, _| live.contains(uid.as_str()));
        let now = Instant::now();
        for (k, pod) in pending.iter().enumerate() {
            let uid = uid_of(pod).to_string();
            if waiting.get(&uid).is_some_and(|w| !w.due(now, epoch)) {
                continue;
            }
            if k % 32 == 31 {
                // Let the bind tasks and reflectors run between pods of a long pass.
                tokio::task::yield_now().await;
            }
            let cycle = Cycle::new(pod, &snap);
            let (msg, nominate) = match super::decide(&cycle, &snap, &mut start, &pdbs) {
                Decision::Bind(i) => {
                    let node = snap.nodes[i].name.clone();
                    let mut bound = (**pod).clone();
                    if let Some(s) = bound.spec.as_mut() {
                        s.node_name = Some(node.clone());
                    }
                    let bound = Arc::new(bound);
                    snap.add(i, bound.clone());
                    assumed.insert(uid.clone(), bound);
                    waiting.remove(&uid);
                    let permit = slots.clone().acquire_owned().await;
                    let (client, pod, done) = (client.clone(), pod.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let r = super::bind::bind(&client, &pod, &node).await;
                        drop(permit);
                        match &r {
                            Ok(()) => {
                                tracing::debug!(pod = ?pod.metadata.name, node = %node, "scheduled")
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, pod = ?pod.metadata.name, "binding")
                            }
                        }
                        let _ = done.send((uid, r.is_ok()));
                    });
                    continue;
                }
                Decision::Preempt(c, msg) => {
                    // Hold the room now, so lower-priority pods later in this pass don't
                    // take it while the victims terminate.
                    snap.nodes[c.node].nominated.push(Nominated {
                        uid: uid.clone(),
                        priority: cycle.priority,
                        requests: cycle.requests.clone(),
                    });
                    (msg, Some((snap.nodes[c.node].name.clone(), c.victims)))
                }
                Decision::Unschedulable(msg) => (msg, None),
            };
            fail(&mut waiting, uid, epoch);
            let permit = slots.clone().acquire_owned().await;
            let (client, pod) = (client.clone(), pod.clone());
            tokio::spawn(async move {
                if let Some((node, victims)) = nominate {
                    tracing::info!(pod = ?pod.metadata.name, node = %node, victims = victims.len(), "preempting");
                    if let Err(e) = super::bind::preempt(&client, &pod, &node, &victims).await {
                        tracing::warn!(error = %e, "preemption");
                    }
                }
                if let Err(e) = super::bind::report_unschedulable(&client, &pod, &msg).await {
                    tracing::warn!(error = %e, "reporting an unschedulable pod");
                }
                drop(permit);
            });
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
