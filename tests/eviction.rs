//! Node-pressure eviction on a real node: a memory threshold no machine can meet keeps the node
//! under MemoryPressure, and the kubelet evicts the pod using more than it requested first, then
//! the one within its requests, and never a critical pod.
//!
//! Run as root: `cargo test --test eviction`.

mod node_support;

use node_support::{Cluster, IMAGE};
use std::time::Duration;

fn pod(name: &str, extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"
    )
}

fn phase(c: &Cluster, name: &str) -> String {
    c.ok(&["get", "pod", name, "-o", "jsonpath={.status.phase}"])
}

#[test]
fn memory_pressure_evicts_pods_over_their_requests_first_and_never_critical_ones() {
    let c = Cluster::start_with(&[
        "--eviction-hard",
        "memory.available<1000Gi",
        "--eviction-monitoring-interval",
        "4s",
    ]);
    c.apply(&pod(
        "critical",
        "  priorityClassName: system-node-critical\n",
    ));
    c.wait_phase("critical", "Running");
    c.apply(&pod("guarded", "").replace(
        "    command: [sleep, '3600']\n",
        "    command: [sleep, '3600']\n    resources: {requests: {memory: 64Mi, cpu: 10m}, limits: {memory: 64Mi, cpu: 10m}}\n",
    ));
    c.apply(&pod("hog", ""));
    c.wait_phase("guarded", "Running");
    c.wait_phase("hog", "Running");

    c.wait_for("MemoryPressure on the node", Duration::from_secs(30), |c| {
        c.ok(&[
            "get",
            "node",
            "node1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status}",
        ]) == "True"
    });
    // The node lifecycle controller keeps new pods off it meanwhile (TaintNodesByCondition).
    c.wait_for("the memory-pressure taint", Duration::from_secs(30), |c| {
        c.ok(&[
            "get",
            "node",
            "node1",
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ])
        .contains("node.kubernetes.io/memory-pressure")
    });
    // The BestEffort pod uses more than its (zero) request: it goes first.
    c.wait_for("hog evicted", Duration::from_secs(30), |c| {
        phase(c, "hog") == "Failed"
    });
    assert_eq!(
        phase(&c, "guarded"),
        "Running",
        "the pod within its requests waits its turn"
    );
    let hog = c.pod("hog");
    assert_eq!(hog["status"]["reason"], "Evicted");
    let msg = hog["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Gi, available: "
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Container c was using") && msg.contains("request is 0"),
        "{msg}"
    );
    let conditions = hog["status"]["conditions"].as_array().unwrap();
    assert!(conditions.iter().any(|x| x["type"] == "DisruptionTarget"
        && x["status"] == "True"
        && x["reason"] == "TerminationByKubelet"));
    assert_eq!(
        hog["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=hog",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(events.contains("Evicted"), "{events}");
    let uid = hog["metadata"]["uid"].as_str().unwrap().to_string();
    assert!(
        !c.data_dir().join("agent/pods").join(&uid).exists(),
        "its containers and sandbox are gone"
    );

    // Still under pressure: the next round takes the guarded pod, never the critical one.
    c.wait_for("guarded evicted", Duration::from_secs(30), |c| {
        phase(c, "guarded") == "Failed"
    });
    std::thread::sleep(Duration::from_secs(9));
    assert_eq!(
        phase(&c, "critical"),
        "Running",
        "a system-node-critical pod is never evicted"
    );
    assert!(
        c.log()
            .contains("under pressure, but no pod can be evicted"),
        "{}",
        c.log()
    );
}

/// A soft threshold: the node reports MemoryPressure as soon as it is crossed, but a pod is
/// evicted only once the threshold has held for its grace period, and gracefully: SIGTERM
/// first (its trap writes a file the test can see), within --eviction-max-pod-grace-period.
#[test]
fn a_soft_threshold_evicts_only_after_its_grace_period_and_gracefully() {
    let marks = tempfile::Builder::new()
        .prefix("nk-soft-")
        .tempdir()
        .unwrap();
    let c = Cluster::start_with(&[
        "--eviction-hard",
        "",
        "--eviction-soft",
        "memory.available<1000Gi",
        "--eviction-soft-grace-period",
        "memory.available=12s",
        "--eviction-max-pod-grace-period",
        "5",
        "--eviction-monitoring-interval",
        "2s",
    ]);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: soft\nspec:\n  terminationGracePeriodSeconds: 60\n  volumes:\n  - {{name: m, hostPath: {{path: {}}}}}\n  containers:\n  - name: c\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    volumeMounts: [{{name: m, mountPath: /marks}}]\n    command: [sh, -c, \"trap 'date +%s > /marks/term; exit 0' TERM; while true; do sleep 0.2; done\"]\n",
        marks.path().display()
    );
    c.apply(&yaml);
    c.wait_phase("soft", "Running");
    let started = std::time::Instant::now();
    c.wait_for(
        "MemoryPressure from the soft threshold",
        Duration::from_secs(30),
        |c| {
            c.ok(&[
                "get",
                "node",
                "node1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"MemoryPressure\")].status}",
            ]) == "True"
        },
    );
    // Under pressure, but within the grace period: the pod still runs.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        phase(&c, "soft"),
        "Running",
        "evicted before its grace period"
    );
    c.wait_for("the soft eviction", Duration::from_secs(60), |c| {
        phase(c, "soft") == "Failed"
    });
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "evicted after {:?}, before the 12 s grace period",
        started.elapsed()
    );
    let pod = c.pod("soft");
    assert_eq!(pod["status"]["reason"], "Evicted", "{pod}");
    assert!(
        marks.path().join("term").exists(),
        "the container got no SIGTERM before it was killed"
    );
}
