//! Jobs, CronJobs and DaemonSets on a one-node cluster in a network namespace of the test's
//! own, driven and checked with the real kubectl.

mod node_support;

use node_support::{Cluster, IMAGE, KUBECTL};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

fn job_yaml(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        imagePullPolicy: IfNotPresent\n        command: [\"sh\", \"-c\", {command:?}]\n"
    )
}

fn condition(job: &Value, ty: &str) -> Option<Value> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
        .cloned()
}

fn wait_condition(c: &Cluster, job: &str, ty: &str, secs: u64) -> Value {
    let mut found = None;
    c.wait_for(&format!("job {job} {ty}"), Duration::from_secs(secs), |c| {
        found = c.json(&["get", "job", job]).and_then(|j| condition(&j, ty));
        found.is_some()
    });
    found.unwrap()
}

fn job_pods(c: &Cluster, job: &str) -> Vec<Value> {
    c.json(&[
        "get",
        "pods",
        "-l",
        &format!("batch.kubernetes.io/job-name={job}"),
    ])
    .map(|l| l["items"].as_array().cloned().unwrap_or_default())
    .unwrap_or_default()
}

#[test]
fn jobs_complete_fail_and_follow_their_spec() {
    let c = Cluster::start();

    // completions 3, parallelism 2: a watch over the Job's pods never sees 3 running.
    let watch_log = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let mut watch = c
        .kubectl_command(KUBECTL)
        .args([
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=three",
            "--watch",
            "-o",
            "json",
        ])
        // A file, not a pipe: nobody reads until the end, and a full pipe would stall
        // kubectl and cut its output short.
        .stdout(std::fs::File::create(&watch_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    c.apply(&job_yaml(
        "three",
        "  completions: 3\n  parallelism: 2\n",
        "sleep 2",
    ));
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=90s",
    ]);
    let job = c.json(&["get", "job", "three"]).unwrap();
    assert_eq!(job["status"]["succeeded"], 3, "{:#}", job["status"]);
    assert_eq!(
        job["status"]["uncountedTerminatedPods"],
        serde_json::json!({})
    );
    assert!(job["status"]["completionTime"].is_string());
    assert!(condition(&job, "SuccessCriteriaMet").is_some());
    let table = c.ok(&["get", "job", "three"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["three", "Complete", "3/3"], "{table}");
    assert!(row[3].ends_with('s'), "DURATION: {table}");
    std::thread::sleep(Duration::from_secs(1));
    let _ = watch.kill();
    watch.wait().unwrap();
    let text = std::fs::read_to_string(&watch_log).unwrap();
    let mut active: BTreeSet<String> = BTreeSet::new();
    let mut most = 0;
    let mut seen = BTreeSet::new();
    for pod in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
        // The last object may be cut short by the kill.
        let Ok(pod) = pod else { break };
        let name = pod["metadata"]["name"].as_str().unwrap().to_string();
        seen.insert(name.clone());
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed")
            || pod["metadata"]["deletionTimestamp"].is_string()
        {
            active.remove(&name);
        } else {
            active.insert(name);
        }
        most = most.max(active.len());
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(most, 2, "at most parallelism pods at once");
    // Pods as upstream labels and owns them; counted pods lose the tracking finalizer.
    let uid = job["metadata"]["uid"].as_str().unwrap();
    for p in job_pods(&c, "three") {
        let m = &p["metadata"];
        assert_eq!(m["labels"]["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(m["labels"]["controller-uid"], uid);
        assert_eq!(m["labels"]["job-name"], "three");
        assert!(m["name"].as_str().unwrap().starts_with("three-"));
        assert_eq!(m["ownerReferences"][0]["kind"], "Job");
        assert_eq!(m["ownerReferences"][0]["controller"], true);
        assert!(m["finalizers"].is_null(), "{m:#}");
    }

    // A failing Job stops at backoffLimit (one retry after a 10 s backoff).
    c.apply(&job_yaml("fails", "  backoffLimit: 1\n", "exit 3"));
    let failed = wait_condition(&c, "fails", "Failed", 90);
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    let job = c.json(&["get", "job", "fails"]).unwrap();
    assert_eq!(job["status"]["failed"], 2, "{:#}", job["status"]);
    assert!(condition(&job, "FailureTarget").is_some());
    // The story as events tell it.
    let events = c.json(&["get", "events"]).unwrap();
    let reasons: Vec<String> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == "fails")
        .map(|e| {
            format!(
                "{} {}",
                e["reason"].as_str().unwrap_or(""),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("SuccessfulCreate Created pod: fails-")),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(
            &"BackoffLimitExceeded Job has reached the specified backoff limit".to_string()
        ),
        "{reasons:?}"
    );
    let table = c.ok(&["get", "job", "fails"]);
    assert!(table.lines().nth(1).unwrap().contains("Failed"), "{table}");

    // A podFailurePolicy FailJob rule ends the Job at the first matching exit code, whatever
    // backoffLimit allows.
    c.apply(&job_yaml(
        "policy",
        "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes:\n        containerName: main\n        operator: In\n        values: [42]\n",
        "exit 42",
    ));
    let failed = wait_condition(&c, "policy", "Failed", 60);
    assert_eq!(failed["reason"], "PodFailurePolicy");
    let pod = job_pods(&c, "policy")[0]["metadata"]["name"].clone();
    assert_eq!(
        failed["message"],
        format!(
            "Container main for pod default/{} failed with exit code 42 matching FailJob rule at index 0",
            pod.as_str().unwrap()
        )
    );
    assert_eq!(job_pods(&c, "policy").len(), 1, "no retry after FailJob");

    // activeDeadlineSeconds stops a Job that runs too long.
    c.apply(&job_yaml(
        "slow",
        "  activeDeadlineSeconds: 3\n",
        "sleep 100",
    ));
    let failed = wait_condition(&c, "slow", "Failed", 60);
    assert_eq!(failed["reason"], "DeadlineExceeded");
    assert_eq!(
        failed["message"],
        "Job was active longer than specified deadline"
    );

    // Indexed: each pod gets its index as annotation, label, hostname and environment.
    c.apply(&job_yaml(
        "indexed",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
    ));
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=90s",
    ]);
    let job = c.json(&["get", "job", "indexed"]).unwrap();
    assert_eq!(job["status"]["completedIndexes"], "0-2");
    let mut got = BTreeSet::new();
    for p in job_pods(&c, "indexed") {
        let name = p["metadata"]["name"].as_str().unwrap();
        let i = p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"],
            i.as_str()
        );
        let logs = c.ok(&["logs", name]);
        assert_eq!(logs.trim(), format!("index={i} host=indexed-{i}"));
        got.insert(i);
    }
    assert_eq!(got, ["0", "1", "2"].map(String::from).into());

    // Suspended: no pods until resumed.
    c.apply(&job_yaml("later", "  suspend: true\n", "true"));
    let s = wait_condition(&c, "later", "Suspended", 30);
    assert_eq!(s["reason"], "JobSuspended");
    std::thread::sleep(Duration::from_secs(2));
    assert!(job_pods(&c, "later").is_empty());
    c.ok(&[
        "patch",
        "job",
        "later",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/later",
        "--timeout=60s",
    ]);

    // ttlSecondsAfterFinished: the Job and its pod go once it expires.
    c.apply(&job_yaml("brief", "  ttlSecondsAfterFinished: 2\n", "true"));
    c.wait_for("the finished job deleted", Duration::from_secs(60), |c| {
        c.kubectl(&["get", "job", "brief"]).status.code() == Some(1)
    });
    c.wait_for("its pod deleted", Duration::from_secs(30), |c| {
        job_pods(c, "brief").is_empty()
    });
}

