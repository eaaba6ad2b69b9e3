//! Node-pressure eviction, as the kubelet's eviction manager does it.
//!
//! - **Watching.** Every 10 s the manager compares what the node has left against the hard
//!   thresholds (`--eviction-hard`, default `memory.available<100Mi,nodefs.available<10%,
//!   nodefs.inodesFree<5%,imagefs.available<15%`).
//! - **Conditions.** While a threshold is crossed, the node reports MemoryPressure or
//!   DiskPressure.
//! - **Eviction.** Under disk pressure, unused images are removed first. If that is not
//!   enough, or under memory pressure, one pod is evicted per round. The pods whose usage exceeds their requests go
//!   first, then the lower priorities, then the largest use above requests. Critical pods
//!   (priority 2000000000 and up) and static pods are never chosen.
//! - **An evicted pod** has its containers stopped and becomes Failed with reason `Evicted`, a
//!   message in upstream's words and a DisruptionTarget condition. It stays in the API for its
//!   owner to replace.
//!
//! memory.available is /proc/meminfo's MemAvailable. nodefs and imagefs are the filesystem of
//! the data directory, which holds both here.

use super::{pods, Kubelet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;

/// A signal a threshold is set on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    MemoryAvailable,
    NodefsAvailable,
    NodefsInodesFree,
    ImagefsAvailable,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
        }
    }
    /// The resource upstream's message names.
    fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodefsInodesFree => "inodes",
            _ => "ephemeral-storage",
        }
    }
}

/// How much is the least that may be left: an amount, or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    Quantity(f64),
    Percent(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub min: Amount,
    /// As written, for the message.
    pub text: String,
    /// A soft threshold's grace period: how long it must hold before it evicts. None: hard.
    pub grace: Option<std::time::Duration>,
}

/// Parses `--eviction-hard` (`signal<amount,...`); an empty text sets none.
pub fn parse(text: &str) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (sig, amount) = part.split_once('<').ok_or_else(|| {
            format!("invalid --eviction-hard {part:?}: want signal<quantity or signal<percent%")
        })?;
        let signal = match sig.trim() {
            "memory.available" => Signal::MemoryAvailable,
            "nodefs.available" => Signal::NodefsAvailable,
            "nodefs.inodesFree" => Signal::NodefsInodesFree,
            "imagefs.available" => Signal::ImagefsAvailable,
            other => return Err(format!("invalid --eviction-hard signal {other:?}: want memory.available, nodefs.available, nodefs.inodesFree or imagefs.available")),
        };
        let amount = amount.trim();
        let min = match amount.strip_suffix('%') {
            Some(p) => Amount::Percent(
                p.parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=100.0).contains(v))
                    .ok_or_else(|| format!("invalid --eviction-hard percentage {amount:?}"))?,
            ),
            None => Amount::Quantity(
                crate::apiserver::defaults::parse_quantity(&serde_json::json!(amount))
                    .ok_or_else(|| format!("invalid --eviction-hard quantity {amount:?}"))?,
            ),
        };
        out.push(Threshold {
            signal,
            min,
            text: amount.to_string(),
            grace: None,
        });
    }
    Ok(out)
}

/// Parses `--eviction-soft` with `--eviction-soft-grace-period` (`signal=duration,...`): every
/// soft threshold needs a grace period, and every grace period a threshold, as the kubelet
/// checks.
pub fn parse_soft(thresholds: &str, graces: &str) -> Result<Vec<Threshold>, String> {
    let mut soft =
        parse(thresholds).map_err(|e| e.replace("--eviction-hard", "--eviction-soft"))?;
    let mut given = std::collections::BTreeMap::new();
    for part in graces.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (sig, d) = part.split_once('=').ok_or_else(|| {
            format!("invalid --eviction-soft-grace-period {part:?}: want signal=duration")
        })?;
        let d = crate::server::go_duration(d.trim())
            .map_err(|e| format!("invalid --eviction-soft-grace-period {part:?}: {e}"))?;
        given.insert(sig.trim().to_string(), d);
    }
    for t in &mut soft {
        t.grace = Some(given.remove(t.signal.name()).ok_or_else(|| {
            format!(
                "grace period must be specified for the soft eviction threshold {}",
                t.signal.name()
            )
        })?);
    }
    if let Some(sig) = given.keys().next() {
        return Err(format!(
            "--eviction-soft-grace-period {sig}: no soft eviction threshold for that signal"
        ));
    }
    Ok(soft)
}

/// What is left of a signal, and of how much.
#[derive(Debug, Clone, Copy)]
struct Observed {
    available: f64,
    capacity: f64,
}

