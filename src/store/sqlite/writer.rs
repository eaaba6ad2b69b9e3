//! The single writer: one thread owns the only read-write connection, takes every write from a
//! channel and commits whatever has queued up as one transaction (group commit), so 50 concurrent
//! writers cost one fsync per batch instead of one each, while each caller still gets its own
//! result. Revisions are handed out here, which is what makes them cluster-wide and gap-free.
//!
//! Compaction runs on this thread too, in short chunks between batches, so it never holds the
//! write lock for long and never races a write.

use super::checkpoint::Checkpoints;
use super::{backend, schema, Shared};
use crate::store::{Error, Event, KeyValue, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use tokio::sync::{broadcast, oneshot};

/// Most writes committed in one transaction: bounds the latency the first writer of a batch pays.
const MAX_BATCH: usize = 256;
/// Revisions of history one compaction chunk walks through in one transaction.
const COMPACT_CHUNK: i64 = 2000;

/// A write as the caller asked for it.
pub(super) enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
}

/// What a successful write produced.
pub(super) enum Outcome {
    Put(KeyValue),
    Deleted(KeyValue, i64),
}

pub(super) enum Command {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    Compact {
        revision: i64,
        reply: oneshot::Sender<Result<()>>,
    },
}

/// A compaction in progress: history up to `done` is gone, up to `target` is to go.
struct Compaction {
    done: i64,
    target: i64,
    replies: Vec<oneshot::Sender<Result<()>>>,
}

pub(super) struct Writer {
    pub conn: Connection,
    pub shared: Arc<Shared>,
    pub events: broadcast::Sender<Arc<Event>>,
    /// The last revision committed.
    pub revision: i64,
    pub checkpoints: Checkpoints,
}

impl Writer {
    /// Serves commands until every sender is gone (the store was dropped).
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut compaction: Option<Compaction> = None;
        loop {
            // Block for work only when no compaction is waiting for idle time.
            let first = if compaction.is_some() {
                match commands.try_recv() {
                    Ok(command) => Some(command),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                match commands.recv() {
                    Ok(command) => Some(command),
                    Err(_) => break,
                }
            };
            let mut batch = Vec::new();
            let mut next = first;
            while let Some(command) = next {
                match command {
                    Command::Write { op, reply } => batch.push((op, reply)),
                    Command::Compact { revision, reply } => {
                        self.request_compaction(&mut compaction, revision, reply)
                    }
                }
                next = if batch.len() < MAX_BATCH {
                    commands.try_recv().ok()
                } else {
                    None
                };
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            if let Some(mut running) = compaction.take() {
                match self.compact_chunk(&mut running) {
                    Ok(()) if running.done >= running.target => {
                        for reply in running.replies {
                            let _ = reply.send(Ok(()));
                        }
                    }
                    Ok(()) => compaction = Some(running),
                    Err(e) => {
                        for reply in running.replies {
                            let _ = reply.send(Err(Error::Backend(e.to_string())));
                        }
                    }
                }
            }
        }
        // A clean shutdown leaves the database whole, so the WAL need not be replayed at start.
        let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);");
    }

    fn request_compaction(
        &mut self,
        compaction: &mut Option<Compaction>,
        revision: i64,
        reply: oneshot::Sender<Result<()>>,
    ) {
        if revision > self.revision {
            let _ = reply.send(Err(Error::FutureRevision(revision)));
            return;
        }
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        match compaction {
            Some(running) => {
                running.target = running.target.max(revision);
                running.replies.push(reply);
            }
            None if revision <= compacted => {
                let _ = reply.send(Ok(()));
            }
            None => {
                *compaction = Some(Compaction {
                    done: compacted,
                    target: revision,
                    replies: vec![reply],
                })
            }
        }
    }

