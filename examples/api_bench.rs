//! Load generator for scripts/bench-api.sh: pod creates at N concurrent clients, list latency
//! (JSON and Table), watch event latency to many watchers, and the same number of durable puts
//! to a single-node etcd through its JSON gateway, for comparison.
//!
//! Usage:
//!   api_bench creates <kubeconfig> <namespace> <clients> <total>
//!   api_bench secrets <kubeconfig> <namespace> <clients> <total>   (1 KiB Secrets)
//!   api_bench configmap-creates <kubeconfig> <namespace> <clients> <total>
//!   api_bench paced <kubeconfig> <namespace> <rate-per-s> <seconds>
//!   api_bench list <kubeconfig> <namespace> <runs>
//!   api_bench watch <kubeconfig> <namespace> <watchers> <events>
//!   api_bench etcd <endpoint e.g. 127.0.0.1:2379> <clients> <total> <value-bytes>
//!   api_bench etcd-paced <endpoint> <rate-per-s> <seconds> <value-bytes>

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ObjectMeta, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

async fn client(path: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
        "spec": {"containers": [{"name": "app", "image": "registry.local/bench/app:1.2.3",
            "ports": [{"containerPort": 8080}],
            "env": [{"name": "MODE", "value": "bench"}, {"name": "LEVEL", "value": "3"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}}]}
    }))
    .unwrap()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(what: &str, mut lat_ms: Vec<f64>, elapsed: Duration) {
    lat_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{what}: n={} rate={:.0}/s p50={:.2}ms p99={:.2}ms max={:.2}ms",
        lat_ms.len(),
        lat_ms.len() as f64 / elapsed.as_secs_f64(),
        percentile(&lat_ms, 0.5),
        percentile(&lat_ms, 0.99),
        lat_ms.last().copied().unwrap_or(f64::NAN)
    );
}

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("app".to_string(), "bench".to_string())].into()),
            ..Default::default()
        },
        data: Some([("key".to_string(), "value".repeat(20))].into()),
        ..Default::default()
    }
}

async fn configmap_creates(kubeconfig: &str, ns: &str, clients: usize, total: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let api: Api<ConfigMap> = Api::namespaced(client(kubeconfig).await, ns);
        let (next, lat) = (next.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                api.create(&PostParams::default(), &configmap(&format!("cm-{i}")))
                    .await
                    .expect("create");
                lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("configmap creates, {clients} clients"),
        lat,
        start.elapsed(),
    );
}

async fn creates(kubeconfig: &str, ns: &str, clients: usize, total: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let api: Api<Pod> = Api::namespaced(client(kubeconfig).await, ns);
        let (next, lat) = (next.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                api.create(&PostParams::default(), &pod(&format!("bench-{i}")))
                    .await
                    .expect("create");
                lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("pod creates, {clients} clients"),
        lat,
        start.elapsed(),
    );
}

/// Secret creates, to compare a server that encrypts them with one that does not.
async fn secrets(kubeconfig: &str, ns: &str, clients: usize, total: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let api: Api<Secret> = Api::namespaced(client(kubeconfig).await, ns);
        let (next, lat) = (next.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let secret: Secret = serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("bench-{i}")},
                    "stringData": {"key": "x".repeat(1024)}
                }))
                .unwrap();
                let t = Instant::now();
                api.create(&PostParams::default(), &secret)
                    .await
                    .expect("create");
                lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("secret creates, {clients} clients"),
        lat,
        start.elapsed(),
    );
}

async fn paced(kubeconfig: &str, ns: &str, rate: u64, seconds: u64) {
    let api: Api<ConfigMap> = Api::namespaced(client(kubeconfig).await, ns);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        tick.tick().await;
        let (api, lat) = (api.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("paced-{i}")),
                    ..Default::default()
                },
                ..Default::default()
            };
            let t = Instant::now();
            api.create(&PostParams::default(), &cm)
                .await
                .expect("create");
            lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("configmap creates paced at {rate}/s"),
        lat,
        start.elapsed(),
    );
}

async fn list(kubeconfig: &str, ns: &str, runs: usize) {
    let c = client(kubeconfig).await;
    for (what, accept) in [
        ("list JSON", "application/json"),
        (
            "list Table",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ),
    ] {
        let mut lat = Vec::new();
        let mut size = 0;
        let start = Instant::now();
        for _ in 0..runs {
            let req = http::Request::get(format!("/api/v1/namespaces/{ns}/pods"))
                .header("Accept", accept)
                .body(Vec::new())
                .unwrap();
            let t = Instant::now();
            let text = c.request_text(req).await.expect("list");
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
            size = text.len();
        }
        report(
            &format!("{what} ({} MB)", size / 1_000_000),
            lat,
            start.elapsed(),
        );
    }
}

