//! The garbage collector, as kube-controller-manager's: an owner graph (`graph.rs`) fed by a
//! metadata watcher on every resource discovery shows as listable, watchable and deletable
//! (found again every `REDISCOVERY`, so custom resources join and leave), and one worker
//! (`worker.rs`) that acts on what the graph asks for through the API as
//! `system:serviceaccount:kube-system:generic-garbage-collector`:
//!
//! - Background: an object whose owners are all gone (checked by a live read and uid, not the
//!   cache) is deleted; one with another live owner loses the dead reference instead.
//! - Foreground: an owner with deletionTimestamp and the `foregroundDeletion` finalizer has
//!   its dependents deleted (in foreground themselves when they have dependents); the
//!   finalizer goes once no dependent with `blockOwnerDeletion` is left.
//! - Orphan: an owner with the `orphan` finalizer has the references to it removed from
//!   every dependent, then the finalizer.
//!
//! The worker starts only once every watcher has listed, so the graph is whole; everything a
//! stopped server left half done shows again in that first listing and is picked up.

mod graph;
mod worker;

use futures::StreamExt;
use graph::{Coordinates, Graph, Observed, OwnerRef, Uid, Work};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio_stream::StreamMap;

/// How often discovery runs again in any case. A change to a CRD (the watchers see those
/// too) runs it after `CRD_SETTLE`, so custom resources are watched soon after their CRD is
/// established and dropped after it goes.
const REDISCOVERY: Duration = Duration::from_secs(30);
const CRD_SETTLE: Duration = Duration::from_millis(500);
const CRDS: &str = "apiextensions.k8s.io/customresourcedefinitions";
/// The first retry of a failed work item, doubled up to `MAX_BACKOFF`.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("no resource serves kind {kind} of {api_version}")]
    UnknownKind { api_version: String, kind: String },
}

/// A resource the API serves, as discovery tells it.
#[derive(Debug, Clone)]
struct Resource {
    api: ApiResource,
    namespaced: bool,
}

/// What discovery found: the resources to watch, and every kind an owner can be.
#[derive(Debug, Default)]
struct Resources {
    watched: BTreeMap<String, Resource>,
    kinds: HashMap<(String, String), Resource>,
}

/// The key of a resource in the graph and the watcher map: `group/plural`.
fn key_of(ar: &ApiResource) -> String {
    format!("{}/{}", ar.group, ar.plural)
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

async fn discover(client: &kube::Client) -> Result<Resources, kube::Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut found = Resources::default();
    for group in discovery.groups() {
        for (api, caps) in group.recommended_resources() {
            let r = Resource {
                namespaced: caps.scope == Scope::Namespaced,
                api: api.clone(),
            };
            if caps.supports_operation(verbs::GET) {
                found
                    .kinds
                    .insert((api.group.clone(), api.kind.clone()), r.clone());
            }
            let collectable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            // Events own nothing and churn, so upstream leaves them out of the graph too.
            let ignored =
                api.plural == "events" && matches!(api.group.as_str(), "" | "events.k8s.io");
            if collectable && !ignored {
                found.watched.insert(key_of(&api), r);
            }
        }
    }
    Ok(found)
}

type MetaEvent = watcher::Result<Event<PartialObjectMeta<DynamicObject>>>;

/// Work items waiting, each at most once, and those waiting out a backoff.
#[derive(Debug, Default)]
struct Queue {
    ready: VecDeque<Work>,
    queued: HashSet<Work>,
    later: Vec<(Instant, Work)>,
    failures: HashMap<Work, u32>,
}

impl Queue {
    fn push(&mut self, w: Work) {
        if self.queued.insert(w.clone()) {
            self.ready.push_back(w);
        }
    }

    fn extend(&mut self, ws: impl IntoIterator<Item = Work>) {
        for w in ws {
            self.push(w);
        }
    }

    fn pop(&mut self) -> Option<Work> {
        let w = self.ready.pop_front()?;
        self.queued.remove(&w);
        Some(w)
    }

    fn retry(&mut self, w: Work) {
        let n = self.failures.entry(w.clone()).or_default();
        let delay = BASE_BACKOFF
            .saturating_mul(1 << (*n).min(10))
            .min(MAX_BACKOFF);
        *n += 1;
        self.later.push((Instant::now() + delay, w));
    }

    fn done(&mut self, w: &Work) {
        self.failures.remove(w);
    }

    fn next_due(&self) -> Option<Instant> {
        self.later.iter().map(|(t, _)| *t).min()
    }

    fn promote(&mut self, now: Instant) {
        let (due, wait): (Vec<_>, Vec<_>) = self.later.drain(..).partition(|(t, _)| *t <= now);
        self.later = wait;
        self.extend(due.into_iter().map(|(_, w)| w));
    }
}

/// One metadata watcher per watched resource, by key. Kept out of `Collector`, whose
/// methods the worker awaits on while the watchers are polled.
type Watchers = StreamMap<String, futures::stream::BoxStream<'static, MetaEvent>>;

struct Collector {
    client: kube::Client,
    graph: Graph,
    resources: Resources,
    /// Resources whose watcher has not finished its first listing.
    unsynced: BTreeSet<String>,
    /// Once every first listing is in, the graph is whole and the worker may act.
    synced: bool,
    /// The uids a (re)listing in progress has shown, per resource.
    listing: BTreeMap<String, BTreeSet<Uid>>,
    queue: Queue,
    /// When to run discovery again, after a CRD changed.
    rediscover_at: Option<Instant>,
}

