//! The behaviour every store backend must have, as test functions a backend's test file runs
//! against its own stores (see tests/store_sqlite.rs). The functions panic on a violation.
//!
//! Each test opens its store through a [`Factory`] under its own name, uses only keys under
//! `/<name>/`, and may drop and reopen the store to check that a restart keeps everything, so
//! backends that share one server between tests (etcd) keep the tests apart.

use super::{Error, Event, KeyValue, Store, WatchItem, WatchStream};
use async_trait::async_trait;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Opens stores for the tests.
#[async_trait]
pub trait Factory: Send + Sync {
    /// Opens the store called `name`. Opening the same name again after every handle of the
    /// previous one was dropped must find the same data, as a server restart would.
    async fn open(&self, name: &str) -> Arc<dyn Store>;
}

/// Generates one `#[tokio::test]` per conformance test, each calling `$factory` (an expression
/// building a [`Factory`]) afresh.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@each $factory;
            create_and_get, update_checks_revision, delete_checks_revision, list_by_prefix,
            list_pages, list_at_old_revision, lists_match_a_model_at_every_revision,
            count_by_prefix, revisions_are_monotonic,
            concurrent_writers_get_distinct_revisions, optimistic_concurrency_counts_exactly,
            watch_replays_then_goes_live, watch_filters_by_prefix, watch_during_writes_has_no_gap,
            watch_from_compacted_revision_fails, compaction_keeps_current_values,
            slow_watcher_gets_everything_or_compacted, many_watchers_see_every_event,
            quiet_watch_reports_progress, restart_keeps_everything);
    };
    (@each $factory:expr; $($test:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                let factory = $factory;
                $crate::store::conformance::$test(&factory).await;
            }
        )*
    };
}

/// Every test in order, for a backend that prefers one test function.
pub async fn run_all(f: &dyn Factory) {
    create_and_get(f).await;
    update_checks_revision(f).await;
    delete_checks_revision(f).await;
    list_by_prefix(f).await;
    list_pages(f).await;
    list_at_old_revision(f).await;
    lists_match_a_model_at_every_revision(f).await;
    count_by_prefix(f).await;
    revisions_are_monotonic(f).await;
    concurrent_writers_get_distinct_revisions(f).await;
    optimistic_concurrency_counts_exactly(f).await;
    watch_replays_then_goes_live(f).await;
    watch_filters_by_prefix(f).await;
    watch_during_writes_has_no_gap(f).await;
    watch_from_compacted_revision_fails(f).await;
    compaction_keeps_current_values(f).await;
    slow_watcher_gets_everything_or_compacted(f).await;
    many_watchers_see_every_event(f).await;
    quiet_watch_reports_progress(f).await;
    restart_keeps_everything(f).await;
}

/// A generous bound on waiting for a watch event, so a broken store fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

async fn next_event(stream: &mut WatchStream) -> Event {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {PATIENCE:?}"),
    }
}

fn value(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn create_and_get(f: &dyn Factory) {
    let store = f.open("create_and_get").await;
    let p = "/create_and_get/";
    assert_eq!(store.get(&format!("{p}a")).await.unwrap(), None);
    let before = store.current_revision().await.unwrap();
    let kv = store.create(&format!("{p}a"), value("one")).await.unwrap();
    assert!(kv.mod_revision > before);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(kv.value, value("one"));
    assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(store.get(&format!("{p}a")).await.unwrap(), Some(kv.clone()));
    match store.create(&format!("{p}a"), value("two")).await {
        Err(Error::AlreadyExists(key)) => assert_eq!(key, format!("{p}a")),
        other => panic!("second create: {other:?}"),
    }
    // The refused create changed nothing, not even the revision.
    assert_eq!(store.get(&format!("{p}a")).await.unwrap(), Some(kv.clone()));
    assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision);
    // Values are bytes, not text.
    let binary: Vec<u8> = (0..=255u8).collect();
    let b = store
        .create(&format!("{p}b"), binary.clone())
        .await
        .unwrap();
    assert_eq!(
        store.get(&format!("{p}b")).await.unwrap().unwrap().value,
        binary
    );
    assert!(b.mod_revision > kv.mod_revision);
}

