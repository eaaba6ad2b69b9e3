//! kubectl's generator commands (`create deployment`, `run`, `expose`, `create secret`, ...) send
//! their objects as Kubernetes protobuf. Each test drives the real kubectl against its own
//! `nanokube server`, then reads the object back as JSON. Besides checking the fields that matter,
//! every object is compared with kubectl's own JSON rendering of the same command
//! (`--dry-run=client -o json`): each field kubectl set must arrive with the same value.

mod api_support;

use api_support::{raw, Server};
use serde_json::Value;

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Where `want` is not contained in `got`; nulls and empty objects in `want` are what Go writes
/// for unset fields, so they are not required.
fn missing(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                if v.is_null() || v.as_object().is_some_and(|o| o.is_empty()) {
                    continue;
                }
                match g.get(k) {
                    Some(gv) => missing(v, gv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k} missing (want {v})")),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                missing(wv, gv, &format!("{path}[{i}]"), out);
            }
        }
        (w, g) if w == g => {}
        (w, g) => out.push(format!("{path}: got {g}, want {w}")),
    }
}

/// Runs a generator command for real (protobuf on the wire), reads the object back with
/// `get -o json`, checks it holds everything `--dry-run=client -o json` says kubectl sent, and
/// returns it.
fn create(s: &Server, args: &[&str]) -> Value {
    let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let mut dry_args = args[..split].to_vec();
    dry_args.extend(["--dry-run=client", "-o", "json"]);
    dry_args.extend(&args[split..]);
    let mut want = json(&s.ok(&dry_args));
    let out = s.kubectl_env(args, &[]);
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    want.as_object_mut().unwrap().remove("status");
    let kind = want["kind"].as_str().unwrap().to_ascii_lowercase();
    let group = want["apiVersion"]
        .as_str()
        .unwrap()
        .split_once('/')
        .map(|(g, _)| g);
    let resource = match group {
        Some(g) => format!("{kind}.{g}"),
        None => kind,
    };
    let name = want["metadata"]["name"].as_str().unwrap();
    let mut get = vec!["get", &resource, name, "-o", "json"];
    // Not every generator writes the namespace into the object; `-n` names it then.
    let ns_flag = args.iter().position(|a| *a == "-n").map(|i| args[i + 1]);
    if let Some(ns) = want["metadata"]["namespace"].as_str().or(ns_flag) {
        get.extend(["-n", ns]);
    }
    let got = json(&s.ok(&get));
    let mut diffs = Vec::new();
    missing(&want, &got, "", &mut diffs);
    assert!(
        diffs.is_empty(),
        "kubectl {args:?}: stored object differs from what kubectl sent:\n{}\nstored: {got}",
        diffs.join("\n")
    );
    got
}

#[test]
fn create_namespace_deployment_and_expose() {
    let s = Server::start();
    let ns = create(&s, &["create", "namespace", "pb-apps"]);
    assert_eq!(ns["metadata"]["name"], "pb-apps");

    let d = create(
        &s,
        &[
            "create",
            "deployment",
            "web",
            "-n",
            "pb-apps",
            "--image=busybox:1.36",
            "--replicas=3",
            "--port=8080",
            "--",
            "sleep",
            "3600",
        ],
    );
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["metadata"]["labels"]["app"], "web");
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["command"], serde_json::json!(["sleep", "3600"]));
    assert_eq!(c["ports"][0]["containerPort"], 8080);

    // Zero replicas is a value the user chose, not an unset field.
    let idle = create(
        &s,
        &[
            "create",
            "deployment",
            "idle",
            "-n",
            "pb-apps",
            "--image=busybox:1.36",
            "--replicas=0",
        ],
    );
    assert_eq!(idle["spec"]["replicas"], 0);

    let svc = create(
        &s,
        &[
            "expose",
            "deployment",
            "web",
            "-n",
            "pb-apps",
            "--port=80",
            "--target-port=8080",
        ],
    );
    assert_eq!(svc["spec"]["selector"]["app"], "web");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");

    let hpa = create(
        &s,
        &[
            "autoscale",
            "deployment",
            "web",
            "-n",
            "pb-apps",
            "--min=1",
            "--max=4",
            "--cpu-percent=60",
        ],
    );
    assert_eq!(hpa["spec"]["maxReplicas"], 4);
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "web");
}

