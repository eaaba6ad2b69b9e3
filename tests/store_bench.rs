//! Store throughput and latency, printed rather than asserted (speed targets belong to the
//! bench scripts). Run with:
//! `cargo test --test store_bench -- --ignored --nocapture --test-threads=1` (add `--release`
//! for real numbers);
//! NANOKUBE_BENCH_DIR picks the disk (default: a temporary directory).

use nanokube::store::sqlite::{Options, SqliteStore};
use nanokube::store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn dir() -> tempfile::TempDir {
    match std::env::var("NANOKUBE_BENCH_DIR") {
        Ok(base) => tempfile::tempdir_in(base).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// A pod-sized value (~4 KB of JSON-ish text).
fn pod(i: usize) -> Vec<u8> {
    let mut v = format!("{{\"kind\":\"Pod\",\"metadata\":{{\"name\":\"pod-{i}\"}},\"spec\":\"");
    while v.len() < 4000 {
        v.push_str("abcdefghij0123456789");
    }
    v.push_str("\"}");
    v.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_sqlite() {
    let dir = dir();
    let path = dir.path().join("bench.db");
    let store: Arc<dyn Store> = SqliteStore::open(&path, Options::default()).unwrap();
    bench(store).await;
    let size = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(name).map(|m| m.len() >> 20).unwrap_or(0)
    };
    println!("files: database {} MiB, WAL {} MiB", size(""), size("-wal"));
}

/// The same against an etcd the caller started: NANOKUBE_BENCH_ETCD=http://127.0.0.1:PORT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_etcd() {
    let endpoint = std::env::var("NANOKUBE_BENCH_ETCD")
        .expect("set NANOKUBE_BENCH_ETCD to the client URL of an empty etcd");
    let store: Arc<dyn Store> =
        nanokube::store::EtcdStore::connect(&[endpoint], Duration::from_secs(5))
            .await
            .unwrap();
    bench(store).await;
}

async fn bench(store: Arc<dyn Store>) {
    // 50 concurrent writers, 10k creates of 4 KB.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..200 {
                let t = Instant::now();
                store
                    .create(&format!("/registry/pods/default/pod-{w}-{i:04}"), pod(i))
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "creates: 10000 x 4KB by 50 writers in {:?}: {:.0} writes/s, p50 {:?}, p99 {:?}",
        elapsed,
        10000.0 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // Paced writes: 100 writes/s from 50 clients, the API target's load.
    let before_updates = store.current_revision().await.unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            for i in 0..10 {
                tick.tick().await;
                let key = format!("/registry/pods/default/pod-{w}-{i:04}");
                let kv = store.get(&key).await.unwrap().unwrap();
                let t = Instant::now();
                store
                    .update(&key, pod(i + 1), kv.mod_revision)
                    .await
                    .unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    println!(
        "paced updates: 500 at ~100/s in {:?}: p50 {:?}, p99 {:?}",
        started.elapsed(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );

    // Lists of the 10k pods.
    for round in 0..3 {
        let t = Instant::now();
        let page = store.list("/registry/pods/", None, 0, None).await.unwrap();
        let current = t.elapsed();
        let t = Instant::now();
        let old = store
            .list("/registry/pods/", None, 0, Some(before_updates))
            .await
            .unwrap();
        let historic = t.elapsed();
        let t = Instant::now();
        let mut after = None;
        loop {
            let page = store
                .list(
                    "/registry/pods/",
                    after.as_deref(),
                    500,
                    Some(before_updates),
                )
                .await
                .unwrap();
            after = page.items.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        let historic_paged = t.elapsed();
        let t = Instant::now();
        let mut after = None;
        let mut n = 0;
        loop {
            let page = store
                .list(
                    "/registry/pods/",
                    after.as_deref(),
                    500,
                    Some(page.revision),
                )
                .await
                .unwrap();
            n += page.items.len();
            after = page.items.last().map(|kv| kv.key.clone());
            if !page.more {
                break;
            }
        }
        let paged = t.elapsed();
        println!(
            "list {} pods (round {round}): current {:?}, in pages of 500 {:?} ({n}); \
             500 updates ago {:?} ({} items), in pages of 500 {:?}",
            page.items.len(),
            current,
            paged,
            historic,
            old.items.len(),
            historic_paged,
        );
    }
    let t = Instant::now();
    let n = store.count("/registry/pods/").await.unwrap();
    println!("count {n}: {:?}", t.elapsed());

    // Fan-out: 100 watchers, latency from write return to event arrival.
    let mut watchers = Vec::new();
    let from = store.current_revision().await.unwrap();
    for _ in 0..100 {
        let mut watch = store.watch("/registry/pods/", from).await.unwrap();
        watchers.push(tokio::spawn(async move {
            use futures::StreamExt;
            let mut arrivals = Vec::new();
            for _ in 0..200 {
                watch.next().await.unwrap().unwrap();
                arrivals.push(Instant::now());
            }
            arrivals
        }));
    }
    let mut written = Vec::new();
    for i in 0..200 {
        let key = format!("/registry/pods/watched/pod-{i}");
        let t = Instant::now();
        store.create(&key, pod(i)).await.unwrap();
        written.push(t);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut delays = Vec::new();
    for w in watchers {
        for (arrived, sent) in w.await.unwrap().into_iter().zip(&written) {
            delays.push(arrived.saturating_duration_since(*sent));
        }
    }
    delays.sort();
    println!(
        "watch fan-out to 100 watchers (from write call to arrival): p50 {:?}, p99 {:?}",
        percentile(&delays, 0.5),
        percentile(&delays, 0.99)
    );

    let t = Instant::now();
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    println!("compact {current} revisions: {:?}", t.elapsed());
}