fn observe(k: &Kubelet, signal: Signal) -> Option<Observed> {
    match signal {
        Signal::MemoryAvailable => {
            let info = std::fs::read_to_string("/proc/meminfo").ok()?;
            let get = |key: &str| -> Option<f64> {
                info.lines().find_map(|l| {
                    let v = l.strip_prefix(key)?.strip_prefix(':')?;
                    Some(v.split_whitespace().next()?.parse::<f64>().ok()? * 1024.0)
                })
            };
            Some(Observed {
                available: get("MemAvailable")?,
                capacity: get("MemTotal")?,
            })
        }
        Signal::NodefsAvailable | Signal::ImagefsAvailable | Signal::NodefsInodesFree => {
            let st = nix::sys::statvfs::statvfs(&k.cfg.data_dir).ok()?;
            Some(if signal == Signal::NodefsInodesFree {
                Observed {
                    available: st.files_free() as f64,
                    capacity: st.files() as f64,
                }
            } else {
                let frag = st.fragment_size() as f64;
                Observed {
                    available: st.blocks_available() as f64 * frag,
                    capacity: st.blocks() as f64 * frag,
                }
            })
        }
    }
}

fn crossed(t: &Threshold, o: Observed) -> bool {
    let min = match t.min {
        Amount::Quantity(q) => q,
        Amount::Percent(p) => o.capacity * p / 100.0,
    };
    o.available < min
}

/// Which of the node's pressure conditions hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
}

/// A pod as eviction ranks it.
struct Candidate {
    pod: Arc<Pod>,
    exceeds: bool,
    priority: i32,
    above: f64,
    usage: f64,
    request: f64,
}

fn memory_request(pod: &Pod) -> f64 {
    pod.spec
        .as_ref()
        .map(|s| {
            s.containers
                .iter()
                .filter_map(|c| c.resources.as_ref()?.requests.as_ref()?.get("memory"))
                .filter_map(|q| crate::apiserver::defaults::parse_quantity(&serde_json::json!(q.0)))
                .sum()
        })
        .unwrap_or(0.0)
}

/// A pod's use of what `signal` measures, from one stats summary: its cgroup's working set
/// for memory, its writable layers and logs for disk.
fn usage(summary: &serde_json::Value, pod: &Pod, signal: Signal) -> f64 {
    let uid = pods::uid_of(pod);
    let Some(p) = summary["pods"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["podRef"]["uid"] == uid.as_str())
    else {
        return 0.0;
    };
    match signal {
        Signal::MemoryAvailable => p["memory"]["workingSetBytes"].as_f64().unwrap_or(0.0),
        _ => p["ephemeral-storage"]["usedBytes"].as_f64().unwrap_or(0.0),
    }
}

fn evictable(pod: &Pod) -> bool {
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    priority < 2_000_000_000 && !mirror && running && pod.metadata.deletion_timestamp.is_none()
}

/// The pod to evict for `signal`, ranked as the module comment says.
fn choose(k: &Kubelet, pods: &[Arc<Pod>], signal: Signal) -> Option<Candidate> {
    let summary = super::stats::summary(k);
    let mut c: Vec<Candidate> = pods
        .iter()
        .filter(|p| evictable(p))
        .map(|p| {
            let usage = usage(&summary, p, signal);
            let request = if signal == Signal::MemoryAvailable {
                memory_request(p)
            } else {
                0.0
            };
            Candidate {
                pod: p.clone(),
                exceeds: usage > request,
                priority: p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
                above: usage - request,
                usage,
                request,
            }
        })
        .collect();
    c.sort_by(|a, b| {
        b.exceeds
            .cmp(&a.exceeds)
            .then(a.priority.cmp(&b.priority))
            .then(b.above.total_cmp(&a.above))
    });
    c.into_iter().next()
}

fn human(bytes: f64) -> String {
    match (bytes / 1024.0).round() as i64 {
        0 => "0".into(),
        ki => format!("{ki}Ki"),
    }
}

