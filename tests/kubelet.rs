//! The kubelet with real containers, on a one-node cluster in a network namespace of the
//! test's own: pods run, get addresses on the node's bridge, talk to each other, restart by
//! their policy with back-off, report why they cannot start, survive the agent's kill -9, and
//! leave nothing behind when deleted.

mod node_support;

use node_support::{Cluster, IMAGE};
use serde_json::Value;
use std::time::Duration;

fn pod_yaml(name: &str, policy: &str, script: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  nodeName: node1\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n"
    )
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no status for container {name}: {pod}"))
}

fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

#[test]
fn pod_runs_with_its_own_address_and_serves_http() {
    let c = Cluster::start();
    c.apply(&pod_yaml(
        "web",
        "Always",
        "echo hello from $(hostname) > /tmp/index.html; echo started; exec httpd -f -p 8080 -h /tmp",
    ));
    let pod = c.wait_phase("web", "Running");
    let ip = pod["status"]["podIP"].as_str().expect("podIP").to_string();
    let node = c.json(&["get", "node", "node1"]).unwrap();
    let cidr = node["spec"]["podCIDR"].as_str().expect("podCIDR");
    let prefix = cidr.rsplit_once('.').unwrap().0.rsplit_once('.').unwrap().0;
    assert!(
        ip.starts_with(prefix),
        "pod IP {ip} outside the node's range {cidr}"
    );
    assert_eq!(pod["status"]["hostIP"], node_support::NODE_IP);
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    assert_eq!(condition(&pod, "Ready"), "True", "{pod}");
    assert_eq!(condition(&pod, "PodReadyToStartContainers"), "True");
    let cs = container_status(&pod, "main");
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    assert!(cs["containerID"]
        .as_str()
        .unwrap()
        .starts_with("nanokube://"));
    assert_eq!(cs["restartCount"], 0);

    // From the node to the pod over the bridge.
    c.wait_for("httpd answering", Duration::from_secs(20), |c| {
        let out = c.in_node(
            "curl",
            &["-s", "--max-time", "2", &format!("http://{ip}:8080/")],
        );
        String::from_utf8_lossy(&out.stdout).contains("hello from web")
    });

    // The log is in the CRI format under the pod's log directory.
    let log_dir = c.logs_dir();
    let entry = std::fs::read_dir(&log_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let name = entry.file_name().to_string_lossy().into_owned();
    assert!(name.starts_with("default_web_"), "{name}");
    let text = std::fs::read_to_string(entry.path().join("main/0.log")).unwrap();
    let line = text.lines().next().expect("a log line");
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(&parts[1..], ["stdout", "F", "started"], "{line}");

    // What happened, as events (kubectl describe reads them by the pod's name).
    let events = c
        .json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=web",
        ])
        .unwrap();
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    for want in ["Pulled", "Created", "Started"] {
        assert!(reasons.contains(&want), "no {want} event in {reasons:?}");
    }
    let describe = c.ok(&["describe", "pod", "web"]);
    assert!(
        describe.contains("Started container httpd") || describe.contains("Started container main"),
        "{describe}"
    );

    // The pod's resolv.conf and hosts are the cluster's.
    let root = c
        .data_dir()
        .join("agent/pods")
        .join(pod["metadata"]["uid"].as_str().unwrap());
    let resolv = std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap();
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
    );
    let hosts = std::fs::read_to_string(root.join("etc/hosts")).unwrap();
    assert!(hosts.contains(&format!("{ip}\tweb\n")), "{hosts}");
}

