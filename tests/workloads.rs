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

// ---- Deployments and ReplicaSets -------------------------------------------------------

/// `kubectl get pods --watch` as a stream of events, recorded from the start: every state the
/// API went through is seen, not only those a poll happens to sample.
struct PodWatch {
    child: std::process::Child,
    events: std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl PodWatch {
    fn start(c: &Cluster, selector: &str) -> PodWatch {
        let mut child = c
            .kubectl_command(node_support::KUBECTL)
            .args([
                "get",
                "pods",
                "-l",
                selector,
                "--watch",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("kubectl get --watch");
        let out = child.stdout.take().unwrap();
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        let reader = std::thread::spawn(move || {
            let stream =
                serde_json::Deserializer::from_reader(out).into_iter::<serde_json::Value>();
            for ev in stream.flatten() {
                let kind = ev["type"].as_str().unwrap_or_default().to_string();
                sink.lock().unwrap().push((kind, ev["object"].clone()));
            }
        });
        PodWatch {
            child,
            events,
            reader: Some(reader),
        }
    }

    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// Stops the watch; the pods' states after each event, in order.
    fn stop(mut self) -> Vec<std::collections::BTreeMap<String, serde_json::Value>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let mut now = std::collections::BTreeMap::new();
        let mut states = Vec::new();
        for (kind, pod) in self.events.lock().unwrap().iter() {
            let name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if kind == "DELETED" {
                now.remove(&name);
            } else {
                now.insert(name, pod.clone());
            }
            states.push(now.clone());
        }
        states
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready_and_not_terminating(p: &serde_json::Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn deployment(c: &Cluster, name: &str) -> serde_json::Value {
    c.json(&["get", "deployment", name])
        .unwrap_or_else(|| panic!("deployment {name} not found"))
}

fn wait_rolled_out(c: &Cluster, name: &str, replicas: i64) {
    c.wait_for(
        &format!("{name} at {replicas} available"),
        Duration::from_secs(90),
        |c| {
            let d = deployment(c, name);
            let st = &d["status"];
            st["observedGeneration"] == d["metadata"]["generation"]
                && st["updatedReplicas"].as_i64().unwrap_or(0) == replicas
                && st["availableReplicas"].as_i64().unwrap_or(0) == replicas
                && st["readyReplicas"].as_i64().unwrap_or(0) == replicas
                && st["replicas"].as_i64().unwrap_or(0) == replicas
        },
    );
}

/// Names of the pods the selector matches that are not being deleted.
fn live_pods(c: &Cluster, selector: &str) -> Vec<String> {
    let list = c.json(&["get", "pods", "-l", selector]).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

fn image_of(c: &Cluster, name: &str) -> String {
    deployment(c, name)["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn deployment_creates_heals_scales_rolls_out_and_rolls_back() {
    let c = Cluster::start();
    c.ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=3",
        "--port=8080",
        "--",
        "httpd",
        "-f",
        "-p",
        "8080",
    ]);
    wait_rolled_out(&c, "web", 3);
    let d = deployment(&c, "web");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1",
        "{d:#}"
    );
    let conds = d["status"]["conditions"].as_array().unwrap().clone();
    let reason = |t: &str| {
        conds
            .iter()
            .find(|c| c["type"] == t)
            .map(|c| c["reason"].clone())
    };
    assert_eq!(
        reason("Available"),
        Some("MinimumReplicasAvailable".into()),
        "{conds:?}"
    );
    assert_eq!(
        reason("Progressing"),
        Some("NewReplicaSetAvailable".into()),
        "{conds:?}"
    );

    // One ReplicaSet named after the template's hash, which its pods carry as a label.
    let rs = c.json(&["get", "rs", "-l", "app=web"]).unwrap();
    let rs = &rs["items"].as_array().unwrap().clone();
    assert_eq!(rs.len(), 1, "{rs:?}");
    let hash = rs[0]["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rs[0]["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs[0]["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );
    assert_eq!(rs[0]["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(
        rs[0]["metadata"]["ownerReferences"][0]["blockOwnerDeletion"],
        true
    );
    let pods = live_pods(&c, "app=web");
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert!(p.starts_with(&format!("web-{hash}-")), "{p}");
        let pod = c.pod(p);
        assert_eq!(
            pod["metadata"]["labels"]["pod-template-hash"],
            hash.as_str()
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }
    // The pods serve (busybox httpd answers; with no index page the answer is a 404).
    let ip = c.pod(&pods[0])["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    let out = c.in_node(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &format!("http://{ip}:8080/"),
        ],
    );
    let code = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(code != "000" && !code.is_empty(), "httpd on {ip}: {code}");

    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=web,reason=ScalingReplicaSet",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(&format!("Scaled up replica set web-{hash} from 0 to 3")),
        "{events}"
    );

    // A deleted pod is replaced by a new one.
    c.ok(&["delete", "pod", &pods[0], "--wait=false"]);
    c.wait_for("a replacement pod", Duration::from_secs(60), |c| {
        let now = live_pods(c, "app=web");
        now.len() == 3 && !now.contains(&pods[0])
    });
    wait_rolled_out(&c, "web", 3);

    // Scale up and down through the scale subresource.
    c.ok(&["scale", "deployment", "web", "--replicas=5"]);
    wait_rolled_out(&c, "web", 5);
    assert_eq!(live_pods(&c, "app=web").len(), 5);
    c.ok(&["scale", "deployment", "web", "--replicas=2"]);
    wait_rolled_out(&c, "web", 2);
    c.wait_for("two pods left", Duration::from_secs(60), |c| {
        c.json(&["get", "pods", "-l", "app=web"]).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    c.ok(&["scale", "deployment", "web", "--replicas=3"]);
    wait_rolled_out(&c, "web", 3);

    // A rolling update that may not lose a ready pod, watched from before it starts.
    c.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":0,"maxSurge":1}}}}"#,
    ]);
    let watch = PodWatch::start(&c, "app=web");
    c.wait_for("the watch's initial list", Duration::from_secs(20), |_| {
        watch.len() >= 3
    });
    c.ok(&[
        "set",
        "image",
        "deployment/web",
        &format!("busybox={IMAGE}:latest"),
    ]);
    let status = c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(
        status.contains("deployment \"web\" successfully rolled out"),
        "{status}"
    );
    wait_rolled_out(&c, "web", 3);
    c.wait_for("old pods gone", Duration::from_secs(60), |c| {
        c.json(&["get", "pods", "-l", "app=web"]).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
            == 3
    });
    let states = watch.stop();
    assert!(
        states.len() > 6,
        "the watch saw the rollout: {} events",
        states.len()
    );
    let min_ready = states
        .iter()
        .skip(3)
        .map(|s| s.values().filter(|p| ready_and_not_terminating(p)).count())
        .min()
        .unwrap();
    assert!(
        min_ready >= 3,
        "ready pods dropped to {min_ready} during the rollout"
    );
    let images: std::collections::BTreeSet<String> = states
        .last()
        .unwrap()
        .values()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(images, [format!("{IMAGE}:latest")].into());
    assert_eq!(
        deployment(&c, "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // History lists both revisions; undo goes back to the first template as revision 3.
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION"), "{history}");
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let rev1 = c.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(
        rev1.contains(&format!("Image:\t{IMAGE}\n"))
            || rev1.contains(&format!("Image:      {IMAGE}\n")),
        "{rev1}"
    );
    c.ok(&["rollout", "undo", "deployment/web"]);
    c.wait_for(
        "the template back at revision 1's",
        Duration::from_secs(30),
        |c| image_of(c, "web") == IMAGE,
    );
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_rolled_out(&c, "web", 3);
    let d = deployment(&c, "web");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let rs_names = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(
        rs_names.split_whitespace().count(),
        2,
        "undo reuses the first set: {rs_names}"
    );
    c.wait_for(
        "pods of the first template only",
        Duration::from_secs(60),
        |c| {
            let list = c.json(&["get", "pods", "-l", "app=web"]).unwrap();
            let items = list["items"].as_array().unwrap().clone();
            items.len() == 3
                && items
                    .iter()
                    .all(|p| p["metadata"]["labels"]["pod-template-hash"] == hash.as_str())
        },
    );

    // Paused: a change to a template no set has yet makes no new set until resumed. (One
    // back to an existing set's template would renumber that set, as upstream does.)
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&["set", "env", "deployment/web", "STEP=paused"]);
    c.wait_for("the paused condition", Duration::from_secs(30), |c| {
        let d = deployment(c, "web");
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && d["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "Progressing"
                        && c["status"] == "Unknown"
                        && c["reason"] == "DeploymentPaused"
                })
    });
    std::thread::sleep(Duration::from_secs(2));
    let d = deployment(&c, "web");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "3",
        "{d:#}"
    );
    // No set has the paused template: none of the pods is up to date, all still serve.
    assert!(
        d["status"]["updatedReplicas"].is_null(),
        "no rollout while paused: {:#}",
        d["status"]
    );
    assert_eq!(d["status"]["availableReplicas"], 3, "{:#}", d["status"]);
    let rs_now = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ]);
    assert_eq!(
        rs_now.split_whitespace().count(),
        2,
        "no new set while paused: {rs_now}"
    );
    let pods_paused = live_pods(&c, "app=web");
    assert!(
        pods_paused
            .iter()
            .all(|p| p.starts_with(&format!("web-{hash}-"))),
        "{pods_paused:?}"
    );
    c.ok(&["rollout", "resume", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_rolled_out(&c, "web", 3);
    assert_eq!(
        deployment(&c, "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "4"
    );

    // Restart: a new template annotation, so every pod is replaced.
    let before = live_pods(&c, "app=web");
    c.ok(&["rollout", "restart", "deployment/web"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_rolled_out(&c, "web", 3);
    c.wait_for("only restarted pods", Duration::from_secs(60), |c| {
        let now = live_pods(c, "app=web");
        now.len() == 3 && now.iter().all(|p| !before.contains(p))
    });

    // Deleting the deployment takes its sets and their pods with it.
    c.ok(&["delete", "deployment", "web"]);
    c.wait_for("sets and pods collected", Duration::from_secs(60), |c| {
        let sets = c.json(&["get", "rs", "-l", "app=web"]).unwrap();
        let pods = c.json(&["get", "pods", "-l", "app=web"]).unwrap();
        sets["items"].as_array().unwrap().is_empty() && pods["items"].as_array().unwrap().is_empty()
    });
}

#[test]
fn recreate_never_runs_old_and_new_pods_together() {
    let c = Cluster::start();
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: db\nspec:\n  replicas: 2\n  strategy:\n    type: Recreate\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"
    ));
    wait_rolled_out(&c, "db", 2);
    let watch = PodWatch::start(&c, "app=db");
    c.wait_for("the watch's initial list", Duration::from_secs(20), |_| {
        watch.len() >= 2
    });
    c.ok(&[
        "set",
        "image",
        "deployment/db",
        &format!("main={IMAGE}:latest"),
    ]);
    c.ok(&[
        "annotate",
        "deployment",
        "db",
        "kubernetes.io/change-cause=to latest",
    ]);
    c.ok(&["rollout", "status", "deployment/db", "--timeout=120s"]);
    wait_rolled_out(&c, "db", 2);
    c.wait_for("two pods", Duration::from_secs(60), |c| {
        c.json(&["get", "pods", "-l", "app=db"]).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let states = watch.stop();
    let hashes = |s: &std::collections::BTreeMap<String, serde_json::Value>| -> std::collections::BTreeSet<String> {
        s.values()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded") | Some("Failed")))
            .map(|p| p["metadata"]["labels"]["pod-template-hash"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let first = hashes(&states[1]);
    let last = hashes(states.last().unwrap());
    assert_eq!((first.len(), last.len()), (1, 1), "{first:?} {last:?}");
    assert_ne!(first, last, "the pods were replaced");
    for (i, s) in states.iter().enumerate() {
        assert!(
            hashes(s).len() <= 1,
            "old and new pods together at event {i}: {:?}",
            s.keys()
        );
    }
    // The change-cause annotation is copied to the revision's set, where history reads it.
    let history = c.ok(&["rollout", "history", "deployment/db"]);
    let rows: Vec<String> = history
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|r| r.parse::<u32>().is_ok())
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(rows, ["1 <none>", "2 to latest"], "{history}");
    // Old pods had all ended (gone from the API, or in a terminal phase, which is what
    // upstream's Recreate waits for) before a new one existed.
    let gone_at = states
        .iter()
        .position(|s| hashes(s).is_empty())
        .expect("a moment with no running pods at all");
    assert!(states[..gone_at]
        .iter()
        .all(|s| hashes(s).is_subset(&first)));
}

fn owner_kinds(c: &Cluster, pod: &str) -> Vec<String> {
    c.pod(pod)["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn bare_pod(name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [\"sleep\", \"1000\"]\n"
    )
}

#[test]
fn replica_sets_adopt_orphans_and_release_relabelled_pods() {
    let c = Cluster::start();
    c.apply(&bare_pod("orphan", "cache"));
    c.wait_phase("orphan", "Running");
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: cache\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: cache\n  template:\n    metadata:\n      labels:\n        app: cache\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sleep\", \"1000\"]\n"
    ));
    c.wait_for("the set at 2 ready", Duration::from_secs(60), |c| {
        let rs = c.json(&["get", "rs", "cache"]).unwrap();
        rs["status"]["readyReplicas"] == 2
            && rs["status"]["observedGeneration"] == rs["metadata"]["generation"]
    });
    // The orphan was taken in, so only one pod was made.
    assert_eq!(owner_kinds(&c, "orphan"), ["ReplicaSet"]);
    let pods = live_pods(&c, "app=cache");
    assert_eq!(pods.len(), 2, "{pods:?}");
    let made = pods.iter().find(|p| *p != "orphan").unwrap().clone();
    assert!(made.starts_with("cache-"), "{made}");
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=cache",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains(&format!("Created pod: {made}")), "{events}");

    // A pod relabelled out of the selector is let go and replaced.
    c.ok(&["label", "pod", "orphan", "app=elsewhere", "--overwrite"]);
    c.wait_for(
        "the relabelled pod released",
        Duration::from_secs(30),
        |c| owner_kinds(c, "orphan").is_empty(),
    );
    c.wait_for("a replacement", Duration::from_secs(60), |c| {
        live_pods(c, "app=cache").len() == 2
    });
    assert!(!live_pods(&c, "app=cache").contains(&"orphan".to_string()));

    // Scaling down deletes the surplus and says so.
    c.ok(&["scale", "rs", "cache", "--replicas=1"]);
    c.wait_for("one pod left", Duration::from_secs(60), |c| {
        c.json(&["get", "pods", "-l", "app=cache"]).unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
            == 1
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=cache,reason=SuccessfulDelete",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(events.contains("Deleted pod: cache-"), "{events}");

    // A ReplicationController runs the same way, with its equality selector.
    c.apply(&format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: legacy\nspec:\n  replicas: 2\n  selector:\n    app: legacy\n  template:\n    metadata:\n      labels:\n        app: legacy\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sleep\", \"1000\"]\n"
    ));
    c.wait_for("the controller at 2 ready", Duration::from_secs(60), |c| {
        c.json(&["get", "rc", "legacy"]).unwrap()["status"]["readyReplicas"] == 2
    });
    let pods = live_pods(&c, "app=legacy");
    assert_eq!(pods.len(), 2);
    assert_eq!(owner_kinds(&c, &pods[0]), ["ReplicationController"]);
    c.ok(&["scale", "rc", "legacy", "--replicas=3"]);
    c.wait_for("three", Duration::from_secs(60), |c| {
        c.json(&["get", "rc", "legacy"]).unwrap()["status"]["readyReplicas"] == 3
    });
    c.ok(&["delete", "rc", "legacy"]);
    c.ok(&["delete", "rs", "cache"]);
    c.wait_for("pods collected", Duration::from_secs(60), |c| {
        c.json(&["get", "pods", "-l", "app in (legacy,cache)"])
            .unwrap()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    c.ok(&["delete", "pod", "orphan", "--wait=true"]);
}

#[test]
fn a_rollout_that_never_gets_ready_exceeds_its_progress_deadline() {
    let c = Cluster::start();
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: stuck\nspec:\n  replicas: 1\n  progressDeadlineSeconds: 5\n  selector:\n    matchLabels:\n      app: stuck\n  template:\n    metadata:\n      labels:\n        app: stuck\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"sleep\", \"1000\"]\n        readinessProbe:\n          exec:\n            command: [\"false\"]\n          periodSeconds: 1\n"
    ));
    let out = c.kubectl(&["rollout", "status", "deployment/stuck", "--timeout=120s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("deployment \"stuck\" exceeded its progress deadline"),
        "{stderr}"
    );
    let d = deployment(&c, "stuck");
    let conds = d["status"]["conditions"].as_array().unwrap();
    let progressing = conds.iter().find(|c| c["type"] == "Progressing").unwrap();
    assert_eq!(progressing["status"], "False");
    assert_eq!(progressing["reason"], "ProgressDeadlineExceeded");
    let msg = progressing["message"].as_str().unwrap();
    assert!(
        msg.starts_with("ReplicaSet \"stuck-") && msg.ends_with("\" has timed out progressing."),
        "{msg}"
    );
    let available = conds.iter().find(|c| c["type"] == "Available").unwrap();
    assert_eq!(
        available["reason"], "MinimumReplicasUnavailable",
        "{available}"
    );
    assert_eq!(
        available["message"],
        "Deployment does not have minimum availability."
    );
    c.ok(&["delete", "deployment", "stuck"]);
}

// After the restart every controller starts from empty caches while the pods and sets are
// mid-change; the rollout must still complete (it once hung here: see controllers::listed).
#[test]
fn a_rollout_interrupted_by_a_server_restart_finishes() {
    let mut c = Cluster::start();
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  annotations:\n    kubernetes.io/change-cause: first\nspec:\n  replicas: 3\n  strategy:\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n  selector:\n    matchLabels:\n      app: api\n  template:\n    metadata:\n      labels:\n        app: api\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        command: [\"httpd\", \"-f\", \"-p\", \"8080\"]\n"
    ));
    wait_rolled_out(&c, "api", 3);
    c.ok(&[
        "set",
        "image",
        "deployment/api",
        &format!("main={IMAGE}:latest"),
    ]);
    // The cause after the change, as `--record` used to write it: the current set takes the
    // Deployment's annotations at each sync.
    c.ok(&[
        "annotate",
        "deployment",
        "api",
        "kubernetes.io/change-cause=second",
        "--overwrite",
    ]);
    c.wait_for("the rollout under way", Duration::from_secs(30), |c| {
        deployment(c, "api")["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    });
    c.kill9();
    c.start_again();
    let out = c.kubectl(&["rollout", "status", "deployment/api", "--timeout=120s"]);
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    if !status.contains("successfully rolled out") {
        let state = c.kubectl(&["get", "deploy,rs,pods", "-o", "yaml"]);
        panic!(
            "{status}\n{}\nstate:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout)
        );
    }
    wait_rolled_out(&c, "api", 3);
    c.wait_for("only new pods", Duration::from_secs(60), |c| {
        let list = c.json(&["get", "pods", "-l", "app=api"]).unwrap();
        let items = list["items"].as_array().unwrap().clone();
        items.len() == 3
            && items
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == format!("{IMAGE}:latest"))
    });
    // The change-cause annotation is copied to each revision's set, where history reads it.
    let history = c.ok(&["rollout", "history", "deployment/api"]);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|r| r.parse::<u32>().is_ok()))
        .collect();
    assert_eq!(rows, [vec!["1", "first"], vec!["2", "second"]], "{history}");
    c.ok(&["delete", "deployment", "api"]);
}
