//! The etcd backend: the trait maps one to one onto etcd's v3 API, whose keyspace the trait was
//! modelled on. Preconditions are transactions comparing `create_revision` / `mod_revision`;
//! revisions, history, watch and compaction are etcd's own.

use super::{
    events_only, prefix_end, Error, Event, KeyValue, ListPage, ProgressWatchStream, Result, Store,
    WatchItem, WatchStream,
};
use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
    WatchOptions,
};
use futures::StreamExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// gRPC messages may carry a whole list (10k pods are ~40 MB); tonic's default is 4 MB.
const MAX_MESSAGE: usize = 1 << 30;

/// A store kept in an etcd cluster.
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    /// The highest compacted revision this client has seen: lets `watch` refuse a compacted
    /// start without asking etcd (which would answer in the stream instead, a moment later).
    compacted_seen: AtomicI64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

fn backend(e: etcd_client::Error) -> Error {
    Error::Backend(format!("etcd: {e}"))
}

/// etcd reports these two conditions only as gRPC errors with fixed messages.
fn is_compacted(e: &etcd_client::Error) -> bool {
    e.to_string()
        .contains("required revision has been compacted")
}

fn is_future(e: &etcd_client::Error) -> bool {
    e.to_string()
        .contains("required revision is a future revision")
}