async fn watch(kubeconfig: &str, ns: &str, watchers: usize, events: usize) {
    let c = client(kubeconfig).await;
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), ns);
    let rv = api
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let lat = Arc::new(Mutex::new(Vec::new()));
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let api: Api<ConfigMap> = Api::namespaced(client(kubeconfig).await, ns);
        let (lat, rv) = (lat.clone(), rv.clone());
        let mut stream = api
            .watch(&WatchParams::default().timeout(290), &rv)
            .await
            .expect("watch")
            .boxed();
        tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            while let Some(ev) = stream.next().await {
                if let Ok(WatchEvent::Added(cm)) = ev {
                    let sent: u64 = cm
                        .data
                        .as_ref()
                        .and_then(|d| d.get("sent_us"))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let now = epoch.elapsed().as_micros() as u64;
                    lat.lock()
                        .unwrap()
                        .push((now.saturating_sub(sent)) as f64 / 1000.0);
                    seen += 1;
                    if seen == events {
                        break;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    for i in 0..events {
        let sent = epoch.elapsed().as_micros() as u64;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("watched-{i}")),
                ..Default::default()
            },
            data: Some([("sent_us".to_string(), sent.to_string())].into()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &cm)
            .await
            .expect("create");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(60), t).await;
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("watch events (create sent -> event received), {watchers} watchers"),
        lat,
        start.elapsed(),
    );
}

/// Durable puts through etcd's v3 JSON gateway (POST /v3/kv/put), one HTTP/1.1 connection per client.
async fn etcd(endpoint: &str, clients: usize, total: usize, value_bytes: usize) {
    use base64::Engine;
    use http_body_util::{BodyExt, Full};
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let value = b64(&vec![b'x'; value_bytes]);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let stream = tokio::net::TcpStream::connect(endpoint)
            .await
            .expect("connect to etcd");
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let (next, lat, value, endpoint) = (
            next.clone(),
            lat.clone(),
            value.clone(),
            endpoint.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= total {
                    break;
                }
                let body = format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    b64(format!("/bench/{i}").as_bytes()),
                    value
                );
                let req = http::Request::post(format!("http://{endpoint}/v3/kv/put"))
                    .header("host", endpoint.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                let t = Instant::now();
                let resp = send.send_request(req).await.expect("etcd put");
                assert!(
                    resp.status().is_success(),
                    "etcd answered {}",
                    resp.status()
                );
                let _ = resp.into_body().collect().await;
                lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("etcd puts ({value_bytes} B values), {clients} clients"),
        lat,
        start.elapsed(),
    );
}

/// Durable puts to etcd at a fixed rate, each on its own connection slot, for the paced comparison.
async fn etcd_paced(endpoint: &str, rate: u64, seconds: u64, value_bytes: usize) {
    use base64::Engine;
    use http_body_util::{BodyExt, Full};
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    let value = b64(&vec![b'x'; value_bytes]);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..rate * seconds {
        tick.tick().await;
        let (lat, value, endpoint) = (lat.clone(), value.clone(), endpoint.to_string());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&endpoint)
                .await
                .expect("connect to etcd");
            let (mut send, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let body = format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                b64(format!("/paced/{i}").as_bytes()),
                value
            );
            let req = http::Request::post(format!("http://{endpoint}/v3/kv/put"))
                .header("host", endpoint.as_str())
                .header("content-type", "application/json")
                .body(Full::new(bytes::Bytes::from(body)))
                .unwrap();
            let t = Instant::now();
            let resp = send.send_request(req).await.expect("etcd put");
            let _ = resp.into_body().collect().await;
            lat.lock().unwrap().push(t.elapsed().as_secs_f64() * 1000.0);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lat = lat.lock().unwrap().clone();
    report(
        &format!("etcd puts paced at {rate}/s"),
        lat,
        start.elapsed(),
    );
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n = |i: usize| a[i].parse::<usize>().expect("a number");
    match a.get(1).map(String::as_str) {
        Some("creates") => creates(&a[2], &a[3], n(4), n(5)).await,
        Some("secrets") => secrets(&a[2], &a[3], n(4), n(5)).await,
        Some("configmap-creates") => configmap_creates(&a[2], &a[3], n(4), n(5)).await,
        Some("paced") => paced(&a[2], &a[3], n(4) as u64, n(5) as u64).await,
        Some("list") => list(&a[2], &a[3], n(4)).await,
        Some("watch") => watch(&a[2], &a[3], n(4), n(5)).await,
        Some("etcd") => etcd(&a[2], n(3), n(4), n(5)).await,
        Some("etcd-paced") => etcd_paced(&a[2], n(3) as u64, n(4) as u64, n(5)).await,
        _ => {
            eprintln!("usage: see the doc comment of examples/api_bench.rs");
            std::process::exit(2);
        }
    }
}