/// Runs the garbage collector until the future is dropped.
pub async fn run(client: kube::Client) {
    let resources = loop {
        match discover(&client).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: discovery");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let mut gc = Collector {
        client,
        graph: Graph::default(),
        resources: Resources::default(),
        unsynced: BTreeSet::new(),
        synced: false,
        listing: BTreeMap::new(),
        queue: Queue::default(),
        rediscover_at: None,
    };
    let mut watchers = Watchers::new();
    gc.watch(&mut watchers, resources);
    gc.run(&mut watchers).await
}

impl Collector {
    async fn run(&mut self, watchers: &mut Watchers) {
        let mut rediscover = tokio::time::interval(REDISCOVERY);
        rediscover.tick().await;
        loop {
            let due = self.queue.next_due();
            let retry_at =
                tokio::time::Instant::from_std(due.unwrap_or_else(|| Instant::now() + REDISCOVERY));
            let work_ready = self.synced && !self.queue.ready.is_empty();
            let crd_changed = self.rediscover_at;
            let crd_settled = tokio::time::Instant::from_std(
                crd_changed.unwrap_or_else(|| Instant::now() + REDISCOVERY),
            );
            tokio::select! {
                // The graph first: a decision is made on the freshest view there is.
                biased;
                Some((key, event)) = watchers.next() => self.on_event(key, event),
                _ = rediscover.tick() => self.rediscover(watchers).await,
                _ = tokio::time::sleep_until(crd_settled), if crd_changed.is_some() => {
                    self.rediscover(watchers).await;
                }
                _ = tokio::time::sleep_until(retry_at), if due.is_some() => {
                    self.queue.promote(Instant::now());
                }
                _ = std::future::ready(()), if work_ready => {
                    let Some(work) = self.queue.pop() else { continue };
                    match self.process(&work).await {
                        Ok(()) => self.queue.done(&work),
                        Err(e) => {
                            tracing::debug!(?work, error = %e, "garbage collector: retrying");
                            self.queue.retry(work);
                        }
                    }
                }
            }
        }
    }

    async fn rediscover(&mut self, watchers: &mut Watchers) {
        self.rediscover_at = None;
        match discover(&self.client).await {
            Ok(r) => self.watch(watchers, r),
            Err(e) => tracing::warn!(error = %e, "garbage collector: discovery"),
        }
    }

    /// Starts watchers for newly discovered resources and drops those no longer served (their
    /// objects leave the graph as deleted).
    fn watch(&mut self, watchers: &mut Watchers, found: Resources) {
        for (key, r) in &found.watched {
            if self.resources.watched.contains_key(key) {
                continue;
            }
            let api: Api<PartialObjectMeta<DynamicObject>> =
                Api::all_with(self.client.clone(), &r.api);
            let stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            watchers.insert(key.clone(), stream);
            if !self.synced {
                self.unsynced.insert(key.clone());
            }
            tracing::debug!(resource = %key, "garbage collector: watching");
        }
        let gone: Vec<String> = self
            .resources
            .watched
            .keys()
            .filter(|k| !found.watched.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            watchers.remove(&key);
            self.unsynced.remove(&key);
            self.listing.remove(&key);
            for uid in self.graph.uids_of(&key) {
                let work = self.graph.remove(&uid);
                self.queue.extend(work);
            }
            tracing::debug!(resource = %key, "garbage collector: no longer served");
        }
        self.resources = found;
        self.check_synced();
    }

    fn check_synced(&mut self) {
        if !self.synced && self.unsynced.is_empty() {
            self.synced = true;
            tracing::info!(
                objects = self.graph.node_count(),
                "garbage collector: graph synced"
            );
        }
    }

    fn on_event(&mut self, key: String, event: MetaEvent) {
        let Some(resource) = self.resources.watched.get(&key).cloned() else {
            return;
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(resource = %key, error = %e, "garbage collector: watch");
                return;
            }
        };
        if key == CRDS && matches!(event, Event::Apply(_) | Event::Delete(_)) {
            self.rediscover_at = Some(Instant::now() + CRD_SETTLE);
        }
        match event {
            Event::Init => {
                self.listing.insert(key, BTreeSet::new());
            }
            Event::InitApply(o) => {
                if let Some(o) = observed(&key, &resource.api, &o) {
                    self.listing.entry(key).or_default().insert(o.uid.clone());
                    let work = self.graph.observe(o);
                    self.queue.extend(work);
                }
            }
            Event::InitDone => {
                // What the listing did not show was deleted while we were not watching.
                let seen = self.listing.remove(&key).unwrap_or_default();
                for uid in self.graph.uids_of(&key) {
                    if !seen.contains(&uid) {
                        let work = self.graph.remove(&uid);
                        self.queue.extend(work);
                    }
                }
                self.unsynced.remove(&key);
                self.check_synced();
            }
            Event::Apply(o) => {
                if let Some(o) = observed(&key, &resource.api, &o) {
                    let work = self.graph.observe(o);
                    self.queue.extend(work);
                }
            }
            Event::Delete(o) => {
                if let Some(uid) = o.metadata.uid.as_deref() {
                    let work = self.graph.remove(uid);
                    self.queue.extend(work);
                }
            }
        }
    }
}

/// The graph's view of an object's metadata.
fn observed(
    key: &str,
    api: &ApiResource,
    o: &PartialObjectMeta<DynamicObject>,
) -> Option<Observed> {
    let m = &o.metadata;
    Some(Observed {
        uid: m.uid.clone()?,
        at: Coordinates {
            api_version: api.api_version.clone(),
            kind: api.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone()?,
        },
        resource: key.to_string(),
        owners: m
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
                block: r.block_owner_deletion == Some(true),
            })
            .collect(),
        deleting: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
    })
}
