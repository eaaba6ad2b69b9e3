//! The API server driven by the real kubectl: every test starts its own `nanokube server` on a
//! loopback port with its own data dir.

mod api_support;

use api_support::{eventually, Server};
use serde_json::Value;

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: main
        image: busybox:1.36
        env:
        - {name: A, value: "1"}
      - name: helper
        image: busybox:1.36
"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn apply_creates_then_reapply_merges_lists_by_key() {
    // No deployment controller: its status writes would move the resourceVersion the
    // unchanged re-apply is checked against.
    let s = Server::start_with(&["--disable-controller-manager"]);
    let out = s.apply(DEPLOY, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web created"));
    // Unchanged re-apply writes nothing.
    let rv =
        json(&s.ok(&["get", "deploy", "web", "-o", "json"]))["metadata"]["resourceVersion"].clone();
    let out = s.apply(DEPLOY, &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        json(&s.ok(&["get", "deploy", "web", "-o", "json"]))["metadata"]["resourceVersion"],
        rv
    );
    // Someone else adds a container and an env var the manifest does not know.
    s.ok(&["patch", "deploy", "web", "--type=strategic", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"},{"name":"main","env":[{"name":"X","value":"x"}]}]}}}}"#]);
    // The manifest changes main's image and adds an env var.
    let changed = DEPLOY
        .replace(
            "image: busybox:1.36\n        env:",
            "image: busybox:1.37\n        env:",
        )
        .replace(
            "- {name: A, value: \"1\"}",
            "- {name: A, value: \"1\"}\n        - {name: B, value: \"2\"}",
        );
    let out = s.apply(&changed, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web configured"));
    let d = json(&s.ok(&["get", "deploy", "web", "-o", "json"]));
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"main") && names.contains(&"helper") && names.contains(&"sidecar"),
        "{names:?}"
    );
    let main = containers.iter().find(|c| c["name"] == "main").unwrap();
    assert_eq!(main["image"], "busybox:1.37");
    let env: Vec<&str> = main["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"A") && env.contains(&"B") && env.contains(&"X"),
        "{env:?}"
    );
    assert_eq!(
        d["metadata"]["generation"], 3,
        "two spec changes after create"
    );
}

#[test]
fn get_in_every_output_format() {
    let s = Server::start();
    s.namespace("other");
    s.ok(&["run", "p1", "--image=busybox", "--labels=app=a,tier=front"]);
    s.ok(&["run", "p2", "--image=busybox", "--labels=app=b"]);
    s.ok(&[
        "run",
        "p3",
        "-n",
        "other",
        "--image=busybox",
        "--labels=app=a",
    ]);

    let table = s.ok(&["get", "pods"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(table.contains("p1") && table.contains("p2") && !table.contains("p3"));
    assert!(table.contains("Pending"));

    let wide = s.ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.lines().next().unwrap().contains("IP")
            && wide.lines().next().unwrap().contains("NODE")
    );

    let all = s.ok(&["get", "pods", "-A"]);
    assert!(all.lines().next().unwrap().starts_with("NAMESPACE"));
    assert!(
        all.lines()
            .any(|l| l.starts_with("other") && l.contains("p3")),
        "{all}"
    );

    let labels = s.ok(&["get", "pods", "--show-labels"]);
    assert!(labels.contains("app=a,tier=front"), "{labels}");

    assert_eq!(
        s.ok(&["get", "pods", "-l", "app=a", "-o", "name"]).trim(),
        "pod/p1"
    );
    assert_eq!(
        s.ok(&["get", "pods", "-A", "-l", "app in (a),!tier", "-o", "name"])
            .trim(),
        "pod/p3"
    );
    assert_eq!(
        s.ok(&["get", "pods", "-l", "app!=a", "-o", "name"]).trim(),
        "pod/p2"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "pods",
            "--field-selector",
            "metadata.name=p2",
            "-o",
            "name"
        ])
        .trim(),
        "pod/p2"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "name"
        ])
        .trim(),
        ""
    );
    let both = s.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending,spec.nodeName=",
        "-o",
        "name",
    ]);
    assert_eq!(both.lines().count(), 2, "{both}");
    let err = s.fails(&["get", "pods", "--field-selector", "spec.nope=x"]);
    assert!(err.contains("field label not supported"), "{err}");

    let y = s.ok(&["get", "pod", "p1", "-o", "yaml"]);
    assert!(y.contains("kind: Pod") && y.contains("name: p1") && y.contains("resourceVersion:"));
    let j = json(&s.ok(&["get", "pod", "p1", "-o", "json"]));
    assert_eq!(j["metadata"]["labels"]["tier"], "front");
    assert!(!j["metadata"]["uid"].as_str().unwrap().is_empty());
    assert!(j["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    let list = json(&s.ok(&["get", "pods", "-o", "json"]));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.ok(&["get", "pod", "p1", "-o", "jsonpath={.metadata.labels.app}"]),
        "a"
    );
    // Short names and categories come from discovery.
    assert!(s.ok(&["get", "po", "-o", "name"]).contains("pod/p1"));
    assert!(s.ok(&["get", "all"]).contains("pod/p1"));
    assert!(s.ok(&["get", "ns"]).contains("kube-system"));
    // Chunked lists follow continue tokens.
    assert_eq!(
        s.ok(&["get", "pods", "-A", "--chunk-size=1", "-o", "name"])
            .lines()
            .count(),
        3
    );
}

