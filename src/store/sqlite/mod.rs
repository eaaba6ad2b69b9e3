//! The embedded store: one SQLite database in WAL mode holding an append-only revision log.
//!
//! Threads: one writer thread owns the read-write connection (see `writer`), reads run on a small
//! pool of read-only connections in tokio's blocking threads (see `reader`), a checkpoint thread
//! copies the WAL into the database (see `checkpoint`), and an optional compactor thread asks
//! the writer to drop old history. The async methods only send work to
//! those threads and await the answer, so SQLite never blocks the runtime.
//!
//! docs/store.md describes the schema, revisions, watch and compaction.

mod checkpoint;
mod reader;
mod schema;
mod watch;
mod writer;

use super::{
    events_only, Error, Event, KeyValue, ListPage, ProgressWatchStream, Result, Store, WatchStream,
};
use async_trait::async_trait;
use reader::Readers;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};
use writer::{Command, Op, Outcome, Writer};

/// When a write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write-ahead log is fsynced before a write returns (`synchronous=FULL`): survives a
    /// crash of the process and of the machine. Group commit makes it one fsync per batch.
    Fsync,
    /// The commit is in the OS page cache when a write returns (`synchronous=NORMAL`): survives
    /// kill -9 of the process, but a power loss may drop the last commits.
    ProcessCrash,
}

/// The background compactor's policy: every `interval`, drop the history older than what was
/// current one interval ago, while always keeping at least `keep_revisions` revisions. So a
/// watcher that reconnects within one interval resumes where it was, like kube-apiserver's
/// five-minute etcd compaction.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPolicy {
    pub interval: Duration,
    pub keep_revisions: i64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            interval: Duration::from_secs(300),
            keep_revisions: 1000,
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// Read connections: as many lists, gets and watch replays run at once.
    pub read_connections: usize,
    /// Events kept for watchers that are behind; one that falls further behind catches up from
    /// the log instead.
    pub watch_buffer: usize,
    /// Background compaction; None leaves history until `compact` is called.
    pub compaction: Option<CompactionPolicy>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Fsync,
            read_connections: 4,
            watch_buffer: 1024,
            compaction: Some(CompactionPolicy::default()),
        }
    }
}

/// Counters the writer publishes after each commit, read without touching the database.
pub(super) struct Shared {
    revision: AtomicI64,
    compacted: AtomicI64,
}

fn backend(e: rusqlite::Error) -> Error {
    Error::Backend(e.to_string())
}

/// The SQLite store. Dropping it stops its threads (after the writes already queued) and ends
/// every watch stream.
pub struct SqliteStore {
    path: PathBuf,
    shared: Arc<Shared>,
    readers: Arc<Readers>,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    events: broadcast::Sender<Arc<Event>>,
    writer: Option<JoinHandle<()>>,
    /// Ends when the writer does (it holds the request channel).
    checkpointer: Option<JoinHandle<()>>,
    compactor: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    /// Held for the store's life: two writers on one file would hand out the same revisions.
    _lock: std::fs::File,
}

