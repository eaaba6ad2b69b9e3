//! Admission webhooks (admissionregistration.k8s.io/v1) against a real server process and the
//! real kubectl: a webhook server of the test's own on 127.0.0.1 (HTTPS, its CA given as the
//! configurations' caBundle) mutates with JSON patches, refuses with its own Status, sees the
//! AdmissionReview the server sends (user, operation, kind, old object), is selected by rules
//! and namespace/object selectors, is reinvoked when asked, and its failures follow
//! failurePolicy and timeoutSeconds.

mod api_support;

use api_support::Server;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the webhook server received, by path.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, Value)>>);

impl Seen {
    fn of(&self, path: &str) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

fn allow(req: &Value, patch: Option<Value>) -> Value {
    let mut resp = json!({"uid": req["uid"], "allowed": true});
    if let Some(p) = patch {
        resp["patchType"] = json!("JSONPatch");
        resp["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(p.to_string()));
    }
    resp
}

/// The test's webhooks, by path.
async fn answer(path: &str, req: &Value) -> Value {
    let obj = &req["object"];
    let has_labels = obj["metadata"]["labels"].is_object();
    let add_label = |k: &str, v: &str| {
        let key = k.replace('/', "~1");
        if has_labels {
            json!([{"op": "add", "path": format!("/metadata/labels/{key}"), "value": v}])
        } else {
            json!([{"op": "add", "path": "/metadata/labels", "value": {k: v}}])
        }
    };
    match path {
        "/mutate" => allow(req, Some(add_label("mutated-by", "hook"))),
        "/validate" => {
            if obj["data"].get("forbidden").is_some() {
                json!({"uid": req["uid"], "allowed": false,
                       "status": {"code": 403, "reason": "Forbidden", "message": "the key 'forbidden' is not allowed"}})
            } else {
                allow(req, None)
            }
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(4)).await;
            allow(req, None)
        }
        "/wrong-uid" => json!({"uid": "not-the-request", "allowed": true}),
        // Reinvocation: "first" only records; "second" adds a label, so "first" runs again.
        "/first" => allow(req, None),
        "/second" => {
            if obj["metadata"]["labels"]["second"].is_string() {
                allow(req, None)
            } else {
                allow(req, Some(add_label("second", "yes")))
            }
        }
        _ => json!({"uid": req["uid"], "allowed": false}),
    }
}

/// Serves the webhooks over HTTPS on a loopback port with a CA of its own; returns the port
/// and the CA's PEM (the caBundle).
async fn webhook_server(seen: Arc<Seen>) -> (u16, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pki = nanokube::apiserver::tls::Pki::load_or_create(
        dir.path(),
        &["127.0.0.1".into(), "hook.hooks.svc".into()],
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            let request = review["request"].clone();
                            seen.0.lock().unwrap().push((path.clone(), request.clone()));
                            let response = answer(&path, &request).await;
                            let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(out.to_string())))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, pki.ca_cert_pem.clone(), dir)
}

fn webhook(name: &str, port: u16, path: &str, ca: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {
            "url": format!("https://127.0.0.1:{port}{path}"),
            "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
        },
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    json_patch::merge(&mut w, &extra);
    w
}

