//! Load generator and meter for scripts/bench-scheduler.sh: fake nodes and pending pods through
//! the API while no scheduler runs, then the rate at which a scheduler binds them, as a watch on
//! the pods sees `spec.nodeName` set.
//!
//! Usage:
//!   sched_bench setup <kubeconfig> <namespace> <nodes> <pods> <owners> <clients>
//!   sched_bench measure <kubeconfig> <namespace> <pods> <timeout-s> <server-launch-unix-s>
//!
//! `setup` makes the namespace and its `default` ServiceAccount (no controller manager runs to
//! make it), `nodes` Nodes (`node-<i>`, allocatable cpu 32, memory 256Gi, pods 110, Ready, in
//! zones `zone-<i % 10>`, an InternalIP on loopback so that nothing could ever be sent
//! elsewhere), `owners` ReplicaSets (`rs-<k>`, selector `app=group-<k>`; nothing reconciles
//! them) and `pods` pending pods spread round-robin over the owners, each with a controller
//! ownerReference to its ReplicaSet and small requests (100m cpu, 128Mi memory), so that the
//! scheduler's default spreading of a controller's pods across nodes and zones has work to do.
//!
//! `measure` waits for the kubeconfig to appear (the script removes it before it starts the
//! server, which writes it once it answers), lists the pods and watches them from there,
//! printing progress every 5 s, until all `pods` are bound or `timeout-s` passed. It prints the
//! rate from the first bind it saw to the last (`pods/s`, the figure compared with
//! kube-scheduler's scheduler_perf anchor of 750 pods/s), the rate counted from the server
//! answering (which includes the scheduler's start: its leader Lease and its initial lists),
//! and how evenly each owner's pods landed across zones and nodes. Exit status 3 if it timed
//! out.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// kube-scheduler's scheduler_perf throughput thresholds are 680-810 pods/s (5000 nodes, far
/// bigger machines); issue 11 compares with the middle of that range.
const ANCHOR: f64 = 750.0;
const ZONES: usize = 10;

