//! Output negotiation against a real server: Accept: application/yaml answers YAML, an Accept
//! the server cannot write is 406 NotAcceptable and the request does not run.

mod api_support;

use api_support::{raw::curl_args, Server};
use serde_json::Value;

/// curl as the admin with an Accept header; returns (code, body, headers lowercased).
fn curl_accept(
    s: &Server,
    method: &str,
    path: &str,
    accept: &str,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut extra = vec!["-H".to_string(), format!("Accept: {accept}")];
    if let Some(b) = body {
        extra
            .extend(["-H", "Content-Type: application/json", "--data-binary", b].map(String::from));
    }
    let (code, body, headers) = curl_args(s, "admin", method, path, &extra);
    (code, body, headers.to_ascii_lowercase())
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn yaml_on_request_and_406_for_the_unwritable() {
    let s = Server::start();
    s.configmap("cfg", "default", &[("greeting", "hello")]);

    let (code, body, headers) =
        curl_accept(&s, "GET", &format!("{CMS}/cfg"), "application/yaml", None);
    assert_eq!(code, 200, "{body}");
    assert!(
        headers.contains("content-type: application/yaml"),
        "{headers}"
    );
    assert!(
        serde_json::from_str::<Value>(&body).is_err(),
        "not JSON: {body}"
    );
    let obj: Value = serde_yaml::from_str(&body).unwrap();
    assert_eq!(obj["kind"], "ConfigMap");
    assert_eq!(obj["data"]["greeting"], "hello");
    assert!(body.contains("greeting: hello"), "{body}");

    let (code, body, headers) = curl_accept(&s, "GET", CMS, "application/yaml", None);
    assert_eq!(code, 200);
    assert!(headers.contains("content-type: application/yaml"));
    let list: Value = serde_yaml::from_str(&body).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["metadata"]["name"] == "cfg"));

    // Errors come in the negotiated format too, as upstream.
    let (code, body, _) = curl_accept(&s, "GET", &format!("{CMS}/nope"), "application/yaml", None);
    assert_eq!(code, 404);
    let st: Value = serde_yaml::from_str(&body).unwrap();
    assert_eq!(st["reason"], "NotFound");

    // Preference order and wildcards: JSON when the client prefers it.
    let (code, body, headers) = curl_accept(
        &s,
        "GET",
        CMS,
        "application/yaml;q=0.5, application/json",
        None,
    );
    assert_eq!(code, 200);
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    serde_json::from_str::<Value>(&body).unwrap();
    assert_eq!(
        curl_accept(&s, "GET", CMS, "text/html, */*;q=0.8", None).0,
        200
    );

    // Nothing the server writes: 406, and a create asked for this way is not made.
    let (code, body, _) = curl_accept(&s, "GET", CMS, "application/xml", None);
    assert_eq!(code, 406, "{body}");
    let st: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "NotAcceptable");
    assert_eq!(st["code"], 406);
    assert_eq!(
        st["message"],
        "only the following media types are accepted: application/json, application/yaml"
    );
    let (code, _, _) = curl_accept(
        &s,
        "POST",
        CMS,
        "application/xml",
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"unwanted"}}"#),
    );
    assert_eq!(code, 406);
    assert!(s
        .fails(&["get", "configmap", "unwanted"])
        .contains("NotFound"));
    // A create asked for in YAML is answered in YAML.
    let (code, body, _) = curl_accept(
        &s,
        "POST",
        CMS,
        "application/yaml",
        Some(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"wanted"}}"#),
    );
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        serde_yaml::from_str::<Value>(&body).unwrap()["metadata"]["name"],
        "wanted"
    );
    // A watch has no YAML framing here.
    let (code, body, _) = curl_accept(
        &s,
        "GET",
        &format!("{CMS}?watch=true"),
        "application/yaml",
        None,
    );
    assert_eq!(code, 406, "{body}");
    // kubectl is unaffected.
    assert!(s
        .ok(&["get", "configmaps", "-o", "name"])
        .contains("configmap/cfg"));
}
