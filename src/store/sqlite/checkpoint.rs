//! Keeping the WAL small. SQLite's automatic checkpoint runs inside the commit that crosses the
//! threshold, so that write (and the whole batch with it) would wait for megabytes to be copied
//! into the database and fsynced. Instead a checkpoint thread copies the WAL while writes go on,
//! and the writer then finishes the job between two batches: the few frames appended since, so
//! that the WAL is wholly copied and the next write starts it again from the beginning. Without
//! that last step a busy store's WAL would never be wholly copied and would grow without end.

use super::{schema, Durability};
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Bytes written between two background checkpoints, a rough stand-in for the WAL's growth
/// (each write also touches a few index and table pages).
const CHECKPOINT_BYTES: usize = 4 << 20;

/// The writer's side: counts what was written, wakes the thread, finishes its checkpoints.
pub(super) struct Checkpoints {
    requests: mpsc::SyncSender<()>,
    copied: Arc<AtomicBool>,
    written: usize,
}

impl Checkpoints {
    /// Called by the writer after each commit of `bytes`.
    pub(super) fn after_commit(&mut self, conn: &Connection, bytes: usize) {
        if self.copied.swap(false, Ordering::AcqRel) {
            // Only frames appended since the background run are left: cheap.
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                tracing::warn!("store checkpoint failed: {e}");
            }
        }
        self.written += bytes;
        if self.written >= CHECKPOINT_BYTES {
            // Full means a run is pending already, which covers this one too.
            let _ = self.requests.try_send(());
            self.written = 0;
        }
    }
}

/// Starts the checkpoint thread; it ends when the writer drops its `Checkpoints`.
pub(super) fn start(
    path: &Path,
    durability: Durability,
) -> rusqlite::Result<(Checkpoints, std::io::Result<JoinHandle<()>>)> {
    let conn = schema::open_checkpointer(path, durability)?;
    let (requests, wakeups) = mpsc::sync_channel(1);
    let copied = Arc::new(AtomicBool::new(false));
    let done = copied.clone();
    let thread = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            // PASSIVE never waits for the writer or readers; frames a reader still needs are
            // left for a later run.
            while wakeups.recv().is_ok() {
                match conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    Ok(()) => done.store(true, Ordering::Release),
                    Err(e) => tracing::warn!("store checkpoint failed: {e}"),
                }
            }
        });
    Ok((
        Checkpoints {
            requests,
            copied,
            written: 0,
        },
        thread,
    ))
}