#[test]
fn cronjob_runs_on_schedule_without_overlap_when_forbidden() {
    let c = Cluster::start();
    c.apply(&format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"* * * * *\"\n  concurrencyPolicy: Forbid\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          terminationGracePeriodSeconds: 1\n          containers:\n          - name: main\n            image: {IMAGE}\n            imagePullPolicy: IfNotPresent\n            command: [\"sleep\", \"150\"]\n"
    ));
    let mut first = String::new();
    c.wait_for("the first scheduled job", Duration::from_secs(75), |c| {
        let names = c.ok(&["get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"]);
        first = names.trim().to_string();
        !first.is_empty()
    });
    // Named after the scheduled minute, owned by the CronJob, which lists it as active.
    let cj = c.json(&["get", "cronjob", "tick"]).unwrap();
    let scheduled = cj["status"]["lastScheduleTime"].as_str().unwrap();
    let t: k8s_openapi::jiff::Timestamp = scheduled.parse().unwrap();
    assert_eq!(first, format!("tick-{}", t.as_second() / 60));
    assert_eq!(cj["status"]["active"][0]["name"], first.as_str());
    let job = c.json(&["get", "job", &first]).unwrap();
    assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    // The next minute passes while the first still runs: Forbid starts nothing.
    std::thread::sleep(Duration::from_secs(62));
    let names = c.ok(&["get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"]);
    assert_eq!(names.trim(), first, "Forbid must not start a second run");

    // kubectl's client-side --from=cronjob makes a Job from the template.
    c.ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    let job = c.json(&["get", "job", "by-hand"]).unwrap();
    assert_eq!(
        job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );
    c.wait_for("the manual job's pod", Duration::from_secs(30), |c| {
        !job_pods(c, "by-hand").is_empty()
    });
}