#[test]
fn run_creates_a_pod() {
    let s = Server::start();
    let p = create(
        &s,
        &[
            "run",
            "pbpod",
            "--image=busybox:1.36",
            "--labels=tier=db,app=x",
            "--env=A=1",
            "--port=5000",
            "--restart=Never",
            "--annotations=note=hi",
            "--",
            "sleep",
            "100",
        ],
    );
    assert_eq!(p["kind"], "Pod");
    assert_eq!(p["metadata"]["labels"]["tier"], "db");
    assert_eq!(p["metadata"]["annotations"]["note"], "hi");
    assert_eq!(p["spec"]["restartPolicy"], "Never");
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["name"], "pbpod");
    assert_eq!(c["args"], serde_json::json!(["sleep", "100"]));
    assert_eq!(c["env"], serde_json::json!([{"name": "A", "value": "1"}]));
    assert_eq!(c["ports"][0]["containerPort"], 5000);

    // An explicit zero in a pointer field (root) and a true bool survive the zero dropping.
    let root = create(
        &s,
        &[
            "run",
            "pbroot",
            "--image=busybox:1.36",
            "--restart=Never",
            r#"--overrides={"spec":{"hostNetwork":true,"securityContext":{"runAsUser":0}}}"#,
        ],
    );
    assert_eq!(root["spec"]["securityContext"]["runAsUser"], 0);
    assert_eq!(root["spec"]["hostNetwork"], true);
}

