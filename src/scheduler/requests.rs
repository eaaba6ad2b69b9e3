//! What a pod asks of a node: its effective requests (upstream's rules for init containers,
//! sidecars and overhead), and the "non-zero" variant the scores use so that pods without
//! requests still count as something.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// What scoring assumes a container without a cpu request uses (upstream's DefaultMilliCPURequest).
pub const DEFAULT_MILLI_CPU: f64 = 100.0;
/// ... and without a memory request (DefaultMemoryRequest, 200 MiB).
pub const DEFAULT_MEMORY: f64 = 200.0 * 1024.0 * 1024.0;

/// Requests in millicores and bytes; `other` holds extended resources (example.com/gpu,
/// hugepages-2Mi) by name.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Requests {
    pub milli_cpu: f64,
    pub memory: f64,
    pub ephemeral_storage: f64,
    pub other: BTreeMap<String, f64>,
}

pub fn quantity(q: Option<&Quantity>) -> f64 {
    q.and_then(|q| {
        crate::apiserver::defaults::parse_quantity(&serde_json::Value::String(q.0.clone()))
    })
    .unwrap_or(0.0)
}

impl Requests {
    pub fn from_map(m: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut r = Requests::default();
        for (name, q) in m.into_iter().flatten() {
            let v = quantity(Some(q));
            match name.as_str() {
                "cpu" => r.milli_cpu = v * 1000.0,
                "memory" => r.memory = v,
                "ephemeral-storage" => r.ephemeral_storage = v,
                "pods" => {}
                _ => {
                    r.other.insert(name.clone(), v);
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Requests) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.other {
            *self.other.entry(k.clone()).or_insert(0.0) += v;
        }
    }

    pub fn sub(&mut self, o: &Requests) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.other {
            *self.other.entry(k.clone()).or_insert(0.0) -= v;
        }
    }

    fn max_with(&mut self, o: &Requests) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.other {
            let e = self.other.entry(k.clone()).or_insert(0.0);
            *e = e.max(*v);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0.0
            && self.memory == 0.0
            && self.ephemeral_storage == 0.0
            && self.other.values().all(|v| *v == 0.0)
    }

    /// The pod's effective requests: regular containers and sidecars (restartable init
    /// containers) run together; each ordinary init container runs alone beside the sidecars
    /// started before it; the pod needs the larger of the two, plus its overhead. With
    /// `non_zero`, a container missing a cpu or memory request counts the defaults above.
    pub fn of_pod(pod: &Pod, non_zero: bool) -> Requests {
        let Some(spec) = pod.spec.as_ref() else {
            return Requests::default();
        };
        let of = |c: &Container| {
            let mut r = Requests::from_map(c.resources.as_ref().and_then(|r| r.requests.as_ref()));
            if non_zero {
                let has = |k: &str| {
                    c.resources
                        .as_ref()
                        .and_then(|r| r.requests.as_ref())
                        .is_some_and(|m| m.contains_key(k))
                };
                if !has("cpu") {
                    r.milli_cpu = DEFAULT_MILLI_CPU;
                }
                if !has("memory") {
                    r.memory = DEFAULT_MEMORY;
                }
            }
            r
        };
        let mut running = Requests::default();
        for c in &spec.containers {
            running.add(&of(c));
        }
        let mut sidecars = Requests::default();
        let mut init_peak = Requests::default();
        for c in spec.init_containers.iter().flatten() {
            let r = of(c);
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&r);
                init_peak.max_with(&sidecars);
            } else {
                let mut alone = sidecars.clone();
                alone.add(&r);
                init_peak.max_with(&alone);
            }
        }
        running.add(&sidecars);
        running.max_with(&init_peak);
        running.add(&Requests::from_map(spec.overhead.as_ref()));
        running
    }
}

/// spec.priority, set at admission from the PriorityClass (0 without one).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}
