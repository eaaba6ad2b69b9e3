//! The kubelet's stats summary through the API server (`nodes/<node>/proxy/stats/summary`), as
//! metrics-server reads it: a pod that spins shows its cpu rate, memory and network; the node
//! shows its own figures.
//!
//! Run as root: `cargo test --test stats`.

mod node_support;

use node_support::{Cluster, IMAGE};
use serde_json::Value;
use std::time::Duration;

#[test]
fn stats_summary_reports_node_pod_and_container_usage() {
    let c = Cluster::start();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: spinner\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: spin\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    resources: {{limits: {{cpu: 300m, memory: 64Mi}}}}\n    command: [sh, -c, 'while :; do :; done']\n"
    ));
    c.wait_phase("spinner", "Running");
    let summary = |c: &Cluster| -> Value {
        serde_json::from_str(&c.ok(&["get", "--raw", "/api/v1/nodes/node1/proxy/stats/summary"]))
            .unwrap()
    };
    let mut s = Value::Null;
    c.wait_for("a cpu rate for the spinner", Duration::from_secs(40), |c| {
        s = summary(c);
        s["pods"].as_array().into_iter().flatten().any(|p| {
            p["podRef"]["name"] == "spinner"
                && p["containers"][0]["cpu"]["usageNanoCores"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
        })
    });
    let node = &s["node"];
    assert_eq!(node["nodeName"], "node1");
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        node["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        node["fs"]["capacityBytes"].as_u64().unwrap()
            > node["fs"]["availableBytes"].as_u64().unwrap()
    );
    assert!(
        node["runtime"]["imageFs"]["usedBytes"].as_u64().unwrap() > 0,
        "the busybox layers"
    );

    let pod = s["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == "spinner")
        .unwrap();
    assert_eq!(pod["podRef"]["namespace"], "default");
    let spin = &pod["containers"][0];
    assert_eq!(spin["name"], "spin");
    // A busy loop under a 300m limit: clearly running, and held near its quota.
    let rate = spin["cpu"]["usageNanoCores"].as_u64().unwrap();
    assert!(
        (50_000_000..=450_000_000).contains(&rate),
        "usageNanoCores {rate}"
    );
    assert!(
        spin["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{spin}"
    );
    let available = spin["memory"]["availableBytes"].as_u64().unwrap();
    assert!(
        available > 0 && available <= 64 << 20,
        "under its 64Mi limit: {available}"
    );
    assert!(
        pod["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap()
            >= spin["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap()
    );
    assert_eq!(pod["network"]["name"], "eth0", "{pod}");
    assert!(pod["network"]["rxBytes"].as_u64().is_some(), "{pod}");
    assert!(pod["process_stats"]["process_count"].as_u64().unwrap() >= 1);
    assert!(
        spin["logs"]["usedBytes"].as_u64().is_some()
            && spin["rootfs"]["usedBytes"].as_u64().is_some()
    );

    // A path the kubelet does not serve is its 404, passed on.
    let out = c.kubectl(&["get", "--raw", "/api/v1/nodes/node1/proxy/nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NotFound")
            || String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
