//! Protobuf DeleteOptions: kubectl 1.32+ sends them on DELETE (drain, delete --force). A hand-built
//! body shows each field is read; real kubectl 1.32 and 1.33 drain a Node object.

mod api_support;

use api_support::{raw::curl, Server};
use serde_json::Value;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn bytes_field(num: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(num << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// A `k8s\0` + runtime.Unknown body holding a meta/v1 DeleteOptions message.
fn delete_options(
    api_version: &str,
    grace: Option<u64>,
    uid: Option<&str>,
    propagation: &str,
    dry_run: bool,
) -> Vec<u8> {
    let mut opts = Vec::new();
    if let Some(g) = grace {
        varint(1 << 3, &mut opts);
        varint(g, &mut opts);
    }
    if let Some(uid) = uid {
        let mut pre = Vec::new();
        bytes_field(1, uid.as_bytes(), &mut pre);
        bytes_field(2, &pre, &mut opts);
    }
    bytes_field(4, propagation.as_bytes(), &mut opts);
    if dry_run {
        bytes_field(5, b"All", &mut opts);
    }
    let mut type_meta = Vec::new();
    bytes_field(1, api_version.as_bytes(), &mut type_meta);
    bytes_field(2, b"DeleteOptions", &mut type_meta);
    let mut body = b"k8s\0".to_vec();
    bytes_field(1, &type_meta, &mut body);
    bytes_field(2, &opts, &mut body);
    body
}

fn pod(s: &Server, name: &str, node: &str) -> String {
    s.apply_ok(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  nodeName: {node}\n  containers:\n  - name: c\n    image: busybox\n"
    ));
    s.ok(&["get", "pod", name, "-o", "jsonpath={.metadata.uid}"])
}

fn delete_with(s: &Server, name: &str, body: &[u8]) -> (u16, Value) {
    let path = s.dir.path().join(format!("{name}.pb"));
    std::fs::write(&path, body).unwrap();
    let (code, resp, _) = curl(
        s,
        "admin",
        "DELETE",
        &format!("/api/v1/namespaces/default/pods/{name}"),
        PROTOBUF,
        Some(&path),
    );
    (
        code,
        serde_json::from_str(&resp).unwrap_or_else(|_| panic!("{resp}")),
    )
}

fn exists(s: &Server, name: &str) -> bool {
    s.kubectl(&["get", "pod", name]).status.success()
}

#[test]
fn protobuf_delete_options_are_read() {
    let s = Server::start();
    // Pods bound to an existing node are deleted gracefully, which gracePeriodSeconds can cut.
    s.apply_ok("apiVersion: v1\nkind: Node\nmetadata:\n  name: node1\n");
    let uid = pod(&s, "p", "node1");

    // A wrong uid precondition is a conflict: the preconditions were read.
    let (code, st) = delete_with(
        &s,
        "p",
        &delete_options("v1", Some(0), Some("not-the-uid"), "Background", false),
    );
    assert_eq!(code, 409, "{st}");
    // dryRun: nothing happens.
    let (code, st) = delete_with(
        &s,
        "p",
        &delete_options("meta.k8s.io/v1", Some(0), Some(&uid), "Background", true),
    );
    assert_eq!(code, 200, "{st}");
    assert!(exists(&s, "p"));
    assert!(s
        .ok(&[
            "get",
            "pod",
            "p",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}"
        ])
        .is_empty());
    // Without a grace period the bound pod waits for its kubelet (30 s by default)...
    let (code, st) = delete_with(
        &s,
        "p",
        &delete_options("v1", None, Some(&uid), "Background", false),
    );
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["metadata"]["deletionGracePeriodSeconds"], 30, "{st}");
    // ... and gracePeriodSeconds 0 removes it at once.
    let (code, st) = delete_with(
        &s,
        "p",
        &delete_options("v1", Some(0), Some(&uid), "Background", false),
    );
    assert_eq!(code, 200, "{st}");
    assert!(!exists(&s, "p"));

    // A policy value is checked as in JSON; a body that is not DeleteOptions is a 400.
    pod(&s, "q", "node1");
    let (code, st) = delete_with(
        &s,
        "q",
        &delete_options("v1", Some(0), None, "Sideways", false),
    );
    assert_eq!(code, 400, "{st}");
    let (code, st) = delete_with(&s, "q", b"k8s\0\x0a\x03\x0a\x01v");
    assert_eq!(code, 400, "{st}");
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("DeleteOptions could not be decoded"),
        "{st}"
    );
    assert!(exists(&s, "q"));
}

#[test]
fn kubectl_drain_of_132_and_133_deletes_the_pods() {
    let s = Server::start();
    for (kubectl, node) in [("kubectl.1.32", "node-a"), ("kubectl.1.33", "node-b")] {
        s.apply_ok(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {node}\n"
        ));
        pod(&s, &format!("{node}-1"), node);
        pod(&s, &format!("{node}-2"), node);
        pod(&s, "elsewhere", "node-z");
        let out = s
            .kubectl_command(format!("/usr/lib/google-cloud-sdk/bin/{kubectl}"))
            .args([
                "drain",
                node,
                "--force",
                "--ignore-daemonsets",
                "--grace-period=0",
                "--timeout=30s",
            ])
            .output()
            .expect("run kubectl");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kubectl} drain: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(&format!("node/{node} drained")), "{stdout}");
        assert!(!exists(&s, &format!("{node}-1")) && !exists(&s, &format!("{node}-2")));
        assert!(exists(&s, "elsewhere"), "a pod on another node was deleted");
        assert_eq!(
            s.ok(&["get", "node", node, "-o", "jsonpath={.spec.unschedulable}"]),
            "true"
        );
        s.ok(&["delete", "pod", "elsewhere", "--grace-period=0", "--force"]);
    }
}