#[test]
fn pods_reach_each_other_and_deletion_leaves_nothing() {
    let c = Cluster::start();
    c.apply(&pod_yaml(
        "server",
        "Always",
        "echo pong > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ));
    let ip = c.wait_phase("server", "Running")["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    c.apply(&pod_yaml(
        "client",
        "Never",
        &format!("for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{ip}/ && exit 0; sleep 0.5; done; exit 1"),
    ));
    let pod = c.wait_phase("client", "Succeeded");
    let t = &container_status(&pod, "main")["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let log = std::fs::read_to_string(
        c.logs_dir()
            .join(format!("default_client_{uid}/main/0.log")),
    )
    .unwrap();
    assert!(log.contains("stdout F pong"), "{log}");

    assert_eq!(c.shim_pids().len(), 2);
    c.ok(&["delete", "pod", "server", "client", "--wait=true"]);
    c.wait_for("pods gone", Duration::from_secs(30), |c| {
        c.ok(&["get", "pods", "-o", "name"]).trim().is_empty()
    });
    c.wait_for("shims gone", Duration::from_secs(10), |c| {
        c.shim_pids().is_empty()
    });
    // A rootfs still busy when its pod was torn down is retried by the kubelet's sweep of
    // pods gone from the API.
    let pods_dir = c.data_dir().join("agent/pods");
    c.wait_for(
        "mounts and pod directories gone",
        Duration::from_secs(30),
        |c| c.mounts().is_empty() && std::fs::read_dir(&pods_dir).unwrap().count() == 0,
    );
    let links = String::from_utf8_lossy(&c.in_node("ip", &["-o", "link"]).stdout).into_owned();
    assert!(!links.contains("veth"), "veths left: {links}");
    let ipam: Vec<_> = walk(&c.data_dir().join("agent/ipam"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("10."))
        })
        .collect();
    assert!(ipam.is_empty(), "addresses still held: {ipam:?}");
    for q in ["", "burstable/", "besteffort/"] {
        for root in [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup",
        ] {
            let p = format!("{root}/kubepods/{q}pod{uid}");
            assert!(!std::path::Path::new(&p).exists(), "cgroup {p} left");
        }
    }
    assert!(
        !c.logs_dir().join(format!("default_client_{uid}")).exists(),
        "logs left"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn restart_policies_and_crash_loop_back_off() {
    let c = Cluster::start();
    c.apply(&pod_yaml("crash", "Always", "echo crashing; exit 3"));
    c.apply(&pod_yaml("fails", "Never", "exit 7"));
    c.apply(&pod_yaml("retry", "OnFailure", "exit 0"));

    let failed = c.wait_phase("fails", "Failed");
    let t = &container_status(&failed, "main")["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(7), Some("Error"))
    );
    assert_eq!(container_status(&failed, "main")["restartCount"], 0);
    c.wait_phase("retry", "Succeeded");

    // The first restart comes at once, the next after 10 s of back-off.
    c.wait_for("crash loop", Duration::from_secs(30), |c| {
        let p = c.pod("crash");
        let s = container_status(&p, "main");
        s["restartCount"].as_i64() >= Some(1)
            && s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let p = c.pod("crash");
    let s = container_status(&p, "main");
    let msg = s["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=main pod=crash_default("),
        "{msg}"
    );
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(s["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(p["status"]["phase"], "Running");
    let out = c.ok(&["get", "pod", "crash"]);
    assert!(out.contains("CrashLoopBackOff"), "{out}");
    let backoff = c
        .json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=crash,reason=BackOff",
        ])
        .unwrap();
    let ev = &backoff["items"][0];
    assert_eq!(ev["type"], "Warning", "{backoff}");
    assert!(ev["message"]
        .as_str()
        .unwrap()
        .starts_with("Back-off restarting failed container main in pod crash_default("));
    assert!(ev["count"].as_i64().unwrap() >= 1);
    let restarts = s["restartCount"].as_i64().unwrap();
    // Within the back-off nothing restarts; after it, one more start.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        container_status(&c.pod("crash"), "main")["restartCount"]
            .as_i64()
            .unwrap(),
        restarts
    );
    c.wait_for("restart after back-off", Duration::from_secs(20), |c| {
        container_status(&c.pod("crash"), "main")["restartCount"]
            .as_i64()
            .unwrap()
            > restarts
    });
}

#[test]
fn containers_that_cannot_start_say_why() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=colour=blue",
    ]);
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nokey\nspec:\n  nodeName: node1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '100']\n    env:\n    - name: SIZE\n      valueFrom:\n        configMapKeyRef: {{name: settings, key: size}}\n"
    );
    c.apply(&yaml);
    c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: noimage\nspec:\n  nodeName: node1\n  containers:\n  - name: main\n    image: example.invalid/none:1\n    imagePullPolicy: Never\n"
    );
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nonroot\nspec:\n  nodeName: node1\n  securityContext: {{runAsNonRoot: true}}\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '100']\n"
    ));
    let waiting = |c: &Cluster, pod: &str| -> (String, String) {
        let p = c.pod(pod);
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        (
            w["reason"].as_str().unwrap_or("").to_string(),
            w["message"].as_str().unwrap_or("").to_string(),
        )
    };
    c.wait_for("config error", Duration::from_secs(30), |c| {
        waiting(c, "nokey").0 == "CreateContainerConfigError"
    });
    assert_eq!(
        waiting(&c, "nokey").1,
        "couldn't find key size in ConfigMap default/settings"
    );
    c.wait_for("never pull", Duration::from_secs(30), |c| {
        waiting(c, "noimage").0 == "ErrImageNeverPull"
    });
    assert_eq!(
        waiting(&c, "noimage").1,
        "Container image \"example.invalid/none:1\" is not present with pull policy of Never"
    );
    c.wait_for("non-root refused", Duration::from_secs(30), |c| {
        waiting(c, "nonroot").0 == "CreateContainerConfigError"
    });
    assert_eq!(
        waiting(&c, "nonroot").1,
        "container has runAsNonRoot and image will run as root"
    );
    assert_eq!(c.pod("nokey")["status"]["phase"], "Pending");

    // Once the key exists, the container starts.
    c.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"size":"large"}}"#,
    ]);
    c.wait_phase("nokey", "Running");
}

