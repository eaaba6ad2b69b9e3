//! The scheduler on a one-node cluster in a network namespace of the test's own: pods without a
//! node land on node1, and a pod that fits nowhere says why until it is recreated smaller.

mod node_support;

use node_support::{Cluster, IMAGE};
use std::time::Duration;

fn pod_with_cpu(name: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"100\"]\n    resources:\n      requests:\n        cpu: {cpu}\n"
    )
}

#[test]
fn scheduler_places_pods_and_explains_unschedulable_ones() {
    let c = Cluster::start();
    c.ok(&[
        "run",
        "x",
        &format!("--image={IMAGE}"),
        "--image-pull-policy=IfNotPresent",
        "--",
        "sleep",
        "100",
    ]);
    let pod = c.wait_phase("x", "Running");
    assert_eq!(pod["spec"]["nodeName"], "node1", "{pod}");

    c.apply(&pod_with_cpu("big", "100000"));
    let want = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";
    c.wait_for(
        "the Unschedulable condition",
        Duration::from_secs(30),
        |c| {
            c.pod("big")["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|cond| {
                    cond["type"] == "PodScheduled"
                        && cond["reason"] == "Unschedulable"
                        && cond["message"] == want
                })
        },
    );
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=FailedScheduling",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains(want), "{events}");
    assert!(c.pod("big")["spec"]["nodeName"].is_null());

    c.ok(&["delete", "pod", "big", "--wait=true"]);
    c.apply(&pod_with_cpu("big", "10m"));
    let pod = c.wait_phase("big", "Running");
    assert_eq!(pod["spec"]["nodeName"], "node1");
    c.ok(&["delete", "pod", "x", "big", "--wait=true"]);
}
