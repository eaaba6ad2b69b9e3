//! Bad requests get the Kubernetes Status error they would get from kube-apiserver, and the
//! store is left as it was. Raw HTTPS through curl with the cluster CA.

mod api_support;

use api_support::{raw::admin_token, raw::curl, Server};
use serde_json::Value;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn status(body: &str) -> Value {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON Status ({e}): {body}"));
    assert_eq!(v["kind"], "Status", "{v}");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["status"], "Failure");
    v
}

/// The configmaps of every namespace but the CA ConfigMap the controllers publish in each (so a
/// namespace made meanwhile changes nothing here).
fn names(s: &Server) -> String {
    s.ok(&["get", "configmaps", "-A", "-o", "name"])
        .lines()
        .filter(|l| *l != "configmap/kube-root-ca.crt")
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn malformed_bodies_are_400_and_change_nothing() {
    let s = Server::start();
    s.configmap("keep", "default", &[("a", "1")]);
    let before = names(&s);
    let rv_before = s.ok(&[
        "get",
        "configmap",
        "keep",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);

    let bad_json = s.file(
        "bad.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}"#,
    );
    let (code, body, _) = curl(
        &s,
        "admin",
        "POST",
        CMS,
        "application/json",
        Some(&bad_json),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(status(&body)["reason"], "BadRequest");

    let bad_yaml = s.file(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
    );
    let (code, body, _) = curl(
        &s,
        "admin",
        "POST",
        CMS,
        "application/yaml",
        Some(&bad_yaml),
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(status(&body)["code"], 400);

    // A good YAML body works.
    let good_yaml = s.file(
        "good.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n",
    );
    let (code, body, _) = curl(
        &s,
        "admin",
        "POST",
        CMS,
        "application/yaml",
        Some(&good_yaml),
    );
    assert_eq!(code, 201, "{body}");
    let (code, _, _) = curl(
        &s,
        "admin",
        "DELETE",
        &format!("{CMS}/from-yaml"),
        "application/json",
        None,
    );
    assert_eq!(code, 200);

    // Wrong types for the kind's fields.
    let wrong = s.file("wrong.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":{"nested":1}}}"#);
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&wrong));
    assert_eq!(code, 400, "{body}");
    assert!(
        status(&body)["message"]
            .as_str()
            .unwrap()
            .contains("cannot be handled as a ConfigMap"),
        "{body}"
    );

    // A kind that does not belong at this URL.
    let secret = s.file(
        "secret.json",
        r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&secret));
    assert_eq!(code, 400, "{body}");
    let deploy = s.file(
        "deploy.json",
        r#"{"apiVersion":"apps/v1","kind":"ConfigMap","metadata":{"name":"x"}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&deploy));
    assert_eq!(code, 400, "{body}");
    assert!(status(&body)["message"]
        .as_str()
        .unwrap()
        .contains("does not match the expected API version"));

    // A bad patch.
    let (code, body, _) = curl(
        &s,
        "admin",
        "PATCH",
        &format!("{CMS}/keep"),
        "application/merge-patch+json",
        Some(&bad_json),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body, _) = curl(
        &s,
        "admin",
        "PATCH",
        &format!("{CMS}/keep"),
        "text/plain",
        Some(&good_yaml),
    );
    assert_eq!(code, 415, "{body}");

    assert_eq!(names(&s), before);
    assert_eq!(
        s.ok(&[
            "get",
            "configmap",
            "keep",
            "-o",
            "jsonpath={.metadata.resourceVersion}"
        ]),
        rv_before
    );
}

#[test]
fn unknown_resources_are_404() {
    let s = Server::start();
    for path in [
        "/api/v1/namespaces/default/widgets",
        "/apis/example.com/v1/widgets",
        "/apis/apps/v9/deployments",
        "/nope",
    ] {
        let (code, body, _) = curl(&s, "admin", "GET", path, "application/json", None);
        assert_eq!(code, 404, "{path}: {body}");
        assert_eq!(status(&body)["reason"], "NotFound");
    }
    let (code, body, _) = curl(
        &s,
        "admin",
        "GET",
        &format!("{CMS}/missing"),
        "application/json",
        None,
    );
    assert_eq!(code, 404);
    let st = status(&body);
    assert_eq!(st["message"], "configmaps \"missing\" not found");
    assert_eq!(st["details"]["name"], "missing");
    assert_eq!(st["details"]["kind"], "configmaps");
    let widget = s.file(
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    );
    let out = s.kubectl(&["apply", "-f", widget.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // With validation kubectl stops at the missing schema; without, at the missing mapping.
    assert!(
        err.contains("could not find the requested resource")
            || err.contains("no matches for kind"),
        "{err}"
    );
    let out = s.kubectl(&["apply", "--validate=false", "-f", widget.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no matches for kind \"Widget\""), "{err}");
    // OpenAPI v2 (for kubectl up to 1.27) and v3 are served.
    let (code, _, _) = curl(&s, "admin", "GET", "/openapi/v2", "application/json", None);
    assert_eq!(code, 200);
    let (code, _, _) = curl(&s, "admin", "GET", "/openapi/v3", "application/json", None);
    assert_eq!(code, 200);
}

#[test]
fn invalid_names_and_fields_are_422_with_causes() {
    let s = Server::start();
    let before = names(&s);
    let slash = s.file(
        "slash.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a/b"}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&slash));
    assert_eq!(code, 422, "{body}");
    let st = status(&body);
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name");

    let upper = s.file(
        "upper.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&upper));
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        status(&body)["details"]["causes"][0]["field"],
        "metadata.name"
    );

    let noname = s.file(
        "noname.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&noname));
    assert_eq!(code, 422, "{body}");

    let pod = s.file(
        "pod.json",
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#,
    );
    let (code, body, _) = curl(
        &s,
        "admin",
        "POST",
        "/api/v1/namespaces/default/pods",
        "application/json",
        Some(&pod),
    );
    assert_eq!(code, 422, "{body}");
    let causes = status(&body)["details"]["causes"].clone();
    assert!(
        causes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["field"] == "spec.containers"),
        "{causes}"
    );

    // Unknown fields: Strict refuses, Warn warns, Ignore drops them.
    let unknown = s.file(
        "unknown.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"u"},"dataa":{"a":"b"}}"#,
    );
    let (code, body, _) = curl(
        &s,
        "admin",
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        "application/json",
        Some(&unknown),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        status(&body)["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"dataa\""),
        "{body}"
    );
    let (code, body, headers) = curl(
        &s,
        "admin",
        "POST",
        &format!("{CMS}?fieldValidation=Warn"),
        "application/json",
        Some(&unknown),
    );
    assert_eq!(code, 201, "{body}");
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("warning: 299 - \"unknown field \\\"dataa\\\"\""),
        "{headers}"
    );
    let created: Value = serde_json::from_str(&body).unwrap();
    assert!(created.get("dataa").is_none());
    s.ok(&["delete", "configmap", "u"]);

    assert_eq!(names(&s), before);
}