pub async fn update_checks_revision(f: &dyn Factory) {
    let store = f.open("update_checks_revision").await;
    let key = "/update_checks_revision/k";
    match store.update(key, value("x"), 1).await {
        Err(Error::NotFound(k)) => assert_eq!(k, key),
        other => panic!("update of a missing key: {other:?}"),
    }
    let created = store.create(key, value("v1")).await.unwrap();
    let updated = store
        .update(key, value("v2"), created.mod_revision)
        .await
        .unwrap();
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.value, value("v2"));
    match store.update(key, value("v3"), created.mod_revision).await {
        Err(Error::Conflict {
            key: k,
            expected,
            current,
        }) => {
            assert_eq!(k, key);
            assert_eq!(expected, created.mod_revision);
            assert_eq!(current, updated.mod_revision);
        }
        other => panic!("stale update: {other:?}"),
    }
    assert_eq!(store.get(key).await.unwrap(), Some(updated));
}

pub async fn delete_checks_revision(f: &dyn Factory) {
    let store = f.open("delete_checks_revision").await;
    let key = "/delete_checks_revision/k";
    assert!(matches!(
        store.delete(key, None).await,
        Err(Error::NotFound(_))
    ));
    let created = store.create(key, value("v1")).await.unwrap();
    let updated = store
        .update(key, value("v2"), created.mod_revision)
        .await
        .unwrap();
    match store.delete(key, Some(created.mod_revision)).await {
        Err(Error::Conflict { current, .. }) => assert_eq!(current, updated.mod_revision),
        other => panic!("stale delete: {other:?}"),
    }
    assert_eq!(store.get(key).await.unwrap(), Some(updated.clone()));
    let (prev, revision) = store.delete(key, Some(updated.mod_revision)).await.unwrap();
    assert_eq!(prev, updated);
    assert!(revision > updated.mod_revision);
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(store.get(key).await.unwrap(), None);
    assert!(matches!(
        store.delete(key, None).await,
        Err(Error::NotFound(_))
    ));
    // A new life of the key starts a new create_revision.
    let again = store.create(key, value("v3")).await.unwrap();
    assert_eq!(again.create_revision, again.mod_revision);
    assert!(again.create_revision > revision);
    // Unconditional delete.
    let (prev, _) = store.delete(key, None).await.unwrap();
    assert_eq!(prev, again);
}

pub async fn list_by_prefix(f: &dyn Factory) {
    let store = f.open("list_by_prefix").await;
    let p = "/list_by_prefix";
    for key in ["/b/2", "/a/1", "/b/1", "/bc/1", "/b/3", "/b"] {
        store
            .create(&format!("{p}{key}"), value(key))
            .await
            .unwrap();
    }
    let page = store.list(&format!("{p}/b/"), None, 0, None).await.unwrap();
    assert_eq!(
        keys(&page.items),
        [
            "/list_by_prefix/b/1",
            "/list_by_prefix/b/2",
            "/list_by_prefix/b/3"
        ]
    );
    assert_eq!(page.items[1].value, value("/b/2"));
    assert!(!page.more);
    assert_eq!(page.revision, store.current_revision().await.unwrap());
    let all = store.list(&format!("{p}/"), None, 0, None).await.unwrap();
    assert_eq!(all.items.len(), 6);
    let mut sorted = keys(&all.items);
    sorted.sort();
    assert_eq!(keys(&all.items), sorted);
    let none = store.list(&format!("{p}/c/"), None, 0, None).await.unwrap();
    assert!(none.items.is_empty() && !none.more);
    // Deleted keys leave the list.
    store.delete(&format!("{p}/b/2"), None).await.unwrap();
    let page = store.list(&format!("{p}/b/"), None, 0, None).await.unwrap();
    assert_eq!(
        keys(&page.items),
        ["/list_by_prefix/b/1", "/list_by_prefix/b/3"]
    );
}

