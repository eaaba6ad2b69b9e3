//! RBAC with the real kubectl: a user may do what its bindings grant and gets upstream's 403
//! for the rest; `auth can-i` (also `--list`) agrees; writing roles and bindings cannot grant
//! more than the writer holds; `--as` needs the impersonate verb; the bootstrap roles are
//! topped up at every start unless their autoupdate annotation is "false".

mod api_support;

use api_support::{raw, Server};
use std::time::{Duration, Instant};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// kubectl that must fail, with its error text.
fn refused(s: &Server, args: &[&str]) -> String {
    let out = s.kubectl(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    stderr(&out)
}

/// Retries `args` until it succeeds: bindings reach the authorizer through a watch.
fn eventually_ok(s: &Server, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = s.kubectl(args);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "{args:?}: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bound_user_may_do_what_its_role_grants_and_nothing_else() {
    let s = Server::start();
    s.namespace("team");
    // Nothing is granted to a new user.
    let e = refused(&s, &["--as", "alice", "get", "pods", "-n", "team"]);
    assert!(
        e.contains(r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "team""#),
        "{e}"
    );
    s.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get,list,watch",
        "--resource=pods",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "alice-reads",
        "-n",
        "team",
        "--role=pod-reader",
        "--user=alice",
    ]);
    eventually_ok(&s, &["--as", "alice", "get", "pods", "-n", "team"]);
    // Only in its namespace, only its resources and verbs.
    let e = refused(&s, &["--as", "alice", "get", "pods", "-n", "default"]);
    assert!(e.contains(r#"in the namespace "default""#), "{e}");
    let e = refused(&s, &["--as", "alice", "get", "secrets", "-n", "team"]);
    assert!(e.contains(r#"cannot list resource "secrets""#), "{e}");
    let e = refused(&s, &["--as", "alice", "delete", "pod", "x", "-n", "team"]);
    assert!(
        e.contains(r#"pods "x" is forbidden: User "alice" cannot delete resource "pods""#),
        "{e}"
    );
    // A group binding counts too, cluster-wide through a ClusterRoleBinding.
    s.ok(&[
        "create",
        "clusterrolebinding",
        "devs-view",
        "--clusterrole=view",
        "--group=devs",
    ]);
    eventually_ok(
        &s,
        &[
            "--as",
            "bob",
            "--as-group",
            "devs",
            "get",
            "deployments",
            "-A",
        ],
    );
    refused(&s, &["--as", "bob", "get", "deployments", "-A"]);

    // can-i tells the same.
    let yes = s.kubectl(&[
        "auth", "can-i", "list", "pods", "-n", "team", "--as", "alice",
    ]);
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    let no = s.kubectl(&[
        "auth", "can-i", "create", "pods", "-n", "team", "--as", "alice",
    ]);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    let list = s.ok(&["auth", "can-i", "--list", "-n", "team", "--as", "alice"]);
    let pods = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some("pods"))
        .unwrap_or_else(|| panic!("no pods row:\n{list}"));
    assert!(pods.contains("[get list watch]"), "{list}");
    assert!(
        !list.lines().any(|l| l.starts_with("secrets")),
        "alice holds nothing on secrets:\n{list}"
    );
    // Discovery and self-review come with every authenticated user.
    assert!(
        list.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{list}"
    );
    let who = s.ok(&[
        "auth",
        "whoami",
        "--as",
        "alice",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(who, "alice");
}

#[test]
fn roles_and_bindings_grant_no_more_than_the_writer_holds() {
    let s = Server::start();
    s.namespace("team");
    // carol may write roles and bindings in team (not with `*`, which would include escalate
    // and bind), and read pods there; nothing on secrets.
    s.ok(&[
        "create",
        "role",
        "rbac-writer",
        "-n",
        "team",
        "--verb=create,get,list,update,patch,delete",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
    ]);
    s.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "carol-rbac",
        "-n",
        "team",
        "--role=rbac-writer",
        "--user=carol",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "carol-pods",
        "-n",
        "team",
        "--role=pod-reader",
        "--user=carol",
    ]);
    eventually_ok(&s, &["--as", "carol", "get", "roles", "-n", "team"]);
    eventually_ok(&s, &["--as", "carol", "get", "pods", "-n", "team"]);

    // A role with what carol holds is fine; one with more is refused, naming what is missing.
    s.ok(&[
        "--as",
        "carol",
        "create",
        "role",
        "subset",
        "-n",
        "team",
        "--verb=get",
        "--resource=pods",
    ]);
    let e = refused(
        &s,
        &[
            "--as",
            "carol",
            "create",
            "role",
            "sneaky",
            "-n",
            "team",
            "--verb=get",
            "--resource=secrets",
        ],
    );
    assert!(
        e.contains(r#"user "carol" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held"#),
        "{e}"
    );
    assert!(
        e.contains(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}"#),
        "{e}"
    );
    assert!(s
        .kubectl(&["get", "role", "sneaky", "-n", "team"])
        .status
        .success()
        .eq(&false));
    // Binding a role carol holds entirely is fine; binding admin (which she does not) is not.
    s.ok(&[
        "--as",
        "carol",
        "create",
        "rolebinding",
        "dave-pods",
        "-n",
        "team",
        "--role=pod-reader",
        "--user=dave",
    ]);
    let e = refused(
        &s,
        &[
            "--as",
            "carol",
            "create",
            "rolebinding",
            "carol-admin",
            "-n",
            "team",
            "--clusterrole=admin",
            "--user=carol",
        ],
    );
    assert!(
        e.contains("attempting to grant RBAC permissions not currently held"),
        "{e}"
    );
    // With the bind verb on exactly that role, she may.
    s.ok(&[
        "create",
        "role",
        "may-bind-admin",
        "-n",
        "team",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=admin",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "carol-binds",
        "-n",
        "team",
        "--role=may-bind-admin",
        "--user=carol",
    ]);
    eventually_ok(
        &s,
        &[
            "--as",
            "carol",
            "create",
            "rolebinding",
            "erin-admin",
            "-n",
            "team",
            "--clusterrole=admin",
            "--user=erin",
        ],
    );
    // A binding's role is fixed for life.
    let e = refused(
        &s,
        &[
            "patch",
            "rolebinding",
            "dave-pods",
            "-n",
            "team",
            "--type=merge",
            "-p",
            r#"{"roleRef":{"name":"subset"}}"#,
        ],
    );
    assert!(e.contains("cannot change roleRef"), "{e}");
}

#[test]
fn impersonation_needs_the_impersonate_verb() {
    let s = Server::start();
    let token = raw::service_account_token(&s, "frank");
    let as_frank = |extra: &[&str]| {
        let mut args = vec!["--token", token.as_str()];
        args.extend_from_slice(extra);
        s.kubectl(&args)
    };
    let out = as_frank(&["--as", "grace", "get", "pods"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(r#"users "grace" is forbidden: User "system:serviceaccount:default:frank" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{}",
        stderr(&out)
    );
    s.ok(&[
        "create",
        "clusterrole",
        "impersonate-grace",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=grace",
    ]);
    s.ok(&[
        "create",
        "clusterrolebinding",
        "frank-as-grace",
        "--clusterrole=impersonate-grace",
        "--serviceaccount=default:frank",
    ]);
    // Now the request is grace's: frank's own rights (edit in default) no longer apply.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let e = stderr(&as_frank(&["--as", "grace", "get", "pods"]));
        if e.contains(r#"User "grace" cannot list resource "pods""#) {
            break;
        }
        assert!(Instant::now() < deadline, "{e}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let who = as_frank(&[
        "--as",
        "grace",
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "grace",
        "{}",
        stderr(&who)
    );
    // Groups need their own grant.
    let e = stderr(&as_frank(&[
        "--as",
        "grace",
        "--as-group",
        "system:masters",
        "get",
        "pods",
    ]));
    assert!(e.contains(r#"groups "system:masters" is forbidden"#), "{e}");
}

#[test]
fn bootstrap_roles_are_topped_up_unless_autoupdate_is_off() {
    fn rules(s: &Server, name: &str) -> Vec<serde_json::Value> {
        let out = s.ok(&["get", "clusterrole", name, "-o", "jsonpath={.rules}"]);
        serde_json::from_str(&out).unwrap()
    }
    let mut s = Server::start();
    assert_eq!(
        rules(&s, "cluster-admin")[0]["verbs"],
        serde_json::json!(["*"])
    );
    // (admin, edit and view are aggregated: their rules are the aggregation controller's.)
    let full_view = rules(&s, "system:basic-user");
    // Strip both roles to one rule; switch autoupdate off on one of them.
    let one = r#"{"rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]}]}"#;
    s.ok(&[
        "patch",
        "clusterrole",
        "system:basic-user",
        "--type=merge",
        "-p",
        one,
    ]);
    s.ok(&[
        "patch",
        "clusterrole",
        "system:discovery",
        "--type=merge",
        "-p",
        one,
    ]);
    s.ok(&[
        "annotate",
        "--overwrite",
        "clusterrole",
        "system:discovery",
        "rbac.authorization.kubernetes.io/autoupdate=false",
    ]);
    s.restart();
    let view = rules(&s, "system:basic-user");
    assert!(full_view.iter().all(|r| view.contains(r)), "{view:?}");
    assert_eq!(view.len(), full_view.len() + 1, "the user's rule stays too");
    let stripped: serde_json::Value = serde_json::from_str(one).unwrap();
    assert_eq!(
        rules(&s, "system:discovery"),
        stripped["rules"].as_array().unwrap().clone()
    );
}

#[test]
fn anonymous_requests_get_only_the_public_paths() {
    // Off by default (k3s's choice): no credentials is 401.
    let s = Server::start();
    let cms = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        raw::curl(&s, "none", "GET", cms, "application/json", None).0,
        401
    );
    drop(s);
    let s = Server::start_with(&["--anonymous-auth=true"]);
    let (code, body, _) = raw::curl(&s, "none", "GET", cms, "application/json", None);
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains(r#"configmaps is forbidden: User \"system:anonymous\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""#),
        "{body}"
    );
    assert_eq!(raw::curl(&s, "none", "GET", "/readyz", "", None).0, 200);
    // A wrong credential is still refused outright.
    assert_eq!(
        raw::curl(&s, "token:wrong", "GET", cms, "application/json", None).0,
        401
    );
}

#[test]
fn subject_access_reviews_answer_for_another_user() {
    let s = Server::start();
    s.namespace("team");
    s.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get,list",
        "--resource=pods",
    ]);
    s.ok(&[
        "create",
        "rolebinding",
        "alice-reads",
        "-n",
        "team",
        "--role=pod-reader",
        "--user=alice",
    ]);
    let review = |path: &str, spec: &str| {
        let kind = if path.contains("local") {
            "LocalSubjectAccessReview"
        } else {
            "SubjectAccessReview"
        };
        let body = s.file(
            "review.json",
            &format!(r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"{kind}","spec":{spec}}}"#),
        );
        let (code, text, _) = raw::curl(&s, "admin", "POST", path, "application/json", Some(&body));
        (
            code,
            serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default(),
        )
    };
    let sar = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let list_pods = r#"{"user":"alice","resourceAttributes":{"namespace":"team","verb":"list","resource":"pods"}}"#;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (code, v) = review(sar, list_pods);
        assert_eq!(code, 201, "{v}");
        if v["status"]["allowed"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, v) = review(
        sar,
        r#"{"user":"alice","resourceAttributes":{"namespace":"team","verb":"delete","resource":"pods"}}"#,
    );
    assert_eq!(v["status"]["allowed"], false, "{v}");
    let local = "/apis/authorization.k8s.io/v1/namespaces/team/localsubjectaccessreviews";
    let (code, v) = review(
        local,
        r#"{"user":"alice","resourceAttributes":{"verb":"get","resource":"pods"}}"#,
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["status"]["allowed"], true, "{v}");
    let (code, v) = review(
        local,
        r#"{"user":"alice","resourceAttributes":{"namespace":"default","verb":"get","resource":"pods"}}"#,
    );
    assert_eq!(code, 422, "{v}");
    let (code, v) = review(
        sar,
        r#"{"resourceAttributes":{"verb":"get","resource":"pods"}}"#,
    );
    assert_eq!(code, 422, "{v}");
    // Asking about others is itself a permission an ordinary user lacks.
    let token = raw::service_account_token(&s, "nosy");
    let body = s.file(
        "r.json",
        &format!(r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{list_pods}}}"#),
    );
    let (code, text, _) = raw::curl(
        &s,
        &format!("token:{token}"),
        "POST",
        sar,
        "application/json",
        Some(&body),
    );
    assert_eq!(code, 403, "{text}");
    assert!(
        text.contains(r#"cannot create resource \"subjectaccessreviews\""#),
        "{text}"
    );
}

#[test]
fn aggregated_cluster_roles_follow_the_roles_they_select() {
    let s = Server::start();
    applied(
        &s,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: monitoring\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels:\n      example.com/aggregate-to-monitoring: \"true\"\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: carol-monitoring\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: monitoring\nsubjects:\n- apiGroup: rbac.authorization.k8s.io\n  kind: User\n  name: carol\n",
    );
    let out = s.kubectl(&["auth", "can-i", "--as", "carol", "list", "pods", "-A"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    let part = |name: &str, resource: &str| {
        format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\n  labels:\n    example.com/aggregate-to-monitoring: \"true\"\nrules:\n- apiGroups: [\"\"]\n  resources: [\"{resource}\"]\n  verbs: [\"get\", \"list\"]\n")
    };
    applied(&s, &part("monitoring-pods", "pods"));
    applied(&s, &part("monitoring-nodes", "nodes"));
    let rules_of = |s: &Server| -> Vec<String> {
        let v: serde_json::Value =
            serde_json::from_str(&s.ok(&["get", "clusterrole", "monitoring", "-o", "json"]))
                .unwrap();
        v["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["resources"][0].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let wait_rules = |s: &Server, want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = rules_of(s);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "rules {got:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // In the order of the selected roles' names.
    wait_rules(&s, &["nodes", "pods"]);
    assert_eq!(
        eventually_ok(
            &s,
            &["auth", "can-i", "--as", "carol", "list", "pods", "-A"]
        )
        .trim(),
        "yes"
    );
    // A rule put in by hand is taken back out; a deleted part takes its rules with it.
    s.ok(&[
        "patch", "clusterrole", "monitoring", "--type=json", "-p",
        r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["secrets"],"verbs":["get"]}}]"#,
    ]);
    s.ok(&["delete", "clusterrole", "monitoring-nodes"]);
    wait_rules(&s, &["pods"]);
    // The bootstrap roles aggregate too: a role labelled for `view` widens it.
    applied(&s, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: view-widgets\n  labels:\n    rbac.authorization.k8s.io/aggregate-to-view: \"true\"\nrules:\n- apiGroups: [\"example.com\"]\n  resources: [\"widgets\"]\n  verbs: [\"get\"]\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s
        .ok(&["get", "clusterrole", "view", "-o", "json"])
        .contains("widgets")
    {
        assert!(
            Instant::now() < deadline,
            "view did not take the widgets rule"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn applied(s: &Server, yaml: &str) {
    let out = s.apply(yaml, &[]);
    assert!(out.status.success(), "apply: {}", stderr(&out));
}