#[test]
fn init_containers_volumes_and_environment() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "configmap",
        "app",
        "--from-literal=greeting=hello",
        "--from-literal=file.txt=from-a-file",
    ]);
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: layered
  labels: {{tier: web}}
spec:
  nodeName: node1
  restartPolicy: Never
  volumes:
  - name: shared
    emptyDir: {{}}
  - name: config
    configMap: {{name: app, items: [{{key: file.txt, path: sub/f.txt}}]}}
  - name: info
    downwardAPI:
      items: [{{path: labels-tier, fieldRef: {{fieldPath: "metadata.labels['tier']"}}}}]
  initContainers:
  - name: first
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo one >> /work/order"]
    volumeMounts: [{{name: shared, mountPath: /work}}]
  - name: second
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo two >> /work/order"]
    volumeMounts: [{{name: shared, mountPath: /work}}]
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'cat /work/order; echo "$GREETING $(POD) $NODE $CFG_greeting"; cat /cfg/sub/f.txt; echo; cat /info/labels-tier; echo; id -u']
    env:
    - name: GREETING
      valueFrom: {{configMapKeyRef: {{name: app, key: greeting}}}}
    - name: POD
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: NODE
      valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
    envFrom:
    - prefix: CFG_
      configMapRef: {{name: app}}
    securityContext: {{runAsUser: 1234}}
    volumeMounts:
    - {{name: shared, mountPath: /work}}
    - {{name: config, mountPath: /cfg, readOnly: true}}
    - {{name: info, mountPath: /info}}
"#
    );
    c.apply(&yaml);
    let pod = c.wait_phase("layered", "Succeeded");
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    for s in inits {
        assert_eq!(s["state"]["terminated"]["reason"], "Completed", "{s}");
    }
    assert_eq!(condition(&pod, "Initialized"), "True");
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let log = std::fs::read_to_string(
        c.logs_dir()
            .join(format!("default_layered_{uid}/main/0.log")),
    )
    .unwrap();
    let lines: Vec<&str> = log
        .lines()
        .map(|l| l.splitn(4, ' ').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "one",
            "two",
            "hello layered node1 hello",
            "from-a-file",
            "web",
            "1234"
        ],
        "{log}"
    );
}

#[test]
fn agent_kill9_loses_no_pod_and_no_exit() {
    let mut c = Cluster::start();
    c.apply(&pod_yaml("steady", "Always", "echo up; exec sleep 3600"));
    c.apply(&pod_yaml("later", "Never", "sleep 4; echo done; exit 5"));
    c.wait_phase("steady", "Running");
    c.wait_phase("later", "Running");
    let before = container_status(&c.pod("steady"), "main")["containerID"].clone();
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 2);

    c.kill9();
    // While the agent is away, `later` ends.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(c.shim_pids(), shims, "the shims outlive the agent");
    c.start_again();

    let done = c.wait_phase("later", "Failed");
    let t = &container_status(&done, "main")["state"]["terminated"];
    assert_eq!(
        t["exitCode"], 5,
        "exit recorded while the agent was gone: {done}"
    );
    let steady = c.pod("steady");
    let s = container_status(&steady, "main");
    assert_eq!(s["containerID"], before, "same container, re-adopted");
    assert_eq!(s["restartCount"], 0);
    assert!(s["state"]["running"].is_object());
    let uid = done["metadata"]["uid"].as_str().unwrap();
    let log = std::fs::read_to_string(c.logs_dir().join(format!("default_later_{uid}/main/0.log")))
        .unwrap();
    assert!(log.contains("stdout F done"), "no line lost: {log}");
}

#[test]
fn memory_limit_oom_kill_is_reported() {
    let c = Cluster::start();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: hog\nspec:\n  nodeName: node1\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'dd if=/dev/zero of=/dev/null bs=64M count=1']\n    resources:\n      limits: {{memory: 16Mi, cpu: 500m}}\n"
    );
    c.apply(&yaml);
    let pod = c.wait_phase("hog", "Failed");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let t = &container_status(&pod, "main")["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled", "{pod}");
    assert_eq!(t["exitCode"], 137);
}

