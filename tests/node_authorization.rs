//! What a kubelet's own identity may do, on a two-node cluster: node1 and node2 each hold a
//! `system:node:<name>` certificate minted by the cluster CA (as their agents do). A node reads
//! a Secret only while a pod bound to it uses that Secret (the Node authorizer), and writes
//! only its own Node and the pods bound to it (NodeRestriction), with upstream's messages.

mod node_support;

use nanokube::apiserver::{identity, tls};
use node_support::{Cluster, IMAGE};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

/// A kubeconfig for `system:node:<node>` in `system:nodes`, signed by the cluster's CA.
fn node_kubeconfig(c: &Cluster, node: &str) -> PathBuf {
    let pki = tls::Pki::load_or_create(&c.data_dir().join("server/tls"), &[]).unwrap();
    let kc = identity::kubeconfig_for(
        &c.server_url(),
        &pki,
        &format!("system:node:{node}"),
        &["system:nodes"],
    )
    .unwrap();
    let path = c.dir.path().join(format!("{node}.kubeconfig"));
    std::fs::write(&path, kc).unwrap();
    path
}

fn kubectl_as(c: &Cluster, kubeconfig: &PathBuf, args: &[&str]) -> Output {
    c.ns.command(node_support::KUBECTL)
        .env("KUBECACHEDIR", c.kubecache())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn refused(out: &Output, message: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(message),
        "expected a refusal with {message:?}, got: {err}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_node_reaches_only_what_its_own_pods_use() {
    let c = Cluster::start_nodes(2);
    c.wait_ready("node2");
    c.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: far-secret, namespace: default}}\nstringData: {{token: s3cret}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: far, namespace: default}}\nspec:\n  nodeName: node2\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n    volumeMounts: [{{name: s, mountPath: /s}}]\n  volumes: [{{name: s, secret: {{secretName: far-secret}}}}]\n"
    ));
    c.wait_phase("far", "Running");
    let node1 = node_kubeconfig(&c, "node1");
    let node2 = node_kubeconfig(&c, "node2");

    // The Secret is node2's to read (its pod mounts it), not node1's, and nobody's to list.
    let got = kubectl_as(&c, &node2, &["get", "secret", "far-secret", "-o", "name"]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    refused(
        &kubectl_as(&c, &node1, &["get", "secret", "far-secret"]),
        r#"secrets "far-secret" is forbidden: User "system:node:node1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'node1' and this object"#,
    );
    refused(
        &kubectl_as(&c, &node2, &["get", "secrets"]),
        r#"User "system:node:node2" cannot list resource "secrets""#,
    );

    // Writes stay on the node's own objects.
    refused(
        &kubectl_as(
            &c,
            &node1,
            &["label", "node", "node2", "example.com/stolen=yes"],
        ),
        r#"node "node1" is not allowed to modify node "node2""#,
    );
    refused(
        &kubectl_as(&c, &node1, &["delete", "pod", "far", "--wait=false"]),
        r#"node "node1" can only delete pods with spec.nodeName set to itself"#,
    );
    refused(
        &kubectl_as(
            &c,
            &node1,
            &[
                "run",
                "sneaky",
                "--image",
                IMAGE,
                "--overrides",
                r#"{"spec":{"nodeName":"node1"}}"#,
            ],
        ),
        r#"pod does not have "kubernetes.io/config.mirror" annotation, node "node1" can only create mirror pods"#,
    );
    refused(
        &kubectl_as(
            &c,
            &node2,
            &["taint", "node", "node2", "example.com/mine=yes:NoSchedule"],
        ),
        r#"node "node2" is not allowed to modify taints"#,
    );
    // Its own Node it may label, with labels that steer nothing.
    let own = kubectl_as(
        &c,
        &node2,
        &["label", "node", "node2", "example.com/rack=r1"],
    );
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );

    // Once the pod is gone, so is node2's way to the Secret.
    c.ok(&["delete", "pod", "far", "--wait=true", "--timeout=60s"]);
    c.wait_for("node2 to lose the secret", Duration::from_secs(30), |c| {
        let out = kubectl_as(c, &node2, &["get", "secret", "far-secret"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("no relationship found between node 'node2' and this object")
    });
}
