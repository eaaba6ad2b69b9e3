//! Meter for scripts/bench-selfheal.sh, run inside the cluster's network namespace: a Deployment
//! of one replica (busybox `sleep`, no probes), then `trials` rounds of
//!   (a) `kill -9` of the container's main process (its host pid from the runtime's state.json,
//!       found through the pod's containerID), timed until the same pod is Ready again with its
//!       restartCount one higher;
//!   (b) delete of the pod, timed until a replacement pod (another uid, not terminating) is Ready.
//! Each round's (b) makes the pod that the next round's (a) kills, so every kill is the first
//! restart of its container: the kubelet restarts that one at once, as upstream does (the next
//! restarts of the same container wait for the CrashLoopBackOff delay, 10 s and more).
//! Before a round starts the deleted pod is gone, so the rounds do not overlap. Times are
//! taken when this client sees the change in its watch, so they include the API round trips.
//!
//! Usage: selfheal_bench <kubeconfig> <runtime-root> <trials>

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

const NS: &str = "default";
const APP: &str = "selfheal-bench";
/// The targets: p99 <= 2 s for a container restart, <= 3 s for a replacement pod.
const CONTAINER_TARGET_S: f64 = 2.0;
const POD_TARGET_S: f64 = 3.0;

async fn client(path: &str) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(path).expect("kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    Client::try_from(cfg).expect("client")
}

/// The Deployment's pods as a watch keeps them, and a wake-up on every change.
struct Pods {
    store: Store<Pod>,
    changed: Arc<Notify>,
}

impl Pods {
    fn start(c: &Client) -> Pods {
        let api: Api<Pod> = Api::namespaced(c.clone(), NS);
        let (store, writer) = reflector::store();
        let changed = Arc::new(Notify::new());
        let wake = changed.clone();
        let cfg = watcher::Config::default().labels(&format!("app={APP}"));
        tokio::spawn(async move {
            let mut s = reflector::reflector(writer, watcher(api, cfg))
                .default_backoff()
                .boxed();
            while let Some(ev) = s.next().await {
                if let Err(e) = ev {
                    eprintln!("selfheal_bench: watch: {e}");
                }
                wake.notify_waiters();
            }
        });
        Pods { store, changed }
    }