#[test]
fn kubectl_logs_through_the_kubelet() {
    let c = Cluster::start();
    c.apply(&pod_yaml("talker", "Always", "for i in 1 2 3; do echo line $i; done; sleep 0.3; echo oops >&2; sleep 2; echo late; exit 1"));
    c.wait_for("first start logged", Duration::from_secs(30), |c| {
        c.kubectl(&["logs", "talker"])
            .stdout
            .starts_with(b"line 1\n")
    });
    // Follow until the container ends: every line, in order, then the stream closes.
    let out = c.ok(&["logs", "-f", "talker"]);
    assert!(out.ends_with("late\n"), "{out:?}");
    assert!(out.contains("line 3\noops\n"), "{out:?}");
    let stamped = c.ok(&["logs", "talker", "--timestamps", "--tail=2"]);
    for l in stamped.lines() {
        let (ts, _) = l.split_once(' ').unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "{l}");
    }
    // After a restart, --previous reads the start before.
    c.wait_for("restarted", Duration::from_secs(30), |c| {
        container_status(&c.pod("talker"), "main")["restartCount"].as_i64() >= Some(1)
    });
    let prev = c.ok(&["logs", "talker", "--previous"]);
    assert_eq!(
        c.ok(&["logs", "talker", "--previous", "--tail=2"]),
        "oops\nlate\n"
    );
    assert_eq!(prev, "line 1\nline 2\nline 3\noops\nlate\n");
    let out = c.kubectl(&["logs", "talker", "-c", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container nope is not valid for pod talker"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubectl_exec_through_the_kubelet_and_shim() {
    let c = Cluster::start();
    c.apply(&pod_yaml("box", "Always", "exec sleep 3600"));
    c.wait_phase("box", "Running");
    // stdout and stderr apart, the exit code passed through.
    let out = c.kubectl(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; cat /etc/hostname; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nbox\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("err\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdin reaches the process and its end ends it.
    let mut child = c
        .kubectl_command(node_support::KUBECTL)
        .args([
            "exec",
            "-i",
            "box",
            "--",
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"shout\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\ndone\n");
    // The process runs in the container: its pid namespace, its root.
    let out = c.ok(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "ls /proc | grep -c '^[0-9]'; cat /etc/resolv.conf | head -1",
    ]);
    let mut lines = out.lines();
    let procs: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(procs <= 4, "sees only its own processes: {out}");
    assert_eq!(
        lines.next(),
        Some("search default.svc.cluster.local svc.cluster.local cluster.local")
    );
    // A command that does not exist is refused with the runtime's reason.
    let out = c.kubectl(&["exec", "box", "--", "nosuchcmd"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A container name that the pod lacks, as upstream words it.
    let out = c.kubectl(&["exec", "box", "-c", "other", "--", "true"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("container other is not valid for pod box")
    );
}

#[test]
fn probes_drive_readiness_and_restarts() {
    let c = Cluster::start();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  nodeName: node1
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "mkdir -p /www; echo ok > /www/index.html; sleep 3; exec httpd -f -p 8080 -h /www"]
    readinessProbe:
      httpGet: {{path: /index.html, port: 8080}}
      periodSeconds: 1
  - name: alive
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "touch /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec: {{command: [cat, /tmp/healthy]}}
      periodSeconds: 1
      failureThreshold: 2
"#
    );
    c.apply(&yaml);
    c.wait_phase("probed", "Running");
    // httpd starts after 3 s: until its probe passes the pod is not Ready.
    let early = c.pod("probed");
    assert_eq!(container_status(&early, "web")["ready"], false, "{early}");
    assert_eq!(condition(&early, "Ready"), "False");
    c.wait_for("Ready by its probe", Duration::from_secs(30), |c| {
        condition(&c.pod("probed"), "Ready") == "True"
    });
    // The liveness probe fails once the file goes: the container is restarted.
    c.ok(&["exec", "probed", "-c", "alive", "--", "rm", "/tmp/healthy"]);
    c.wait_for("restart by liveness", Duration::from_secs(30), |c| {
        container_status(&c.pod("probed"), "alive")["restartCount"].as_i64() >= Some(1)
    });
    let p = c.pod("probed");
    assert_eq!(
        container_status(&p, "alive")["lastState"]["terminated"]["exitCode"],
        137
    );
    assert_eq!(container_status(&p, "web")["restartCount"], 0);
}

#[test]
fn pre_stop_hook_runs_before_the_container_is_stopped() {
    let c = Cluster::start();
    let out = c.dir.path().join("hook-out");
    std::fs::create_dir_all(&out).unwrap();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: polite}}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 20
  volumes: [{{name: out, hostPath: {{path: {out}, type: Directory}}}}]
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "trap 'echo term >> /out/log; exit 0' TERM; echo up >> /out/log; while true; do sleep 0.1; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, "echo prestop >> /out/log"]}}
"#,
        out = out.display()
    );
    c.apply(&yaml);
    c.wait_phase("polite", "Running");
    let started = std::time::Instant::now();
    c.ok(&["delete", "pod", "polite", "--wait=true"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped on SIGTERM, not at the grace period's end"
    );
    let log = std::fs::read_to_string(out.join("log")).unwrap();
    assert_eq!(
        log, "up\nprestop\nterm\n",
        "the hook ran first, then SIGTERM"
    );
}

#[test]
fn post_start_hook_runs_before_the_next_container_and_a_failing_one_kills() {
    let c = Cluster::start();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  nodeName: node1
  terminationGracePeriodSeconds: 1
  volumes: [{{name: shared, emptyDir: {{}}}}]
  containers:
  - name: first
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo main >> /shared/log; exec sleep 1000"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "sleep 1; echo hook >> /shared/log"]}}
  - name: second
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo second >> /shared/log; exec sleep 1000"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: badhook}}
spec:
  nodeName: node1
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sleep, "1000"]
    lifecycle:
      postStart:
        exec: {{command: [sh, -c, "exit 3"]}}
"#
    );
    c.apply(&yaml);
    c.wait_phase("hooked", "Running");
    c.wait_for("both containers up", Duration::from_secs(30), |c| {
        c.kubectl(&["exec", "hooked", "-c", "second", "--", "cat", "/shared/log"])
            .stdout
            .ends_with(b"second\n")
    });
    let log = c.ok(&["exec", "hooked", "-c", "second", "--", "cat", "/shared/log"]);
    // The hook runs beside the container's own command; the next container waits for it.
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.last(), Some(&"second"), "{log}");
    assert!(lines.contains(&"hook") && lines.contains(&"main"), "{log}");

    c.wait_phase("badhook", "Failed");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=badhook,reason=FailedPostStartHook",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.starts_with(r#"Exec lifecycle hook (["sh", "-c", "exit 3"]) for Container "main" in Pod "badhook_default("#)
            && events.contains("failed - error: command 'sh -c exit 3' exited with 3"),
        "{events}"
    );
    let state = &c.pod("badhook")["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        state["exitCode"], 137,
        "killed after the hook failed: {state}"
    );
    c.ok(&["delete", "pod", "hooked", "badhook", "--wait=true"]);
}

