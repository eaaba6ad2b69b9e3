//! Evictions and PodDisruptionBudgets with the real kubectl: the disruption controller keeps
//! the budget's status, `kubectl drain` evicts through pods/eviction, and an eviction the
//! budget does not allow is refused with upstream's 429 until the budget allows it.

mod node_support;

use node_support::{Cluster, IMAGE};
use std::time::Duration;

fn web_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {IMAGE}\n    command: [sleep, '3600']\n"
    )
}

#[test]
fn drain_evicts_within_the_disruption_budget() {
    let c = Cluster::start();
    c.apply(&web_pod("web-1"));
    c.apply(&web_pod("web-2"));
    c.wait_phase("web-1", "Running");
    c.wait_phase("web-2", "Running");
    c.apply("apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {app: web}\n");
    c.wait_for("budget status", Duration::from_secs(30), |c| {
        let b = c.json(&["get", "pdb", "web"]).unwrap();
        b["status"]["currentHealthy"] == 2 && b["status"]["disruptionsAllowed"] == 1
    });
    let b = c.json(&["get", "pdb", "web"]).unwrap();
    assert_eq!(b["status"]["desiredHealthy"], 1);
    assert_eq!(b["status"]["expectedPods"], 2);
    let allowed = b["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionAllowed")
        .unwrap()
        .clone();
    assert_eq!(allowed["status"], "True");
    assert_eq!(allowed["reason"], "SufficientPods");
    let table = c.ok(&["get", "pdb", "web"]);
    assert!(
        table.lines().nth(1).unwrap().split_whitespace().nth(3) == Some("1"),
        "{table}"
    );

    // Drain: the node is cordoned, one pod is evicted, the second eviction would break the
    // budget and is refused until drain gives up.
    let out = c.kubectl(&[
        "drain",
        "node1",
        "--force",
        "--pod-selector",
        "app=web",
        "--timeout",
        "8s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should time out: {stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    let node = c.json(&["get", "node", "node1"]).unwrap();
    assert_eq!(node["spec"]["unschedulable"], true);
    let left: Vec<String> = ["web-1", "web-2"]
        .iter()
        .filter(|p| {
            c.json(&["get", "pod", p])
                .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null())
        })
        .map(|p| p.to_string())
        .collect();
    assert_eq!(left.len(), 1, "exactly one pod evicted: {left:?}");
    c.wait_for("budget spent", Duration::from_secs(30), |c| {
        let b = c.json(&["get", "pdb", "web"]).unwrap();
        b["status"]["disruptionsAllowed"] == 0 && b["status"]["currentHealthy"] == 1
    });

    // A looser budget lets the last one go.
    c.ok(&[
        "patch",
        "pdb",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"minAvailable":0}}"#,
    ]);
    c.wait_for("budget loosened", Duration::from_secs(30), |c| {
        c.json(&["get", "pdb", "web"]).unwrap()["status"]["disruptionsAllowed"] == 1
    });
    c.ok(&[
        "drain",
        "node1",
        "--force",
        "--pod-selector",
        "app=web",
        "--timeout",
        "30s",
    ]);
    assert!(c
        .json(&["get", "pod", &left[0]])
        .is_none_or(|p| p["metadata"]["deletionTimestamp"].is_string()));
    c.ok(&["uncordon", "node1"]);
    let node = c.json(&["get", "node", "node1"]).unwrap();
    assert!(node["spec"]["unschedulable"].is_null() || node["spec"]["unschedulable"] == false);
}