    /// Waits until `pick` finds something in the pods, for at most `timeout`.
    async fn until<T>(
        &self,
        what: &str,
        timeout: Duration,
        pick: impl Fn(&[Arc<Pod>]) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Registered before looking, so a change in between still wakes us.
            let notified = self.changed.notified();
            if let Some(t) = pick(&self.store.state()) {
                return Ok(t);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), notified).await;
        }
    }
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// (containerID without its scheme, restartCount) of the pod's one container, while it runs.
fn container(p: &Pod) -> Option<(String, i32)> {
    let cs = p.status.as_ref()?.container_statuses.as_ref()?.first()?;
    cs.state.as_ref()?.running.as_ref()?;
    let id = cs.container_id.as_deref()?;
    Some((
        id.split_once("://").map_or(id, |(_, i)| i).to_string(),
        cs.restart_count,
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Prints n, p50, p99 and max in ms and returns p99 in seconds.
fn report(what: &str, mut secs: Vec<f64>) -> f64 {
    secs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ms = |s: f64| s * 1000.0;
    println!(
        "{what}: n={} p50={:.0} ms p99={:.0} ms min={:.0} ms max={:.0} ms",
        secs.len(),
        ms(percentile(&secs, 0.5)),
        ms(percentile(&secs, 0.99)),
        ms(secs.first().copied().unwrap_or(f64::NAN)),
        ms(secs.last().copied().unwrap_or(f64::NAN)),
    );
    percentile(&secs, 0.99)
}

async fn run(kubeconfig: &str, runtime_root: &str, trials: usize) -> Result<(), String> {
    let c = client(kubeconfig).await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), NS);
    let pods_api: Api<Pod> = Api::namespaced(c.clone(), NS);
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": APP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": APP}},
            "template": {
                "metadata": {"labels": {"app": APP}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "nanokube/busybox",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["sleep", "1000000"]}],
                },
            },
        },
    }))
    .unwrap();
    let pods = Pods::start(&c);
    // The default ServiceAccount comes from a controller soon after the server starts; the
    // ReplicaSet controller retries until then.
    deployments
        .create(&PostParams::default(), &d)
        .await
        .map_err(|e| format!("create the Deployment: {e}"))?;
    let first = pods
        .until("the first pod Ready", Duration::from_secs(120), |ps| {
            ps.iter().find(|p| ready(p)).map(|p| uid(p).to_string())
        })
        .await?;
    println!("selfheal: the Deployment's first pod is Ready; {trials} trials");

    let mut current = first;
    let (mut restarts, mut replacements) = (Vec::new(), Vec::new());
    let step = Duration::from_secs(60);
    for trial in 1..=trials {
        // (a) kill -9 of the container's main process.
        let (name, id, before) = pods
            .until("the pod's running container", step, |ps| {
                let p = ps.iter().find(|p| uid(p) == current && ready(p))?;
                let (id, n) = container(p)?;
                Some((p.metadata.name.clone().unwrap_or_default(), id, n))
            })
            .await?;
        let state = format!("{runtime_root}/{id}/state.json");
        let text = std::fs::read_to_string(&state).map_err(|e| format!("{state}: {e}"))?;
        let pid = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["pid"].as_i64())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("no pid in {state}"))?;
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(|e| format!("kill -9 {pid}: {e}"))?;
        let cur = current.clone();
        pods.until("the pod Ready again after kill -9", step, |ps| {
            let p = ps.iter().find(|p| uid(p) == cur)?;
            let (_, n) = container(p)?;
            (n > before && ready(p)).then_some(())
        })
        .await
        .map_err(|e| format!("trial {trial} (a): {e}"))?;
        restarts.push(t.elapsed().as_secs_f64());

        // (b) delete the pod; its replacement is another uid.
        let t = Instant::now();
        pods_api
            .delete(&name, &DeleteParams::default())
            .await
            .map_err(|e| format!("delete pod {name}: {e}"))?;
        let old = current.clone();
        current = pods
            .until("a replacement pod Ready", step, |ps| {
                ps.iter()
                    .find(|p| uid(p) != old && ready(p))
                    .map(|p| uid(p).to_string())
            })
            .await
            .map_err(|e| format!("trial {trial} (b): {e}"))?;
        replacements.push(t.elapsed().as_secs_f64());
        // The deleted pod gone before the next trial (not timed).
        pods.until("the deleted pod gone", step, |ps| {
            (!ps.iter().any(|p| uid(p) == old)).then_some(())
        })
        .await?;
        if trial % 10 == 0 || trial == trials {
            println!(
                "  trial {trial}/{trials}: restart {:.0} ms, replacement {:.0} ms",
                restarts.last().unwrap() * 1000.0,
                replacements.last().unwrap() * 1000.0
            );
        }
    }

    let p99 = report(
        "kill -9 of the container -> pod Ready again (restartCount + 1)",
        restarts,
    );
    println!(
        "  ratio p99/2s: {:.2} (target p99 <= 2 s: ratio <= 1)",
        p99 / CONTAINER_TARGET_S
    );
    let p99 = report("pod delete -> replacement pod Ready", replacements);
    println!(
        "  ratio p99/3s: {:.2} (target p99 <= 3 s: ratio <= 1)",
        p99 / POD_TARGET_S
    );
    let _ = deployments.delete(APP, &DeleteParams::default()).await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: selfheal_bench <kubeconfig> <runtime-root> <trials>");
        std::process::exit(2);
    }
    let trials = a[3].parse().expect("trials: a number");
    if let Err(e) = run(&a[1], &a[2], trials).await {
        eprintln!("selfheal_bench: {e}");
        std::process::exit(1);
    }
}
