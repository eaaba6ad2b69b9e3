//! The audit log (--audit-log-path, --audit-policy-file, --audit-log-max*) of a real server,
//! driven by real kubectl and curl: what is logged at which level, stage by stage, and the
//! file's rotation.

mod api_support;

use api_support::{eventually, raw, Server};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: Metadata
  resources:
  - group: ""
    resources: ["configmaps"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets"]
  omitStages: ["RequestReceived"]
- level: Metadata
  namespaces: ["psa"]
  resources:
  - group: ""
    resources: ["pods"]
- level: None
"#;

const ADMIN: &str = "system:admin";

/// A server logging to `<dir>/audit.log` under `policy`, with more flags.
fn start(dir: &Path, policy: &str, extra: &[&str]) -> (Server, PathBuf) {
    let log = dir.join("audit.log");
    let policy_file = dir.join("policy.yaml");
    std::fs::write(&policy_file, policy).unwrap();
    let mut args = vec![
        "--audit-log-path".to_string(),
        log.display().to_string(),
        "--audit-policy-file".to_string(),
        policy_file.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start_with(&args), log)
}

fn events(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn by(events: &[Value], user: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e["user"]["username"] == user)
        .cloned()
        .collect()
}

/// The ResponseComplete event of `verb` on `name` by `user`, once it is written.
fn complete(log: &Path, user: &str, verb: &str, resource: &str, name: &str) -> Value {
    for _ in 0..200 {
        let found = by(&events(log), user).into_iter().find(|e| {
            e["stage"] == "ResponseComplete"
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["objectRef"]["name"] == name
        });
        if let Some(e) = found {
            return e;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    panic!("no ResponseComplete of {user} {verb} {resource} {name}; last lines: {tail:#?}");
}

fn audit_id_of(headers: &str) -> String {
    headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("audit-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Audit-Id header in {headers}"))
}

#[test]
fn events_follow_the_policy_stage_by_stage() {
    let dir = tempfile::tempdir().unwrap();
    let (s, log) = start(dir.path(), POLICY, &[]);
    s.ok(&["create", "namespace", "audit-ns"]);
    s.ok(&[
        "create",
        "configmap",
        "cm1",
        "-n",
        "audit-ns",
        "--from-literal=k=v",
    ]);
    s.ok(&["get", "configmap", "cm1", "-n", "audit-ns"]);
    let err = s.fails(&["get", "configmap", "missing", "-n", "audit-ns"]);
    assert!(err.contains("not found"), "{err}");
    s.ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "-n",
        "audit-ns",
        "--from-literal=password=hunter2",
    ]);
    s.ok(&["delete", "configmap", "cm1", "-n", "audit-ns"]);

    // Impersonation: the event names who authenticated and whom they acted as.
    s.ok(&[
        "--as",
        "bob",
        "--as-group",
        "system:masters",
        "create",
        "configmap",
        "cm-bob",
        "-n",
        "audit-ns",
    ]);
    let as_bob = complete(&log, ADMIN, "create", "configmaps", "cm-bob");
    assert_eq!(as_bob["impersonatedUser"]["username"], "bob", "{as_bob}");
    assert!(
        as_bob["impersonatedUser"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "system:masters"),
        "{as_bob}"
    );
    let create = complete(&log, ADMIN, "create", "configmaps", "cm1");
    assert!(create.get("impersonatedUser").is_none(), "{create}");
    assert_eq!(create["kind"], "Event");
    assert_eq!(create["apiVersion"], "audit.k8s.io/v1");
    assert_eq!(create["level"], "Metadata");
    assert_eq!(create["responseStatus"]["code"], 201);
    assert_eq!(create["objectRef"]["namespace"], "audit-ns");
    assert_eq!(create["objectRef"]["apiVersion"], "v1");
    assert_eq!(create["objectRef"]["apiGroup"], "");
    assert!(create.get("requestObject").is_none(), "{create}");
    assert!(create.get("responseObject").is_none(), "{create}");
    assert!(create["userAgent"]
        .as_str()
        .is_some_and(|ua| ua.starts_with("kubectl/")));
    assert_eq!(create["sourceIPs"], serde_json::json!(["127.0.0.1"]));
    assert!(create["user"]["groups"]
        .as_array()
        .unwrap()
        .contains(&"system:masters".into()));
    assert_eq!(
        create["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );
    // RFC 3339 with microseconds.
    let ts = create["stageTimestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2026-12-03T16:48:09.123456Z".len(), "{ts}");
    assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");

    let get = complete(&log, ADMIN, "get", "configmaps", "cm1");
    assert_eq!(get["responseStatus"]["code"], 200);
    let missing = complete(&log, ADMIN, "get", "configmaps", "missing");
    assert_eq!(missing["responseStatus"]["code"], 404);
    assert_eq!(missing["responseStatus"]["reason"], "NotFound");
    let delete = complete(&log, ADMIN, "delete", "configmaps", "cm1");
    assert_eq!(delete["responseStatus"]["code"], 200);

    let secret = complete(&log, ADMIN, "create", "secrets", "s1");
    assert_eq!(secret["level"], "RequestResponse");
    assert_eq!(secret["responseStatus"]["code"], 201);
    assert_eq!(secret["requestObject"]["kind"], "Secret");
    assert_eq!(secret["requestObject"]["data"]["password"], "aHVudGVyMg==");
    assert_eq!(secret["responseObject"]["metadata"]["name"], "s1");

    // Admission's audit annotations: PodSecurity in audit mode.
    s.ok(&["create", "namespace", "psa"]);
    s.ok(&[
        "label",
        "namespace",
        "psa",
        "pod-security.kubernetes.io/audit=restricted",
    ]);
    s.ok(&["run", "p1", "-n", "psa", "--image=nanokube/busybox:latest"]);
    let pod = complete(&log, ADMIN, "create", "pods", "p1");
    let violations = pod["annotations"]["pod-security.kubernetes.io/audit-violations"]
        .as_str()
        .unwrap_or_else(|| panic!("{pod}"));
    assert!(
        violations.contains("would violate PodSecurity \"restricted:latest\""),
        "{violations}"
    );

    // A refused request: a 403 with the authorizer's decision. The join token's bootstrap
    // user may only ask for certificates.
    let token = std::fs::read_to_string(s.data_dir().join("server/node-token")).unwrap();
    let token = token.trim();
    let (code, _, headers) = raw::curl(
        &s,
        &format!("token:{token}"),
        "GET",
        "/api/v1/namespaces/audit-ns/secrets/s1",
        "application/json",
        None,
    );
    assert_eq!(code, 403);
    let id = audit_id_of(&headers);
    let refused = eventually(20, || {
        events(&log)
            .into_iter()
            .find(|e| e["auditID"] == id.as_str() && e["stage"] == "ResponseComplete")
    });
    assert_eq!(refused["user"]["username"], "system:bootstrap:nanokube");
    assert_eq!(refused["verb"], "get");
    assert_eq!(refused["responseStatus"]["code"], 403);
    assert_eq!(refused["responseStatus"]["reason"], "Forbidden");
    assert_eq!(
        refused["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );

    // A watch: ResponseStarted when the stream begins, ResponseComplete when the client leaves.
    let (_, _, headers) = raw::curl_args(
        &s,
        "admin",
        "GET",
        "/api/v1/namespaces/audit-ns/configmaps?watch=true",
        &["--max-time".to_string(), "2".to_string()],
    );
    let watch_id = audit_id_of(&headers);
    let stages = eventually(20, || {
        let stages: Vec<String> = events(&log)
            .iter()
            .filter(|e| e["auditID"] == watch_id.as_str())
            .map(|e| e["stage"].as_str().unwrap().to_string())
            .collect();
        (stages.len() == 3).then_some(stages)
    });
    assert_eq!(
        stages,
        ["RequestReceived", "ResponseStarted", "ResponseComplete"]
    );

    // Every logged request: one ResponseComplete; RequestReceived except where omitted
    // (secrets); nothing at level None (namespaces, service accounts, discovery).
    let all = events(&log);
    let mut per_request: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &all {
        per_request
            .entry(e["auditID"].as_str().unwrap().to_string())
            .or_default()
            .push(e.clone());
    }
    for (id, evs) in &per_request {
        let complete = evs
            .iter()
            .filter(|e| e["stage"] == "ResponseComplete")
            .count();
        // The controllers' own watches are still open: not complete yet.
        let open_watch = evs[0]["verb"] == "watch" && evs[0]["user"]["username"] != ADMIN;
        if open_watch {
            assert!(complete <= 1, "{id}: {evs:?}");
        } else {
            assert_eq!(complete, 1, "{id}: {evs:?}");
        }
        let resource = evs[0]["objectRef"]["resource"].as_str().unwrap_or("");
        let namespace = evs[0]["objectRef"]["namespace"].as_str().unwrap_or("");
        assert!(
            matches!(resource, "configmaps" | "secrets")
                || (resource == "pods" && namespace == "psa"),
            "logged at level None: {evs:?}"
        );
        let received = evs.iter().any(|e| e["stage"] == "RequestReceived");
        assert_eq!(received, resource != "secrets", "{evs:?}");
        let level = if resource == "secrets" {
            "RequestResponse"
        } else {
            "Metadata"
        };
        assert!(evs.iter().all(|e| e["level"] == level), "{evs:?}");
    }
    // Our five requests by the admin, the refused one and the watch, at least.
    assert!(per_request.len() >= 7, "{per_request:?}");
}

#[test]
fn every_answer_carries_an_audit_id() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = start(dir.path(), POLICY, &[]);
    let (code, _, h1) = raw::curl(&s, "none", "GET", "/api/v1/pods", "application/json", None);
    assert_eq!(code, 401);
    let (code, _, h2) = raw::curl(&s, "admin", "GET", "/version", "application/json", None);
    assert_eq!(code, 200);
    let (a, b) = (audit_id_of(&h1), audit_id_of(&h2));
    assert_eq!(a.len(), 36, "{a}");
    assert_ne!(a, b);
}

#[test]
fn rotation_keeps_at_most_maxbackup_files() {
    let dir = tempfile::tempdir().unwrap();
    let (s, log) = start(
        dir.path(),
        POLICY,
        &["--audit-log-maxsize", "1", "--audit-log-maxbackup", "2"],
    );
    s.ok(&["create", "namespace", "big"]);
    // Each create's event holds the secret twice (request and response), ~800 kB: every
    // second event starts a new file.
    let data = dir.path().join("data");
    let chunk: String = (0..300 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    std::fs::write(&data, chunk).unwrap();
    for i in 0..6 {
        s.ok(&[
            "create",
            "secret",
            "generic",
            &format!("s{i}"),
            "-n",
            "big",
            &format!("--from-file=blob={}", data.display()),
        ]);
    }
    complete(&log, ADMIN, "create", "secrets", "s5");
    let backups: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("audit-") && n.ends_with(".log")
        })
        .collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    let mut names = BTreeMap::new();
    for f in backups.iter().chain([&log]) {
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size <= 1024 * 1024, "{} is {size} bytes", f.display());
        // Whole lines only: each parses.
        for e in events(f) {
            if e["stage"] == "ResponseComplete" {
                names.insert(e["objectRef"]["name"].as_str().unwrap().to_string(), ());
            }
        }
    }
    // The newest creates survive rotation; the oldest went with removed backups.
    assert!(
        names.contains_key("s5") && names.contains_key("s4"),
        "{names:?}"
    );
    assert!(!names.contains_key("s0"), "{names:?}");
}