#[test]
fn get_watch_prints_changes() {
    let s = Server::start();
    s.configmap("w1", "default", &[("a", "1")]);
    let mut child = s
        .kubectl_command(api_support::KUBECTL)
        .args(["get", "configmaps", "-w", "--output-watch-events"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |want: &dyn Fn(&str) -> bool, seen: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                let hit = want(&l);
                seen.push(l);
                if hit {
                    return;
                }
            }
        }
        panic!("watch did not print the expected line; saw {seen:?}");
    };
    wait_for(&|l| l.contains("ADDED") && l.contains("w1"), &mut seen);
    s.configmap("w2", "default", &[("b", "2")]);
    wait_for(&|l| l.contains("ADDED") && l.contains("w2"), &mut seen);
    s.ok(&["label", "configmap", "w1", "x=y"]);
    wait_for(&|l| l.contains("MODIFIED") && l.contains("w1"), &mut seen);
    s.ok(&["delete", "configmap", "w2"]);
    wait_for(&|l| l.contains("DELETED") && l.contains("w2"), &mut seen);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn describe_edit_label_annotate_scale() {
    let s = Server::start();
    assert!(s.apply(DEPLOY, &[]).status.success());
    let d = s.ok(&["describe", "deployment", "web"]);
    assert!(
        d.contains("Name:") && d.contains("web") && d.contains("Replicas:"),
        "{d}"
    );
    assert!(d.contains("busybox:1.36"));

    let out = s.kubectl_env(
        &["edit", "deployment", "web"],
        &[("KUBE_EDITOR", "sed -i -e s/replicas:\\ 2/replicas:\\ 4/")],
    );
    assert!(
        out.status.success(),
        "edit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "4"
    );

    s.ok(&["label", "deploy", "web", "team=blue"]);
    s.ok(&["annotate", "deploy", "web", "note=hello world"]);
    let j = json(&s.ok(&["get", "deploy", "web", "-o", "json"]));
    assert_eq!(j["metadata"]["labels"]["team"], "blue");
    assert_eq!(j["metadata"]["annotations"]["note"], "hello world");
    let gen = j["metadata"]["generation"].as_i64().unwrap();
    s.ok(&["label", "deploy", "web", "team-"]);
    let j = json(&s.ok(&["get", "deploy", "web", "-o", "json"]));
    assert!(j["metadata"]["labels"].get("team").is_none());
    assert_eq!(
        j["metadata"]["generation"].as_i64().unwrap(),
        gen,
        "metadata changes keep generation"
    );

    s.ok(&["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(
        s.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    let scale = json(&s.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]));
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert_eq!(scale["status"]["selector"], "app=web");
    // A scale with a stale resourceVersion precondition is refused.
    let err = s.fails(&[
        "scale",
        "deployment",
        "web",
        "--replicas=5",
        "--resource-version=1",
    ]);
    assert!(
        err.contains("modified")
            || err.contains("onflict")
            || err.contains("Expected resource version"),
        "{err}"
    );
}