/// Stops `c`'s pod and records it Failed with reason Evicted.
/// Stops the pod's containers gracefully for a soft threshold: SIGTERM, then up to the pod's
/// grace period (capped by --eviction-max-pod-grace-period) for them to end. A hard one
/// gets none: the teardown that follows kills at once.
async fn stop_gracefully(k: &Arc<Kubelet>, pod: &Pod) {
    let own = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0) as u64;
    let cap = k.cfg.eviction_max_pod_grace;
    let grace = if cap > 0 { own.min(cap) } else { own };
    let dir = k.pod_dir(&pods::uid_of(pod));
    let dir2 = dir.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for r in crate::shim::read_records(&dir2)
            .iter()
            .filter(|r| r.running())
        {
            let kill = crate::shim::protocol::Request::Kill {
                id: r.id.clone(),
                signal: libc::SIGTERM,
            };
            let _ = crate::shim::client::call(&dir2, &kill);
        }
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(grace);
    while std::time::Instant::now() < deadline
        && crate::shim::read_records(&dir).iter().any(|r| r.running())
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn evict(k: &Arc<Kubelet>, c: &Candidate, t: &Threshold, o: Observed) -> anyhow::Result<()> {
    let pod = &c.pod;
    if t.grace.is_some() {
        // Marked first, so that the reconcile does not start again what SIGTERM ends.
        k.evicted
            .lock()
            .expect("evicted lock")
            .insert(pods::uid_of(pod));
        stop_gracefully(k, pod).await;
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let uid = pods::uid_of(pod);
    let resource = t.signal.resource();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let message = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. Container {container} was using {}, request is {}, has larger consumption of {resource}. ",
        t.text,
        human(o.available),
        human(c.usage),
        human(c.request),
    );
    tracing::warn!(pod = %format!("{ns}/{name}"), signal = t.signal.name(), "evicting: {message}");
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let statuses: Vec<serde_json::Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|cs| {
            serde_json::json!({"name": cs.name, "image": cs.image, "imageID": cs.image_id,
                "containerID": cs.container_id, "restartCount": cs.restart_count, "ready": false,
                "started": false,
                "state": {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": now}}})
        })
        .collect();
    let patch = serde_json::json!({"status": {
        "phase": "Failed",
        "reason": "Evicted",
        "message": message,
        "containerStatuses": statuses,
        "conditions": [
            {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
             "message": message, "lastTransitionTime": now},
            {"type": "Ready", "status": "False", "reason": "PodFailed", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "False", "reason": "PodFailed", "lastTransitionTime": now},
        ],
    }});
    let api: Api<Pod> = Api::namespaced(k.client.clone(), &ns);
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        // Not Failed in the API: the pod is its reconcile's again.
        k.evicted.lock().expect("evicted lock").remove(&uid);
        return Err(e.into());
    }
    // Only once the API says Failed: a failed patch leaves the pod to its reconcile.
    k.evicted.lock().expect("evicted lock").insert(uid.clone());
    k.event(pod, None, "Warning", "Evicted", message).await;
    let (k2, dir) = (k.clone(), k.pod_dir(&uid));
    tokio::task::spawn_blocking(move || k2.teardown(&uid, &dir)).await?;
    Ok(())
}

/// Under disk pressure: removes every image no container holds a lease on, then says whether
/// the threshold is no longer crossed.
async fn reclaim_images(
    k: &Arc<Kubelet>,
    t: &Threshold,
    pods: &kube::runtime::reflector::Store<Pod>,
) -> bool {
    let (k2, t2) = (k.clone(), t.clone());
    let in_use = super::images_in_use(pods);
    tokio::task::spawn_blocking(move || {
        if let Ok(store) = crate::image::store::Store::open(&k2.cfg.data_dir) {
            let done =
                super::remove_unused_images(&store, &k2.cfg, &in_use, "disk pressure", || false);
            if let Err(e) = done {
                tracing::warn!(error = %e, "disk pressure: removing unused images");
            }
        }
        observe(&k2, t2.signal).is_some_and(|o| !crossed(&t2, o))
    })
    .await
    .unwrap_or(false)
}

/// The eviction manager's loop (see the module comment).
pub async fn run(k: Arc<Kubelet>, store: kube::runtime::reflector::Store<Pod>) {
    let thresholds: Vec<Threshold> = k
        .cfg
        .eviction_hard
        .iter()
        .chain(&k.cfg.eviction_soft)
        .cloned()
        .collect();
    if thresholds.is_empty() {
        return;
    }
    // When each threshold (by its place in `thresholds`) was first seen crossed, while it
    // stays crossed: a soft one evicts once its grace period has passed since then.
    let mut first_seen: std::collections::HashMap<usize, std::time::Instant> = Default::default();
    loop {
        tokio::time::sleep(k.cfg.eviction_interval).await;
        let k2 = k.clone();
        let ts = thresholds.clone();
        let Ok(crossed_now) = tokio::task::spawn_blocking(move || {
            ts.into_iter()
                .enumerate()
                .filter_map(|(i, t)| {
                    let o = observe(&k2, t.signal)?;
                    crossed(&t, o).then_some((i, t, o))
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        let now = std::time::Instant::now();
        first_seen.retain(|i, _| crossed_now.iter().any(|(j, _, _)| j == i));
        for (i, _, _) in &crossed_now {
            first_seen.entry(*i).or_insert(now);
        }
        // The conditions follow every crossed threshold at once, as the kubelet's do; only
        // eviction waits for a soft one's grace period. Hard thresholds come first.
        let hit: Vec<(Threshold, Observed)> = crossed_now
            .iter()
            .map(|(_, t, o)| (t.clone(), *o))
            .collect();
        let mut due: Vec<(Threshold, Observed)> = crossed_now
            .into_iter()
            .filter(|(i, t, _)| {
                t.grace
                    .is_none_or(|g| now.duration_since(first_seen[i]) >= g)
            })
            .map(|(_, t, o)| (t, o))
            .collect();
        due.sort_by_key(|(t, _)| t.grace.is_some());
        let pressure = Pressure {
            memory: hit.iter().any(|(t, _)| t.signal == Signal::MemoryAvailable),
            disk: hit.iter().any(|(t, _)| t.signal != Signal::MemoryAvailable),
        };
        let changed = {
            let mut p = k.cfg.pressure.lock().expect("pressure lock");
            std::mem::replace(&mut *p, pressure) != pressure
        };
        if changed {
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(k.client.clone());
            if let Err(e) = super::node::post_status(&nodes, &k.cfg, true).await {
                tracing::warn!(error = %e, "posting the node's pressure conditions");
            }
        }
        let Some((t, o)) = due.into_iter().next() else {
            continue;
        };
        if t.signal != Signal::MemoryAvailable && reclaim_images(&k, &t, &store).await {
            // Removing unused images was enough, as the kubelet tries before evicting.
            continue;
        }
        let pods: Vec<Arc<Pod>> = store.state();
        let (k2, sig) = (k.clone(), t.signal);
        let chosen = tokio::task::spawn_blocking(move || choose(&k2, &pods, sig))
            .await
            .ok()
            .flatten();
        match chosen {
            Some(c) => {
                if let Err(e) = evict(&k, &c, &t, o).await {
                    tracing::warn!(error = %e, "eviction failed");
                }
            }
            None => tracing::warn!(
                signal = t.signal.name(),
                "under pressure, but no pod can be evicted"
            ),
        }
    }
}

/// Kubernetes' default hard thresholds.
pub const DEFAULT_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_the_kubelet_writes_them() {
        let t = parse(DEFAULT_HARD).unwrap();
        assert_eq!(t.len(), 4);
        assert_eq!(t[0].signal, Signal::MemoryAvailable);
        assert_eq!(t[0].min, Amount::Quantity(100.0 * 1024.0 * 1024.0));
        assert_eq!(t[1].min, Amount::Percent(10.0));
        assert_eq!(parse("").unwrap(), vec![]);
        assert!(parse("memory.free<1Gi")
            .unwrap_err()
            .contains("signal \"memory.free\""));
        assert!(parse("memory.available>1Gi")
            .unwrap_err()
            .contains("want signal<quantity"));
        assert!(parse("nodefs.available<120%")
            .unwrap_err()
            .contains("percentage"));
        assert!(parse("memory.available<lots")
            .unwrap_err()
            .contains("quantity"));
    }

    #[test]
    fn soft_thresholds_need_their_grace_periods() {
        let soft = parse_soft("memory.available<1Gi", "memory.available=1m30s").unwrap();
        assert_eq!(soft[0].grace, Some(std::time::Duration::from_secs(90)));
        assert_eq!(
            parse_soft("memory.available<1Gi", "").unwrap_err(),
            "grace period must be specified for the soft eviction threshold memory.available"
        );
        assert!(parse_soft("", "nodefs.available=1m")
            .unwrap_err()
            .contains("no soft eviction threshold"));
        assert!(parse_soft("memory.available<1Gi", "memory.available=soon")
            .unwrap_err()
            .starts_with("invalid --eviction-soft-grace-period"));
        assert!(parse_soft("memory.avail<1Gi", "")
            .unwrap_err()
            .starts_with("invalid --eviction-soft signal"));
        assert!(parse_soft("", "").unwrap().is_empty());
    }

    #[test]
    fn a_threshold_is_crossed_below_its_amount_or_share() {
        let t = |min| Threshold {
            signal: Signal::NodefsAvailable,
            min,
            text: String::new(),
            grace: None,
        };
        let o = Observed {
            available: 50.0,
            capacity: 1000.0,
        };
        assert!(crossed(&t(Amount::Percent(10.0)), o), "5% left < 10%");
        assert!(!crossed(&t(Amount::Percent(5.0)), o));
        assert!(crossed(&t(Amount::Quantity(51.0)), o));
        assert!(!crossed(&t(Amount::Quantity(50.0)), o));
    }
}
