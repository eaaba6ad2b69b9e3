//! Every kind in the registry, walked from the registry itself (not a list kept here): each has
//! discovery entries, an OpenAPI schema, a table, protobuf coverage, and a minimal object that
//! survives create and get. And the registry's run-time seam: a kind registered while the
//! server runs shows in discovery and OpenAPI, whose ETags change so clients' caches refresh.
//!
//! The server runs in-process over a temporary store; requests go through `Api::handle`, the
//! same entry point the HTTP listener uses.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use nanokube::apiserver::auth::{Authenticator, User};
use nanokube::apiserver::handler::Api;
use nanokube::apiserver::kinds::{self, Plain};
use nanokube::apiserver::registry::Registry;
use nanokube::store::sqlite::{Options, SqliteStore};
use serde_json::{json, Value};
use std::sync::Arc;

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

struct Server {
    api: Arc<Api>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::watch::Sender<bool>,
}

struct Answer {
    status: StatusCode,
    etag: Option<String>,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(300)])
            )
        })
    }
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db"), Options::default()).unwrap();
        let auth = Authenticator::load(dir.path(), None).unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let api = Arc::new_cyclic(|me| Api {
            store,
            auth,
            shutdown: stopped,
            server_address: "127.0.0.1:6443".into(),
            me: me.clone(),
            registry: Registry::builtin(),
            inflight: nanokube::apiserver::overload::Inflight::new(0, 0),
            metrics: Arc::new(nanokube::apiserver::metrics::Metrics::default()),
            pipeline: Default::default(),
        });
        api.bootstrap().await.unwrap();
        let s = Server {
            api,
            _dir: dir,
            _stop: stop,
        };
        // No controllers run here: make the account pods are admitted with, as the
        // serviceaccount controller would.
        let sa =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        let made = s
            .call(
                Method::POST,
                "/api/v1/namespaces/default/serviceaccounts",
                &[],
                Some(&sa),
            )
            .await;
        assert_eq!(made.status, StatusCode::CREATED);
        s
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let admin = User::new("admin", &["system:masters"]);
        let resp = self
            .api
            .clone()
            .handle(req.body(Full::new(body)).unwrap(), Some(admin))
            .await
            .unwrap();
        let status = resp.status();
        let etag = resp
            .headers()
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        Answer { status, etag, body }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.call(Method::GET, path, headers, None).await
    }
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    }
}

