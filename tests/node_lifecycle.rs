//! A node dies and comes back, on a two-node cluster with the real kubectl: the node lifecycle
//! controller marks it Unknown and taints it, its pods lose Ready and are evicted once their
//! tolerations run out, and it is whole again when its agent returns.

mod node_support;

use node_support::{Cluster, IMAGE};
use serde_json::Value;
use std::time::Duration;

fn pod_on_node2(name: &str, toleration_seconds: Option<u32>) -> String {
    let tol = match toleration_seconds {
        Some(s) => format!(
            "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n    tolerationSeconds: {s}\n"
        ),
        None => "  tolerations:\n  - key: node.kubernetes.io/unreachable\n    operator: Exists\n    effect: NoExecute\n".into(),
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: node2\n  terminationGracePeriodSeconds: 1\n{tol}  containers:\n  - name: c\n    image: {IMAGE}\n    command: [sleep, '3600']\n"
    )
}

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

#[test]
fn a_silent_node_is_tainted_its_pods_evicted_and_it_recovers() {
    let mut c = Cluster::start_nodes_with(
        2,
        &[
            "--node-monitor-grace-period",
            "6s",
            "--node-monitor-period",
            "1s",
        ],
    );
    c.apply(&pod_on_node2("brief", Some(2)));
    c.apply(&pod_on_node2("loyal", None));
    for p in ["brief", "loyal"] {
        c.wait_for(&format!("{p} Ready"), Duration::from_secs(60), |c| {
            condition(&c.pod(p), "Ready").is_some_and(|r| r["status"] == "True")
        });
    }

    c.kill_node("node2");
    c.wait_for("node2 Unknown", Duration::from_secs(60), |c| {
        let n = c.json(&["get", "node", "node2"]).unwrap();
        condition(&n, "Ready").is_some_and(|r| r["status"] == "Unknown")
    });
    let node = c.json(&["get", "node", "node2"]).unwrap();
    let ready = condition(&node, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    c.wait_for("unreachable taints", Duration::from_secs(30), |c| {
        let n = c.json(&["get", "node", "node2"]).unwrap();
        let taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        ["NoSchedule", "NoExecute"].iter().all(|e| {
            taints
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == *e)
        })
    });
    // kubectl's own view of it.
    let nodes = c.ok(&["get", "nodes"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("node2") && l.contains("NotReady")),
        "{nodes}"
    );

    // The pod tolerating the taint for 2 s is evicted: DisruptionTarget, then deleted (it stays
    // Terminating, since no kubelet can confirm its end); the one tolerating it forever stays.
    c.wait_for("brief evicted", Duration::from_secs(30), |c| {
        let p = c.pod("brief");
        p["metadata"]["deletionTimestamp"].is_string()
    });
    let brief = c.pod("brief");
    let dt = condition(&brief, "DisruptionTarget").expect("DisruptionTarget condition");
    assert_eq!(dt["reason"], "DeletionByTaintManager");
    assert_eq!(
        condition(&brief, "Ready").unwrap()["status"],
        "False",
        "pods on an unreachable node are not Ready"
    );
    let loyal = c.pod("loyal");
    assert!(loyal["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(condition(&loyal, "Ready").unwrap()["status"], "False");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=brief",
    ]);
    assert!(events.contains("TaintManagerEviction"), "{events}");

    // The agent returns: the node is Ready and untainted, the evicted pod is finished off by
    // its kubelet and goes, the other is Ready again.
    c.start_agent_again("node2");
    c.wait_ready("node2");
    c.wait_for("taints gone", Duration::from_secs(30), |c| {
        let n = c.json(&["get", "node", "node2"]).unwrap();
        n["spec"]["taints"].as_array().is_none_or(|t| {
            t.iter().all(|t| {
                !t["key"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("node.kubernetes.io/")
            })
        })
    });
    c.wait_for("brief gone", Duration::from_secs(60), |c| {
        c.json(&["get", "pod", "brief"]).is_none()
    });
    c.wait_for("loyal Ready again", Duration::from_secs(60), |c| {
        condition(&c.pod("loyal"), "Ready").is_some_and(|r| r["status"] == "True")
    });
}

/// A pod bound to a node that was deleted is removed for good by the pod GC, after upstream's
/// 40 s quarantine.
#[test]
fn pods_of_a_deleted_node_are_collected() {
    let mut c = Cluster::start_nodes(2);
    c.apply(&pod_on_node2("orphan", None));
    c.wait_phase("orphan", "Running");
    c.kill_node("node2");
    c.ok(&["delete", "node", "node2"]);
    // Not at once: the node might be coming back under the same name.
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        c.json(&["get", "pod", "orphan"]).is_some(),
        "collected before the quarantine"
    );
    c.wait_for("orphan collected", Duration::from_secs(90), |c| {
        c.json(&["get", "pod", "orphan"]).is_none()
    });
}