pub async fn list_pages(f: &dyn Factory) {
    let store = f.open("list_pages").await;
    let p = "/list_pages/items/";
    for i in 0..25 {
        store
            .create(&format!("{p}{i:03}"), value(&i.to_string()))
            .await
            .unwrap();
    }
    store.create("/list_pages/other", value("x")).await.unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut revision = None;
    let mut pages = 0;
    loop {
        let page = store.list(p, after.as_deref(), 10, revision).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 10);
        revision = Some(page.revision);
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        after = page.items.last().map(|kv| kv.key.clone());
        if !page.more {
            break;
        }
        // A write between pages must not show up in later pages of the same list.
        store
            .create(&format!("{p}{:03}", 100 + pages), value("late"))
            .await
            .unwrap();
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("{p}{i:03}")).collect();
    assert_eq!(seen, expected);
    // Exactly one full page has no more.
    let page = store.list(p, None, 27, None).await.unwrap();
    assert_eq!(page.items.len(), 27);
    assert!(!page.more);
    let page = store.list(p, None, 26, None).await.unwrap();
    assert!(page.more);
}

pub async fn list_at_old_revision(f: &dyn Factory) {
    let store = f.open("list_at_old_revision").await;
    let p = "/list_at_old_revision/";
    let a = store.create(&format!("{p}a"), value("a1")).await.unwrap();
    let b = store.create(&format!("{p}b"), value("b1")).await.unwrap();
    let then = store.current_revision().await.unwrap();
    store
        .update(&format!("{p}a"), value("a2"), a.mod_revision)
        .await
        .unwrap();
    store.delete(&format!("{p}b"), None).await.unwrap();
    store.create(&format!("{p}c"), value("c1")).await.unwrap();
    let old = store.list(p, None, 0, Some(then)).await.unwrap();
    assert_eq!(old.revision, then);
    assert_eq!(old.items, vec![a.clone(), b.clone()]);
    let old_page = store.list(p, None, 1, Some(then)).await.unwrap();
    assert_eq!(old_page.items, vec![a.clone()]);
    assert!(old_page.more);
    let rest = store
        .list(p, Some(&format!("{p}a")), 1, Some(then))
        .await
        .unwrap();
    assert_eq!(rest.items, vec![b]);
    assert!(!rest.more);
    let now = store.list(p, None, 0, None).await.unwrap();
    assert_eq!(
        now.items
            .iter()
            .map(|kv| kv.value.clone())
            .collect::<Vec<_>>(),
        vec![value("a2"), value("c1")]
    );
    let current = store.current_revision().await.unwrap();
    let same = store.list(p, None, 0, Some(current)).await.unwrap();
    assert_eq!(same, now);
    match store.list(p, None, 0, Some(current + 10)).await {
        Err(Error::FutureRevision(r)) => assert_eq!(r, current + 10),
        other => panic!("list in the future: {other:?}"),
    }
}