/// The resources of a group-version in an aggregated discovery document.
fn aggregated_resources<'a>(doc: &'a Value, group: &str, version: &str) -> Option<&'a Vec<Value>> {
    doc["items"]
        .as_array()?
        .iter()
        .find(|g| g["metadata"]["name"] == group)?["versions"]
        .as_array()?
        .iter()
        .find(|v| v["version"] == version)?["resources"]
        .as_array()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_registered_kind_is_discovered_documented_printed_and_stored() {
    let s = Server::start().await;
    let snap = s.api.registry.snapshot();
    assert!(snap.all().len() > 30, "the built-in kinds are registered");
    let core = s.get("/api", &[("accept", AGGREGATED)]).await.json();
    let named = s.get("/apis", &[("accept", AGGREGATED)]).await.json();
    let v2 = s.get("/openapi/v2", &[]).await.json();
    let mut v3_docs: std::collections::HashMap<String, Value> = Default::default();
    let mut refused = Vec::new();
    for info in snap.all() {
        let what = format!("{}/{} {}", info.group, info.version, info.kind);
        // Discovery, both forms.
        let agg = if info.group.is_empty() { &core } else { &named };
        let resources = aggregated_resources(agg, &info.group, &info.version)
            .unwrap_or_else(|| panic!("{what}: group-version in aggregated discovery"));
        let entry = resources
            .iter()
            .find(|r| r["resource"] == info.plural.as_str())
            .unwrap_or_else(|| panic!("{what}: in aggregated discovery"));
        assert_eq!(entry["responseKind"]["kind"], info.kind.as_str(), "{what}");
        let legacy = s.get(&gv_path(&info.group, &info.version), &[]).await;
        assert_eq!(legacy.status, StatusCode::OK, "{what}");
        assert!(
            legacy.json()["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == info.plural.as_str() && r["kind"] == info.kind.as_str()),
            "{what}: in the legacy APIResourceList"
        );
        // OpenAPI v3 and v2: the kind's schema, tagged with its group-version-kind.
        let key = gv_path(&info.group, &info.version);
        if !v3_docs.contains_key(&key) {
            let doc = s.get(&format!("/openapi/v3{key}"), &[]).await;
            assert_eq!(doc.status, StatusCode::OK, "{what}: v3 document");
            v3_docs.insert(key.clone(), doc.json());
        }
        let schema_name = info.schema.name();
        let gvk = json!([{"group": info.group, "kind": info.kind, "version": info.version}]);
        let schema = &v3_docs[&key]["components"]["schemas"][schema_name];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"], gvk,
            "{what}: v3 schema"
        );
        assert_eq!(
            v2["definitions"][schema_name]["x-kubernetes-group-version-kind"], gvk,
            "{what}: v2 definition"
        );
        // Protobuf: kubectl sends built-in kinds in protobuf, so each needs its message. CRDs
        // are not in kubectl's typed scheme: it (and `kube`) send them as JSON.
        let message = schema_name.replacen("io.k8s.", "k8s.io.", 1);
        assert!(
            info.group == "apiextensions.k8s.io"
                || nanokube::apiserver::protobuf::schema::message(&message).is_some(),
            "{what}: protobuf message {message}"
        );
        // A minimal object: created, read back, printed as a table row matching the columns.
        let mut obj = info.strategy.minimal();
        // A kind whose name follows from its content (a CRD's `<plural>.<group>`) names itself.
        let name = match obj["metadata"]["name"].as_str() {
            Some(n) => n.to_string(),
            None => format!("min-{}", info.singular),
        };
        obj["apiVersion"] = json!(info.api_version);
        obj["kind"] = json!(info.kind);
        obj["metadata"] = json!({"name": name});
        let collection = if info.namespaced {
            format!(
                "{}/namespaces/default/{}",
                gv_path(&info.group, &info.version),
                info.plural
            )
        } else {
            format!("{}/{}", gv_path(&info.group, &info.version), info.plural)
        };
        let created = s.call(Method::POST, &collection, &[], Some(&obj)).await;
        // Resources stored as another version share a name with it (a core Event and an
        // events.k8s.io one are one object): the second create finds it.
        let conflict_ok = info.converted.is_some() && created.status == StatusCode::CONFLICT;
        if created.status != StatusCode::CREATED && !conflict_ok {
            refused.push(format!(
                "{what}: create answered {}: {}",
                created.status,
                String::from_utf8_lossy(&created.body)
            ));
            continue;
        }
        let got = s.get(&format!("{collection}/{name}"), &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{what}: get");
        let got_json = got.json();
        assert_eq!(got_json["kind"], info.kind.as_str(), "{what}");
        assert_eq!(got_json["apiVersion"], info.api_version.as_str(), "{what}");
        assert_eq!(got_json["metadata"]["name"], name.as_str(), "{what}");
        let table = s
            .get(
                &format!("{collection}/{name}"),
                &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
            )
            .await
            .json();
        let columns = table["columnDefinitions"].as_array().unwrap();
        assert!(!columns.is_empty(), "{what}: table columns");
        assert_eq!(
            table["rows"][0]["cells"].as_array().unwrap().len(),
            columns.len(),
            "{what}: row cells match the columns"
        );
    }
    assert!(
        refused.is_empty(),
        "minimal objects refused:\n{}",
        refused.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_registered_at_run_time_is_served_and_changes_the_etags() {
    let s = Server::start().await;
    let disc = s.get("/apis", &[("accept", AGGREGATED)]).await;
    let disc_tag = disc.etag.clone().expect("aggregated discovery has an ETag");
    let again = s
        .get(
            "/apis",
            &[("accept", AGGREGATED), ("if-none-match", &disc_tag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED, "unchanged: 304");
    let v2_tag = s.get("/openapi/v2", &[]).await.etag.expect("v2 ETag");
    let root_before = s.get("/openapi/v3", &[]).await.json();
    assert!(root_before["paths"]["apis/example.nanokube.io/v1"].is_null());
    assert_eq!(
        s.get("/apis/example.nanokube.io/v1", &[]).await.status,
        StatusCode::NOT_FOUND
    );

    let schema = json!({"type": "object", "description": "A widget, for the test.",
        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
            "metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"},
            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}});
    s.api
        .registry
        .register(kinds::custom(
            "example.nanokube.io",
            "v1",
            "Widget",
            "widgets",
            true,
            schema,
            Arc::new(Plain),
        ))
        .unwrap();

    // Discovery: a new body, a new ETag; the old ETag no longer matches.
    let disc2 = s
        .get(
            "/apis",
            &[("accept", AGGREGATED), ("if-none-match", &disc_tag)],
        )
        .await;
    assert_eq!(disc2.status, StatusCode::OK);
    assert_ne!(disc2.etag.as_deref(), Some(disc_tag.as_str()));
    let widgets = aggregated_resources(&disc2.json(), "example.nanokube.io", "v1")
        .expect("the new group in aggregated discovery")
        .clone();
    assert_eq!(widgets[0]["resource"], "widgets");
    assert_eq!(widgets[0]["scope"], "Namespaced");
    let legacy = s.get("/apis/example.nanokube.io", &[]).await;
    assert_eq!(legacy.json()["preferredVersion"]["version"], "v1");
    let list = s.get("/apis/example.nanokube.io/v1", &[]).await.json();
    assert_eq!(list["resources"][0]["kind"], "Widget");

    // OpenAPI: v3's root lists the group-version (with a hash), its document has the schema;
    // v2 is a new document with a new ETag.
    let root = s.get("/openapi/v3", &[]).await.json();
    let url = root["paths"]["apis/example.nanokube.io/v1"]["serverRelativeURL"]
        .as_str()
        .expect("v3 root lists the new group-version")
        .to_string();
    assert!(url.contains("?hash="));
    assert_eq!(
        root["paths"]["api/v1"], root_before["paths"]["api/v1"],
        "an unchanged group-version keeps its hash"
    );
    let doc = s.get(url.split('?').next().unwrap(), &[]).await.json();
    let widget = &doc["components"]["schemas"]["io.nanokube.example.v1.Widget"];
    assert_eq!(widget["description"], "A widget, for the test.");
    assert_eq!(
        widget["x-kubernetes-group-version-kind"][0]["kind"],
        "Widget"
    );
    let v2 = s.get("/openapi/v2", &[("if-none-match", &v2_tag)]).await;
    assert_eq!(v2.status, StatusCode::OK);
    assert_ne!(v2.etag.as_deref(), Some(v2_tag.as_str()));
    assert!(v2.json()["definitions"]["io.nanokube.example.v1.Widget"].is_object());

    // And it is served: create, get, list.
    let w = json!({"apiVersion": "example.nanokube.io/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"size": 3}});
    let base = "/apis/example.nanokube.io/v1/namespaces/default/widgets";
    let created = s.call(Method::POST, base, &[], Some(&w)).await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let got = s.get(&format!("{base}/w1"), &[]).await.json();
    assert_eq!(got["spec"]["size"], 3);
    assert_eq!(
        s.get(base, &[]).await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Unregistered: gone from discovery and OpenAPI again.
    assert!(s
        .api
        .registry
        .unregister("example.nanokube.io", "v1", "widgets")
        .is_some());
    assert_eq!(s.get(base, &[]).await.status, StatusCode::NOT_FOUND);
    let disc3 = s.get("/apis", &[("accept", AGGREGATED)]).await;
    assert!(aggregated_resources(&disc3.json(), "example.nanokube.io", "v1").is_none());
    assert!(
        s.get("/openapi/v3", &[]).await.json()["paths"]["apis/example.nanokube.io/v1"].is_null()
    );
}
