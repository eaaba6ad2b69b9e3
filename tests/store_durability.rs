//! A write the store acknowledged survives kill -9 of the process.
//!
//! The test re-runs its own binary as a child (`durability_child`, armed by an environment
//! variable): the child writes from 50 concurrent tasks and prints each key once its write has
//! returned Ok. The parent kills the child with SIGKILL in the middle of the stream, reopens the
//! database and checks every printed key.

use nanokube::store::sqlite::{Options, SqliteStore};
use nanokube::store::Store;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

const CHILD_DB: &str = "NANOKUBE_STORE_DURABILITY_DB";

/// Not a test on its own (hence ignored): the writer half of
/// `acknowledged_writes_survive_kill_9`, which runs it with `CHILD_DB` set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of acknowledged_writes_survive_kill_9"]
async fn durability_child() {
    let path = std::env::var(CHILD_DB).expect("run by acknowledged_writes_survive_kill_9");
    let store = SqliteStore::open(path.as_ref(), Options::default()).unwrap();
    let mut tasks = Vec::new();
    for w in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut kv = None;
            for i in 0.. {
                let key = format!("/durable/{w}/{i}");
                let value = format!("value of {key}").into_bytes();
                let created = store.create(&key, value).await.unwrap();
                // Every fourth write is an update of the previous key, so updates are checked too.
                if i % 4 == 3 {
                    let prev: &nanokube::store::KeyValue = kv.as_ref().unwrap();
                    let updated = store
                        .update(&prev.key, b"updated".to_vec(), prev.mod_revision)
                        .await
                        .unwrap();
                    writeln!(
                        std::io::stdout().lock(),
                        "ACK {} {}",
                        updated.key,
                        updated.mod_revision
                    )
                    .unwrap();
                }
                writeln!(
                    std::io::stdout().lock(),
                    "ACK {} {}",
                    created.key,
                    created.mod_revision
                )
                .unwrap();
                kv = Some(created);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("durable.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read acknowledgements on a thread; kill once enough have arrived, then read what was
    // already in the pipe: those writes were acknowledged before the kill as well.
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acked: std::collections::BTreeMap<String, i64> = Default::default();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut words = line.split_whitespace();
            if words.next() != Some("ACK") {
                continue;
            }
            let (Some(key), Some(revision)) = (words.next(), words.next()) else {
                // A line cut by the kill: its write was never acknowledged to us.
                continue;
            };
            let Ok(revision) = revision.parse::<i64>() else {
                continue;
            };
            let entry = acked.entry(key.to_string()).or_insert(revision);
            *entry = (*entry).max(revision);
            if acked.len() == 2000 {
                let _ = tx.send(());
            }
        }
        acked
    });
    let started = rx.recv_timeout(std::time::Duration::from_secs(120));
    // SIGKILL: no destructor, no flush, no checkpoint runs in the child.
    child.kill().unwrap();
    child.wait().unwrap();
    let acked = reader.join().unwrap();
    assert!(
        started.is_ok(),
        "the child acknowledged only {} writes",
        acked.len()
    );

    let store = SqliteStore::open(&db, Options::default()).unwrap();
    let mut missing = Vec::new();
    for (key, revision) in &acked {
        match store.get(key).await.unwrap() {
            Some(kv) if kv.mod_revision >= *revision => {}
            other => missing.push(format!("{key}@{revision}: {other:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged writes lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The revision counter goes on after the last acknowledged write.
    let last = acked.values().max().copied().unwrap();
    assert!(store.current_revision().await.unwrap() >= last);
    let kv = store
        .create("/durable/after-restart", b"x".to_vec())
        .await
        .unwrap();
    assert!(kv.mod_revision > last);
}
