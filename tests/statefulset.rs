//! The StatefulSet controller on a one-node cluster in a network namespace of the test's own,
//! driven with the real kubectl: pods made in order under stable names and hostnames, each with
//! its claim; a deleted or failed pod back under its name; scale-down from the top that keeps
//! the claims; rolling updates from the top that respect the partition; rollout
//! status/history/undo.

mod node_support;

use node_support::{Cluster, IMAGE, KUBECTL};
use serde_json::Value;
use std::process::{Child, Stdio};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn statefulset(replicas: i32, env: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sleep", "3600"]
        env:
        - name: V
          value: "{env}"
        readinessProbe:
          exec:
            command: ["true"]
          initialDelaySeconds: 1
          periodSeconds: 1
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: ["ReadWriteOnce"]
      resources:
        requests:
          storage: 1Mi
"#
    )
}

/// `kubectl get pods --watch` in the background, its events kept in order.
struct Watch {
    child: Child,
    out: std::path::PathBuf,
}

impl Watch {
    fn start(c: &Cluster, name: &str) -> Watch {
        let out = c.dir.path().join(format!("{name}.watch"));
        let child = c
            .kubectl_command(KUBECTL)
            .args([
                "get",
                "pods",
                "-l",
                "app=web",
                "--watch",
                "--output-watch-events",
            ])
            .args(["-o", "json"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Watch { child, out }
    }

    /// (event type, pod) in the order the server sent them.
    fn events(&self) -> Vec<(String, Value)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map_while(Result::ok)
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or("").to_string(),
                    e["object"].clone(),
                )
            })
            .collect()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn name(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().unwrap_or("")
}

/// Index of the first event matching `f`.
fn first(events: &[(String, Value)], f: impl Fn(&str, &Value) -> bool) -> Option<usize> {
    events.iter().position(|(t, p)| f(t, p))
}

fn sts(c: &Cluster) -> Value {
    c.json(&["get", "statefulset", "web"])
        .expect("statefulset web")
}

fn wait_ready_replicas(c: &Cluster, n: i64) {
    c.wait_for(&format!("{n} ready replicas"), LONG, |c| {
        let s = sts(c);
        s["status"]["readyReplicas"].as_i64().unwrap_or(0) == n
            && s["status"]["replicas"].as_i64() == Some(n)
    });
}

fn uid(c: &Cluster, pod: &str) -> String {
    c.pod(pod)["metadata"]["uid"].as_str().unwrap().to_string()
}

