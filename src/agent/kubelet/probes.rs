//! Startup, readiness and liveness probes. One task per pod runs each container's probes on
//! their own clocks (initialDelaySeconds, periodSeconds, timeoutSeconds, success and failure
//! thresholds) against the container's current start. Results live in [`Results`]: readiness
//! and startup feed the status; a liveness (or startup) failure past its threshold kills the
//! container, and its restart policy does the rest.

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Kubelet;
use crate::shim::{self, protocol::Request};

/// Probe outcomes by (pod uid, container name, container id).
#[derive(Debug, Default)]
pub struct Results {
    ready: Mutex<HashMap<(String, String, String), bool>>,
    started: Mutex<HashMap<(String, String, String), bool>>,
}

impl Results {
    /// Readiness of a container's current start: true without a readiness probe.
    pub fn ready(&self, uid: &str, c: &Container, id: &str) -> bool {
        if c.readiness_probe.is_none() {
            return true;
        }
        let key = (uid.to_string(), c.name.clone(), id.to_string());
        self.ready
            .lock()
            .expect("probe lock")
            .get(&key)
            .copied()
            .unwrap_or(false)
    }

    /// Whether the startup probe (if any) has passed.
    pub fn started(&self, uid: &str, c: &Container, id: &str) -> bool {
        if c.startup_probe.is_none() {
            return true;
        }
        let key = (uid.to_string(), c.name.clone(), id.to_string());
        self.started
            .lock()
            .expect("probe lock")
            .get(&key)
            .copied()
            .unwrap_or(false)
    }

    pub fn forget(&self, uid: &str) {
        self.ready
            .lock()
            .expect("probe lock")
            .retain(|k, _| k.0 != uid);
        self.started
            .lock()
            .expect("probe lock")
            .retain(|k, _| k.0 != uid);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Startup,
    Readiness,
    Liveness,
}

struct Clock {
    next: Instant,
    successes: i32,
    failures: i32,
    id: String,
}

fn secs(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(0) as u64)
}

