//! The store: a key-value log with revisions, shaped like etcd's keyspace, so the API server can
//! offer resourceVersion, optimistic concurrency and watch-from-revision on any backend.
//!
//! Layers (as kine does): the API server speaks this trait; each backend keeps an append-only
//! revision log. Every write gets a new cluster-wide revision; a key's `mod_revision` is the
//! revision of its last write and becomes the object's `metadata.resourceVersion`.

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};

/// One stored key at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (survives updates, reset by delete + create).
    pub create_revision: i64,
    /// Revision of the latest write to the key.
    pub mod_revision: i64,
}

/// A change, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The key was created (prev is None) or updated.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// The key was deleted at `revision`; `prev` is its last value.
    Delete { prev: KeyValue, revision: i64 },
}

impl Event {
    pub fn revision(&self) -> i64 {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

/// A page of a list, read at one consistent revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at (the list's resourceVersion).
    pub revision: i64,
    /// True when more keys follow the last one returned.
    pub more: bool,
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Create of a key that exists.
    #[error("key {0} already exists")]
    AlreadyExists(String),
    /// Update or delete of a key that does not exist.
    #[error("key {0} not found")]
    NotFound(String),
    /// Update or delete whose expected revision is not the key's current one.
    #[error("key {key} was modified: expected revision {expected}, current {current}")]
    Conflict {
        key: String,
        expected: i64,
        current: i64,
    },
    /// A read or watch from a revision older than the compacted one.
    #[error("revision {requested} has been compacted (oldest kept is {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// A read at a revision newer than the store's current one.
    #[error("revision {0} is in the future")]
    FutureRevision(i64),
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A stream of events in revision order. It ends when the store shuts down; a watcher that falls
/// too far behind receives `Err(Compacted)` and then the stream ends.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// What `Store::watch_with_progress` yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchItem {
    Event(Event),
    /// Every event under the watched prefix up to this revision has been yielded.
    Progress(i64),
}

/// A stream of events and progress marks, in revision order.
pub type ProgressWatchStream = BoxStream<'static, Result<WatchItem>>;

/// The events of a progress stream, without its progress marks: how a backend that produces
/// progress streams serves the plain `watch`.
pub fn events_only(items: ProgressWatchStream) -> WatchStream {
    items
        .filter_map(|item| async move {
            match item {
                Ok(WatchItem::Event(event)) => Some(Ok(event)),
                Ok(WatchItem::Progress(_)) => None,
                Err(e) => Some(Err(e)),
            }
        })
        .boxed()
}

/// The store interface every backend implements and the shared test suite checks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Current value of a key, or None.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, strictly after `start_after` when given, at most
    /// `limit` items (0 = no limit), read at `revision` (None = current). Reading at a revision
    /// older than the compacted one fails with `Compacted`.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<ListPage>;

    /// Number of keys under a prefix at the current revision.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Creates a key; fails with `AlreadyExists`. Returns the new key-value.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces a key's value if its mod_revision is `expected_revision`; fails with `NotFound`
    /// or `Conflict`. Returns the new key-value.
    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue>;

    /// Deletes a key, if `expected_revision` is given only when it matches. Returns the last
    /// value and the revision of the delete.
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)>;

    /// Events for keys under `prefix` with revision > `after_revision`, first those already in the
    /// log, then live ones. Fails with `Compacted` when `after_revision` is older than the log.
    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream>;

    /// Like `watch`, and when no event has been yielded for `interval`, a `Progress(revision)`
    /// saying every event under the prefix up to `revision` has been delivered: what the API
    /// server sends as a BOOKMARK, so a quiet watch's resourceVersion keeps up with the store
    /// and a reconnect after a compaction does not need a relist. Backends without progress
    /// information only yield events (this default).
    async fn watch_with_progress(
        &self,
        prefix: &str,
        after_revision: i64,
        interval: std::time::Duration,
    ) -> Result<ProgressWatchStream> {
        let _ = interval;
        use futures::StreamExt;
        let events = self.watch(prefix, after_revision).await?;
        Ok(events.map(|item| item.map(WatchItem::Event)).boxed())
    }

    /// The latest revision written.
    async fn current_revision(&self) -> Result<i64>;

    /// The oldest revision still readable (everything at or before it is gone).
    async fn compacted_revision(&self) -> Result<i64>;

    /// Drops history older than `revision` (current values are kept).
    async fn compact(&self, revision: i64) -> Result<()>;
}

pub mod conformance;
pub mod encrypted;
pub mod etcd;
pub mod sqlite;

pub use encrypted::EncryptedStore;
pub use etcd::EtcdStore;
pub use sqlite::SqliteStore;

/// Opens the store the server's `--datastore-endpoint` names, as k3s reads that flag: empty (or
/// None) is the embedded SQLite database at `default_sqlite`, `sqlite://<path>` another SQLite
/// file, and `http://host:port[,http://host:port...]` an etcd cluster. `compaction` applies to
/// either (None: no background compaction).
pub async fn open_endpoint(
    endpoint: Option<&str>,
    default_sqlite: &std::path::Path,
    compaction: Option<sqlite::CompactionPolicy>,
) -> Result<std::sync::Arc<dyn Store>> {
    let endpoint = endpoint.unwrap_or("").trim();
    let options = sqlite::Options {
        compaction,
        ..sqlite::Options::default()
    };
    if endpoint.is_empty() {
        return Ok(SqliteStore::open(default_sqlite, options)?);
    }
    if let Some(path) = endpoint.strip_prefix("sqlite://") {
        // k3s allows query parameters after the path; none of them apply here.
        let path = path.split('?').next().unwrap_or(path);
        return Ok(SqliteStore::open(std::path::Path::new(path), options)?);
    }
    let endpoints: Vec<String> = endpoint.split(',').map(|e| e.trim().to_string()).collect();
    if endpoints.iter().all(|e| e.starts_with("http://")) {
        let store = EtcdStore::connect(&endpoints, std::time::Duration::from_secs(10)).await?;
        if let Some(policy) = compaction {
            store.start_compactor(policy);
        }
        return Ok(store);
    }
    Err(Error::Backend(format!(
        "unsupported --datastore-endpoint {endpoint:?}: use sqlite://<path> or \
         http://<etcd host>:<port> (etcd over TLS is not supported yet)"
    )))
}

/// The end of the key range that holds every key starting with `prefix`, as bytes: keys are UTF-8,
/// whose bytes never reach 0xFF, so bumping the last byte bounds the range, and `[0xFF]` bounds
/// the whole keyspace when the prefix is empty.
pub(crate) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(last) => *last += 1,
        None => end.push(0xFF),
    }
    end
}

impl Event {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}
