//! The store conformance suite against the SQLite backend, each test in its own temporary
//! directory.

use async_trait::async_trait;
use nanokube::store::conformance::Factory;
use nanokube::store::sqlite::{CompactionPolicy, Options, SqliteStore};
use nanokube::store::Store;
use std::sync::Arc;

struct Sqlite {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Factory for Sqlite {
    async fn open(&self, name: &str) -> Arc<dyn Store> {
        let options = Options {
            compaction: None,
            ..Options::default()
        };
        SqliteStore::open(&self.dir.path().join(format!("{name}.db")), options).unwrap()
    }
}

fn sqlite() -> Sqlite {
    Sqlite {
        dir: tempfile::tempdir().unwrap(),
    }
}

nanokube::store_conformance_tests!(sqlite());

// Behaviour specific to the SQLite backend.

use futures::StreamExt;
use std::time::Duration;

#[tokio::test]
async fn second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/state.db");
    let first = SqliteStore::open(&path, Options::default()).unwrap();
    let err = SqliteStore::open(&path, Options::default()).unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    // Once the first is gone the file opens again.
    SqliteStore::open(&path, Options::default()).unwrap();
}

#[tokio::test]
async fn dropping_the_store_ends_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("s.db"), Options::default()).unwrap();
    let mut watch = store.watch("/", 0).await.unwrap();
    store.create("/a", b"1".to_vec()).await.unwrap();
    assert!(matches!(watch.next().await, Some(Ok(_))));
    drop(store);
    let end = tokio::time::timeout(Duration::from_secs(30), watch.next()).await;
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn background_compactor_keeps_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        compaction: Some(CompactionPolicy {
            interval: Duration::from_millis(50),
            keep_revisions: 10,
        }),
        ..Options::default()
    };
    let store = SqliteStore::open(&dir.path().join("c.db"), options).unwrap();
    let mut kv = store.create("/k", b"0".to_vec()).await.unwrap();
    for i in 1..100 {
        kv = store
            .update("/k", i.to_string().into_bytes(), kv.mod_revision)
            .await
            .unwrap();
    }
    // Two ticks after the writes stop, history up to 10 revisions back is gone.
    let mut compacted = 0;
    for _ in 0..600 {
        compacted = store.compacted_revision().await.unwrap();
        if compacted == kv.mod_revision - 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(compacted, kv.mod_revision - 10);
    let page = store.list("/", None, 0, Some(compacted)).await.unwrap();
    assert_eq!(page.items[0].value, (99 - 10).to_string().into_bytes());
    assert!(matches!(
        store.list("/", None, 0, Some(compacted - 1)).await,
        Err(nanokube::store::Error::Compacted { .. })
    ));
}

#[tokio::test]
async fn datastore_endpoint_picks_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let default = dir.path().join("db/state.db");
    let store = nanokube::store::open_endpoint(None, &default, None)
        .await
        .unwrap();
    store.create("/a", b"1".to_vec()).await.unwrap();
    drop(store);
    assert!(default.exists());
    let other = dir.path().join("other.db");
    let endpoint = format!("sqlite://{}", other.display());
    let store = nanokube::store::open_endpoint(Some(&endpoint), &default, None)
        .await
        .unwrap();
    assert_eq!(store.get("/a").await.unwrap(), None);
    drop(store);
    assert!(other.exists());
    let err = nanokube::store::open_endpoint(Some("postgres://db"), &default, None)
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("unsupported --datastore-endpoint"),
        "{err}"
    );
}

/// Checkpoints keep up with a steady stream of writes: the WAL is restarted again and again
/// instead of holding everything ever written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_stays_small_under_steady_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let store = SqliteStore::open(&path, Options::default()).unwrap();
    let value = vec![b'w'; 32 << 10];
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..300 {
                store
                    .create(&format!("/w/{w}/{i}"), value.clone())
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let written = 8 * 300 * value.len() as u64;
    let wal = std::fs::metadata(dir.path().join("w.db-wal"))
        .unwrap()
        .len();
    assert!(
        wal < written / 2,
        "WAL is {} MiB after {} MiB written",
        wal >> 20,
        written >> 20
    );
}