#[test]
fn configmap_and_secrets_keep_their_data() {
    let s = Server::start();
    let cm = create(
        &s,
        &[
            "create",
            "configmap",
            "pbcm",
            "--from-literal=a=1",
            "--from-literal=greeting=hello world",
        ],
    );
    assert_eq!(
        cm["data"],
        serde_json::json!({"a": "1", "greeting": "hello world"})
    );

    let secret = create(
        &s,
        &[
            "create",
            "secret",
            "generic",
            "pbsecret",
            "--from-literal=pw=s3cr3t",
            "--from-literal=empty=",
        ],
    );
    assert_eq!(secret["type"], "Opaque");
    // Secret data is bytes: base64 in JSON ("s3cr3t"), and an empty value stays.
    assert_eq!(
        secret["data"],
        serde_json::json!({"pw": "czNjcjN0", "empty": ""})
    );

    let reg = create(
        &s,
        &[
            "create",
            "secret",
            "docker-registry",
            "pbreg",
            "--docker-server=reg.local",
            "--docker-username=u",
            "--docker-password=p",
        ],
    );
    assert_eq!(reg["type"], "kubernetes.io/dockerconfigjson");
    assert!(reg["data"][".dockerconfigjson"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
}

#[test]
fn job_and_cronjob() {
    let s = Server::start();
    let j = create(
        &s,
        &[
            "create",
            "job",
            "pbjob",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ],
    );
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.36");
    assert_eq!(c["command"], serde_json::json!(["echo", "hi"]));
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");

    let cj = create(
        &s,
        &[
            "create",
            "cronjob",
            "pbcron",
            "--image=busybox:1.36",
            "--schedule=*/5 * * * *",
            "--restart=OnFailure",
            "--",
            "date",
        ],
    );
    assert_eq!(cj["spec"]["schedule"], "*/5 * * * *");
    let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "OnFailure");
    assert_eq!(pod["containers"][0]["command"], serde_json::json!(["date"]));

    // A job from the cronjob's template carries an owner reference back to it.
    let from = create(&s, &["create", "job", "pbmanual", "--from=cronjob/pbcron"]);
    assert_eq!(from["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    assert_eq!(from["metadata"]["ownerReferences"][0]["name"], "pbcron");
}

#[test]
fn services_with_int_and_named_target_ports() {
    let s = Server::start();
    let svc = create(
        &s,
        &["create", "service", "clusterip", "pbsvc", "--tcp=5678:8080"],
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"]["app"], "pbsvc");
    let port = &svc["spec"]["ports"][0];
    assert_eq!(port["name"], "5678-8080");
    assert_eq!(port["port"], 5678);
    assert_eq!(port["targetPort"], 8080);

    let named = create(
        &s,
        &["create", "service", "clusterip", "pbnamed", "--tcp=80:http"],
    );
    assert_eq!(named["spec"]["ports"][0]["targetPort"], "http");

    let np = create(
        &s,
        &[
            "create",
            "service",
            "nodeport",
            "pbnp",
            "--tcp=80:8080",
            "--node-port=30080",
        ],
    );
    assert_eq!(np["spec"]["type"], "NodePort");
    assert_eq!(np["spec"]["ports"][0]["nodePort"], 30080);
}

#[test]
fn rbac_quota_priorityclass_ingress_pdb_serviceaccount() {
    let s = Server::start();
    create(&s, &["create", "serviceaccount", "pbsa"]);
    let role = create(
        &s,
        &[
            "create",
            "role",
            "pbrole",
            "--verb=get,list",
            "--resource=pods,deployments.apps",
        ],
    );
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    let rb = create(
        &s,
        &[
            "create",
            "rolebinding",
            "pbrb",
            "--role=pbrole",
            "--serviceaccount=default:pbsa",
        ],
    );
    assert_eq!(rb["roleRef"]["name"], "pbrole");
    assert_eq!(rb["subjects"][0]["name"], "pbsa");
    create(
        &s,
        &[
            "create",
            "clusterrole",
            "pbcr",
            "--verb=get",
            "--non-resource-url=/logs",
        ],
    );
    create(
        &s,
        &[
            "create",
            "clusterrolebinding",
            "pbcrb",
            "--clusterrole=pbcr",
            "--user=bob",
        ],
    );

    let quota = create(
        &s,
        &[
            "create",
            "quota",
            "pbq",
            "--hard=cpu=500m,memory=1Gi,pods=10",
        ],
    );
    assert_eq!(
        quota["spec"]["hard"],
        serde_json::json!({"cpu": "500m", "memory": "1Gi", "pods": "10"})
    );

    let pc = create(
        &s,
        &[
            "create",
            "priorityclass",
            "pbpc",
            "--value=1000",
            "--description=hi",
        ],
    );
    assert_eq!(pc["value"], 1000);

    let ing = create(
        &s,
        &[
            "create",
            "ingress",
            "pbing",
            "--rule=foo.com/bar=pbsvc:8080",
        ],
    );
    let path = &ing["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(ing["spec"]["rules"][0]["host"], "foo.com");
    assert_eq!(path["backend"]["service"]["port"]["number"], 8080);

    let pdb = create(
        &s,
        &[
            "create",
            "poddisruptionbudget",
            "pbpdb",
            "--selector=app=web",
            "--max-unavailable=0",
        ],
    );
    // maxUnavailable is an IntOrString pointer: an explicit 0 must survive.
    assert_eq!(pdb["spec"]["maxUnavailable"], 0);
}

#[test]
fn bad_protobuf_bodies_are_400_or_415() {
    let s = Server::start();
    let body = s.dir.path().join("bad.pb");
    // The magic, then a runtime.Unknown whose typeMeta claims 80 bytes that are not there.
    std::fs::write(&body, b"k8s\0\x0a\x50\x0a\x02v1").unwrap();
    let (code, text, _) = raw::curl(
        &s,
        "admin",
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/vnd.kubernetes.protobuf",
        Some(&body),
    );
    assert_eq!(code, 400, "{text}");
    let status = json(&text);
    assert_eq!(status["kind"], "Status");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("protobuf: truncated"),
        "{status}"
    );

    // Without the magic it is not Kubernetes protobuf at all.
    std::fs::write(&body, br#"{"kind":"ConfigMap"}"#).unwrap();
    let (code, text, _) = raw::curl(
        &s,
        "admin",
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/vnd.kubernetes.protobuf",
        Some(&body),
    );
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("Kubernetes protobuf prefix"), "{text}");

    // A kind with no protobuf schema is a media type the server cannot read: 415.
    let type_meta = [&[0x0a, 14][..], b"example.com/v1", &[0x12, 6], b"Widget"].concat();
    let envelope = [&b"k8s\0\x0a"[..], &[type_meta.len() as u8], &type_meta].concat();
    std::fs::write(&body, envelope).unwrap();
    let (code, text, _) = raw::curl(
        &s,
        "admin",
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/vnd.kubernetes.protobuf",
        Some(&body),
    );
    assert_eq!(code, 415, "{text}");
    assert!(
        text.contains("no protobuf schema for example.com/v1, Kind=Widget"),
        "{text}"
    );
}