fn key_value(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: String::from_utf8(kv.key().to_vec())
            .map_err(|e| Error::Backend(format!("etcd key is not UTF-8: {e}")))?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn revision_of(txn: &TxnResponse) -> Result<i64> {
    txn.header()
        .map(|h| h.revision())
        .ok_or_else(|| Error::Backend("etcd answered without a header".into()))
}

/// The key-value a transaction's `else` branch read, if the key exists.
fn read_in_else(txn: &TxnResponse) -> Result<Option<KeyValue>> {
    for response in txn.op_responses() {
        if let TxnOpResponse::Get(get) = response {
            return get.kvs().first().map(key_value).transpose();
        }
    }
    Ok(None)
}

/// The previous value a put or delete returned inside a transaction.
fn prev_in_then(txn: &TxnResponse) -> Result<Option<KeyValue>> {
    for response in txn.op_responses() {
        match response {
            TxnOpResponse::Put(put) => return put.prev_key().map(key_value).transpose(),
            TxnOpResponse::Delete(delete) => {
                return delete.prev_kvs().first().map(key_value).transpose()
            }
            _ => {}
        }
    }
    Ok(None)
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (e.g. `http://127.0.0.1:2379`), waiting at most
    /// `timeout` for it to answer.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Arc<EtcdStore>> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(backend)?;
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            watch: client.watch_client().max_decoding_message_size(MAX_MESSAGE),
            compacted_seen: AtomicI64::new(0),
        };
        // The connection is lazy: make sure etcd answers before claiming success.
        store.current_revision().await?;
        Ok(Arc::new(store))
    }

    /// Compacts in the background like `SqliteStore`'s compactor (etcd 3.4 has none of its own
    /// unless started with --auto-compaction-retention). The task stops once the store is dropped.
    pub fn start_compactor(self: &Arc<Self>, policy: super::sqlite::CompactionPolicy) {
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut seen = None;
            loop {
                tokio::time::sleep(policy.interval).await;
                let Some(store) = store.upgrade() else { return };
                let current = match store.current_revision().await {
                    Ok(current) => current,
                    Err(e) => {
                        tracing::warn!("etcd compaction: {e}");
                        continue;
                    }
                };
                let target = seen.unwrap_or(0).min(current - policy.keep_revisions);
                seen = Some(current);
                if target > 1 {
                    if let Err(e) = store.compact(target).await {
                        tracing::warn!("etcd compaction to {target}: {e}");
                    }
                }
            }
        });
    }

    async fn start_watch(
        &self,
        prefix: &str,
        after_revision: i64,
        progress: Option<Duration>,
    ) -> Result<ProgressWatchStream> {
        let compacted = self.compacted_seen.load(Ordering::Acquire);
        if after_revision < compacted {
            return Err(Error::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(after_revision + 1)
            .with_prev_key();
        let stream = self
            .watch
            .clone()
            .watch(start, Some(options))
            .await
            .map_err(backend)?;
        let watcher = Watcher {
            stream,
            ready: VecDeque::new(),
            done: false,
            last: after_revision,
            progress,
            asked_progress: false,
        };
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        })
        .boxed())
    }

    async fn compacted_error(&self, requested: i64) -> Error {
        Error::Compacted {
            requested,
            compacted: self.compacted_revision().await.unwrap_or(0),
        }
    }

    /// Whether a read at `revision` works, or fails because it is compacted.
    async fn readable_at(&self, revision: i64) -> Result<bool> {
        let options = GetOptions::new().with_revision(revision).with_count_only();
        match self.kv.clone().get(vec![0u8], Some(options)).await {
            Ok(_) => Ok(true),
            Err(e) if is_compacted(&e) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self.kv.clone().get(key, None).await.map_err(backend)?;
        response.kvs().first().map(key_value).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<ListPage> {
        // The first key of the page: the prefix, or just after `start_after` (appending a zero
        // byte gives the smallest key greater than it).
        let mut start = prefix.as_bytes().to_vec();
        if let Some(after) = start_after.filter(|a| a.as_bytes() >= prefix.as_bytes()) {
            start = after.as_bytes().to_vec();
            start.push(0);
        }
        if start.is_empty() {
            start.push(0);
        }
        let mut options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_limit(limit as i64);
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = match self.kv.clone().get(start, Some(options)).await {
            Ok(response) => response,
            Err(e) if is_compacted(&e) => {
                return Err(self.compacted_error(revision.unwrap_or(0)).await)
            }
            Err(e) if is_future(&e) => return Err(Error::FutureRevision(revision.unwrap_or(0))),
            Err(e) => return Err(backend(e)),
        };
        let items = response
            .kvs()
            .iter()
            .map(key_value)
            .collect::<Result<Vec<_>>>()?;
        let current = response.header().map(|h| h.revision()).unwrap_or(0);
        Ok(ListPage {
            items,
            revision: revision.unwrap_or(current),
            more: response.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let start = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_count_only();
        let response = self
            .kv
            .clone()
            .get(start, Some(options))
            .await
            .map_err(backend)?;
        Ok(response.count())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(backend)?;
        if !response.succeeded() {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let revision = revision_of(&response)?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        // Both compares: "mod_revision == 0" alone would match a missing key and create it.
        let txn = Txn::new()
            .when([
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected_revision),
            ])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(backend)?;
        if !response.succeeded() {
            return Err(match read_in_else(&response)? {
                None => Error::NotFound(key.to_string()),
                Some(current) => Error::Conflict {
                    key: key.to_string(),
                    expected: expected_revision,
                    current: current.mod_revision,
                },
            });
        }
        let prev = prev_in_then(&response)?
            .ok_or_else(|| Error::Backend(format!("etcd returned no previous value of {key}")))?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: revision_of(&response)?,
        })
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected_revision {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.clone().txn(txn).await.map_err(backend)?;
        if !response.succeeded() {
            return Err(match read_in_else(&response)? {
                None => Error::NotFound(key.to_string()),
                Some(current) => Error::Conflict {
                    key: key.to_string(),
                    expected: expected_revision.unwrap_or(0),
                    current: current.mod_revision,
                },
            });
        }
        let prev = prev_in_then(&response)?
            .ok_or_else(|| Error::Backend(format!("etcd returned no previous value of {key}")))?;
        Ok((prev, revision_of(&response)?))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        let items = self.start_watch(prefix, after_revision, None).await?;
        Ok(events_only(items))
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after_revision: i64,
        interval: Duration,
    ) -> Result<ProgressWatchStream> {
        self.start_watch(prefix, after_revision, Some(interval))
            .await
    }

    async fn current_revision(&self) -> Result<i64> {
        let response = self
            .kv
            .clone()
            .get(vec![0u8], Some(GetOptions::new().with_count_only()))
            .await
            .map_err(backend)?;
        response
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| Error::Backend("etcd answered without a header".into()))
    }

    /// etcd does not report its compacted revision, but refuses reads below it: the oldest
    /// readable revision is found by bisection (about 20 reads for a million revisions).
    async fn compacted_revision(&self) -> Result<i64> {
        let current = self.current_revision().await?;
        if self.readable_at(1).await? {
            // Nothing or only revision 1 compacted: the two read alike.
            return Ok(self.compacted_seen.load(Ordering::Acquire).min(1));
        }
        // Invariant: `low` is not readable, `high` is.
        let (mut low, mut high) = (1, current);
        while high - low > 1 {
            let middle = low + (high - low) / 2;
            if self.readable_at(middle).await? {
                high = middle;
            } else {
                low = middle;
            }
        }
        self.compacted_seen.fetch_max(high, Ordering::AcqRel);
        Ok(high)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        // Physical: return only once the history is gone, so reads right after see the result.
        match self
            .kv
            .clone()
            .compact(revision, Some(CompactionOptions::new().with_physical()))
            .await
        {
            Ok(_) => {
                self.compacted_seen.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            // Already compacted past it: nothing to do.
            Err(e) if is_compacted(&e) => Ok(()),
            Err(e) if is_future(&e) => Err(Error::FutureRevision(revision)),
            Err(e) => Err(backend(e)),
        }
    }
}

/// One etcd watch as a stream of items.
struct Watcher {
    stream: etcd_client::WatchStream,
    /// Events of the last response not yet handed out.
    ready: VecDeque<Event>,
    /// Set after an error: nothing more is read.
    done: bool,
    /// The revision of the last item handed out.
    last: i64,
    progress: Option<Duration>,
    /// A progress request is out: its answer is the next response without events.
    asked_progress: bool,
}

impl Watcher {
    async fn next(&mut self) -> Option<Result<WatchItem>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                self.last = event.revision();
                return Some(Ok(WatchItem::Event(event)));
            }
            if self.done {
                return None;
            }
            let message = match self.progress {
                Some(interval) if !self.asked_progress => {
                    match tokio::time::timeout(interval, self.stream.message()).await {
                        Ok(message) => message,
                        Err(_) => {
                            // Quiet: ask etcd where this watch stands.
                            if let Err(e) = self.stream.request_progress().await {
                                self.done = true;
                                return Some(Err(backend(e)));
                            }
                            self.asked_progress = true;
                            continue;
                        }
                    }
                }
                _ => self.stream.message().await,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(backend(e)));
                }
            };
            if response.canceled() {
                self.done = true;
                return Some(Err(if response.compact_revision() > 0 {
                    Error::Compacted {
                        requested: self.last,
                        compacted: response.compact_revision(),
                    }
                } else {
                    Error::Backend(format!(
                        "etcd cancelled the watch: {}",
                        response.cancel_reason()
                    ))
                }));
            }
            if response.events().is_empty() {
                // Besides the creation answer, an empty response is a progress notification:
                // every event up to its header's revision has been sent.
                let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                if !response.created() && self.progress.is_some() && revision > self.last {
                    self.asked_progress = false;
                    self.last = revision;
                    return Some(Ok(WatchItem::Progress(revision)));
                }
                self.asked_progress = false;
                continue;
            }
            for event in response.events() {
                match convert(event) {
                    Ok(event) => self.ready.push_back(event),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

fn convert(event: &etcd_client::Event) -> Result<Event> {
    let kv = event
        .kv()
        .ok_or_else(|| Error::Backend("etcd watch event without a key".into()))?;
    let prev = event.prev_kv().map(key_value).transpose()?;
    Ok(match event.event_type() {
        EventType::Put => Event::Put {
            kv: key_value(kv)?,
            prev,
        },
        EventType::Delete => Event::Delete {
            prev: prev.ok_or_else(|| {
                Error::Backend(format!(
                    "etcd delete event of {} without its previous value",
                    String::from_utf8_lossy(kv.key())
                ))
            })?,
            revision: kv.mod_revision(),
        },
    })
}
