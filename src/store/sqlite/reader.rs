//! Reads: a small pool of read-only connections used from tokio's blocking threads, and the
//! queries they run. In WAL mode a reader sees the last commit at the moment its transaction
//! starts and never waits for the writer, so a list of 10k keys and a stream of writes overlap.

use super::{backend, schema, Durability};
use crate::store::{prefix_end, Error, Event, KeyValue, ListPage, Result};
use rusqlite::{Connection, OptionalExtension, Row};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// Read connections, handed out one per query; at most `size` queries run at once.
pub(super) struct Readers {
    path: PathBuf,
    durability: Durability,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    pub(super) fn new(path: PathBuf, durability: Durability, size: usize) -> Result<Readers> {
        let size = size.max(1);
        let mut idle = Vec::with_capacity(size);
        for _ in 0..size {
            idle.push(schema::open_reader(&path, durability).map_err(backend)?);
        }
        Ok(Readers {
            path,
            durability,
            idle: Mutex::new(idle),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Runs `query` on a read connection in a blocking thread, so SQLite never stalls the runtime.
    pub(super) async fn run<T, F>(self: &Arc<Self>, query: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Backend("store is closed".into()))?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            // The permit travels with the closure: a caller that gives up waiting does not free
            // the slot before the connection is back in the pool.
            let _permit = permit;
            let popped = this.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut conn = match popped {
                Some(conn) => conn,
                // Only after a query panicked and took its connection with it.
                None => schema::open_reader(&this.path, this.durability).map_err(backend)?,
            };
            let result = query(&mut conn);
            this.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| Error::Backend(format!("read task failed: {e}")))?
    }
}

/// Builds a key-value from columns (key, create_revision, mod_revision, value) starting at `at`.
fn key_value(row: &Row, at: usize) -> rusqlite::Result<KeyValue> {
    let key: Vec<u8> = row.get(at)?;
    Ok(KeyValue {
        key: String::from_utf8(key).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Blob, e.into())
        })?,
        create_revision: row.get(at + 1)?,
        mod_revision: row.get(at + 2)?,
        value: row.get(at + 3)?,
    })
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    conn.prepare_cached(
        "SELECT c.key, l.create_revision, l.revision, l.value
         FROM current c JOIN log l ON l.revision = c.revision WHERE c.key = ?1",
    )
    .map_err(backend)?
    .query_row([key.as_bytes()], |r| key_value(r, 0))
    .optional()
    .map_err(backend)
}

pub(super) fn count(conn: &Connection, prefix: &str) -> Result<i64> {
    conn.prepare_cached("SELECT count(*) FROM current WHERE key >= ?1 AND key < ?2")
        .map_err(backend)?
        .query_row(
            rusqlite::params![prefix.as_bytes(), prefix_end(prefix)],
            |r| r.get(0),
        )
        .map_err(backend)
}