#[test]
fn oversized_bodies_are_413() {
    let s = Server::start();
    let before = names(&s);
    let big = "x".repeat(4 * 1024 * 1024);
    let path = s.file("big.json", &format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{big}"}}}}"#));
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&path));
    assert_eq!(code, 413, "{}", &body[..body.len().min(300)]);
    assert_eq!(status(&body)["reason"], "RequestEntityTooLarge");
    assert_eq!(names(&s), before);
}

#[test]
fn unauthenticated_requests_are_401() {
    let s = Server::start();
    let before = names(&s);
    let cm = s.file(
        "cm.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"anon"}}"#,
    );
    for auth in ["none", "token:wrong-token"] {
        let (code, body, _) = curl(&s, auth, "POST", CMS, "application/json", Some(&cm));
        assert_eq!(code, 401, "{auth}: {body}");
        assert_eq!(status(&body)["reason"], "Unauthorized");
        let (code, _, _) = curl(&s, auth, "GET", CMS, "application/json", None);
        assert_eq!(code, 401);
    }
    // Health and version are open.
    assert_eq!(
        curl(&s, "none", "GET", "/readyz", "application/json", None).0,
        200
    );
    assert_eq!(
        curl(&s, "none", "GET", "/version", "application/json", None).0,
        200
    );
    assert_eq!(names(&s), before);
    // The admin token, the node token and the client certificate are accepted.
    let token = admin_token(&s);
    assert_eq!(
        curl(
            &s,
            &format!("token:{token}"),
            "GET",
            CMS,
            "application/json",
            None
        )
        .0,
        200
    );
    // The join token authenticates (its user is a node without a name), but only the Node
    // authorizer speaks for nodes and it knows no nameless node: 403, not 401.
    let node = std::fs::read_to_string(s.data_dir().join("server/token")).unwrap();
    let (code, body, _) = curl(
        &s,
        &format!("token:{}", node.trim()),
        "GET",
        CMS,
        "application/json",
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert_eq!(status(&body)["reason"], "Forbidden");
    assert_eq!(
        curl(&s, "admin", "GET", CMS, "application/json", None).0,
        200
    );
    // The kubeconfig is private.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s.kubeconfig()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn stale_writes_conflict() {
    let s = Server::start();
    s.configmap("c", "default", &[("k", "1")]);
    let put = s.file("put.json", r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","resourceVersion":"1"},"data":{"k":"2"}}"#);
    let (code, body, _) = curl(
        &s,
        "admin",
        "PUT",
        &format!("{CMS}/c"),
        "application/json",
        Some(&put),
    );
    assert_eq!(code, 409, "{body}");
    let st = status(&body);
    assert_eq!(st["reason"], "Conflict");
    assert!(st["message"]
        .as_str()
        .unwrap()
        .contains("the object has been modified"));
    // Creating what exists is AlreadyExists.
    let dup = s.file(
        "dup.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&dup));
    assert_eq!(code, 409);
    assert_eq!(status(&body)["reason"], "AlreadyExists");
    // A scale with a stale resourceVersion.
    s.apply_ok("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: busybox}]\n");
    let scale = s.file("scale.json", r#"{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"d","namespace":"default","resourceVersion":"2"},"spec":{"replicas":7}}"#);
    let (code, body, _) = curl(
        &s,
        "admin",
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/d/scale",
        "application/json",
        Some(&scale),
    );
    assert_eq!(code, 409, "{body}");
    // Delete preconditions.
    let pre = s.file("pre.json", r#"{"preconditions":{"uid":"not-the-uid"}}"#);
    let (code, body, _) = curl(
        &s,
        "admin",
        "DELETE",
        &format!("{CMS}/c"),
        "application/json",
        Some(&pre),
    );
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        s.ok(&["get", "configmap", "c", "-o", "jsonpath={.data.k}"]),
        "1"
    );
    assert_eq!(
        s.ok(&["get", "deploy", "d", "-o", "jsonpath={.spec.replicas}"]),
        "1"
    );
}

#[test]
fn dry_run_and_generate_name() {
    let s = Server::start();
    let gen = s.file(
        "gen.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"generateName":"job-"}}"#,
    );
    let (code, body, _) = curl(&s, "admin", "POST", CMS, "application/json", Some(&gen));
    assert_eq!(code, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let name = v["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");
    let dry = s.file(
        "dry.json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dry"}}"#,
    );
    let (code, _, _) = curl(
        &s,
        "admin",
        "POST",
        &format!("{CMS}?dryRun=All"),
        "application/json",
        Some(&dry),
    );
    assert_eq!(code, 201);
    assert!(!names(&s).contains("configmap/dry"));
    assert!(names(&s).contains(&format!("configmap/{name}")));
}

#[test]
fn pod_binding_assigns_a_node_once() {
    let s = Server::start();
    s.ok(&["run", "p", "--image=busybox"]);
    let bind = s.file("bind.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n1"}}"#);
    let path = "/api/v1/namespaces/default/pods/p/binding";
    let (code, body, _) = curl(&s, "admin", "POST", path, "application/json", Some(&bind));
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        s.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]),
        "n1"
    );
    let again = s.file("again.json", r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p"},"target":{"kind":"Node","name":"n2"}}"#);
    let (code, body, _) = curl(&s, "admin", "POST", path, "application/json", Some(&again));
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        s.ok(&["get", "pod", "p", "-o", "jsonpath={.spec.nodeName}"]),
        "n1"
    );
}

#[test]
fn delete_collection_by_label() {
    let s = Server::start();
    for (n, team) in [("a", "blue"), ("b", "blue"), ("c", "red")] {
        s.apply_ok(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n  labels: {{team: {team}}}\n"
        ));
    }
    let (code, body, _) = curl(
        &s,
        "admin",
        "DELETE",
        &format!("{CMS}?labelSelector=team%3Dblue"),
        "application/json",
        None,
    );
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        s.ok(&["get", "configmaps", "-o", "name"]).trim(),
        "configmap/c\nconfigmap/kube-root-ca.crt"
    );
}
