//! A pod's status as Kubernetes reports it, computed from what the node knows: the shim's
//! container records, the containers still waiting (and why), and the pod's address.

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

use crate::shim::protocol::Record;

/// Why a container is not running, when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: Option<String>,
}

/// What the pod worker knows beyond the records.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub sandbox_ready: bool,
    /// Container name -> why it waits.
    pub waiting: BTreeMap<String, Waiting>,
    /// Container name -> (image name as resolved, image ID).
    pub images: BTreeMap<String, (String, String)>,
    pub started: Option<String>,
    /// Running containers their readiness (or startup) probe does not pass yet.
    pub unready: std::collections::BTreeSet<String>,
    /// Running containers whose startup probe has not passed.
    pub not_started: std::collections::BTreeSet<String>,
}

/// Guaranteed, Burstable or BestEffort, from the containers' requests and limits.
pub fn qos_class(pod: &Pod) -> String {
    let Some(spec) = &pod.spec else {
        return "BestEffort".into();
    };
    let all: Vec<&Container> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        let lim = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        for k in ["cpu", "memory"] {
            if req.contains_key(k) || lim.contains_key(k) {
                any = true;
            }
            match (req.get(k), lim.get(k)) {
                (_, None) => guaranteed = false,
                (Some(a), Some(b)) if a != b => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        "BestEffort".into()
    } else if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

fn time(s: &str) -> Option<Time> {
    s.parse::<k8s_openapi::jiff::Timestamp>().ok().map(Time)
}

fn terminated(r: &Record) -> ContainerStateTerminated {
    let code = r.exit_code.unwrap_or(0);
    let reason = if r.oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerStateTerminated {
        exit_code: code,
        signal: r.signal,
        reason: Some(reason.into()),
        started_at: time(&r.started_at),
        finished_at: r.finished_at.as_deref().and_then(time),
        container_id: Some(format!("nanokube://{}", r.id)),
        message: None,
    }
}

/// The status of one container from its records (all its starts, oldest first).
pub fn container_status(c: &Container, records: &[&Record], obs: &Observed) -> ContainerStatus {
    let last = records.last();
    let prev = records.len().checked_sub(2).map(|i| records[i]);
    let waiting = obs.waiting.get(&c.name);
    let (image, image_id) = obs
        .images
        .get(&c.name)
        .cloned()
        .unwrap_or_else(|| (c.image.clone().unwrap_or_default(), String::new()));
    let mut state = ContainerState::default();
    let mut last_state = ContainerState::default();
    match (last, waiting) {
        (Some(r), None) if r.running() => {
            state.running = Some(ContainerStateRunning {
                started_at: time(&r.started_at),
            });
            if let Some(p) = prev {
                last_state.terminated = Some(terminated(p));
            }
        }
        (Some(r), None) => {
            state.terminated = Some(terminated(r));
            if let Some(p) = prev {
                last_state.terminated = Some(terminated(p));
            }
        }
        (last, Some(w)) => {
            state.waiting = Some(ContainerStateWaiting {
                reason: Some(w.reason.clone()),
                message: w.message.clone(),
            });
            if let Some(r) = last.filter(|r| !r.running()) {
                last_state.terminated = Some(terminated(r));
            }
        }
        (None, None) => {
            state.waiting = Some(ContainerStateWaiting {
                reason: Some("ContainerCreating".into()),
                message: None,
            });
        }
    }
    let running = state.running.is_some();
    ContainerStatus {
        name: c.name.clone(),
        image,
        image_id,
        container_id: last.map(|r| format!("nanokube://{}", r.id)),
        ready: running && !obs.unready.contains(&c.name),
        started: Some(running && !obs.not_started.contains(&c.name)),
        restart_count: last.map_or(0, |r| r.attempt as i32),
        state: Some(state),
        last_state: Some(last_state),
        ..Default::default()
    }
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, old: Option<&PodStatus>) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // The transition time only moves when the status does.
    let prior = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone());
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        last_transition_time: prior.or_else(|| Some(Time(k8s_openapi::jiff::Timestamp::now()))),
        ..Default::default()
    }
}