    /// Commits a batch: each write runs in its own savepoint so a refused or failed write leaves
    /// no trace while the others of the batch still commit; then the events go out in revision
    /// order and every caller gets its answer.
    fn commit(&mut self, batch: Vec<(Op, oneshot::Sender<Result<Outcome>>)>) {
        let start = self.revision;
        let mut revision = start;
        let mut results: Vec<Result<(Outcome, Event)>> = Vec::with_capacity(batch.len());
        let committed = (|| -> rusqlite::Result<()> {
            let mut tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            for (op, _) in &batch {
                let savepoint = tx.savepoint()?;
                match apply(&savepoint, op, revision + 1) {
                    Ok(done) => {
                        savepoint.commit()?;
                        revision += 1;
                        results.push(Ok(done));
                    }
                    // Dropping the savepoint rolls back whatever the write had done.
                    Err(e) => results.push(Err(e)),
                }
            }
            if revision != start {
                tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")?
                    .execute([revision])?;
            }
            tx.commit()
        })();
        if let Err(e) = committed {
            // Nothing of the batch is on disk: every caller learns it, and the revisions are
            // handed out again.
            for (_, reply) in batch {
                let _ = reply.send(Err(Error::Backend(format!("commit failed: {e}"))));
            }
            return;
        }
        self.revision = revision;
        self.shared.revision.store(revision, Ordering::Release);
        let written = batch
            .iter()
            .map(|(op, _)| match op {
                Op::Create { value, .. } | Op::Update { value, .. } => value.len() + 512,
                Op::Delete { .. } => 512,
            })
            .sum::<usize>();
        let mut replies = Vec::with_capacity(batch.len());
        for ((_, reply), result) in batch.into_iter().zip(results) {
            match result {
                Ok((outcome, event)) => {
                    // No receivers is fine: nobody watches.
                    let _ = self.events.send(Arc::new(event));
                    replies.push((reply, Ok(outcome)));
                }
                Err(e) => replies.push((reply, Err(e))),
            }
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        // After the answers: a checkpoint's cost lands between batches, not inside one.
        self.checkpoints.after_commit(&self.conn, written);
    }

    /// Removes one chunk of history: every row superseded by a row in (done, done+chunk], and
    /// the deletes in that range (a deleted key needs no row once nobody can read before it).
    /// Each row links to the row it superseded (`prev_revision`), so a chunk touches only the
    /// rows it removes.
    fn compact_chunk(&mut self, compaction: &mut Compaction) -> rusqlite::Result<()> {
        let from = compaction.done;
        let to = compaction.target.min(from + COMPACT_CHUNK);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "DELETE FROM log WHERE revision IN
             (SELECT prev_revision FROM log WHERE revision > ?1 AND revision <= ?2 AND prev_revision > 0)",
        )?
        .execute([from, to])?;
        tx.prepare_cached(
            "DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND deleted = 1",
        )?
        .execute([from, to])?;
        tx.prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'compacted'")?
            .execute([to])?;
        tx.commit()?;
        compaction.done = to;
        self.shared.compacted.store(to, Ordering::Release);
        Ok(())
    }
}

/// The key's live row: (create_revision, mod_revision, value).
fn current(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT l.create_revision, l.revision, l.value
         FROM current c JOIN log l ON l.revision = c.revision WHERE c.key = ?1",
    )?
    .query_row([key.as_bytes()], |r| {
        Ok(KeyValue {
            key: key.to_string(),
            create_revision: r.get(0)?,
            mod_revision: r.get(1)?,
            value: r.get(2)?,
        })
    })
    .optional()
}

fn append(
    conn: &Connection,
    revision: i64,
    key: &str,
    deleted: bool,
    create_revision: i64,
    prev_revision: i64,
    value: &[u8],
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO log (revision, key, created, deleted, create_revision, prev_revision, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![
        revision,
        key.as_bytes(),
        prev_revision == 0,
        deleted,
        create_revision,
        prev_revision,
        value
    ])?;
    Ok(())
}

/// Applies one write at `revision`: checks its precondition against the live row, appends to the
/// log and moves `current`.
fn apply(conn: &Connection, op: &Op, revision: i64) -> Result<(Outcome, Event)> {
    match op {
        Op::Create { key, value } => {
            if current(conn, key).map_err(backend)?.is_some() {
                return Err(Error::AlreadyExists(key.clone()));
            }
            append(conn, revision, key, false, revision, 0, value).map_err(backend)?;
            conn.prepare_cached("INSERT INTO current (key, revision) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(rusqlite::params![key.as_bytes(), revision]))
                .map_err(backend)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            Ok((Outcome::Put(kv.clone()), Event::Put { kv, prev: None }))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let prev = current(conn, key)
                .map_err(backend)?
                .ok_or_else(|| Error::NotFound(key.clone()))?;
            if prev.mod_revision != *expected {
                return Err(Error::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: prev.mod_revision,
                });
            }
            append(
                conn,
                revision,
                key,
                false,
                prev.create_revision,
                prev.mod_revision,
                value,
            )
            .map_err(backend)?;
            conn.prepare_cached("UPDATE current SET revision = ?2 WHERE key = ?1")
                .and_then(|mut s| s.execute(rusqlite::params![key.as_bytes(), revision]))
                .map_err(backend)?;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: prev.create_revision,
                mod_revision: revision,
            };
            Ok((
                Outcome::Put(kv.clone()),
                Event::Put {
                    kv,
                    prev: Some(prev),
                },
            ))
        }
        Op::Delete { key, expected } => {
            let prev = current(conn, key)
                .map_err(backend)?
                .ok_or_else(|| Error::NotFound(key.clone()))?;
            if let Some(expected) = expected {
                if prev.mod_revision != *expected {
                    return Err(Error::Conflict {
                        key: key.clone(),
                        expected: *expected,
                        current: prev.mod_revision,
                    });
                }
            }
            // The delete's row carries no value: its previous row stays in the log as long as
            // anyone may read the delete, and holds the value watchers are sent.
            append(
                conn,
                revision,
                key,
                true,
                prev.create_revision,
                prev.mod_revision,
                &[],
            )
            .map_err(backend)?;
            conn.prepare_cached("DELETE FROM current WHERE key = ?1")
                .and_then(|mut s| s.execute([key.as_bytes()]))
                .map_err(backend)?;
            Ok((
                Outcome::Deleted(prev.clone(), revision),
                Event::Delete { prev, revision },
            ))
        }
    }
}

/// Reads the counters a writer resumes from.
pub(super) fn resume(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    Ok((
        schema::meta(conn, "revision")?,
        schema::meta(conn, "compacted")?,
    ))
}