#[test]
fn pod_and_container_cgroups_as_the_kubelet_lays_them_out() {
    let c = Cluster::start();
    let yaml = format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: sized}}
spec:
  nodeName: node1
  containers:
  - name: a
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    resources: {{limits: {{memory: 32Mi, cpu: 250m}}}}
  - name: b
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    resources: {{limits: {{memory: 16Mi, cpu: 250m}}}}
"#
    );
    c.apply(&yaml);
    let pod = c.wait_phase("sized", "Running");
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let read = |p: String| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .to_string()
    };
    if v2 {
        assert_eq!(
            read(format!("/sys/fs/cgroup/kubepods/pod{uid}/memory.max")),
            (48u64 << 20).to_string()
        );
        assert_eq!(
            read(format!("/sys/fs/cgroup/kubepods/pod{uid}/cpu.max")),
            "50000 100000"
        );
    } else {
        assert_eq!(
            read(format!(
                "/sys/fs/cgroup/memory/kubepods/pod{uid}/memory.limit_in_bytes"
            )),
            (48u64 << 20).to_string()
        );
        assert_eq!(
            read(format!(
                "/sys/fs/cgroup/cpu/kubepods/pod{uid}/cpu.cfs_quota_us"
            )),
            "50000"
        );
        // Each container's own limit sits under the pod's.
        let id = container_status(&pod, "b")["containerID"]
            .as_str()
            .unwrap()
            .trim_start_matches("nanokube://")
            .to_string();
        assert_eq!(
            read(format!(
                "/sys/fs/cgroup/memory/kubepods/pod{uid}/{id}/memory.limit_in_bytes"
            )),
            (16u64 << 20).to_string()
        );
    }
    c.ok(&["delete", "pod", "sized", "--grace-period=1", "--wait=true"]);
    let gone = if v2 {
        format!("/sys/fs/cgroup/kubepods/pod{uid}")
    } else {
        format!("/sys/fs/cgroup/memory/kubepods/pod{uid}")
    };
    c.wait_for("pod cgroup removed", Duration::from_secs(20), |_| {
        !std::path::Path::new(&gone).exists()
    });
}

