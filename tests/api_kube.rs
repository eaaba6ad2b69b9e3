//! The API server as the kube crate sees it: reflectors that survive a compaction (in-stream 410
//! Expired, then a relist) and a server restart, and creates acknowledged before a kill -9 that
//! are all there afterwards.

mod api_support;

use api_support::Server;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Client, Config};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn client(s: &Server) -> Client {
    // Two rustls providers are linked into the crate graph: pick one for the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(s.kubeconfig()).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

fn cm(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some([("k".to_string(), name.to_string())].into()),
        ..Default::default()
    }
}

async fn eventually<F: FnMut() -> bool>(secs: u64, what: &str, mut f: F) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test's own ConfigMaps (every namespace also holds the cluster's kube-root-ca.crt).
fn names(store: &reflector::Store<ConfigMap>) -> BTreeSet<String> {
    store
        .state()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .filter(|n| n != "kube-root-ca.crt")
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reflector_relists_after_compaction_and_follows_a_restart() {
    let mut s = Server::start_with(&[
        "--compaction-interval-seconds",
        "1",
        "--compaction-keep-revisions",
        "5",
    ]);
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();

    let (reader, writer) = reflector::store();
    let relists = Arc::new(AtomicUsize::new(0));
    let counter = relists.clone();
    // Short watches: each one ends after 2 s and the watcher resumes from its last resourceVersion.
    let stream = reflector(
        writer,
        watcher(cms.clone(), watcher::Config::default().timeout(2)),
    )
    .default_backoff();
    let task = tokio::spawn(stream.for_each(move |ev| {
        if let Ok(watcher::Event::InitDone) = ev {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        futures::future::ready(())
    }));
    eventually(30, "the first list", || names(&reader) == set(&["a"])).await;
    assert_eq!(relists.load(Ordering::SeqCst), 1);

    // Writes elsewhere push the revision on; compaction then drops the history the configmap
    // watcher would resume from, so its next watch gets ERROR 410 and it lists again.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    for i in 0..30 {
        let sec = Secret {
            metadata: ObjectMeta {
                name: Some(format!("s{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &sec).await.unwrap();
    }
    eventually(60, "a relist after 410 Expired", || {
        relists.load(Ordering::SeqCst) >= 2
    })
    .await;
    // The line may land in the log just after the client has seen the relist it caused.
    eventually(
        10,
        "the server's log of the watch from a compacted revision",
        || s.log().contains("watch from a compacted revision"),
    )
    .await;
    cms.create(&PostParams::default(), &cm("b")).await.unwrap();
    eventually(30, "b after the relist", || {
        names(&reader) == set(&["a", "b"])
    })
    .await;

    // A restart: the watcher reconnects and keeps up with what happens next.
    tokio::task::block_in_place(|| s.restart());
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    cms.create(&PostParams::default(), &cm("c")).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    eventually(60, "c and not a after the restart", || {
        names(&reader) == set(&["b", "c"])
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_and_watch_semantics_for_clients() {
    let s = Server::start();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("p{i}")))
            .await
            .unwrap();
    }
    // Paging: limit/continue at one revision.
    let first = cms
        .list(&kube::api::ListParams::default().limit(3))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let rv = first.metadata.resource_version.clone().unwrap();
    assert!(!rv.is_empty());
    let token = first.metadata.continue_.clone().expect("a continue token");
    cms.create(&PostParams::default(), &cm("p7")).await.unwrap();
    let second = cms
        .list(
            &kube::api::ListParams::default()
                .limit(10)
                .continue_token(&token),
        )
        .await
        .unwrap();
    // p3..p6 and the namespace's kube-root-ca.crt, not p7.
    assert_eq!(
        second.items.len(),
        5,
        "the continued list reads at the first page's revision"
    );
    assert!(second
        .items
        .iter()
        .all(|c| c.metadata.name.as_deref() != Some("p7")));
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));
    // A watch from the list's revision sees exactly what came after it.
    let mut w = cms
        .watch(&kube::api::WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match w.next().await.unwrap().unwrap() {
        kube::api::WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("p7")),
        other => panic!("expected ADDED p7, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_kill_9() {
    let mut s = Server::start();
    let base = client(&s).await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..200 {
        // Each writer is its own client with its own connection.
        let c = client(&s).await;
        let acked = acked.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let cms: Api<ConfigMap> = Api::namespaced(c, "default");
            for i in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("w{t}-{i}");
                match cms.create(&PostParams::default(), &cm(&name)).await {
                    Ok(_) => acked.lock().unwrap().push(name),
                    Err(_) => break,
                }
            }
        }));
    }
    let started = Instant::now();
    while acked.lock().unwrap().len() < 600 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::block_in_place(|| s.kill9());
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} creates were acknowledged before the kill",
        acked.len()
    );
    drop(base);

    tokio::task::block_in_place(|| s.start_again());
    let cms: Api<ConfigMap> = Api::namespaced(client(&s).await, "default");
    let stored: BTreeSet<String> = cms
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    let missing: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged creates lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streaming_list_reflector_syncs_from_initial_events() {
    let s = Server::start();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    for n in ["s1", "s2", "s3"] {
        cms.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    // sendInitialEvents=true: the objects come as ADDED events, ended by the annotated BOOKMARK.
    let (reader, writer) = reflector::store();
    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let stream = reflector(
        writer,
        watcher(cms.clone(), watcher::Config::default().streaming_lists()),
    )
    .default_backoff();
    let task = tokio::spawn(stream.for_each(move |ev| {
        if let Ok(watcher::Event::InitDone) = ev {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        futures::future::ready(())
    }));
    eventually(30, "the streamed initial state", || {
        done.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(names(&reader), set(&["s1", "s2", "s3"]));
    cms.delete("s2", &DeleteParams::default()).await.unwrap();
    eventually(30, "the delete", || names(&reader) == set(&["s1", "s3"])).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn selector_watches_see_objects_enter_and_leave() {
    use kube::api::{Patch, PatchParams, WatchEvent, WatchParams};
    let s = Server::start();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c, "default");
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();
    let rv = cms
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut w = cms
        .watch(&WatchParams::default().labels("team=blue").timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let label =
        |v: Option<&str>| Patch::Merge(serde_json::json!({"metadata": {"labels": {"team": v}}}));
    cms.patch("x", &PatchParams::default(), &label(Some("blue")))
        .await
        .unwrap();
    cms.patch("x", &PatchParams::default(), &label(Some("red")))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("y")).await.unwrap();
    cms.patch("y", &PatchParams::default(), &label(Some("blue")))
        .await
        .unwrap();
    cms.delete("y", &DeleteParams::default()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(20), w.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        seen.push(match ev {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    // x enters (label set) and leaves (label changed); y enters and is deleted.
    assert_eq!(seen, ["ADDED x", "DELETED x", "ADDED y", "DELETED y"]);
}