/// The status of a pod being deleted once its containers have stopped: a terminal phase,
/// Succeeded when every app container exited 0, else Failed, as upstream's kubelet sets it
/// before the pod goes (so a Job or anyone watching sees how it ended). A pod already in a
/// terminal phase keeps the status it has.
pub fn deleted_pod_status(pod: &Pod, records: &[Record], obs: &Observed) -> Option<PodStatus> {
    let old_phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(old_phase, Some("Succeeded" | "Failed")) {
        return None;
    }
    let mut st = pod_status(pod, records, obs);
    let succeeded = st.container_statuses.iter().flatten().all(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    st.phase = Some(if succeeded { "Succeeded" } else { "Failed" }.into());
    for c in st.conditions.iter_mut().flatten() {
        if c.type_ == "Ready" || c.type_ == "ContainersReady" {
            if c.status != "False" {
                c.last_transition_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            }
            c.status = "False".into();
            c.reason = Some("PodCompleted".into());
        }
    }
    Some(st)
}

/// The pod's whole status. `records` holds every start of every container, oldest first.
pub fn pod_status(pod: &Pod, records: &[Record], obs: &Observed) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.as_ref();
    let of = |name: &str| -> Vec<&Record> { records.iter().filter(|r| r.name == name).collect() };
    let inits: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_status(c, &of(&c.name), obs))
        .collect();
    let apps: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, &of(&c.name), obs))
        .collect();
    // Never ready: they take no part in the pod's readiness.
    let ephemeral: Vec<ContainerStatus> = super::pods::ephemeral_containers(pod)
        .iter()
        .map(|(c, _)| ContainerStatus {
            ready: false,
            ..container_status(c, &of(&c.name), obs)
        })
        .collect();
    let done = |s: &ContainerStatus| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    };
    let sidecar = |name: &str| {
        spec.init_containers
            .iter()
            .flatten()
            .any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"))
    };
    let initialized = inits
        .iter()
        .all(|s| done(s) || (sidecar(&s.name) && s.started == Some(true)));
    let ready = initialized && !apps.is_empty() && apps.iter().all(|s| s.ready);
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let terminated: Vec<&ContainerStateTerminated> = apps
        .iter()
        .filter_map(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()))
        .collect();
    // A container waiting to restart (it ran before) counts as running, as upstream's phase.
    let any_running = apps.iter().any(|s| {
        s.state.as_ref().is_some_and(|st| st.running.is_some())
            || (s.state.as_ref().is_some_and(|st| st.waiting.is_some())
                && s.last_state
                    .as_ref()
                    .is_some_and(|l| l.terminated.is_some()))
    });
    let all_ended = terminated.len() == apps.len() && !apps.is_empty();
    let phase = if all_ended && policy != "Always" {
        let failed = terminated.iter().any(|t| t.exit_code != 0);
        if failed && policy == "Never" {
            "Failed"
        } else if !failed {
            "Succeeded"
        } else {
            "Running"
        }
    } else if any_running || (all_ended && policy == "Always") {
        "Running"
    } else {
        "Pending"
    };
    // An init container that failed under restartPolicy Never fails the pod.
    let init_failed = policy == "Never"
        && inits.iter().any(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0)
        });
    let phase = if init_failed { "Failed" } else { phase };
    let finished = matches!(phase, "Succeeded" | "Failed");
    let not_ready_reason = if finished {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", obs.sandbox_ready, None, old),
        condition(
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
            old,
        ),
        condition("Ready", ready, (!ready).then_some(not_ready_reason), old),
        condition(
            "ContainersReady",
            ready,
            (!ready).then_some(not_ready_reason),
            old,
        ),
    ];
    if let Some(sched) = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(sched.clone());
    } else {
        conditions.push(condition("PodScheduled", true, None, old));
    }
    // Conditions others own (DisruptionTarget from the scheduler or the taint manager,
    // readiness gates) stay as they are: the kubelet only writes its own.
    let own = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    conditions.extend(
        old.and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| !own.contains(&c.type_.as_str()))
            .cloned(),
    );
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(obs.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: obs.host_ip.clone(),
        }]),
        pod_ip: obs.pod_ip.clone(),
        pod_ips: obs.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: old
            .and_then(|s| s.start_time.clone())
            .or_else(|| obs.started.as_deref().and_then(time)),
        qos_class: Some(qos_class(pod)),
        init_container_statuses: (!inits.is_empty()).then_some(inits),
        container_statuses: Some(apps),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
        ..Default::default()
    }
}

/// Whether two statuses differ in what users see (transition times aside).
pub fn differs(a: Option<&PodStatus>, b: &PodStatus) -> bool {
    let strip = |s: &PodStatus| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(cs) = v["conditions"].as_array_mut() {
            for c in cs.iter_mut() {
                if let Some(o) = c.as_object_mut() {
                    o.remove("lastTransitionTime");
                    o.remove("lastProbeTime");
                }
            }
            cs.sort_by_key(|c| c["type"].as_str().unwrap_or("").to_string());
        }
        v
    };
    a.is_none_or(|a| strip(a) != strip(b))
}