/// 300 pods created and deleted, thirty at a time, half of them removed by a forced delete
/// (the kubelet's housekeeping cleans those) and half gracefully: nothing may be left.
#[test]
fn three_hundred_pod_cycles_leave_nothing_behind() {
    let c = Cluster::start();
    let mut uids = Vec::new();
    for round in 0..10 {
        let mut yaml = String::new();
        for i in 0..30 {
            yaml.push_str(&pod_yaml(
                &format!("cycle-{round}-{i}"),
                "Always",
                "exec sleep 3600",
            ));
            yaml.push_str("---\n");
        }
        c.apply(&yaml);
        c.wait_for("a round Running", Duration::from_secs(90), |c| {
            let pods = c.json(&["get", "pods"]).unwrap();
            let items = pods["items"].as_array().unwrap();
            items.len() == 30 && items.iter().all(|p| p["status"]["phase"] == "Running")
        });
        let pods = c.json(&["get", "pods"]).unwrap();
        for p in pods["items"].as_array().unwrap() {
            uids.push(p["metadata"]["uid"].as_str().unwrap().to_string());
        }
        if round % 2 == 0 {
            c.ok(&["delete", "pods", "--all", "--grace-period=0", "--force"]);
        } else {
            c.ok(&["delete", "pods", "--all", "--grace-period=1", "--wait=true"]);
        }
        c.wait_for("a round gone", Duration::from_secs(90), |c| {
            c.ok(&["get", "pods", "-o", "name"]).trim().is_empty() && c.shim_pids().is_empty()
        });
    }
    c.wait_for("pod directories gone", Duration::from_secs(30), |c| {
        std::fs::read_dir(c.data_dir().join("agent/pods"))
            .unwrap()
            .count()
            == 0
    });
    assert!(c.mounts().is_empty(), "mounts left: {:?}", c.mounts());
    let links = String::from_utf8_lossy(&c.in_node("ip", &["-o", "link"]).stdout).into_owned();
    assert!(!links.contains("veth"), "veths left: {links}");
    let held: Vec<_> = walk(&c.data_dir().join("agent/ipam"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("10."))
        })
        .collect();
    assert!(held.is_empty(), "addresses still held: {held:?}");
    let state: Vec<_> = std::fs::read_dir(c.runtime_root())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(state.is_empty(), "runtime state left: {state:?}");
    let logs: Vec<_> = std::fs::read_dir(c.logs_dir())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(logs.is_empty(), "pod logs left: {logs:?}");
    for uid in &uids {
        for root in [
            "/sys/fs/cgroup/memory/kubepods/besteffort",
            "/sys/fs/cgroup/pids/kubepods/besteffort",
            "/sys/fs/cgroup/kubepods/besteffort",
        ] {
            let p = format!("{root}/pod{uid}");
            assert!(!std::path::Path::new(&p).exists(), "cgroup {p} left");
        }
    }
    assert_eq!(uids.len(), 300);
}