/// Random creates, updates and deletes over a few keys, checked against a model: the list at
/// every revision, read whole and in pages of every size, is the model's state at that revision.
pub async fn lists_match_a_model_at_every_revision(f: &dyn Factory) {
    let store = f.open("model").await;
    let p = "/model/";
    // xorshift: deterministic, so a failure can be replayed.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut model: BTreeMap<String, KeyValue> = BTreeMap::new();
    let mut snapshots = vec![(store.current_revision().await.unwrap(), model.clone())];
    for step in 0..300 {
        let key = format!("{p}{:02}", random(20));
        let current = model.get(&key).cloned();
        let revision = match (current, random(3)) {
            (None, _) => {
                let kv = store
                    .create(&key, value(&format!("v{step}")))
                    .await
                    .unwrap();
                model.insert(key, kv.clone());
                kv.mod_revision
            }
            (Some(kv), 0) => {
                let (_, revision) = store.delete(&key, Some(kv.mod_revision)).await.unwrap();
                model.remove(&key);
                revision
            }
            (Some(kv), _) => {
                let kv = store
                    .update(&key, value(&format!("v{step}")), kv.mod_revision)
                    .await
                    .unwrap();
                model.insert(key, kv.clone());
                kv.mod_revision
            }
        };
        snapshots.push((revision, model.clone()));
    }
    for (revision, state) in snapshots.iter().step_by(7).chain(snapshots.last()) {
        let expected: Vec<KeyValue> = state.values().cloned().collect();
        let whole = store.list(p, None, 0, Some(*revision)).await.unwrap();
        assert_eq!(whole.items, expected, "list at {revision}");
        assert_eq!(whole.revision, *revision);
        for limit in [1, 3, 7] {
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = store
                    .list(p, after.as_deref(), limit, Some(*revision))
                    .await
                    .unwrap();
                assert!(page.items.len() <= limit);
                items.extend(page.items.iter().cloned());
                after = page.items.last().map(|kv| kv.key.clone());
                if !page.more {
                    break;
                }
            }
            assert_eq!(items, expected, "list at {revision} in pages of {limit}");
        }
    }
    // The history replays as the sequence of changes between consecutive snapshots.
    let mut watch = store.watch(p, snapshots[0].0).await.unwrap();
    for pair in snapshots.windows(2) {
        let ((_, before), (revision, after)) = (&pair[0], &pair[1]);
        let event = next_event(&mut watch).await;
        assert_eq!(event.revision(), *revision);
        let key = event.key().to_string();
        match event {
            Event::Put { kv, prev } => {
                assert_eq!(Some(&kv), after.get(&key));
                assert_eq!(prev.as_ref(), before.get(&key));
            }
            Event::Delete { prev, .. } => {
                assert_eq!(Some(&prev), before.get(&key));
                assert!(!after.contains_key(&key));
            }
        }
    }
    // Compaction keeps the same answers for every revision it keeps.
    let (middle, _) = snapshots[snapshots.len() / 2];
    store.compact(middle).await.unwrap();
    for (revision, state) in snapshots.iter().filter(|(r, _)| *r >= middle) {
        let expected: Vec<KeyValue> = state.values().cloned().collect();
        let page = store.list(p, None, 0, Some(*revision)).await.unwrap();
        assert_eq!(
            page.items, expected,
            "list at {revision} after compacting to {middle}"
        );
    }
    let current = store.list(p, None, 0, None).await.unwrap();
    assert_eq!(current.items, model.values().cloned().collect::<Vec<_>>());
}

pub async fn count_by_prefix(f: &dyn Factory) {
    let store = f.open("count_by_prefix").await;
    let p = "/count_by_prefix/";
    assert_eq!(store.count(p).await.unwrap(), 0);
    for i in 0..7 {
        store
            .create(&format!("{p}x/{i}"), value("v"))
            .await
            .unwrap();
    }
    store.create(&format!("{p}y/1"), value("v")).await.unwrap();
    assert_eq!(store.count(&format!("{p}x/")).await.unwrap(), 7);
    assert_eq!(store.count(p).await.unwrap(), 8);
    store.delete(&format!("{p}x/3"), None).await.unwrap();
    assert_eq!(store.count(&format!("{p}x/")).await.unwrap(), 6);
}

