//! `/metrics`: the server's counters in the Prometheus text format, under kube-apiserver's
//! names so existing dashboards and alerts read them: apiserver_request_total,
//! apiserver_request_duration_seconds, apiserver_current_inflight_requests,
//! apiserver_longrunning_requests, apiserver_storage_objects and etcd_request_duration_seconds
//! (the store's latency, whichever backend it is).

use super::request_info::RequestInfo;
use crate::store::{self, KeyValue, ListPage, ProgressWatchStream, Store, WatchStream};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// kube-apiserver's buckets for request and etcd latencies, in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last slot is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// Label sets, as (name, value) pairs in a fixed order.
type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<Labels, u64>,
    durations: BTreeMap<Labels, Histogram>,
    longrunning: BTreeMap<Labels, Arc<AtomicI64>>,
    store: BTreeMap<Labels, Histogram>,
}

#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

fn resource_labels(info: &RequestInfo) -> Labels {
    let (resource, subresource) = if info.is_resource {
        (info.resource.clone(), info.subresource.clone())
    } else {
        // Upstream puts a non-resource path where the subresource goes.
        (String::new(), info.path.clone())
    };
    vec![
        ("verb", info.verb.to_string()),
        ("group", info.group.clone()),
        ("version", info.version.clone()),
        ("resource", resource),
        ("subresource", subresource),
        ("scope", info.scope.to_string()),
        ("component", "apiserver".to_string()),
    ]
}