#[test]
fn daemonset_lands_on_the_node_and_rolls_out() {
    let c = Cluster::start();
    let ds = |version: &str| {
        format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels:\n      app: agent\n  template:\n    metadata:\n      labels:\n        app: agent\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        imagePullPolicy: IfNotPresent\n        command: [\"sleep\", \"1000\"]\n        env:\n        - name: VERSION\n          value: \"{version}\"\n"
        )
    };
    c.apply(&ds("1"));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=60s"]);
    let pods = c.json(&["get", "pods", "-l", "app=agent"]).unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let p = &items[0];
    assert_eq!(p["spec"]["nodeName"], "node1");
    assert_eq!(
        p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0],
        "node1"
    );
    let tolerations = p["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/unreachable"),
        "{tolerations}"
    );
    let first_hash = p["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap()
        .to_string();
    let status = c.json(&["get", "ds", "agent"]).unwrap()["status"].clone();
    assert_eq!(status["desiredNumberScheduled"], 1, "{status:#}");
    assert_eq!(status["numberReady"], 1, "{status:#}");

    c.apply(&ds("2"));
    c.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    c.wait_for(
        "one pod of the new revision",
        Duration::from_secs(30),
        |c| {
            let pods = c.json(&["get", "pods", "-l", "app=agent"]).unwrap();
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            items.len() == 1
                && items[0]["metadata"]["labels"]["controller-revision-hash"] != first_hash.as_str()
        },
    );
    let revs = c.ok(&[
        "get",
        "controllerrevisions",
        "-o",
        "jsonpath={.items[*].revision}",
    ]);
    assert_eq!(
        revs.split_whitespace().collect::<BTreeSet<_>>(),
        ["1", "2"].into()
    );
    let history = c.ok(&["rollout", "history", "ds/agent"]);
    assert!(history.contains('2'), "{history}");

    // Undo brings the first template back; its revision becomes the newest.
    c.ok(&["rollout", "undo", "ds/agent"]);
    c.ok(&["rollout", "status", "ds/agent", "--timeout=90s"]);
    c.wait_for(
        "the first revision's pod again",
        Duration::from_secs(30),
        |c| {
            let pods = c.json(&["get", "pods", "-l", "app=agent"]).unwrap();
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            items.len() == 1
                && items[0]["metadata"]["labels"]["controller-revision-hash"] == first_hash.as_str()
        },
    );
    let rev = c.ok(&[
        "get",
        "controllerrevision",
        &format!("agent-{first_hash}"),
        "-o",
        "jsonpath={.revision}",
    ]);
    assert_eq!(rev, "3");
}

#[test]
fn daemonset_reaches_a_node_that_joins_later() {
    let mut c = Cluster::start_nodes(2);
    // node2 leaves (its agent stopped, its Node deleted) before the DaemonSet exists.
    c.kill9_agent("node2");
    c.ok(&["delete", "node", "node2"]);
    c.apply(&format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: everywhere\nspec:\n  selector:\n    matchLabels:\n      app: everywhere\n  template:\n    metadata:\n      labels:\n        app: everywhere\n    spec:\n      terminationGracePeriodSeconds: 1\n      containers:\n      - name: main\n        image: {IMAGE}\n        imagePullPolicy: IfNotPresent\n        command: [\"sleep\", \"1000\"]\n"
    ));
    c.ok(&["rollout", "status", "ds/everywhere", "--timeout=60s"]);
    let nodes_with_pods = |c: &Cluster| -> BTreeSet<String> {
        let pods = c.json(&["get", "pods", "-l", "app=everywhere"]).unwrap();
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(nodes_with_pods(&c), ["node1".to_string()].into());

    // The node registers again: the DaemonSet follows it there.
    c.start_agent_again("node2");
    c.wait_ready("node2");
    c.wait_for(
        "a daemon pod running on node2",
        Duration::from_secs(60),
        |c| nodes_with_pods(c) == ["node1".to_string(), "node2".to_string()].into(),
    );
    let status = c.json(&["get", "ds", "everywhere"]).unwrap()["status"].clone();
    assert_eq!(status["desiredNumberScheduled"], 2, "{status:#}");
    c.ok(&["rollout", "status", "ds/everywhere", "--timeout=60s"]);
}