pub async fn revisions_are_monotonic(f: &dyn Factory) {
    let store = f.open("revisions_are_monotonic").await;
    let key = "/revisions_are_monotonic/k";
    let mut last = store.current_revision().await.unwrap();
    assert!(
        last >= 1,
        "an empty store is at revision 1 or later, got {last}"
    );
    let mut kv = store.create(key, value("0")).await.unwrap();
    assert!(kv.mod_revision > last);
    last = kv.mod_revision;
    for i in 1..50 {
        kv = store
            .update(key, value(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
        assert!(kv.mod_revision > last);
        last = kv.mod_revision;
        assert_eq!(store.current_revision().await.unwrap(), last);
    }
    let (_, deleted) = store.delete(key, None).await.unwrap();
    assert!(deleted > last);
}

pub async fn concurrent_writers_get_distinct_revisions(f: &dyn Factory) {
    let store = f.open("concurrent_writers").await;
    let before = store.current_revision().await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..20 {
                let kv = store
                    .create(&format!("/concurrent_writers/{w}/{i}"), value("v"))
                    .await
                    .unwrap();
                revisions.push(kv.mod_revision);
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let revisions = task.await.unwrap();
        // One writer's successive writes get increasing revisions.
        assert!(revisions.windows(2).all(|w| w[0] < w[1]));
        all.extend(revisions);
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1000);
    assert!(all[0] > before);
    assert_eq!(store.count("/concurrent_writers/").await.unwrap(), 1000);
    assert_eq!(
        store.current_revision().await.unwrap(),
        *all.last().unwrap()
    );
}

pub async fn optimistic_concurrency_counts_exactly(f: &dyn Factory) {
    let store = f.open("optimistic_concurrency").await;
    let key = "/optimistic_concurrency/counter";
    store.create(key, value("0")).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..10 {
                loop {
                    let kv = store.get(key).await.unwrap().unwrap();
                    let n: u64 = String::from_utf8(kv.value).unwrap().parse().unwrap();
                    match store
                        .update(key, value(&(n + 1).to_string()), kv.mod_revision)
                        .await
                    {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("update: {e}"),
                    }
                }
            }
            conflicts
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = store.get(key).await.unwrap().unwrap();
    assert_eq!(kv.value, value("100"));
}

pub async fn watch_replays_then_goes_live(f: &dyn Factory) {
    let store = f.open("watch_replays").await;
    let p = "/watch_replays/";
    let start = store.current_revision().await.unwrap();
    let a = store.create(&format!("{p}a"), value("a1")).await.unwrap();
    let a2 = store
        .update(&format!("{p}a"), value("a2"), a.mod_revision)
        .await
        .unwrap();
    let (_, deleted_at) = store.delete(&format!("{p}a"), None).await.unwrap();
    let mut watch = store.watch(p, start).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        Event::Put {
            kv: a.clone(),
            prev: None
        }
    );
    assert_eq!(
        next_event(&mut watch).await,
        Event::Put {
            kv: a2.clone(),
            prev: Some(a.clone())
        }
    );
    assert_eq!(
        next_event(&mut watch).await,
        Event::Delete {
            prev: a2.clone(),
            revision: deleted_at
        }
    );
    // Live now.
    let b = store.create(&format!("{p}b"), value("b1")).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        Event::Put { kv: b, prev: None }
    );
    // A watch from the middle starts after the given revision.
    let mut middle = store.watch(p, a2.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut middle).await.revision(), deleted_at);
    // A watch from now sees only new events.
    let now = store.current_revision().await.unwrap();
    let mut fresh = store.watch(p, now).await.unwrap();
    let c = store.create(&format!("{p}c"), value("c1")).await.unwrap();
    assert_eq!(next_event(&mut fresh).await.revision(), c.mod_revision);
}

pub async fn watch_filters_by_prefix(f: &dyn Factory) {
    let store = f.open("watch_filters").await;
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/watch_filters/pods/", start).await.unwrap();
    store
        .create("/watch_filters/podsx/a", value("no"))
        .await
        .unwrap();
    store
        .create("/watch_filters/services/a", value("no"))
        .await
        .unwrap();
    let pod = store
        .create("/watch_filters/pods/a", value("yes"))
        .await
        .unwrap();
    match next_event(&mut watch).await {
        Event::Put { kv, .. } => assert_eq!(kv, pod),
        other => panic!("unexpected event {other:?}"),
    }
}

pub async fn watch_during_writes_has_no_gap(f: &dyn Factory) {
    let store = f.open("watch_no_gap").await;
    let p = "/watch_no_gap/";
    let start = store.current_revision().await.unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..400 {
                let kv = store.create(&format!("{p}{i}"), value("v")).await.unwrap();
                revisions.push(kv.mod_revision);
            }
            revisions
        })
    };
    // Watchers start at different points of the write stream, each from the revision current
    // at that moment, so each one's replay and live phases meet at a different place.
    let mut watchers = Vec::new();
    for _ in 0..8 {
        let from = store.current_revision().await.unwrap();
        watchers.push((from, store.watch(p, from).await.unwrap()));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let written = writer.await.unwrap();
    assert!(written[0] > start);
    for (from, mut watch) in watchers {
        let expected: Vec<i64> = written.iter().copied().filter(|r| *r > from).collect();
        let mut got = Vec::new();
        while got.len() < expected.len() {
            got.push(next_event(&mut watch).await.revision());
        }
        assert_eq!(got, expected, "watch from {from}");
    }
}

