//! The request pipeline's seams, each with a plug-in of the test's own: an authorizer that
//! refuses (403 with upstream's message; `kubectl auth can-i` says no), a connector that takes
//! an exec upgrade (headers intact, body unread, the connection switched), admission plugins
//! that mutate before validation, refuse after it and run again when the update's
//! compare-and-swap retries, the standard plugins (Priority, NamespaceLifecycle,
//! ServiceAccount), and the server's own callers acting as named identities.
//!
//! Servers run in-process over a temporary store; kubectl reaches them over HTTPS on loopback
//! with kubeconfigs minted by `identity::kubeconfig_for`.

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use nanokube::apiserver::admission::{self, Operation, Outcome, Plugin};
use nanokube::apiserver::auth::{Authenticator, User};
use nanokube::apiserver::authorization::{
    self, AlwaysAllowAuthenticated, AlwaysDeny, Attributes, Authorizer, Decision, NonResourceRule,
    ResourceRule, Rules,
};
use nanokube::apiserver::connect::{ConnectRequest, Connector};
use nanokube::apiserver::handler::{full, Api, Resp};
use nanokube::apiserver::pipeline::Pipeline;
use nanokube::apiserver::registry::Registry;
use nanokube::apiserver::status::ApiError;
use nanokube::apiserver::{http as nkhttp, identity, tls};
use nanokube::store::sqlite::{Options, SqliteStore};
use serde_json::{json, Value};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KUBECTL: &str = "/usr/bin/kubectl";

struct Cluster {
    api: Arc<Api>,
    dir: tempfile::TempDir,
    url: String,
    pki: tls::Pki,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Cluster {
    /// A server with `pipeline`, serving HTTPS on a loopback port; `kubeconfig` is the admin's.
    async fn start(pipeline: Pipeline) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db"), Options::default()).unwrap();
        let auth = Authenticator::load(dir.path(), None).unwrap();
        let pki = tls::Pki::load_or_create(&dir.path().join("tls"), &["127.0.0.1".into()]).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let api = Arc::new_cyclic(|me| Api {
            store,
            auth,
            shutdown: stopped.clone(),
            server_address: format!("127.0.0.1:{port}"),
            me: me.clone(),
            registry: Registry::builtin(),
            inflight: nanokube::apiserver::overload::Inflight::new(0, 0),
            metrics: Arc::new(nanokube::apiserver::metrics::Metrics::default()),
            pipeline,
        });
        api.bootstrap().await.unwrap();
        // No serviceaccount controller runs here: the account pods run as is stored directly
        // (past the pipeline, whose authorizer and admission some tests record or deny).
        let sa_info = api.registry.lookup("", "v1", "serviceaccounts").unwrap();
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "default", "uid": "sa-default-uid",
                "creationTimestamp": "2026-01-01T00:00:00Z"}});
        api.store
            .create(
                &sa_info.key(Some("default"), "default"),
                sa.to_string().into_bytes(),
            )
            .await
            .unwrap();
        let url = format!("https://127.0.0.1:{port}");
        tokio::spawn(nkhttp::serve(
            api.clone(),
            listener,
            pki.server_config().unwrap(),
            stopped,
            Duration::from_secs(1),
        ));
        let c = Cluster {
            api,
            dir,
            url,
            pki,
            _stop: stop,
        };
        c.mint("admin-kubeconfig", "system:admin", &["system:masters"]);
        c
    }

    /// A kubeconfig file for a named identity, minted by the server's helper.
    fn mint(&self, file: &str, user: &str, groups: &[&str]) -> std::path::PathBuf {
        let kc = identity::kubeconfig_for(&self.url, &self.pki, user, groups).unwrap();
        let path = self.dir.path().join(file);
        std::fs::write(&path, kc).unwrap();
        path
    }

    async fn kubectl_as(&self, file: &str, args: &[&str]) -> Output {
        let kc = self.dir.path().join(file);
        // This server's own discovery cache (kubectl keys it by host:port, which get reused).
        let cache = self.dir.path().join("kubecache");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(KUBECTL)
                .args(&args)
                .env("KUBECONFIG", kc)
                .env("KUBECACHEDIR", cache)
                .env_remove("HTTPS_PROXY")
                .env_remove("https_proxy")
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    async fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as("admin-kubeconfig", args).await
    }

    /// One request through `Api::handle` as `user`: (status, body as JSON or Null).
    async fn call(
        &self,
        user: &User,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let resp = self
            .api
            .clone()
            .handle(req, Some(user.clone()))
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(&admin(), method, path, "application/json", body)
            .await
    }
}

