//! The on-disk layout and the connection settings every SQLite connection of the store shares.
//!
//! `log` is the append-only revision log: one row per write, its rowid *is* the revision, so rows
//! sit on disk in revision order and a replay from a revision is a rowid range scan. `current` maps
//! every live key to the log row holding its value; it is kept in the same transaction as the log,
//! so "the current value of every key under a prefix" is a walk of `current` in key order joined to
//! `log` by rowid, instead of a max-per-key scan of the whole history. `meta` holds the counters
//! that must survive a restart.

use super::Durability;
use rusqlite::Connection;

/// Page size for new databases: a pod of 3-5 KB then fits in one page instead of spilling into an
/// overflow chain, which halves the page reads of a large list.
const PAGE_SIZE: u32 = 8192;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             BLOB    NOT NULL,
    created         INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    value           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS current (
    key      BLOB PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', 1), ('revision', 1), ('compacted', 0);
";

/// Settings of every connection. `busy_timeout` only matters for the rare moments a checkpoint
/// needs a lock; WAL readers and the single writer never wait for each other otherwise.
fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    // Without the query planner stability guarantee SQLite marks a statement whose plan could
    // depend on a bound value (our keyed joins, every LIMIT ?) to be compiled again whenever
    // that value changes: every cached statement was re-parsed on every use, about a sixth of
    // the server's CPU under a write load. Our plans never depend on the values.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    let synchronous = match durability {
        Durability::Fsync => "FULL",
        Durability::ProcessCrash => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = 10000;
         PRAGMA synchronous = {synchronous};
         PRAGMA foreign_keys = OFF;
         PRAGMA mmap_size = 1073741824;"
    ))
}

/// Opens the writer's connection, creating the database and its tables when missing.
pub(super) fn open_writer(
    path: &std::path::Path,
    durability: Durability,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // page_size only takes effect before the first table exists, so it is harmless on reopen.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE};"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode WAL refused (got {mode})"
        )));
    }
    configure(&conn, durability)?;
    // Checkpoints are run by the `checkpoint` module, never inside a commit. When the WAL
    // restarts after a burst, it is cut back to 64 MiB.
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Opens the checkpointer's connection: read-write, but it only ever runs checkpoints.
pub(super) fn open_checkpointer(
    path: &std::path::Path,
    durability: Durability,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn, durability)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    Ok(conn)
}

/// Opens a read connection (the database exists: the writer made it).
pub(super) fn open_reader(
    path: &std::path::Path,
    durability: Durability,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&conn, durability)?;
    Ok(conn)
}

/// Reads one counter of `meta`.
pub(super) fn meta(conn: &Connection, name: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::StatementStatus;

    /// A cached keyed read is compiled once, not again for each key bound to it.
    #[test]
    fn cached_statements_are_not_recompiled_per_bound_value() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!("nk-schema-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.db");
        let w = open_writer(&path, Durability::ProcessCrash).unwrap();
        for (rev, key) in [(1i64, "/a/1"), (2, "/a/2"), (3, "/a/3")] {
            w.execute(
                "INSERT INTO log VALUES (?1, ?2, 1, 0, ?1, 0, x'00')",
                rusqlite::params![rev, key.as_bytes()],
            )
            .unwrap();
            w.execute(
                "INSERT INTO current VALUES (?1, ?2)",
                rusqlite::params![key.as_bytes(), rev],
            )
            .unwrap();
        }
        let r = open_reader(&path, Durability::ProcessCrash).unwrap();
        let sql = "SELECT l.revision FROM current c JOIN log l ON l.revision = c.revision
                   WHERE c.key >= ?1 ORDER BY c.key LIMIT ?2";
        for (key, limit) in [("/a/1", 1i64), ("/a/2", 2), ("/a/3", 3)] {
            let mut st = r.prepare_cached(sql).unwrap();
            let first: i64 = st
                .query_row(rusqlite::params![key.as_bytes(), limit], |row| row.get(0))
                .unwrap();
            assert_eq!(first.to_string(), key[3..]);
            assert_eq!(st.get_status(StatementStatus::RePrepare), 0, "{key}");
        }
        drop(r);
        drop(w);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