pub async fn watch_from_compacted_revision_fails(f: &dyn Factory) {
    let store = f.open("watch_compacted").await;
    let p = "/watch_compacted/";
    let start = store.current_revision().await.unwrap();
    let mut kv = store.create(&format!("{p}k"), value("0")).await.unwrap();
    for i in 1..10 {
        kv = store
            .update(&format!("{p}k"), value(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    let compact_at = kv.mod_revision - 3;
    store.compact(compact_at).await.unwrap();
    assert!(store.compacted_revision().await.unwrap() >= compact_at);
    match store.watch(p, start).await {
        Err(Error::Compacted { .. }) => {}
        Ok(mut stream) => match stream.next().await {
            Some(Err(Error::Compacted { .. })) => {}
            other => panic!("watch from a compacted revision: {other:?}"),
        },
        Err(e) => panic!("watch from a compacted revision: {e}"),
    }
    match store.list(p, None, 0, Some(compact_at - 1)).await {
        Err(Error::Compacted { .. }) => {}
        other => panic!("list at a compacted revision: {other:?}"),
    }
    // The compacted revision itself is still readable, and watchable from.
    let page = store.list(p, None, 0, Some(compact_at)).await.unwrap();
    assert_eq!(page.items[0].value, value("6"));
    let mut watch = store.watch(p, compact_at).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), compact_at + 1);
}

pub async fn compaction_keeps_current_values(f: &dyn Factory) {
    let store = f.open("compaction_keeps").await;
    let p = "/compaction_keeps/";
    let mut expected = BTreeMap::new();
    for i in 0..30 {
        let key = format!("{p}{i:02}");
        let mut kv = store.create(&key, value("0")).await.unwrap();
        for v in 1..(i % 4) {
            kv = store
                .update(&key, value(&v.to_string()), kv.mod_revision)
                .await
                .unwrap();
        }
        if i % 5 == 0 {
            store.delete(&key, None).await.unwrap();
        } else {
            expected.insert(key, kv);
        }
    }
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), current);
    let page = store.list(p, None, 0, None).await.unwrap();
    assert_eq!(page.items, expected.values().cloned().collect::<Vec<_>>());
    for (key, kv) in &expected {
        assert_eq!(store.get(key).await.unwrap().as_ref(), Some(kv));
    }
    // Compacting to an older revision again is harmless.
    store.compact(current - 5).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), current);
    // Writes go on with their revisions above the compacted one.
    let (first_key, first) = expected.iter().next().unwrap();
    let updated = store
        .update(first_key, value("after"), first.mod_revision)
        .await
        .unwrap();
    assert!(updated.mod_revision > current);
    let mut watch = store.watch(p, current).await.unwrap();
    assert_eq!(
        next_event(&mut watch).await,
        Event::Put {
            kv: updated,
            prev: Some(first.clone())
        }
    );
}

pub async fn slow_watcher_gets_everything_or_compacted(f: &dyn Factory) {
    let store = f.open("slow_watcher").await;
    let p = "/slow_watcher/";
    let start = store.current_revision().await.unwrap();
    let mut slow = store.watch(p, start).await.unwrap();
    let mut slow_then_compacted = store.watch(p, start).await.unwrap();
    let mut written = Vec::new();
    // Far more events than any reasonable live buffer, while nobody reads the streams.
    for chunk in 0..30 {
        let mut tasks = Vec::new();
        for i in 0..100 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create(&format!("{p}{chunk}/{i}"), vec![b'x'; 512])
                    .await
                    .unwrap()
                    .mod_revision
            }));
        }
        for task in tasks {
            written.push(task.await.unwrap());
        }
    }
    written.sort();
    // Either every event arrives in order, or the stream says Compacted and ends; never a gap.
    let mut got = Vec::new();
    while got.len() < written.len() {
        got.push(next_event(&mut slow).await.revision());
    }
    assert_eq!(got, written);
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, slow_then_compacted.next()).await {
            Ok(Some(Ok(event))) => got.push(event.revision()),
            Ok(Some(Err(Error::Compacted { .. }))) => {
                let end = tokio::time::timeout(PATIENCE, slow_then_compacted.next()).await;
                assert!(matches!(end, Ok(None)), "stream goes on after Compacted");
                break;
            }
            Ok(Some(Err(e))) => panic!("watch failed: {e}"),
            Ok(None) => panic!("watch ended without Compacted"),
            Err(_) => panic!("lagging watch stalled after {} events", got.len()),
        }
        if got.len() == written.len() {
            assert_eq!(got, written);
            break;
        }
    }
    assert_eq!(got, written[..got.len()].to_vec(), "gap in a lagging watch");
}