/// Takes the lock file next to the database, so a second server on the same data directory
/// fails at start instead of corrupting the revision sequence.
fn lock(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push("-lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::Backend(format!("opening {}: {e}", Path::new(&lock_path).display())))?;
    file.try_lock().map_err(|e| {
        Error::Backend(format!(
            "{} is in use by another process ({e})",
            path.display()
        ))
    })?;
    Ok(file)
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`. Synchronous: it only opens files and
    /// starts threads, so it may be called from async code as well.
    pub fn open(path: &Path, options: Options) -> Result<Arc<SqliteStore>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let lock = lock(path)?;
        let conn = schema::open_writer(path, options.durability).map_err(backend)?;
        let (revision, compacted) = writer::resume(&conn).map_err(backend)?;
        let shared = Arc::new(Shared {
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let readers = Arc::new(Readers::new(
            path.to_path_buf(),
            options.durability,
            options.read_connections,
        )?);
        let (events, _) = broadcast::channel(options.watch_buffer.max(16));
        let (commands, inbox) = mpsc::channel();
        let (checkpoints, checkpointer) =
            checkpoint::start(path, options.durability).map_err(backend)?;
        let checkpointer = checkpointer
            .map_err(|e| Error::Backend(format!("starting the checkpoint thread: {e}")))?;
        let writer = Writer {
            conn,
            shared: shared.clone(),
            events: events.clone(),
            revision,
            checkpoints,
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(inbox))
            .map_err(|e| Error::Backend(format!("starting the writer thread: {e}")))?;
        let compactor = match options.compaction {
            Some(policy) => Some(start_compactor(policy, shared.clone(), commands.clone())?),
            None => None,
        };
        Ok(Arc::new(SqliteStore {
            path: path.to_path_buf(),
            shared,
            readers,
            commands: Mutex::new(Some(commands)),
            events,
            writer: Some(writer),
            checkpointer: Some(checkpointer),
            compactor,
            _lock: lock,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn start_watch(
        &self,
        prefix: &str,
        after_revision: i64,
        progress: Option<Duration>,
    ) -> Result<ProgressWatchStream> {
        // Subscribe before anything is read: see the `watch` module.
        let live = self.events.subscribe();
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        if after_revision < compacted {
            return Err(Error::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        Ok(watch::stream(
            self.readers.clone(),
            prefix.to_string(),
            after_revision,
            live,
            progress,
        ))
    }

    async fn write(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Write { op, reply })?;
        answer
            .await
            .map_err(|_| Error::Backend("the store writer stopped".into()))?
    }

    fn send(&self, command: Command) -> Result<()> {
        let commands = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        commands
            .as_ref()
            .ok_or_else(|| Error::Backend("the store is closed".into()))?
            .send(command)
            .map_err(|_| Error::Backend("the store writer stopped".into()))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.compactor.take() {
            drop(stop);
            let _ = thread.join();
        }
        // The writer drains what is queued, then sees the channel close and exits; joining it
        // means a reopen of the same file right after finds every acknowledged write.
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
    }
}

fn start_compactor(
    policy: CompactionPolicy,
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
) -> Result<(mpsc::Sender<()>, JoinHandle<()>)> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("store-compactor".into())
        .spawn(move || {
            let mut seen = shared.revision.load(Ordering::Acquire);
            // Wakes up every interval until the store drops `stop`.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(policy.interval) {
                let current = shared.revision.load(Ordering::Acquire);
                let target = seen.min(current - policy.keep_revisions);
                seen = current;
                if target <= shared.compacted.load(Ordering::Acquire) {
                    continue;
                }
                let (reply, answer) = oneshot::channel();
                if commands
                    .send(Command::Compact {
                        revision: target,
                        reply,
                    })
                    .is_err()
                {
                    return;
                }
                if let Ok(Err(e)) = answer.blocking_recv() {
                    tracing::warn!("store compaction to {target} failed: {e}");
                }
            }
        })
        .map_err(|e| Error::Backend(format!("starting the compactor thread: {e}")))?;
    Ok((stop, thread))
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.readers.run(move |conn| reader::get(conn, &key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<ListPage> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.readers
            .run(move |conn| reader::list(conn, &prefix, start_after.as_deref(), limit, revision))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        let prefix = prefix.to_string();
        self.readers
            .run(move |conn| reader::count(conn, &prefix))
            .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        match self
            .write(Op::Create {
                key: key.to_string(),
                value,
            })
            .await?
        {
            Outcome::Put(kv) => Ok(kv),
            Outcome::Deleted(..) => Err(Error::Backend("create answered with a delete".into())),
        }
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        match self
            .write(Op::Update {
                key: key.to_string(),
                value,
                expected: expected_revision,
            })
            .await?
        {
            Outcome::Put(kv) => Ok(kv),
            Outcome::Deleted(..) => Err(Error::Backend("update answered with a delete".into())),
        }
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        match self
            .write(Op::Delete {
                key: key.to_string(),
                expected: expected_revision,
            })
            .await?
        {
            Outcome::Deleted(prev, revision) => Ok((prev, revision)),
            Outcome::Put(_) => Err(Error::Backend("delete answered with a put".into())),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        let items = self.start_watch(prefix, after_revision, None)?;
        Ok(events_only(items))
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after_revision: i64,
        interval: Duration,
    ) -> Result<ProgressWatchStream> {
        self.start_watch(prefix, after_revision, Some(interval))
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Compact { revision, reply })?;
        answer
            .await
            .map_err(|_| Error::Backend("the store writer stopped".into()))?
    }
}