fn admin() -> User {
    User::new("system:admin", &["system:masters"])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// As upstream's system:basic-user and system:discovery roles: anyone may read discovery and
/// ask what they may do.
struct Reviews;

impl Authorizer for Reviews {
    fn authorize(&self, a: &Attributes) -> Decision {
        let review = a.api_group == "authorization.k8s.io"
            && matches!(
                a.resource.as_str(),
                "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
            );
        let discovery = !a.resource_request
            && a.verb == "get"
            && (a.path == "/api" || a.path.starts_with("/api/") || a.path.starts_with("/apis"));
        if (review && a.verb == "create") || discovery {
            Decision::Allow
        } else {
            Decision::NoOpinion
        }
    }

    fn rules_for(&self, _user: &User, _namespace: &str) -> Rules {
        Rules {
            resource: vec![ResourceRule {
                verbs: vec!["create".into()],
                api_groups: vec!["authorization.k8s.io".into()],
                resources: vec![
                    "selfsubjectaccessreviews".into(),
                    "selfsubjectrulesreviews".into(),
                ],
                resource_names: vec![],
            }],
            non_resource: vec![NonResourceRule {
                verbs: vec!["get".into()],
                non_resource_urls: vec![
                    "/api".into(),
                    "/api/*".into(),
                    "/apis".into(),
                    "/apis/*".into(),
                ],
            }],
            incomplete: false,
        }
    }
}

fn with_authorizer(z: Vec<Arc<dyn Authorizer>>) -> Pipeline {
    Pipeline {
        authorizer: Arc::new(authorization::Union(z)),
        ..Pipeline::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denying_authorizer_is_answered_403_and_can_i_says_no() {
    let c = Cluster::start(with_authorizer(vec![
        Arc::new(Reviews),
        Arc::new(AlwaysDeny),
    ]))
    .await;
    let (code, status) = c
        .admin_call(Method::GET, "/api/v1/namespaces/default/pods", None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        r#"pods is forbidden: User "system:admin" cannot list resource "pods" in API group "" in the namespace "default": Everything is forbidden."#
    );
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(status["details"]["kind"], "pods");
    // A refused write is not made, and a refused path says "path".
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    let (code, status) = c
        .admin_call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(status["message"].as_str().unwrap().starts_with(
        r#"configmaps is forbidden: User "system:admin" cannot create resource "configmaps""#
    ));
    assert!(c
        .api
        .store
        .get("/registry/core/configmaps/default/x")
        .await
        .unwrap()
        .is_none());
    let (code, status) = c.admin_call(Method::GET, "/openapi/v3", None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        status["message"],
        r#"forbidden: User "system:admin" cannot get path "/openapi/v3": Everything is forbidden."#
    );

    let out = c.kubectl(&["get", "pods"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(r#"Error from server (Forbidden): pods is forbidden: User "system:admin" cannot list resource "pods" in API group "" in the namespace "default""#),
        "{}",
        text(&out.stderr)
    );
    let out = c.kubectl(&["auth", "can-i", "list", "pods"]).await;
    // kubectl prints the authorizer's reason after the answer.
    assert_eq!(
        text(&out.stdout).trim(),
        "no - Everything is forbidden.",
        "{}",
        text(&out.stderr)
    );
    assert!(!out.status.success());
    let out = c.kubectl(&["auth", "can-i", "get", "/apis/apps"]).await;
    assert_eq!(text(&out.stdout).trim(), "yes", "{}", text(&out.stderr));
    let out = c.kubectl(&["auth", "can-i", "--list"]).await;
    let listed = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        listed.contains("selfsubjectaccessreviews.authorization.k8s.io"),
        "{listed}"
    );
    assert!(!listed.contains("*.*"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_authorizer_allows_authenticated_users_and_minted_identities_are_seen() {
    struct Seen(Mutex<Vec<String>>);
    impl Authorizer for Seen {
        fn authorize(&self, a: &Attributes) -> Decision {
            self.0.lock().unwrap().push(a.user.name.clone());
            Decision::NoOpinion
        }
    }
    let seen = Arc::new(Seen(Mutex::new(Vec::new())));
    let c = Cluster::start(with_authorizer(vec![
        seen.clone(),
        Arc::new(AlwaysAllowAuthenticated),
    ]))
    .await;
    let out = c.kubectl(&["auth", "can-i", "delete", "nodes"]).await;
    assert_eq!(text(&out.stdout).trim(), "yes", "{}", text(&out.stderr));
    let out = c.kubectl(&["auth", "can-i", "--list"]).await;
    assert!(text(&out.stdout).contains("*.*"), "{}", text(&out.stdout));

    c.mint("node-kubeconfig", "system:node:n1", &["system:nodes"]);
    let out = c
        .kubectl_as("node-kubeconfig", &["auth", "whoami", "-o", "json"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["status"]["userInfo"]["username"], "system:node:n1");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        json!(["system:nodes", "system:authenticated"])
    );
    let out = c.kubectl_as("node-kubeconfig", &["get", "nodes"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(seen.0.lock().unwrap().iter().any(|u| u == "system:node:n1"));
}

/// What admission saw: (user, operation, resource/subresource, name).
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, Operation, String, String)>>,
    /// Admit attempts on updates of configmaps named "raced" (see `admit`).
    raced_attempts: Mutex<u32>,
    validated_uids: Mutex<Vec<String>>,
    /// (resource/subresource, kind) of every admitted object.
    kinds: Mutex<Vec<(String, String)>>,
}

impl Plugin for Recorder {
    fn name(&self) -> &'static str {
        "TestRecorder"
    }

    fn admit<'a>(&'a self, api: &'a Api, a: &'a mut admission::Attributes) -> Outcome<'a> {
        Box::pin(async move {
            let what = if a.subresource.is_empty() {
                a.resource.plural.clone()
            } else {
                format!("{}/{}", a.resource.plural, a.subresource)
            };
            self.seen.lock().unwrap().push((
                a.user.name.clone(),
                a.operation,
                what.clone(),
                a.name.clone(),
            ));
            let Some(obj) = a.object.as_mut() else {
                return Ok(());
            };
            self.kinds.lock().unwrap().push((what, a.kind.kind.clone()));
            // A Scale asking for 7 replicas is turned into 5: the write takes the admitted Scale.
            if a.kind.kind == "Scale" && obj["spec"]["replicas"] == 7 {
                obj["spec"]["replicas"] = json!(5);
            }
            if a.resource.plural != "configmaps" {
                return Ok(());
            }
            // Mutation before validation: an invalid label is repaired, so the write passes.
            if let Some(labels) = obj["metadata"]["labels"].as_object_mut() {
                if labels.get("repair") == Some(&json!("-not valid-")) {
                    labels.insert("repair".into(), json!("repaired"));
                }
            }
            obj["metadata"]["labels"]["admitted"] = json!(a.operation.as_str());
            // The first update attempt of "raced" writes the object behind the request's back:
            // its compare-and-swap fails and the whole attempt, admission included, runs again.
            if a.operation == Operation::Update && a.name == "raced" {
                let attempt = {
                    let mut n = self.raced_attempts.lock().unwrap();
                    *n += 1;
                    *n
                };
                if attempt == 1 {
                    let key = "/registry/core/configmaps/default/raced";
                    let kv = api.store.get(key).await.unwrap().unwrap();
                    let mut stored: Value = serde_json::from_slice(&kv.value).unwrap();
                    stored["data"]["concurrent"] = json!("yes");
                    api.store
                        .update(key, serde_json::to_vec(&stored).unwrap(), kv.mod_revision)
                        .await
                        .unwrap();
                }
            }
            Ok(())
        })
    }

    fn validate<'a>(&'a self, _api: &'a Api, a: &'a admission::Attributes) -> Outcome<'a> {
        Box::pin(async move {
            let Some(obj) = a.object.as_ref() else {
                return Ok(());
            };
            if let Some(uid) = obj["metadata"]["uid"].as_str() {
                self.validated_uids.lock().unwrap().push(uid.to_string());
            }
            if obj["metadata"]["labels"]["deny"] == "yes" {
                return Err(a.forbidden("the test's validating plugin refuses deny=yes"));
            }
            Ok(())
        })
    }
}

fn with_recorder(rec: Arc<Recorder>) -> Pipeline {
    Pipeline {
        admission: Arc::new(admission::Chain::standard().with(rec)),
        ..Pipeline::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_mutates_before_validation_refuses_after_and_reruns_in_the_update_retry() {
    let rec = Arc::new(Recorder::default());
    let c = Cluster::start(with_recorder(rec.clone())).await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = |name: &str, labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"a": "1"}});
    // Without the plugin's repair this label value is a 422.
    let (code, made) = c
        .admin_call(
            Method::POST,
            cms,
            Some(cm("repaired", json!({"repair": "-not valid-"}))),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{made}");
    assert_eq!(made["metadata"]["labels"]["repair"], "repaired");
    assert_eq!(made["metadata"]["labels"]["admitted"], "CREATE");
    // Validating admission sees the object as it will be stored (uid set).
    assert!(rec
        .validated_uids
        .lock()
        .unwrap()
        .contains(&made["metadata"]["uid"].as_str().unwrap().to_string()));

    let (code, refused) = c
        .admin_call(
            Method::POST,
            cms,
            Some(cm("refused", json!({"deny": "yes"}))),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{refused}");
    assert_eq!(
        refused["message"],
        r#"configmaps "refused" is forbidden: the test's validating plugin refuses deny=yes"#
    );
    let (code, _) = c
        .admin_call(Method::GET, &format!("{cms}/refused"), None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    // Invalid objects are refused by validation before validating admission is asked.
    let (code, invalid) = c
        .admin_call(Method::POST, cms, Some(cm("Bad_Name", json!({}))))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");

    // A patch whose compare-and-swap loses the race: admission runs again on the new object.
    let (code, _) = c
        .admin_call(Method::POST, cms, Some(cm("raced", json!({}))))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, patched) = c
        .call(
            &admin(),
            Method::PATCH,
            &format!("{cms}/raced"),
            "application/merge-patch+json",
            Some(json!({"data": {"patched": "yes"}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(*rec.raced_attempts.lock().unwrap(), 2);
    assert_eq!(patched["data"]["concurrent"], "yes", "{patched}");
    assert_eq!(patched["data"]["patched"], "yes");
    assert_eq!(patched["metadata"]["labels"]["admitted"], "UPDATE");

    // A refused update leaves the stored object alone.
    let (code, _) = c
        .call(
            &admin(),
            Method::PATCH,
            &format!("{cms}/raced"),
            "application/merge-patch+json",
            Some(json!({"metadata": {"labels": {"deny": "yes"}}})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let (_, now) = c
        .admin_call(Method::GET, &format!("{cms}/raced"), None)
        .await;
    assert!(now["metadata"]["labels"]["deny"].is_null());

    // A /scale write is admitted as the Scale, and the admitted Scale is what is written.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let deployments = "/apis/apps/v1/namespaces/default/deployments";
    let (code, _) = c.admin_call(Method::POST, deployments, Some(deploy)).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, scale) = c
        .call(
            &admin(),
            Method::PATCH,
            &format!("{deployments}/web/scale"),
            "application/merge-patch+json",
            Some(json!({"spec": {"replicas": 7}})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 5);
    let (_, d) = c
        .admin_call(Method::GET, &format!("{deployments}/web"), None)
        .await;
    assert_eq!(d["spec"]["replicas"], 5);
    assert!(rec
        .kinds
        .lock()
        .unwrap()
        .contains(&("deployments/scale".into(), "Scale".into())));

    // A binding is admitted as upstream: the CREATE of pods/binding, not an update of the pod.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bound"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let (code, _) = c
        .admin_call(Method::POST, "/api/v1/namespaces/default/pods", Some(pod))
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "bound"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, _) = c
        .admin_call(
            Method::POST,
            "/api/v1/namespaces/default/pods/bound/binding",
            Some(binding),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);

    let seen = rec.seen.lock().unwrap().clone();
    assert!(seen.contains(&(
        "system:admin".into(),
        Operation::Update,
        "configmaps".into(),
        "raced".into()
    )));
    let kinds = rec.kinds.lock().unwrap().clone();
    assert!(
        kinds.contains(&("pods/binding".into(), "Binding".into())),
        "{kinds:?}"
    );
    let bindings: Vec<_> = seen.iter().filter(|s| s.2 == "pods/binding").collect();
    assert_eq!(
        bindings,
        vec![&(
            "system:admin".to_string(),
            Operation::Create,
            "pods/binding".to_string(),
            "bound".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_callers_are_named_identities() {
    let rec = Arc::new(Recorder::default());
    let _c = Cluster::start(with_recorder(rec.clone())).await;
    let seen_as = |user: &str, op: Operation, what: &str, name: &str| {
        rec.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(u, o, w, n)| u == user && *o == op && w == what && n == name)
    };
    assert!(seen_as(
        "system:apiserver",
        Operation::Create,
        "namespaces",
        "kube-system"
    ));

    // The garbage collector and the namespace controller are API clients of the controller
    // manager now, not part of the server's request path: their identities and RBAC are
    // exercised by tests/garbage_collection.rs against a server that runs them.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_plugins() {
    let c = Cluster::start(Pipeline::default()).await;
    let pod = |name: &str, extra: Value| {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        json_patch::merge(&mut spec, &extra);
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    };
    let pods = "/api/v1/namespaces/default/pods";
    let (code, p) = c
        .admin_call(Method::POST, pods, Some(pod("plain", json!({}))))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{p}");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(p["spec"]["serviceAccount"], "default");
    assert_eq!(p["spec"]["priority"], 0);
    assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);

    let (code, p) = c
        .admin_call(
            Method::POST,
            pods,
            Some(pod(
                "critical",
                json!({"priorityClassName": "system-cluster-critical"}),
            )),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{p}");
    assert_eq!(p["spec"]["priority"], 2_000_000_000);
    let (code, e) = c
        .admin_call(
            Method::POST,
            pods,
            Some(pod("nope", json!({"priorityClassName": "nope"}))),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        e["message"],
        r#"pods "nope" is forbidden: no PriorityClass with name nope was found"#
    );
    // A stored class, and a globalDefault one for pods that name none.
    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "batch"}, "value": 1000, "globalDefault": true, "preemptionPolicy": "Never"});
    let (code, _) = c
        .admin_call(
            Method::POST,
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            Some(pc),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    // The plugin watches the classes, as upstream's informer: the new one shows within moments.
    let mut attempt = 0;
    let p = loop {
        attempt += 1;
        let name = format!("defaulted-{attempt}");
        let (code, p) = c
            .admin_call(Method::POST, pods, Some(pod(&name, json!({}))))
            .await;
        assert_eq!(code, StatusCode::CREATED, "{p}");
        if p["spec"]["priority"] == 1000 || attempt == 40 {
            break p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(p["spec"]["priority"], 1000);
    assert_eq!(p["spec"]["priorityClassName"], "batch");
    assert_eq!(p["spec"]["preemptionPolicy"], "Never");
    let second = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "also-default"}, "value": 5, "globalDefault": true});
    let (code, e) = c
        .admin_call(
            Method::POST,
            "/apis/scheduling.k8s.io/v1/priorityclasses",
            Some(second),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        e["message"],
        r#"priorityclasses.scheduling.k8s.io "also-default" is forbidden: PriorityClass batch is already marked as default. Only one default can exist"#
    );
    let (code, e) = c
        .admin_call(
            Method::POST,
            pods,
            Some(pod(
                "liar",
                json!({"priorityClassName": "batch", "priority": 5}),
            )),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        e["message"],
        r#"pods "liar" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"#
    );

    // NamespaceLifecycle.
    let (code, e) = c
        .admin_call(
            Method::POST,
            "/api/v1/namespaces/missing/pods",
            Some(pod("p", json!({}))),
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(e["message"], r#"namespaces "missing" not found"#);
    let (code, e) = c
        .admin_call(Method::DELETE, "/api/v1/namespaces/kube-system", None)
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        e["message"],
        r#"namespaces "kube-system" is forbidden: this namespace may not be deleted"#
    );
}

/// Takes exec upgrades: checks what arrived, answers 101 and echoes on the switched connection.
#[derive(Default)]
struct Echo {
    seen: Mutex<Vec<String>>,
}

impl Connector for Echo {
    fn connect<'a>(
        &'a self,
        _api: &'a Api,
        mut req: ConnectRequest,
    ) -> BoxFuture<'a, Result<Resp, ApiError>> {
        Box::pin(async move {
            let h = &req.parts.headers;
            let get = |k: &str| {
                h.get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            self.seen.lock().unwrap().push(format!(
                "{} {}/{} {} {} user={} upgrade={} protocol={}{} query={}",
                req.info.api_verb,
                req.info.resource,
                req.info.subresource,
                req.info.namespace,
                req.info.name,
                req.user.name,
                get("upgrade"),
                get("x-stream-protocol-version"),
                get("sec-websocket-protocol"),
                req.parts.uri.query().unwrap_or(""),
            ));
            let upgrade = req
                .upgrade()
                .ok_or_else(|| ApiError::BadRequest("no upgrade".into()))?;
            // Nothing read the body before the hand-off: its first bytes are still there.
            let first = req.body.frame().await;
            let first = match first {
                Some(Ok(f)) => f.into_data().unwrap_or_default(),
                _ => Bytes::new(),
            };
            self.seen
                .lock()
                .unwrap()
                .push(format!("body={}", text(&first)));
            tokio::spawn(async move {
                let io = upgrade.await.unwrap();
                let mut io = hyper_util::rt::TokioIo::new(io);
                let mut buf = [0u8; 4];
                io.read_exact(&mut buf).await.unwrap();
                io.write_all(format!("pong:{}", text(&buf)).as_bytes())
                    .await
                    .unwrap();
                io.flush().await.unwrap();
            });
            let mut resp = full(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Bytes::new());
            resp.headers_mut()
                .insert(header::CONNECTION, "Upgrade".parse().unwrap());
            resp.headers_mut()
                .insert(header::UPGRADE, "SPDY/3.1".parse().unwrap());
            Ok(resp)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_upgrades_reach_the_connector_before_the_body_is_read() {
    let echo = Arc::new(Echo::default());
    let rec = Arc::new(Recorder::default());
    let c = Cluster::start(Pipeline {
        connector: echo.clone(),
        ..with_recorder(rec.clone())
    })
    .await;
    // A plain-HTTP/1.1 listener in front of the same Api (the TLS one is the same code path).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let api = c.api.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let api = api.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req| api.clone().handle(req, Some(admin())));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/namespaces/default/pods/web/exec?command=sh&stdin=true HTTP/1.1\r\n\
          Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
          X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = text(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: spdy/3.1"),
        "{head}"
    );
    tcp.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&answer), "pong:ping");
    let seen = echo.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            "create pods/exec default web user=system:admin upgrade=SPDY/3.1 protocol=v4.channel.k8s.io query=command=sh&stdin=true".to_string(),
            "body=hello".to_string(),
        ]
    );
    assert!(rec.seen.lock().unwrap().contains(&(
        "system:admin".into(),
        Operation::Connect,
        "pods/exec".into(),
        "web".into()
    )));

    // kubectl 1.30+'s websocket form: a GET with the channel protocol.
    let mut ws = tokio::net::TcpStream::connect(addr).await.unwrap();
    ws.write_all(
        b"GET /api/v1/namespaces/default/pods/web/attach?stdout=true HTTP/1.1\r\n\
          Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        ws.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(text(&head).starts_with("HTTP/1.1 101"), "{}", text(&head));
    ws.write_all(b"ping").await.unwrap();
    let mut answer = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text(&answer), "pong:ping");
    let seen = echo.seen.lock().unwrap().clone();
    assert_eq!(
        seen[2],
        "get pods/attach default web user=system:admin upgrade=websocket protocol=v5.channel.k8s.io query=stdout=true"
    );
    assert_eq!(seen[3], "body=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_node_agent_connect_requests_get_upstreams_answers() {
    let c = Cluster::start(Pipeline::default()).await;
    let out = c
        .kubectl(&["run", "idle", "--image=busybox", "--restart=Never"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = c.kubectl(&["exec", "idle", "--", "ls"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("pod idle does not have a host assigned"),
        "{}",
        text(&out.stderr)
    );
    let out = c.kubectl(&["logs", "idle"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let (code, e) = c
        .admin_call(
            Method::GET,
            "/api/v1/namespaces/default/pods/ghost/exec?command=ls",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(e["message"], r#"pods "ghost" not found"#);
    // Bound to a node nobody serves: 503.
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "idle"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}});
    let (code, _) = c
        .admin_call(
            Method::POST,
            "/api/v1/namespaces/default/pods/idle/binding",
            Some(binding),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, e) = c
        .admin_call(
            Method::POST,
            "/api/v1/namespaces/default/pods/idle/exec?command=ls",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    assert_eq!(e["reason"], "ServiceUnavailable");
    let (code, _) = c
        .admin_call(
            Method::PUT,
            "/api/v1/namespaces/default/pods/idle/log",
            None,
        )
        .await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}

/// An admission plugin that panics on configmaps named "boom".
struct Panicker;

impl Plugin for Panicker {
    fn name(&self) -> &'static str {
        "TestPanicker"
    }

    fn admit<'a>(&'a self, _api: &'a Api, a: &'a mut admission::Attributes) -> Outcome<'a> {
        Box::pin(async move {
            if a.resource.plural == "configmaps" && a.name == "boom" {
                panic!("the test's plugin panics");
            }
            Ok(())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_and_is_audited_as_panic() {
    let logs = tempfile::tempdir().unwrap();
    let policy = logs.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Request\n",
    )
    .unwrap();
    let log = logs.path().join("audit.log");
    let audit = nanokube::apiserver::audit::Log::from_flags(&nanokube::apiserver::audit::Flags {
        audit_log_path: Some(log.display().to_string()),
        audit_policy_file: Some(policy),
        ..Default::default()
    })
    .unwrap();
    let c = Cluster::start(Pipeline {
        admission: Arc::new(admission::Chain::standard().with(Arc::new(Panicker))),
        audit,
        ..Pipeline::default()
    })
    .await;
    let (code, body) = c
        .admin_call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "boom"}})),
        )
        .await;
    assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    // The server still answers.
    let (code, _) = c
        .admin_call(Method::GET, "/api/v1/namespaces/default/configmaps", None)
        .await;
    assert_eq!(code, StatusCode::OK);
    let stages = eventually_lines(&log, |events| {
        let panic = events
            .iter()
            .find(|e| e["stage"] == "Panic" && e["objectRef"]["name"] == "boom")?;
        assert_eq!(panic["responseStatus"]["code"], 500);
        let stages: Vec<String> = events
            .iter()
            .filter(|e| e["auditID"] == panic["auditID"])
            .map(|e| e["stage"].as_str().unwrap_or("").to_string())
            .collect();
        Some(stages)
    })
    .await;
    assert_eq!(stages, ["RequestReceived", "Panic"]);
}

async fn eventually_lines<T>(log: &std::path::Path, f: impl Fn(&[Value]) -> Option<T>) -> T {
    for _ in 0..100 {
        let events: Vec<Value> = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if let Some(t) = f(&events) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the audit log never had it: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