fn revision(c: &Cluster, pod: &str) -> String {
    c.pod(pod)["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn ordered_pods_with_stable_names_claims_and_scale_down() {
    let c = Cluster::start();
    let watch = Watch::start(&c, "create");
    c.apply(&statefulset(3, "1"));
    wait_ready_replicas(&c, 3);

    // OrderedReady: web-1 appears only after web-0 is Ready, web-2 after web-1.
    let ev = watch.events();
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let prev_ready = first(&ev, |_, p| name(p) == prev && ready(p)).expect(prev);
        let next_seen = first(&ev, |_, p| name(p) == next).expect(next);
        assert!(
            prev_ready < next_seen,
            "{next} was created before {prev} was Ready"
        );
    }

    // Stable identity: hostname, /etc/hosts entry under the service, labels, claim volumes.
    let host = c.ok(&["exec", "web-1", "--", "hostname"]);
    assert_eq!(host.trim(), "web-1");
    let hosts = c.ok(&["exec", "web-1", "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains("web-1.nginx.default.svc."), "{hosts}");
    let s = sts(&c);
    for i in 0..3 {
        let pod = c.pod(&format!("web-{i}"));
        let labels = &pod["metadata"]["labels"];
        assert_eq!(
            labels["statefulset.kubernetes.io/pod-name"],
            format!("web-{i}")
        );
        assert_eq!(labels["apps.kubernetes.io/pod-index"], i.to_string());
        assert_eq!(
            labels["controller-revision-hash"],
            s["status"]["updateRevision"]
        );
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (owner["kind"].as_str(), owner["controller"].as_bool()),
            (Some("StatefulSet"), Some(true))
        );
        let vols = pod["spec"]["volumes"].as_array().unwrap();
        assert!(
            vols.iter().any(|v| v["name"] == "www"
                && v["persistentVolumeClaim"]["claimName"] == format!("www-web-{i}")),
            "{vols:?}"
        );
        let claim = c
            .json(&["get", "pvc", &format!("www-web-{i}")])
            .expect("claim");
        assert_eq!(claim["metadata"]["labels"]["app"], "web");
    }

    // A deleted pod comes back under its name, as a new pod.
    let old = uid(&c, "web-1");
    c.ok(&["delete", "pod", "web-1", "--wait=false"]);
    c.wait_for("web-1 to come back", LONG, |c| {
        c.json(&["get", "pod", "web-1"])
            .is_some_and(|p| p["metadata"]["uid"] != old.as_str() && ready(&p))
    });

    // So does one that failed (its phase set as a node would on eviction).
    let old = uid(&c, "web-0");
    c.ok(&[
        "patch",
        "pod",
        "web-0",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Failed"}}"#,
    ]);
    c.wait_for("web-0 to be recreated", LONG, |c| {
        c.json(&["get", "pod", "web-0"])
            .is_some_and(|p| p["metadata"]["uid"] != old.as_str())
    });
    let events = c.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=RecreatingFailedPod",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("StatefulSet default/web is recreating failed Pod web-0"),
        "{events}"
    );
    wait_ready_replicas(&c, 3);

    // Scale down: web-2 goes first, web-1 only once web-2 is gone; the claims stay.
    let watch = Watch::start(&c, "scale");
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    c.wait_for("scale down to 1", LONG, |c| {
        c.json(&["get", "pods", "-l", "app=web"])
            .is_some_and(|l| l["items"].as_array().map(Vec::len) == Some(1))
    });
    wait_ready_replicas(&c, 1);
    let ev = watch.events();
    let gone2 = first(&ev, |t, p| t == "DELETED" && name(p) == "web-2").expect("web-2 deleted");
    let stop1 = first(&ev, |_, p| {
        name(p) == "web-1" && !p["metadata"]["deletionTimestamp"].is_null()
    })
    .expect("web-1 deleted");
    assert!(gone2 < stop1, "web-1 was deleted before web-2 was gone");
    for i in 0..3 {
        assert!(
            c.json(&["get", "pvc", &format!("www-web-{i}")]).is_some(),
            "claim www-web-{i} kept"
        );
    }
}