/// A long-running request's share of apiserver_longrunning_requests, given back on drop.
#[derive(Debug)]
pub struct LongRunning(Arc<AtomicI64>);

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one answered request and, unless it streams, how long it took.
    pub fn record(&self, info: &RequestInfo, dry_run: bool, code: u16, elapsed: Duration) {
        let mut labels = resource_labels(info);
        labels.insert(1, ("dry_run", if dry_run { "All" } else { "" }.to_string()));
        let mut inner = self.lock();
        if !info.long_running {
            inner
                .durations
                .entry(labels.clone())
                .or_default()
                .observe(elapsed.as_secs_f64());
        }
        labels.push(("code", code.to_string()));
        *inner.requests.entry(labels).or_default() += 1;
    }

    /// Notes a long-running request (a watch) as open until the returned guard drops.
    pub fn long_running(&self, info: &RequestInfo) -> LongRunning {
        let gauge = self
            .lock()
            .longrunning
            .entry(resource_labels(info))
            .or_default()
            .clone();
        gauge.fetch_add(1, Ordering::Relaxed);
        LongRunning(gauge)
    }

    fn observe_store(&self, operation: &'static str, key: &str, elapsed: Duration) {
        let labels = vec![
            ("operation", operation.to_string()),
            ("type", storage_type(key)),
        ];
        self.lock()
            .store
            .entry(labels)
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition. `inflight` is (read-only, mutating) requests now in flight,
    /// `objects` the stored objects per resource.
    pub fn render(&self, inflight: (usize, usize), objects: &[(String, i64)]) -> String {
        let inner = self.lock();
        let mut out = String::new();
        header(
            &mut out,
            "apiserver_request_total",
            "counter",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
        );
        for (labels, n) in &inner.requests {
            sample(&mut out, "apiserver_request_total", labels, &n.to_string());
        }
        header(
            &mut out,
            "apiserver_request_duration_seconds",
            "histogram",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
        );
        for (labels, h) in &inner.durations {
            histogram(&mut out, "apiserver_request_duration_seconds", labels, h);
        }
        header(
            &mut out,
            "apiserver_current_inflight_requests",
            "gauge",
            "Number of requests in flight now, by pool (--max-requests-inflight for readOnly, --max-mutating-requests-inflight for mutating).",
        );
        for (kind, n) in [("mutating", inflight.1), ("readOnly", inflight.0)] {
            let labels = vec![("request_kind", kind.to_string())];
            sample(
                &mut out,
                "apiserver_current_inflight_requests",
                &labels,
                &n.to_string(),
            );
        }
        header(
            &mut out,
            "apiserver_longrunning_requests",
            "gauge",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
        );
        for (labels, n) in &inner.longrunning {
            let n = n.load(Ordering::Relaxed);
            sample(
                &mut out,
                "apiserver_longrunning_requests",
                labels,
                &n.to_string(),
            );
        }
        header(
            &mut out,
            "apiserver_storage_objects",
            "gauge",
            "Number of stored objects at the time of last check split by kind.",
        );
        for (resource, n) in objects {
            let labels = vec![("resource", resource.clone())];
            sample(
                &mut out,
                "apiserver_storage_objects",
                &labels,
                &n.to_string(),
            );
        }
        header(
            &mut out,
            "etcd_request_duration_seconds",
            "histogram",
            "Store request latency in seconds for each operation and object type (the store may be SQLite or etcd).",
        );
        for (labels, h) in &inner.store {
            histogram(&mut out, "etcd_request_duration_seconds", labels, h);
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &[(&'static str, String)], extra: Option<(&str, &str)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    parts.join(",")
}

fn sample(out: &mut String, name: &str, labels: &[(&'static str, String)], value: &str) {
    let _ = writeln!(out, "{name}{{{}}} {value}", label_text(labels, None));
}

fn histogram(out: &mut String, name: &str, labels: &[(&'static str, String)], h: &Histogram) {
    let mut cumulative = 0;
    for (i, le) in BUCKETS
        .iter()
        .map(|b| b.to_string())
        .chain(std::iter::once("+Inf".to_string()))
        .enumerate()
    {
        cumulative += h.counts.get(i).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{name}_bucket{{{}}} {cumulative}",
            label_text(labels, Some(("le", &le)))
        );
    }
    let l = label_text(labels, None);
    let _ = writeln!(out, "{name}_sum{{{l}}} {}", h.sum);
    let _ = writeln!(out, "{name}_count{{{l}}} {}", h.count);
}

/// The store prefix of the resource a key or prefix belongs to, e.g. "/registry/core/configmaps",
/// which keeps the label's values as few as the resources. Every kind's prefix is
/// `/registry/<group>/<plural>` (kinds::entry), so it is the key's first three segments: no
/// registry lookup on the store's hot path.
fn storage_type(key: &str) -> String {
    let mut parts = key.splitn(5, '/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(""), Some("registry"), Some(group), Some(plural))
            if !group.is_empty() && !plural.is_empty() =>
        {
            format!("/registry/{group}/{plural}")
        }
        _ => "other".to_string(),
    }
}

/// Stored objects per resource, as apiserver_storage_objects names them ("deployments.apps").
pub async fn count_objects(
    store: &dyn Store,
    kinds: &[std::sync::Arc<super::registry::ResourceInfo>],
) -> Vec<(String, i64)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for r in kinds {
        if !seen.insert(r.storage_prefix.as_str()) {
            continue;
        }
        let name = if r.group.is_empty() {
            r.plural.to_string()
        } else {
            format!("{}.{}", r.plural, r.group)
        };
        if let Ok(n) = store.count(&format!("{}/", r.storage_prefix)).await {
            out.push((name, n));
        }
    }
    out.sort();
    out
}

/// A store that times every call into etcd_request_duration_seconds.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(InstrumentedStore { inner, metrics })
    }

    fn done(&self, operation: &'static str, key: &str, started: Instant) {
        self.metrics
            .observe_store(operation, key, started.elapsed());
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn get(&self, key: &str) -> store::Result<Option<KeyValue>> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        self.done("get", key, t);
        r
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> store::Result<ListPage> {
        let t = Instant::now();
        let r = self.inner.list(prefix, start_after, limit, revision).await;
        self.done("list", prefix, t);
        r
    }

    async fn count(&self, prefix: &str) -> store::Result<i64> {
        let t = Instant::now();
        let r = self.inner.count(prefix).await;
        self.done("count", prefix, t);
        r
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> store::Result<KeyValue> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        self.done("create", key, t);
        r
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> store::Result<KeyValue> {
        let t = Instant::now();
        let r = self.inner.update(key, value, expected_revision).await;
        self.done("update", key, t);
        r
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> store::Result<(KeyValue, i64)> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected_revision).await;
        self.done("delete", key, t);
        r
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> store::Result<WatchStream> {
        let t = Instant::now();
        let r = self.inner.watch(prefix, after_revision).await;
        self.done("watch", prefix, t);
        r
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after_revision: i64,
        interval: Duration,
    ) -> store::Result<ProgressWatchStream> {
        let t = Instant::now();
        let r = self
            .inner
            .watch_with_progress(prefix, after_revision, interval)
            .await;
        self.done("watch", prefix, t);
        r
    }

    async fn current_revision(&self) -> store::Result<i64> {
        let t = Instant::now();
        let r = self.inner.current_revision().await;
        self.done("revision", "", t);
        r
    }

    async fn compacted_revision(&self) -> store::Result<i64> {
        let t = Instant::now();
        let r = self.inner.compacted_revision().await;
        self.done("revision", "", t);
        r
    }

    async fn compact(&self, revision: i64) -> store::Result<()> {
        let t = Instant::now();
        let r = self.inner.compact(revision).await;
        self.done("compact", "", t);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_type_is_the_resource_prefix_of_a_key() {
        assert_eq!(
            storage_type("/registry/apps/deployments/ns/web"),
            "/registry/apps/deployments"
        );
        assert_eq!(
            storage_type("/registry/core/namespaces/"),
            "/registry/core/namespaces"
        );
        assert_eq!(storage_type("/registry/core/"), "other");
        assert_eq!(storage_type("/elsewhere/x/y"), "other");
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        let info = super::super::request_info::classify(
            &http::Method::GET,
            "/api/v1/namespaces/a/configmaps",
            None,
            "",
        );
        m.record(&info, false, 200, Duration::from_millis(30));
        m.record(&info, false, 200, Duration::from_millis(3));
        let text = m.render((1, 0), &[("configmaps".into(), 4)]);
        assert!(text.contains(r#"apiserver_request_total{verb="LIST",dry_run="",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",code="200"} 2"#), "{text}");
        assert!(text.contains(r#"le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"le="0.05"} 2"#), "{text}");
        assert!(text.contains(r#"le="+Inf"} 2"#), "{text}");
        assert!(text.contains(r#"apiserver_current_inflight_requests{request_kind="readOnly"} 1"#));
        assert!(text.contains(r#"apiserver_storage_objects{resource="configmaps"} 4"#));
        let w = super::super::request_info::classify(
            &http::Method::GET,
            "/api/v1/pods",
            Some("watch=1"),
            "",
        );
        let guard = m.long_running(&w);
        assert!(m
            .render((0, 0), &[])
            .contains(r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="pods",subresource="",scope="cluster",component="apiserver"} 1"#));
        drop(guard);
        assert!(m
            .render((0, 0), &[])
            .contains(r#"scope="cluster",component="apiserver"} 0"#));
    }
}