#[test]
fn replace_with_stale_resource_version_conflicts() {
    let s = Server::start();
    s.configmap("c1", "default", &[("k", "v1")]);
    let stale = s.ok(&["get", "configmap", "c1", "-o", "yaml"]);
    s.ok(&["label", "configmap", "c1", "bump=1"]);
    let path = s.file("stale.yaml", &stale.replace("k: v1", "k: v2"));
    let err = s.fails(&["replace", "-f", path.to_str().unwrap()]);
    assert!(err.contains("the object has been modified"), "{err}");
    assert_eq!(
        s.ok(&["get", "configmap", "c1", "-o", "jsonpath={.data.k}"]),
        "v1"
    );
    // Without a resourceVersion the replace goes through.
    let fresh: Vec<String> = stale
        .lines()
        .filter(|l| !l.contains("resourceVersion"))
        .map(|l| l.replace("k: v1", "k: v3"))
        .collect();
    let path = s.file("fresh.yaml", &fresh.join("\n"));
    s.ok(&["replace", "-f", path.to_str().unwrap()]);
    assert_eq!(
        s.ok(&["get", "configmap", "c1", "-o", "jsonpath={.data.k}"]),
        "v3"
    );
}

#[test]
fn delete_waits_for_finalizers() {
    let s = Server::start();
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\ndata: {a: b}\n", &[]);
    s.ok(&["delete", "configmap", "held", "--wait=false"]);
    let j = json(&s.ok(&["get", "configmap", "held", "-o", "json"]));
    assert!(j["metadata"]["deletionTimestamp"].is_string(), "{j}");
    // A second delete changes nothing.
    s.ok(&["delete", "configmap", "held", "--wait=false"]);
    // kubectl delete (waiting) returns once the finalizer is removed.
    let mut waiting = s
        .kubectl_command(api_support::KUBECTL)
        .args(["delete", "configmap", "held", "--timeout=60s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    s.ok(&[
        "patch",
        "configmap",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let status = waiting.wait().unwrap();
    assert!(status.success());
    let err = s.fails(&["get", "configmap", "held"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // Plain delete of an object without finalizers.
    s.configmap("plain", "default", &[]);
    assert!(s.ok(&["delete", "configmap", "plain"]).contains("deleted"));
    // Only the CA every namespace gets is left.
    assert_eq!(
        s.ok(&["get", "configmaps", "-o", "name"]).trim(),
        "configmap/kube-root-ca.crt"
    );
}

#[test]
fn server_side_apply_records_managed_fields() {
    let s = Server::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    let out = s.apply(cm, &["--server-side"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("serverside-applied"));
    let j = json(&s.ok(&[
        "get",
        "configmap",
        "ssa",
        "-o",
        "json",
        "--show-managed-fields",
    ]));
    let managers: Vec<&str> = j["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert!(managers.contains(&"kubectl"), "{managers:?}");
    let out = s.apply(
        &cm.replace("a: \"1\"", "a: \"2\"\n  b: \"3\""),
        &["--server-side"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = json(&s.ok(&["get", "configmap", "ssa", "-o", "json"]));
    assert_eq!(j["data"]["a"], "2");
    assert_eq!(j["data"]["b"], "3");
}

#[test]
fn explain_reads_the_openapi_documents() {
    let s = Server::start();
    let out = s.ok(&["explain", "deployment.spec.replicas"]);
    assert!(out.contains("replicas") && out.contains("integer"), "{out}");
    let out = s.ok(&["explain", "pods.spec.containers"]);
    assert!(out.contains("image"), "{out}");
}

#[test]
fn namespaces_lifecycle() {
    let s = Server::start();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(s.ok(&["get", "ns", ns, "-o", "name"]).contains(ns));
    }
    let out = s.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: missing\n",
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("NotFound") && err.contains("namespaces \"missing\" not found"),
        "{err}"
    );
    let err = s.fails(&["delete", "ns", "default"]);
    assert!(err.contains("Forbidden"), "{err}");

    s.namespace("team");
    s.configmap("free", "team", &[]);
    s.apply("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: team\n  finalizers: [example.com/hold]\n", &[]);
    s.ok(&["delete", "ns", "team", "--wait=false"]);
    assert_eq!(
        s.ok(&["get", "ns", "team", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
    let out = s.apply(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: team\n",
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("Forbidden") && err.contains("being terminated"),
        "{err}"
    );
    // Contents go; the held one waits for its finalizer, and the namespace for it.
    eventually(20, || {
        s.ok(&[
            "get",
            "configmap",
            "free",
            "-n",
            "team",
            "--ignore-not-found",
            "-o",
            "name",
        ])
        .is_empty()
        .then_some(())
    });
    assert!(s.ok(&["get", "ns", "team", "-o", "name"]).contains("team"));
    s.ok(&[
        "patch",
        "configmap",
        "held",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":[]}}"#,
    ]);
    eventually(20, || {
        s.ok(&["get", "ns", "team", "--ignore-not-found", "-o", "name"])
            .is_empty()
            .then_some(())
    });
}

#[test]
fn owner_references_are_collected() {
    let s = Server::start();
    s.configmap("owner", "default", &[]);
    let uid = s.ok(&[
        "get",
        "configmap",
        "owner",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let dep = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: dep\n  ownerReferences:\n  - apiVersion: v1\n    kind: ConfigMap\n    name: owner\n    uid: {uid}\n");
    assert!(s.apply(&dep, &[]).status.success());
    s.ok(&["delete", "configmap", "owner"]);
    eventually(20, || {
        s.ok(&["get", "secret", "dep", "--ignore-not-found", "-o", "name"])
            .is_empty()
            .then_some(())
    });
    // Orphan leaves the dependent, without the reference.
    s.configmap("owner2", "default", &[]);
    let uid = s.ok(&[
        "get",
        "configmap",
        "owner2",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let dep2 = dep.replace("name: owner\n", "name: owner2\n");
    let dep2 = dep2
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("uid:") {
                format!("    uid: {uid}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(s.apply(&dep2, &[]).status.success());
    s.ok(&["delete", "configmap", "owner2", "--cascade=orphan"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let j = json(&s.ok(&["get", "secret", "dep", "-o", "json"]));
    assert!(
        j["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{j}"
    );
}

#[test]
fn tables_for_services_and_nodes() {
    let s = Server::start();
    s.apply_ok("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80, targetPort: 8080}\n");
    let out = s.ok(&["get", "svc", "web"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ]
    );
    assert!(out.contains("80/TCP"), "{out}");
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels: {node-role.kubernetes.io/control-plane: \"true\"}\nstatus:\n  nodeInfo: {kubeletVersion: v1.33.0}\n  conditions:\n  - {type: Ready, status: \"True\"}\n";
    assert!(s.apply(node, &["--validate=false"]).status.success());
    let out = s.ok(&["get", "nodes"]);
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    assert!(
        out.contains("Ready") && out.contains("control-plane") && out.contains("v1.33.0"),
        "{out}"
    );
}

#[test]
fn create_generators_send_protobuf() {
    let s = Server::start();
    s.ok(&["create", "namespace", "gen"]);
    s.ok(&[
        "create",
        "configmap",
        "c",
        "-n",
        "gen",
        "--from-literal=a=1",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "sec",
        "-n",
        "gen",
        "--from-literal=p=q",
    ]);
    s.ok(&["create", "serviceaccount", "robot", "-n", "gen"]);
    s.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "gen",
        "--image=nginx:1.27",
        "--port=80",
        "--replicas=2",
    ]);
    s.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        "gen",
        "--tcp=80:8080",
    ]);
    assert_eq!(
        s.ok(&["get", "cm", "c", "-n", "gen", "-o", "jsonpath={.data.a}"]),
        "1"
    );
    assert_eq!(
        s.ok(&[
            "get",
            "secret",
            "sec",
            "-n",
            "gen",
            "-o",
            "jsonpath={.data.p}"
        ]),
        "cQ=="
    );
    let d = json(&s.ok(&["get", "deploy", "web", "-n", "gen", "-o", "json"]));
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    let svc = json(&s.ok(&["get", "svc", "web", "-n", "gen", "-o", "json"]));
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    s.ok(&[
        "create",
        "job",
        "j",
        "-n",
        "gen",
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ]);
    let j = json(&s.ok(&["get", "job", "j", "-n", "gen", "-o", "json"]));
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox");
    assert_eq!(c["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");
    s.ok(&[
        "create",
        "cronjob",
        "cj",
        "-n",
        "gen",
        "--image=busybox",
        "--schedule=*/5 * * * *",
    ]);
    assert_eq!(
        s.ok(&[
            "get",
            "cronjob",
            "cj",
            "-n",
            "gen",
            "-o",
            "jsonpath={.spec.schedule}"
        ]),
        "*/5 * * * *"
    );
    // Every stable kind's protobuf is decoded (src/apiserver/protobuf), roles included.
    s.ok(&[
        "create",
        "role",
        "r",
        "-n",
        "gen",
        "--verb=get",
        "--resource=pods",
    ]);
    let r = json(&s.ok(&["get", "role", "r", "-n", "gen", "-o", "json"]));
    assert_eq!(r["rules"][0]["verbs"], serde_json::json!(["get"]));
}