#[test]
fn rolling_update_partition_and_rollout_history_undo() {
    let c = Cluster::start();
    c.apply(&statefulset(3, "1"));
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let first_rev = sts(&c)["status"]["updateRevision"]
        .as_str()
        .unwrap()
        .to_string();

    // Partition 2: only web-2 moves to the new template.
    c.ok(&[
        "patch",
        "statefulset",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
    ]);
    c.ok(&["set", "env", "statefulset/web", "V=2"]);
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    assert!(
        out.contains("partitioned roll out complete: 1 new pods have been updated"),
        "{out}"
    );
    let s = sts(&c);
    let second_rev = s["status"]["updateRevision"].as_str().unwrap().to_string();
    assert_ne!(second_rev, first_rev);
    assert_eq!(s["status"]["currentRevision"], first_rev.as_str());
    assert_eq!(revision(&c, "web-2"), second_rev);
    assert_eq!(revision(&c, "web-1"), first_rev);
    assert_eq!(revision(&c, "web-0"), first_rev);

    // Partition 0: the rest, from the top down.
    let watch = Watch::start(&c, "update");
    c.ok(&[
        "patch",
        "statefulset",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    let out = c.ok(&["rollout", "status", "statefulset/web", "--timeout=120s"]);
    assert!(
        out.contains("partitioned roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let ev = watch.events();
    let stop = |pod: &str| {
        first(&ev, |_, p| {
            name(p) == pod && !p["metadata"]["deletionTimestamp"].is_null()
        })
        .unwrap_or_else(|| panic!("{pod} was not replaced"))
    };
    let back1 = first(&ev, |_, p| {
        name(p) == "web-1"
            && p["metadata"]["labels"]["controller-revision-hash"] == second_rev.as_str()
            && ready(p)
    })
    .expect("web-1 updated and ready");
    assert!(
        stop("web-1") < back1 && back1 < stop("web-0"),
        "web-0 was replaced before web-1 was back"
    );
    c.wait_for("current revision to be the new one", LONG, |c| {
        sts(c)["status"]["currentRevision"] == second_rev.as_str()
    });
    let env = c.ok(&["exec", "web-0", "--", "sh", "-c", "echo $V"]);
    assert_eq!(env.trim(), "2");

    // History: two revisions, the second holding V=2.
    let history = c.ok(&["rollout", "history", "statefulset/web"]);
    let numbers: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(numbers, vec!["1", "2"], "{history}");
    let two = c.ok(&["rollout", "history", "statefulset/web", "--revision=2"]);
    assert!(
        two.contains("V:\t2") || two.contains("V: 2") || two.contains("V:      2"),
        "{two}"
    );

    // Undo: back to the first template, which becomes revision 3.
    let out = c.ok(&["rollout", "undo", "statefulset/web"]);
    assert!(out.contains("rolled back"), "{out}");
    c.wait_for("undo to finish", LONG, |c| {
        let s = sts(c);
        s["status"]["currentRevision"] == first_rev.as_str()
            && s["status"]["updatedReplicas"] == 3
            && s["status"]["readyReplicas"] == 3
    });
    let env = c.ok(&["exec", "web-0", "--", "sh", "-c", "echo $V"]);
    assert_eq!(env.trim(), "1");
    let rev = c
        .json(&["get", "controllerrevision", &first_rev])
        .expect("revision");
    assert_eq!(rev["revision"], 3);
}

#[test]
fn claim_retention_policy_delete_follows_scale_down_and_deletion() {
    let c = Cluster::start();
    let yaml = statefulset(2, "1").replace(
        "  volumeClaimTemplates:",
        "  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Delete\n  volumeClaimTemplates:",
    );
    c.apply(&yaml);
    wait_ready_replicas(&c, 2);
    let set_uid = sts(&c)["metadata"]["uid"].as_str().unwrap().to_string();
    // In range, the set controls the claims.
    c.wait_for("claims owned by the set", LONG, |c| {
        (0..2).all(|i| {
            c.json(&["get", "pvc", &format!("www-web-{i}")])
                .is_some_and(|p| p["metadata"]["ownerReferences"][0]["uid"] == set_uid.as_str())
        })
    });
    // Scaled away, the claim goes with its pod.
    c.ok(&["scale", "statefulset", "web", "--replicas=1"]);
    c.wait_for("www-web-1 to be collected", LONG, |c| {
        c.json(&["get", "pvc", "www-web-1"]).is_none()
    });
    assert!(c.json(&["get", "pvc", "www-web-0"]).is_some());
    // Deleting the set takes the remaining claim with it.
    c.ok(&["delete", "statefulset", "web"]);
    c.wait_for("www-web-0 to be collected", LONG, |c| {
        c.json(&["get", "pvc", "www-web-0"]).is_none()
    });
}

#[test]
fn an_orphan_pod_with_a_member_name_is_adopted() {
    let c = Cluster::start();
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-0\n  labels:\n    app: web\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sleep\", \"3600\"]\n"
    ));
    c.wait_phase("web-0", "Running");
    let orphan = uid(&c, "web-0");
    let yaml = statefulset(1, "1").replace(
        "  volumeClaimTemplates:",
        "  updateStrategy:\n    type: OnDelete\n  volumeClaimTemplates:",
    );
    c.apply(&yaml);
    let set_uid = sts(&c)["metadata"]["uid"].as_str().unwrap().to_string();
    c.wait_for("web-0 to be adopted", LONG, |c| {
        let p = c.pod("web-0");
        p["metadata"]["ownerReferences"][0]["uid"] == set_uid.as_str()
            && p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-0"
    });
    // The same pod, not a replacement.
    assert_eq!(uid(&c, "web-0"), orphan);
}