/// One page of a list. The revision counters and the rows are read in one read transaction, so
/// the page is exactly the state at the revision it reports.
pub(super) fn list(
    conn: &mut Connection,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Option<i64>,
) -> Result<ListPage> {
    let tx = conn.transaction().map_err(backend)?;
    let current = schema::meta(&tx, "revision").map_err(backend)?;
    let compacted = schema::meta(&tx, "compacted").map_err(backend)?;
    let at = revision.unwrap_or(current);
    if at > current {
        return Err(Error::FutureRevision(at));
    }
    if at < compacted {
        return Err(Error::Compacted {
            requested: at,
            compacted,
        });
    }
    // Keys are never empty, so "after the empty key" means "from the start".
    let after = start_after.unwrap_or("").as_bytes();
    let end = prefix_end(prefix);
    // One extra row tells whether more follow.
    let limit = limit.min(i32::MAX as usize);
    let fetch = if limit == 0 { -1 } else { limit as i64 + 1 };
    // The state at `at` is the current row of every key untouched since `at`, plus, for the keys
    // written after `at`, their last row at or before it (unless that row is a delete). Both come
    // in key order and are merged. At the current revision the second part is empty, and close
    // to it (the later pages of a list, read at the first page's revision) it is small, so no
    // list walks the whole history. NOT INDEXED keeps SQLite from walking the key index over
    // the prefix's whole history: the rows after `at` are a rowid range, usually a short one.
    // Keys and revisions only: values are read for the rows that make it into the page.
    let mut changed: Vec<(Vec<u8>, i64)> = Vec::new();
    if at < current {
        let mut stmt = tx
            .prepare_cached(
                "SELECT m.key, m.revision
                 FROM (SELECT t.key AS key,
                              (SELECT max(h.revision) FROM log h
                               WHERE h.key = t.key AND h.revision <= ?5) AS revision
                       FROM (SELECT DISTINCT key FROM log NOT INDEXED
                             WHERE revision > ?5 AND key >= ?1 AND key < ?2 AND key > ?3) t) m
                 JOIN log d ON d.revision = m.revision
                 WHERE d.deleted = 0
                 ORDER BY m.key LIMIT ?4",
            )
            .map_err(backend)?;
        let mut rows = stmt
            .query(rusqlite::params![prefix.as_bytes(), end, after, fetch, at])
            .map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            changed.push((row.get(0).map_err(backend)?, row.get(1).map_err(backend)?));
        }
    }
    let load = |revision: i64| -> Result<KeyValue> {
        tx.prepare_cached(
            "SELECT key, create_revision, revision, value FROM log WHERE revision = ?1",
        )
        .map_err(backend)?
        .query_row([revision], |r| key_value(r, 0))
        .map_err(backend)
    };
    let mut changed = changed.into_iter().peekable();
    let mut items = Vec::new();
    let wanted = if limit == 0 { usize::MAX } else { limit + 1 };
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT c.key, l.create_revision, l.revision, l.value
                 FROM current c JOIN log l ON l.revision = c.revision
                 WHERE c.key >= ?1 AND c.key < ?2 AND c.key > ?3 AND c.revision <= ?5
                 ORDER BY c.key LIMIT ?4",
            )
            .map_err(backend)?;
        let mut rows = stmt
            .query(rusqlite::params![prefix.as_bytes(), end, after, fetch, at])
            .map_err(backend)?;
        while items.len() < wanted {
            let Some(row) = rows.next().map_err(backend)? else {
                break;
            };
            let kv = key_value(row, 0).map_err(backend)?;
            // The two parts never share a key: a key is either untouched since `at` or not.
            while items.len() < wanted
                && changed
                    .peek()
                    .is_some_and(|(key, _)| key.as_slice() < kv.key.as_bytes())
            {
                let (_, revision) = changed.next().expect("peeked");
                items.push(load(revision)?);
            }
            if items.len() < wanted {
                items.push(kv);
            }
        }
    }
    while items.len() < wanted {
        match changed.next() {
            Some((_, revision)) => items.push(load(revision)?),
            None => break,
        }
    }
    let more = limit != 0 && items.len() > limit;
    items.truncate(if more { limit } else { items.len() });
    Ok(ListPage {
        items,
        revision: at,
        more,
    })
}

/// What a watcher's replay read: events after a revision, and the state it was read at.
pub(super) struct Replay {
    pub events: Vec<Event>,
    /// The store's revision when the page was read: when the page is not full, every event of
    /// the prefix up to here has been seen.
    pub revision: i64,
}

/// Events under `prefix` with revision > `after`, oldest first, at most `limit`.
pub(super) fn replay(
    conn: &mut Connection,
    prefix: &str,
    after: i64,
    limit: usize,
) -> Result<Replay> {
    let tx = conn.transaction().map_err(backend)?;
    let current = schema::meta(&tx, "revision").map_err(backend)?;
    let compacted = schema::meta(&tx, "compacted").map_err(backend)?;
    // Compaction at C removes rows superseded at or before C, so only "after >= C" is complete.
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let mut events = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT l.key, l.create_revision, l.revision, l.value, l.deleted,
                        p.key, p.create_revision, p.revision, p.value
                 FROM log l LEFT JOIN log p ON p.revision = l.prev_revision AND l.prev_revision > 0
                 WHERE l.revision > ?1 AND l.key >= ?2 AND l.key < ?3
                 ORDER BY l.revision LIMIT ?4",
            )
            .map_err(backend)?;
        let mut rows = stmt
            .query(rusqlite::params![
                after,
                prefix.as_bytes(),
                prefix_end(prefix),
                limit as i64
            ])
            .map_err(backend)?;
        while let Some(row) = rows.next().map_err(backend)? {
            let kv = key_value(row, 0).map_err(backend)?;
            let deleted: bool = row.get(4).map_err(backend)?;
            let has_prev = row
                .get_ref(5)
                .map_err(backend)?
                .as_bytes_or_null()
                .ok()
                .flatten();
            let prev = match has_prev {
                Some(_) => Some(key_value(row, 5).map_err(backend)?),
                None => None,
            };
            events.push(if deleted {
                let revision = kv.mod_revision;
                let prev = prev.ok_or_else(|| {
                    Error::Backend(format!("delete of {} at {revision} lost its value", kv.key))
                })?;
                Event::Delete { prev, revision }
            } else {
                Event::Put { kv, prev }
            });
        }
    }
    Ok(Replay {
        events,
        revision: current,
    })
}