fn config(kind: &str, name: &str, hooks: Vec<Value>) -> String {
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
           "metadata": {"name": name}, "webhooks": hooks})
    .to_string()
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_mutate_refuse_and_see_the_review() {
    let seen = Arc::new(Seen::default());
    let (port, ca, _dir) = webhook_server(seen.clone()).await;
    let s = blocking(Server::start);
    blocking(|| {
        s.apply_ok(&config(
            "MutatingWebhookConfiguration",
            "labels",
            vec![webhook(
                "mutate.nanokube.test",
                port,
                "/mutate",
                &ca,
                json!({}),
            )],
        ));
        s.apply_ok(&config(
            "ValidatingWebhookConfiguration",
            "keys",
            vec![webhook(
                "validate.nanokube.test",
                port,
                "/validate",
                &ca,
                json!({}),
            )],
        ));
    });
    // Defaults as upstream.
    let cfg: Value = serde_json::from_str(&blocking(|| {
        s.ok(&[
            "get",
            "mutatingwebhookconfiguration",
            "labels",
            "-o",
            "json",
        ])
    }))
    .unwrap();
    let w = &cfg["webhooks"][0];
    assert_eq!(w["failurePolicy"], "Fail");
    assert_eq!(w["timeoutSeconds"], 10);
    assert_eq!(w["reinvocationPolicy"], "Never");
    assert_eq!(w["rules"][0]["scope"], "*");

    blocking(|| s.ok(&["create", "configmap", "good", "--from-literal=a=1"]));
    let cm: Value = serde_json::from_str(&blocking(|| {
        s.ok(&["get", "configmap", "good", "-o", "json"])
    }))
    .unwrap();
    assert_eq!(cm["metadata"]["labels"]["mutated-by"], "hook", "{cm}");
    let err = blocking(|| s.fails(&["create", "configmap", "bad", "--from-literal=forbidden=1"]));
    assert!(
        err.contains(r#"admission webhook "validate.nanokube.test" denied the request: the key 'forbidden' is not allowed"#),
        "{err}"
    );
    let out = blocking(|| s.kubectl(&["get", "configmap", "bad"]));
    assert!(!out.status.success(), "a refused create is not stored");

    // The review the server sent: who, what, and the object (mutated before validation).
    let created = seen.of("/validate");
    let good = created
        .iter()
        .find(|r| r["name"] == "good")
        .expect("validating webhook saw the create");
    assert_eq!(good["operation"], "CREATE");
    assert_eq!(
        good["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(good["resource"]["resource"], "configmaps");
    assert_eq!(good["namespace"], "default");
    assert_eq!(good["userInfo"]["username"], "system:admin");
    assert_eq!(good["object"]["metadata"]["labels"]["mutated-by"], "hook");
    assert_eq!(good["dryRun"], false);

    // An update carries the old object; a dry run says so.
    blocking(|| {
        s.ok(&[
            "patch",
            "configmap",
            "good",
            "--type=merge",
            "-p",
            r#"{"data":{"b":"2"}}"#,
        ])
    });
    let update = seen
        .of("/mutate")
        .into_iter()
        .find(|r| r["operation"] == "UPDATE")
        .expect("mutating webhook saw the update");
    assert_eq!(update["oldObject"]["data"], json!({"a": "1"}));
    assert_eq!(update["object"]["data"]["b"], "2");
    blocking(|| {
        s.ok(&[
            "create",
            "configmap",
            "dry",
            "--from-literal=a=1",
            "--dry-run=server",
        ])
    });
    assert!(seen
        .of("/validate")
        .iter()
        .any(|r| r["name"] == "dry" && r["dryRun"] == true));
    // Other resources are not sent.
    blocking(|| s.ok(&["create", "secret", "generic", "sec", "--from-literal=a=1"]));
    assert!(!seen.of("/mutate").iter().any(|r| r["name"] == "sec"));

    // A service client config is called at the service's endpoints, the certificate checked
    // for <service>.<namespace>.svc.
    blocking(|| {
        s.ok(&["create", "namespace", "hooks"]);
        s.apply_ok(
            &json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "hook", "namespace": "hooks"},
            "spec": {"ports": [{"port": 443, "targetPort": port}]}})
            .to_string(),
        );
        s.apply_ok(
            &json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "hook", "namespace": "hooks"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": port}]}]})
            .to_string(),
        );
        let mut routed = webhook(
            "routed.nanokube.test",
            port,
            "/mutate",
            &ca,
            json!({
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["secrets"]}]}),
        );
        routed["clientConfig"] = json!({
            "service": {"namespace": "hooks", "name": "hook", "path": "/mutate"},
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&ca),
        });
        s.apply_ok(&config(
            "MutatingWebhookConfiguration",
            "routed",
            vec![routed],
        ));
        s.ok(&[
            "create",
            "secret",
            "generic",
            "routed",
            "--from-literal=a=1",
        ]);
    });
    let sec: Value = serde_json::from_str(&blocking(|| {
        s.ok(&["get", "secret", "routed", "-o", "json"])
    }))
    .unwrap();
    assert_eq!(sec["metadata"]["labels"]["mutated-by"], "hook", "{sec}");
    let svc_cfg: Value = serde_json::from_str(&blocking(|| {
        s.ok(&[
            "get",
            "mutatingwebhookconfiguration",
            "routed",
            "-o",
            "json",
        ])
    }))
    .unwrap();
    assert_eq!(
        svc_cfg["webhooks"][0]["clientConfig"]["service"]["port"],
        443
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_reinvocation_and_failure_policies() {
    let seen = Arc::new(Seen::default());
    let (port, ca, _dir) = webhook_server(seen.clone()).await;
    let s = blocking(Server::start);
    blocking(|| {
        s.ok(&["create", "namespace", "hooked"]);
        s.ok(&["label", "namespace", "hooked", "hooks=on"]);
        s.apply_ok(&config(
            "MutatingWebhookConfiguration",
            "selected",
            vec![webhook(
                "selected.nanokube.test",
                port,
                "/mutate",
                &ca,
                json!({"namespaceSelector": {"matchLabels": {"hooks": "on"}},
                       "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}}),
            )],
        ));
        s.ok(&["create", "configmap", "plain", "--from-literal=a=1"]);
        s.ok(&[
            "-n",
            "hooked",
            "create",
            "configmap",
            "picked",
            "--from-literal=a=1",
        ]);
    });
    let label = |ns: &str, name: &str| -> Value {
        let v: Value = serde_json::from_str(&blocking(|| {
            s.ok(&["-n", ns, "get", "configmap", name, "-o", "json"])
        }))
        .unwrap();
        v["metadata"]["labels"]["mutated-by"].clone()
    };
    assert_eq!(label("default", "plain"), Value::Null);
    assert_eq!(label("hooked", "picked"), "hook");
    blocking(|| {
        s.apply_ok(
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"skipped","namespace":"hooked","labels":{"skip":"1"}}}"#,
        )
    });
    assert_eq!(label("hooked", "skipped"), Value::Null);
    blocking(|| s.ok(&["delete", "mutatingwebhookconfiguration", "selected"]));

    // "first" (IfNeeded) runs again after "second" changed the object.
    blocking(|| {
        s.apply_ok(&config(
            "MutatingWebhookConfiguration",
            "a-first",
            vec![webhook(
                "first.nanokube.test",
                port,
                "/first",
                &ca,
                json!({"reinvocationPolicy": "IfNeeded"}),
            )],
        ));
        s.apply_ok(&config(
            "MutatingWebhookConfiguration",
            "b-second",
            vec![webhook(
                "second.nanokube.test",
                port,
                "/second",
                &ca,
                json!({}),
            )],
        ));
        s.ok(&["create", "configmap", "twice", "--from-literal=a=1"]);
    });
    let first: Vec<Value> = seen
        .of("/first")
        .into_iter()
        .filter(|r| r["name"] == "twice")
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[1]["object"]["metadata"]["labels"]["second"], "yes");
    let second = seen
        .of("/second")
        .into_iter()
        .filter(|r| r["name"] == "twice")
        .count();
    assert_eq!(second, 1);
    blocking(|| {
        s.ok(&[
            "delete",
            "mutatingwebhookconfiguration",
            "a-first",
            "b-second",
        ])
    });

    // Unreachable, slow and wrong answers: Fail refuses, Ignore goes on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    blocking(|| {
        s.apply_ok(&config(
            "ValidatingWebhookConfiguration",
            "broken",
            vec![
                webhook("down.nanokube.test", closed, "/validate", &ca, json!({})),
                webhook(
                    "ignored.nanokube.test",
                    closed,
                    "/validate",
                    &ca,
                    json!({"failurePolicy": "Ignore"}),
                ),
            ],
        ))
    });
    let err = blocking(|| s.fails(&["create", "configmap", "x1", "--from-literal=a=1"]));
    assert!(
        err.contains(r#"Internal error occurred: failed calling webhook "down.nanokube.test": failed to call webhook: Post"#),
        "{err}"
    );
    blocking(|| {
        s.apply_ok(&config(
            "ValidatingWebhookConfiguration",
            "broken",
            vec![webhook(
                "ignored.nanokube.test",
                closed,
                "/validate",
                &ca,
                json!({"failurePolicy": "Ignore"}),
            )],
        ));
        s.ok(&["create", "configmap", "x2", "--from-literal=a=1"]);
        s.apply_ok(&config(
            "ValidatingWebhookConfiguration",
            "broken",
            vec![webhook(
                "slow.nanokube.test",
                port,
                "/slow",
                &ca,
                json!({"timeoutSeconds": 1}),
            )],
        ));
    });
    let started = std::time::Instant::now();
    let err = blocking(|| s.fails(&["create", "configmap", "x3", "--from-literal=a=1"]));
    assert!(
        err.contains(r#"failed calling webhook "slow.nanokube.test""#),
        "{err}"
    );
    assert!(err.contains("deadline exceeded"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 1 s timeout held"
    );
    blocking(|| {
        s.apply_ok(&config(
            "ValidatingWebhookConfiguration",
            "broken",
            vec![webhook(
                "uid.nanokube.test",
                port,
                "/wrong-uid",
                &ca,
                json!({}),
            )],
        ))
    });
    let err = blocking(|| s.fails(&["create", "configmap", "x4", "--from-literal=a=1"]));
    assert!(err.contains("expected response.uid="), "{err}");
    // Configurations themselves are never sent to webhooks: the broken one can be removed.
    blocking(|| s.ok(&["delete", "validatingwebhookconfiguration", "broken"]));
    blocking(|| s.ok(&["create", "configmap", "x5", "--from-literal=a=1"]));

    // Invalid configurations are refused with field paths.
    let bad = config(
        "ValidatingWebhookConfiguration",
        "bad",
        vec![json!({"name": "b.nanokube.test", "clientConfig": {"url": "http://127.0.0.1/"}})],
    );
    let out = blocking(|| s.apply(&bad, &[]));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(err.contains("webhooks[0].clientConfig.url"), "{err}");
    assert!(
        err.contains("webhooks[0].sideEffects: Required value"),
        "{err}"
    );
    assert!(
        err.contains("webhooks[0].admissionReviewVersions: Required value"),
        "{err}"
    );
}