async fn client(path: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

/// Runs `work(i)` for i in 0..total on `clients` concurrent tasks, each with its own client
/// (its own connection), and returns the seconds it took.
async fn fan_out<F, Fut>(kubeconfig: &str, clients: usize, total: usize, work: F) -> f64
where
    F: Fn(Client, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.min(total.max(1)) {
        let c = client(kubeconfig).await;
        let (next, work) = (next.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    break;
                }
                work(c.clone(), i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a worker");
    }
    start.elapsed().as_secs_f64()
}

async fn setup(
    kubeconfig: &str,
    ns: &str,
    nodes: usize,
    pods: usize,
    owners: usize,
    clients: usize,
) {
    let c = client(kubeconfig).await;
    let pp = PostParams::default();
    Api::<Namespace>::all(c.clone())
        .create(&pp, &from_json(json!({"metadata": {"name": ns}})))
        .await
        .expect("create the namespace");
    // Admission wants the namespace's `default` account, which the (disabled) controller
    // manager would make.
    Api::<ServiceAccount>::namespaced(c.clone(), ns)
        .create(&pp, &from_json(json!({"metadata": {"name": "default"}})))
        .await
        .expect("create the default ServiceAccount");

    let secs = fan_out(kubeconfig, clients, nodes, |c, i| async move {
        let api: Api<Node> = Api::all(c);
        let name = format!("node-{i}");
        let node: Node = from_json(json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES),
            }},
            "spec": {},
        }));
        api.create(&PostParams::default(), &node)
            .await
            .expect("create a node");
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let resources = json!({"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "500Gi"});
        // 127.1.x.y: loopback, should anything ever try to reach a fake node.
        let address = format!("127.1.{}.{}", i / 250, 1 + i % 250);
        let status = json!({"status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                 "lastHeartbeatTime": now, "lastTransitionTime": now},
            ],
            "addresses": [{"type": "InternalIP", "address": address},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                "kubeletVersion": "v1.33.0", "kubeProxyVersion": "v1.33.0",
                "containerRuntimeVersion": "fake://0", "kernelVersion": "", "osImage": "fake",
                "machineID": "", "systemUUID": "", "bootID": ""},
        }});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("set a node's status");
    })
    .await;
    println!(
        "setup: {nodes} nodes (with status) in {secs:.1} s ({:.0}/s)",
        nodes as f64 / secs
    );
    let tainted = Api::<Node>::all(c.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes")
        .items
        .iter()
        .filter(|n| {
            n.spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    if tainted > 0 {
        println!("setup: warning: {tainted} nodes have taints");
    }

    let rs_api: Api<ReplicaSet> = Api::namespaced(c.clone(), ns);
    let mut uids = Vec::new();
    for k in 0..owners {
        let replicas = pods / owners + usize::from(k < pods % owners);
        let labels = json!({"app": format!("group-{k}")});
        let rs: ReplicaSet = from_json(json!({
            "metadata": {"name": format!("rs-{k}"), "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "app", "image": "registry.local/bench/app:1"}]}}},
        }));
        let made = rs_api.create(&pp, &rs).await.expect("create a ReplicaSet");
        uids.push(made.metadata.uid.expect("a uid"));
    }
    let uids = Arc::new(uids);
    let ns_owned = ns.to_string();
    let secs = fan_out(kubeconfig, clients, pods, move |c, i| {
        let (uids, ns) = (uids.clone(), ns_owned.clone());
        async move {
            let k = i % uids.len();
            let pod: Pod = from_json(json!({
                "metadata": {
                    "name": format!("pod-{k}-{i}"),
                    "labels": {"app": format!("group-{k}")},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": format!("rs-{k}"), "uid": uids[k],
                        "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": {
                    "automountServiceAccountToken": false,
                    "containers": [{"name": "app", "image": "registry.local/bench/app:1",
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                },
            }));
            Api::<Pod>::namespaced(c, &ns)
                .create(&PostParams::default(), &pod)
                .await
                .expect("create a pod");
        }
    })
    .await;
    println!(
        "setup: {pods} pending pods of {owners} ReplicaSets in {secs:.1} s ({:.0}/s)",
        pods as f64 / secs
    );
}

struct Tally {
    /// pod name -> node name, for every bound pod seen.
    bound: HashMap<String, String>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Tally {
    fn see(&mut self, pod: &Pod) {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let (Some(name), Some(node)) = (pod.metadata.name.as_deref(), node) else {
            return;
        };
        if node.is_empty() || self.bound.contains_key(name) {
            return;
        }
        self.bound.insert(name.to_string(), node.to_string());
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
    }
}

async fn measure(kubeconfig: &str, ns: &str, pods: usize, timeout: u64, launched: f64) {
    // The server writes the kubeconfig once it answers.
    let wait_until = Instant::now() + Duration::from_secs(300);
    while !std::path::Path::new(kubeconfig).exists() {
        assert!(
            Instant::now() < wait_until,
            "the server never wrote {kubeconfig}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ready = Instant::now();
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    println!(
        "measure: server answering {:.1} s after its launch",
        unix_now - launched
    );
    let c = client(kubeconfig).await;
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let deadline = ready + Duration::from_secs(timeout);
    let mut tally = Tally {
        bound: HashMap::new(),
        first: None,
        last: None,
    };
    let mut next_report = ready + Duration::from_secs(5);
    let mut reported = 0;
    let mut rv: Option<String> = None;
    let mut timed_out = false;
    'outer: while tally.bound.len() < pods {
        if Instant::now() >= deadline {
            timed_out = true;
            break;
        }
        let from = match rv.clone() {
            Some(v) => v,
            None => match api.list(&ListParams::default()).await {
                Ok(list) => {
                    for p in &list.items {
                        tally.see(p);
                    }
                    list.metadata.resource_version.unwrap_or_default()
                }
                Err(e) => {
                    eprintln!("measure: list: {e}; again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        rv = Some(from.clone());
        let mut stream = match api.watch(&WatchParams::default().timeout(60), &from).await {
            Ok(s) => s.boxed(),
            Err(e) => {
                eprintln!("measure: watch: {e}; listing again");
                rv = None;
                continue;
            }
        };
        loop {
            if tally.bound.len() >= pods {
                break 'outer;
            }
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                break 'outer;
            }
            let wake = next_report.min(deadline);
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(WatchEvent::Added(p))) | Some(Ok(WatchEvent::Modified(p))) => {
                        rv = p.metadata.resource_version.clone().or(rv);
                        tally.see(&p);
                    }
                    Some(Ok(WatchEvent::Deleted(p))) => {
                        rv = p.metadata.resource_version.clone().or(rv);
                    }
                    Some(Ok(WatchEvent::Bookmark(b))) => {
                        rv = Some(b.metadata.resource_version);
                    }
                    Some(Ok(WatchEvent::Error(e))) => {
                        eprintln!("measure: watch error {}: {}; listing again", e.code, e.message);
                        rv = None;
                        break;
                    }
                    Some(Err(e)) => {
                        eprintln!("measure: watch stream: {e}; watching again");
                        break;
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
            if Instant::now() >= next_report {
                let n = tally.bound.len();
                println!(
                    "  +{:>3.0} s: {n}/{pods} bound ({:.0}/s over the last 5 s)",
                    next_report.duration_since(ready).as_secs_f64(),
                    (n - reported) as f64 / 5.0
                );
                reported = n;
                next_report += Duration::from_secs(5);
            }
        }
    }

    let n = tally.bound.len();
    let since_ready =
        |t: Option<Instant>| t.map_or(f64::NAN, |t| t.duration_since(ready).as_secs_f64());
    let (first, last) = (since_ready(tally.first), since_ready(tally.last));
    if timed_out {
        println!("TIMEOUT after {timeout} s: {n} of {pods} pods bound");
    }
    println!(
        "bound {n}/{pods} pods: first seen bound {first:.2} s after the server answered, last {last:.2} s"
    );
    let rate = if n > 1 && last > first {
        n as f64 / (last - first)
    } else {
        f64::NAN
    };
    let from_ready = if n > 0 { n as f64 / last } else { f64::NAN };
    println!("from the server answering (includes the scheduler's start): {from_ready:.0} pods/s");
    println!("pods/s: {rate:.0}");
    println!(
        "ratio to kube-scheduler's 750 pods/s anchor: {:.2} (issue 11's target: >= 1500 pods/s, ratio 2.0)",
        rate / ANCHOR
    );
    spreading(&c, &tally.bound).await;
    if timed_out {
        std::process::exit(3);
    }
}

/// How evenly each owner's bound pods landed: per zone (max - min over the zones) and per node.
async fn spreading(c: &Client, bound: &HashMap<String, String>) {
    let Ok(nodes) = Api::<Node>::all(c.clone())
        .list(&ListParams::default())
        .await
    else {
        return;
    };
    let zone: HashMap<String, String> = nodes
        .items
        .iter()
        .filter_map(|n| {
            let labels = n.metadata.labels.as_ref()?;
            Some((
                n.metadata.name.clone()?,
                labels.get("topology.kubernetes.io/zone")?.clone(),
            ))
        })
        .collect();
    let zones: Vec<&String> = {
        let mut z: Vec<&String> = zone.values().collect();
        z.sort();
        z.dedup();
        z
    };
    // Owner k's pods are named pod-<k>-<i>.
    let owner = |pod: &str| pod.split('-').nth(1).unwrap_or("").to_string();
    let mut per_zone: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    let mut per_node: BTreeMap<(String, &str), usize> = BTreeMap::new();
    let mut per_node_all: HashMap<&str, usize> = HashMap::new();
    for (pod, node) in bound {
        let o = owner(pod);
        let z = zone.get(node).map_or("?", String::as_str);
        *per_zone.entry(o.clone()).or_default().entry(z).or_default() += 1;
        *per_node.entry((o, node.as_str())).or_default() += 1;
        *per_node_all.entry(node.as_str()).or_default() += 1;
    }
    let mut worst_zone_skew = 0;
    for counts in per_zone.values() {
        let all: Vec<usize> = zones
            .iter()
            .map(|z| counts.get(z.as_str()).copied().unwrap_or(0))
            .collect();
        let (lo, hi) = (
            all.iter().min().copied().unwrap_or(0),
            all.iter().max().copied().unwrap_or(0),
        );
        worst_zone_skew = worst_zone_skew.max(hi - lo);
    }
    let most_one_owner = per_node.values().max().copied().unwrap_or(0);
    let owners = per_zone.len().max(1);
    // zone has one entry per node.
    let ideal = bound.len().div_ceil(owners).div_ceil(zone.len().max(1));
    let (lo, hi) = (
        zone.keys()
            .map(|n| per_node_all.get(n.as_str()).copied().unwrap_or(0))
            .min()
            .unwrap_or(0),
        per_node_all.values().max().copied().unwrap_or(0),
    );
    println!(
        "spreading: worst zone skew of one owner {worst_zone_skew} pods ({} zones); most pods of one \
         owner on one node {most_one_owner} (even would be {ideal}); pods per node {lo}-{hi}",
        zones.len()
    );
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let n = |i: usize| a[i].parse::<usize>().expect("a number");
    match a.get(1).map(String::as_str) {
        Some("setup") if a.len() == 8 => setup(&a[2], &a[3], n(4), n(5), n(6), n(7)).await,
        Some("measure") if a.len() == 7 => {
            let launched: f64 = a[6].parse().expect("the server's launch time");
            measure(&a[2], &a[3], n(4), n(5) as u64, launched).await
        }
        _ => {
            eprintln!("usage: see the doc comment of examples/sched_bench.rs");
            std::process::exit(2);
        }
    }
}