/// A second node joins with the server's token (`nanokube agent --server --token`): it gets its
/// own identity and pod range, runs a pod, and the API server reaches its kubelet for logs.
#[test]
fn an_agent_joins_with_the_token_and_serves_its_pods() {
    use std::process::{Command, Stdio};
    let dir = tempfile::Builder::new()
        .prefix("nk-join-")
        .tempdir()
        .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (a, b) = (
        format!("nk-ja{}", std::process::id()),
        format!("nk-jb{}", std::process::id()),
    );
    struct Ns(Vec<String>);
    impl Drop for Ns {
        fn drop(&mut self) {
            for n in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", n]).status();
            }
        }
    }
    let _ns = Ns(vec![a.clone(), b.clone()]);
    run(&["netns", "add", &a]);
    run(&["netns", "add", &b]);
    run(&[
        "-n", &a, "link", "add", "nk0", "type", "veth", "peer", "name", "nk0", "netns", &b,
    ]);
    for (n, ip) in [(&a, "10.99.0.2/24"), (&b, "10.99.0.3/24")] {
        run(&["-n", n, "link", "set", "lo", "up"]);
        run(&["-n", n, "addr", "add", ip, "dev", "nk0"]);
        run(&["-n", n, "link", "set", "nk0", "up"]);
    }
    let nsenter = |n: &str, prog: &str| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{n}")).arg(prog);
        c
    };
    let d = dir.path();
    for n in ["a", "b"] {
        std::fs::create_dir_all(d.join(n).join("agent/images")).unwrap();
        std::fs::copy(
            node_support::image_tarball(),
            d.join(n).join("agent/images/busybox.oci.tar"),
        )
        .unwrap();
    }
    let log = |name: &str| std::fs::File::create(d.join(name)).unwrap();
    struct Kill(Vec<std::process::Child>, std::path::PathBuf, String);
    impl Drop for Kill {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
            for (ns, data) in [
                (self.2.replace("nk-jb", "nk-ja"), "a"),
                (self.2.clone(), "b"),
            ] {
                let _ = Command::new("nsenter")
                    .arg(format!("--net=/run/netns/{ns}"))
                    .args([node_support::NANOKUBE, "killall", "--data-dir"])
                    .arg(self.1.join(data))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
    let server = nsenter(&a, node_support::NANOKUBE)
        .args([
            "server",
            "--bind-address",
            "10.99.0.2",
            "--https-listen-port",
            "16443",
        ])
        .args(["--node-name", "node1", "--node-ip", "10.99.0.2"])
        .arg("--pod-logs-dir")
        .arg(d.join("a-logs"))
        .arg("--runtime-root")
        .arg(d.join("a-run"))
        .arg("--data-dir")
        .arg(d.join("a"))
        .arg("--write-kubeconfig")
        .arg(d.join("kubeconfig"))
        .stdout(log("server.log"))
        .stderr(log("server.err"))
        .spawn()
        .unwrap();
    let mut kids = Kill(vec![server], d.to_path_buf(), b.clone());
    let token_file = d.join("a/server/node-token");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !d.join("kubeconfig").exists() || !token_file.exists() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let token = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    // A wrong secret is refused, and so is a token naming another CA.
    let bad = nsenter(&b, node_support::NANOKUBE)
        .args([
            "agent",
            "--server",
            "https://10.99.0.2:16443",
            "--token",
            "wrong",
            "--node-name",
            "bad",
        ])
        .arg("--data-dir")
        .arg(d.join("bad"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let agent = nsenter(&b, node_support::NANOKUBE)
        .args([
            "agent",
            "--server",
            "https://10.99.0.2:16443",
            "--token",
            &token,
        ])
        .args(["--node-name", "node2", "--node-ip", "10.99.0.3"])
        .arg("--data-dir")
        .arg(d.join("b"))
        .arg("--pod-logs-dir")
        .arg(d.join("b-logs"))
        .arg("--runtime-root")
        .arg(d.join("b-run"))
        .stdout(log("agent.log"))
        .stderr(log("agent.err"))
        .spawn()
        .unwrap();
    kids.0.push(agent);
    let kubectl = |args: &[&str]| {
        nsenter(&a, node_support::KUBECTL)
            .env("KUBECACHEDIR", d.join("kubecache"))
            .arg("--kubeconfig")
            .arg(d.join("kubeconfig"))
            .args(args)
            .output()
            .unwrap()
    };
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out: {what}\nagent: {}",
                std::fs::read_to_string(d.join("agent.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait("node2 Ready", &|| {
        let o = kubectl(&[
            "get",
            "node",
            "node2",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        String::from_utf8_lossy(&o.stdout) == "True"
    });
    let node: Value =
        serde_json::from_slice(&kubectl(&["get", "node", "node2", "-o", "json"]).stdout).unwrap();
    assert!(node["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .starts_with("10.42."));
    // The node's own identity, not a shared one: its Lease names it.
    let lease: Value = serde_json::from_slice(
        &kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "node2",
            "-o",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "node2");
    use std::io::Write;
    let apply = |yaml: String| {
        let mut child = nsenter(&a, node_support::KUBECTL)
            .env("KUBECACHEDIR", d.join("kubecache"))
            .arg("--kubeconfig")
            .arg(d.join("kubeconfig"))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    apply(pod_yaml("far", "Always", "echo from node2; exec sleep 3600").replace("node1", "node2"));
    wait("pod on node2 logs", &|| {
        String::from_utf8_lossy(&kubectl(&["logs", "far"]).stdout) == "from node2\n"
    });
    let out = kubectl(&["exec", "far", "--", "hostname"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "far\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Pod to pod across the nodes (host-gw routes): a server on node2, a client on node1.
    apply(
        pod_yaml(
            "web2",
            "Always",
            "echo across > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
        )
        .replace("node1", "node2"),
    );
    let ip = || -> String {
        let p: Value =
            serde_json::from_slice(&kubectl(&["get", "pod", "web2", "-o", "json"]).stdout).unwrap();
        p["status"]["podIP"].as_str().unwrap_or("").to_string()
    };
    wait("web2 has an address", &|| !ip().is_empty());
    let web2 = ip();
    apply(pod_yaml(
        "client1",
        "Never",
        &format!(
            "for i in $(seq 30); do wget -qO- http://{web2}/ && exit 0; sleep 0.5; done; exit 1"
        ),
    ));
    wait("client on node1 reached node2's pod", &|| {
        let p: Value =
            serde_json::from_slice(&kubectl(&["get", "pod", "client1", "-o", "json"]).stdout)
                .unwrap();
        assert_ne!(
            p["status"]["phase"],
            "Failed",
            "the client failed: {}",
            String::from_utf8_lossy(&kubectl(&["logs", "client1"]).stdout)
        );
        p["status"]["phase"] == "Succeeded"
    });
    assert_eq!(
        String::from_utf8_lossy(&kubectl(&["logs", "client1"]).stdout),
        "across\n"
    );
}

/// A pod's traffic to an address outside the cluster leaves with the node's address (egress
/// masquerade): an "outside" host in a namespace of the test's own sees the node, not the pod.
#[test]
fn egress_leaves_with_the_node_address() {
    use std::process::{Command, Stdio};
    let c = Cluster::start();
    let outside = format!("{}-out", c.ns.name);
    struct Ns(String);
    impl Drop for Ns {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _o = Ns(outside.clone());
    let ip = |args: &[&str]| {
        assert!(
            Command::new("ip").args(args).status().unwrap().success(),
            "ip {args:?}"
        )
    };
    ip(&["netns", "add", &outside]);
    ip(&[
        "-n", &c.ns.name, "link", "add", "nkout", "type", "veth", "peer", "name", "nkout", "netns",
        &outside,
    ]);
    ip(&[
        "-n",
        &c.ns.name,
        "addr",
        "add",
        "10.98.0.2/24",
        "dev",
        "nkout",
    ]);
    ip(&["-n", &c.ns.name, "link", "set", "nkout", "up"]);
    ip(&[
        "-n",
        &outside,
        "addr",
        "add",
        "10.98.0.1/24",
        "dev",
        "nkout",
    ]);
    ip(&["-n", &outside, "link", "set", "nkout", "up"]);
    ip(&["-n", &outside, "link", "set", "lo", "up"]);
    let log_path = c.dir.path().join("outside.log");
    let mut server = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{outside}"))
        .args([
            "python3",
            "-m",
            "http.server",
            "8000",
            "--bind",
            "10.98.0.1",
            "--directory",
            "/",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    c.apply(&pod_yaml(
        "egress",
        "Never",
        "for i in $(seq 40); do wget -qO /dev/null http://10.98.0.1:8000/ && exit 0; sleep 0.25; done; exit 1",
    ));
    let pod = c.wait_phase("egress", "Succeeded");
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let pod_ip = pod["status"]["podIP"].as_str().unwrap();
    assert!(log.contains("10.98.0.2 - -"), "the outside host saw: {log}");
    assert!(
        !log.contains(pod_ip),
        "the pod's own address left the node: {log}"
    );
    let rules = String::from_utf8_lossy(
        &c.in_node("nft", &["list", "table", "ip", "nanokube-nat"])
            .stdout,
    )
    .into_owned();
    assert!(rules.contains("masquerade"), "{rules}");
}

#[test]
fn host_port_publishes_a_container_port_on_the_node() {
    let c = Cluster::start();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: published\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: web\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'echo via hostPort > /tmp/index.html; exec httpd -f -p 80 -h /tmp']\n    ports: [{{containerPort: 80, hostPort: 8088}}]\n"
    );
    c.apply(&yaml);
    c.wait_phase("published", "Running");
    let url = format!("http://{}:8088/", node_support::NODE_IP);
    c.wait_for("the node's port answers", Duration::from_secs(20), |c| {
        String::from_utf8_lossy(&c.in_node("curl", &["-s", "--max-time", "1", &url]).stdout)
            == "via hostPort\n"
    });
    c.ok(&["delete", "pod", "published", "--wait=true"]);
    let rules = String::from_utf8_lossy(
        &c.in_node("nft", &["list", "table", "ip", "nanokube-hostports"])
            .stdout,
    )
    .into_owned();
    assert!(
        !rules.contains("8088"),
        "the mapping went with the pod: {rules}"
    );
}

#[test]
fn static_pods_from_the_manifest_directory() {
    let c = Cluster::start();
    let dir = c.data_dir().join("agent/pod-manifests");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("web.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [sleep, '3600']\n"),
    )
    .unwrap();
    let pod = c.wait_phase("static-web-node1", "Running");
    assert_eq!(pod["spec"]["nodeName"], "node1");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    std::fs::remove_file(&manifest).unwrap();
    c.wait_for(
        "the mirror pod goes with its file",
        Duration::from_secs(40),
        |c| c.json(&["get", "pod", "static-web-node1"]).is_none(),
    );
}

#[test]
fn a_deleted_pod_ends_in_a_terminal_phase() {
    let c = Cluster::start();
    // A finalizer of the test's own keeps each pod visible after the kubelet's final delete,
    // so the phase it wrote can be read.
    let held = |name: &str, script: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  finalizers: [example.com/hold]\nspec:\n  nodeName: node1\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n"
        )
    };
    // One exits 0 on SIGTERM, the other is killed by it.
    c.apply(&held(
        "graceful",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ));
    c.apply(&held("abrupt", "sleep 3600"));
    c.wait_phase("graceful", "Running");
    c.wait_phase("abrupt", "Running");
    c.ok(&["delete", "pod", "graceful", "abrupt", "--wait=false"]);
    for (name, phase) in [("graceful", "Succeeded"), ("abrupt", "Failed")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let pod = loop {
            let pod = c.pod(name);
            if pod["status"]["phase"] == phase {
                break pod;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never {phase}: {}\n{}",
                pod["status"],
                c.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let main = container_status(&pod, "main");
        assert!(
            main["state"]["terminated"].is_object(),
            "{name}: the container is shown terminated: {main}"
        );
        assert_eq!(condition(&pod, "Ready"), "False", "{name}");
        c.ok(&[
            "patch",
            "pod",
            name,
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
        ]);
    }
    c.wait_for("both pods gone", Duration::from_secs(30), |c| {
        c.json(&["get", "pod", "graceful"]).is_none() && c.json(&["get", "pod", "abrupt"]).is_none()
    });
}