/// Runs the probes of `pod` until its sandbox is gone.
pub async fn run(k: Arc<Kubelet>, pod: Arc<Pod>, dir: PathBuf) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let containers: Vec<Container> = pod.spec.clone().map(|s| s.containers).unwrap_or_default();
    let mut clocks: HashMap<(String, Kind), Clock> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if !dir.exists() {
            k.probes.forget(&uid);
            return;
        }
        let records = shim::read_records(&dir);
        for c in &containers {
            let Some(rec) = records
                .iter()
                .filter(|r| r.name == c.name)
                .max_by_key(|r| r.attempt)
                .filter(|r| r.running())
            else {
                continue;
            };
            for (kind, probe) in [
                (Kind::Startup, &c.startup_probe),
                (Kind::Readiness, &c.readiness_probe),
                (Kind::Liveness, &c.liveness_probe),
            ] {
                let Some(probe) = probe else { continue };
                let key = (uid.clone(), c.name.clone(), rec.id.clone());
                let started = k.probes.started(&uid, c, &rec.id);
                // Readiness and liveness wait for the startup probe, as upstream.
                if kind != Kind::Startup && !started {
                    continue;
                }
                if kind == Kind::Startup && started {
                    continue;
                }
                let clock = clocks
                    .entry((c.name.clone(), kind))
                    .or_insert_with(|| Clock {
                        next: Instant::now() + secs(probe.initial_delay_seconds, 0),
                        successes: 0,
                        failures: 0,
                        id: rec.id.clone(),
                    });
                if clock.id != rec.id {
                    // A new start of the container: its probes start over.
                    *clock = Clock {
                        next: Instant::now() + secs(probe.initial_delay_seconds, 0),
                        successes: 0,
                        failures: 0,
                        id: rec.id.clone(),
                    };
                }
                if Instant::now() < clock.next {
                    continue;
                }
                clock.next =
                    Instant::now() + secs(probe.period_seconds, 10).max(Duration::from_secs(1));
                let ok = check(&k, &pod, &dir, &rec.id, probe).await;
                if ok {
                    clock.successes += 1;
                    clock.failures = 0;
                } else {
                    clock.failures += 1;
                    clock.successes = 0;
                }
                let success_needed = probe.success_threshold.unwrap_or(1).max(1);
                let failure_allowed = probe.failure_threshold.unwrap_or(3).max(1);
                match kind {
                    Kind::Readiness => {
                        let now_ready = if clock.successes >= success_needed {
                            Some(true)
                        } else if clock.failures >= failure_allowed {
                            Some(false)
                        } else {
                            None
                        };
                        if let Some(r) = now_ready {
                            let before = k.probes.ready.lock().expect("probe lock").insert(key, r);
                            if before != Some(r) {
                                k.wake(&pod);
                                if !r {
                                    let msg = "Readiness probe failed".to_string();
                                    k.event(&pod, Some(&c.name), "Warning", "Unhealthy", msg)
                                        .await;
                                }
                            }
                        }
                    }
                    Kind::Startup if clock.successes >= 1 => {
                        k.probes
                            .started
                            .lock()
                            .expect("probe lock")
                            .insert(key, true);
                        k.wake(&pod);
                    }
                    Kind::Startup | Kind::Liveness if clock.failures >= failure_allowed => {
                        tracing::info!(pod = ?pod.metadata.name, container = %c.name, ?kind, "probe failed: killing the container");
                        let (what, title) = if kind == Kind::Liveness {
                            ("liveness", "Liveness")
                        } else {
                            ("startup", "Startup")
                        };
                        let name = &c.name;
                        k.event(
                            &pod,
                            Some(name),
                            "Warning",
                            "Unhealthy",
                            format!("{title} probe failed"),
                        )
                        .await;
                        let msg =
                            format!("Container {name} failed {what} probe, will be restarted");
                        k.event(&pod, Some(name), "Normal", "Killing", msg).await;
                        let (d, id) = (dir.clone(), rec.id.clone());
                        let _ = tokio::task::spawn_blocking(move || {
                            shim::client::call(
                                &d,
                                &Request::Kill {
                                    id,
                                    signal: libc::SIGKILL,
                                },
                            )
                        })
                        .await;
                        clock.failures = 0;
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One probe attempt within its timeout.
pub(super) async fn check(
    k: &Kubelet,
    pod: &Pod,
    dir: &std::path::Path,
    id: &str,
    p: &Probe,
) -> bool {
    let timeout = secs(p.timeout_seconds, 1).max(Duration::from_secs(1));
    // The address the pod holds now (its status may not carry it yet); host-network pods
    // have the node's.
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ip = k
        .bridge
        .get()
        .and_then(|b| b.ipam.owners().ok())
        .and_then(|o| o.into_iter().find(|(_, owner)| *owner == uid))
        .map(|(ip, _)| ip)
        .or_else(|| crate::network::cni::Cached::load(dir).and_then(|c| c.ip()))
        .map(|ip| ip.to_string())
        .unwrap_or_else(|| k.cfg.node_ip.clone());
    let port_of =
        |port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString| -> Option<u16> {
            use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
            match port {
                IntOrString::Int(n) => u16::try_from(*n).ok(),
                IntOrString::String(name) => pod.spec.as_ref()?.containers.iter().find_map(|c| {
                    c.ports
                        .iter()
                        .flatten()
                        .find(|cp| cp.name.as_deref() == Some(name.as_str()))
                        .map(|cp| cp.container_port as u16)
                }),
            }
        };
    let attempt = async {
        if let Some(e) = &p.exec {
            let (d, id, cmd) = (
                dir.to_path_buf(),
                id.to_string(),
                e.command.clone().unwrap_or_default(),
            );
            return tokio::task::spawn_blocking(move || {
                shim::client::exec(&d, &id, cmd, false, false)
                    .and_then(|x| shim::client::wait_exit(&x.conn))
                    .is_ok_and(|code| code == 0)
            })
            .await
            .unwrap_or(false);
        }
        if let Some(g) = &p.grpc {
            let Ok(port) = u16::try_from(g.port) else {
                return false;
            };
            let service = g.service.as_deref().unwrap_or("");
            return super::grpc_health::check(&ip, port, service)
                .await
                .is_ok_and(|s| s == super::grpc_health::SERVING);
        }
        if let Some(t) = &p.tcp_socket {
            let Some(port) = port_of(&t.port) else {
                return false;
            };
            let host = t.host.clone().unwrap_or(ip.clone());
            return tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .is_ok();
        }
        if let Some(h) = &p.http_get {
            let Some(port) = port_of(&h.port) else {
                return false;
            };
            let host = h.host.clone().unwrap_or(ip.clone());
            let Ok(mut s) = tokio::net::TcpStream::connect((host.as_str(), port)).await else {
                return false;
            };
            let mut req = format!(
                "GET {} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n",
                h.path.as_deref().unwrap_or("/")
            );
            for hd in h.http_headers.iter().flatten() {
                req.push_str(&format!("{}: {}\r\n", hd.name, hd.value));
            }
            req.push_str("\r\n");
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if s.write_all(req.as_bytes()).await.is_err() {
                return false;
            }
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]);
            // Success is any status from 200 to 399.
            return head
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok())
                .is_some_and(|c| (200..400).contains(&c));
        }
        false
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}