pub async fn many_watchers_see_every_event(f: &dyn Factory) {
    let store = f.open("many_watchers").await;
    let p = "/many_watchers/";
    let start = store.current_revision().await.unwrap();
    let mut readers = Vec::new();
    for _ in 0..100 {
        let mut watch = store.watch(p, start).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 200 {
                got.push(next_event(&mut watch).await.revision());
            }
            got
        }));
    }
    let mut written = Vec::new();
    for i in 0..200 {
        written.push(
            store
                .create(&format!("{p}{i}"), value("v"))
                .await
                .unwrap()
                .mod_revision,
        );
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), written);
    }
}

async fn next_item(stream: &mut super::ProgressWatchStream) -> WatchItem {
    match tokio::time::timeout(PATIENCE, stream.next()).await {
        Ok(Some(Ok(item))) => item,
        other => panic!("watch with progress: {other:?}"),
    }
}

pub async fn quiet_watch_reports_progress(f: &dyn Factory) {
    let store = f.open("quiet_watch").await;
    let watched = "/quiet_watch/watched/";
    let start = store.current_revision().await.unwrap();
    let mut items = store
        .watch_with_progress(watched, start, Duration::from_millis(200))
        .await
        .unwrap();
    // Writes elsewhere move the store on; the quiet watch learns it through progress marks.
    let mut other = 0;
    for i in 0..5 {
        other = store
            .create(&format!("/quiet_watch/other/{i}"), value("v"))
            .await
            .unwrap()
            .mod_revision;
    }
    let mut last = start;
    loop {
        match next_item(&mut items).await {
            WatchItem::Progress(revision) => {
                assert!(
                    revision > last,
                    "progress went from {last} back to {revision}"
                );
                assert!(revision <= store.current_revision().await.unwrap());
                last = revision;
                if revision >= other {
                    break;
                }
            }
            WatchItem::Event(event) => panic!("event from outside the prefix: {event:?}"),
        }
    }
    // Events still come, after the mark, and never at or below it.
    let kv = store
        .create(&format!("{watched}a"), value("v"))
        .await
        .unwrap();
    loop {
        match next_item(&mut items).await {
            WatchItem::Event(event) => {
                assert_eq!(event.revision(), kv.mod_revision);
                break;
            }
            WatchItem::Progress(revision) => assert!(revision > last && revision < kv.mod_revision),
        }
    }
    // The plain watch never shows marks: the next item of a plain watch is the next event.
    let mut plain = store.watch(watched, start).await.unwrap();
    assert_eq!(next_event(&mut plain).await.revision(), kv.mod_revision);
}

pub async fn restart_keeps_everything(f: &dyn Factory) {
    let p = "/restart_keeps/";
    let (kept, revision, compacted) = {
        let store = f.open("restart_keeps").await;
        let mut kv = store.create(&format!("{p}a"), value("a1")).await.unwrap();
        for i in 2..6 {
            kv = store
                .update(&format!("{p}a"), value(&format!("a{i}")), kv.mod_revision)
                .await
                .unwrap();
        }
        store.create(&format!("{p}b"), value("b1")).await.unwrap();
        store.delete(&format!("{p}b"), None).await.unwrap();
        let c = store.create(&format!("{p}c"), value("c1")).await.unwrap();
        store.compact(kv.mod_revision - 2).await.unwrap();
        let compacted = store.compacted_revision().await.unwrap();
        let page = store.list(p, None, 0, None).await.unwrap();
        assert_eq!(page.items, vec![kv, c]);
        (page.items, page.revision, compacted)
    };
    let store = f.open("restart_keeps").await;
    let page = store.list(p, None, 0, None).await.unwrap();
    assert_eq!(page.items, kept);
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(store.compacted_revision().await.unwrap(), compacted);
    let d = store.create(&format!("{p}d"), value("d1")).await.unwrap();
    assert!(d.mod_revision > revision);
    // History after the compacted revision survived too.
    let mut watch = store.watch(p, compacted).await.unwrap();
    let first = next_event(&mut watch).await;
    assert!(first.revision() > compacted);
}
