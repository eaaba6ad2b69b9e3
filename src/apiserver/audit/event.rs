//! One audit.k8s.io/v1 Event, as kube-apiserver writes it to its log: what the request was
//! (from RequestInfo and the headers), who made it, and, once answered, the response status and
//! at Request and RequestResponse levels the bodies.

use super::policy::{Level, Stage};
use crate::apiserver::auth::User;
use crate::apiserver::request_info::RequestInfo;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    /// authentication.k8s.io UserInfo; `{}` for a request no authenticator accepted.
    pub user: Value,
    /// Whom the user acted as (`--as`); `user` stays the one who authenticated. Not on the
    /// RequestReceived event, which is written before impersonation is checked (as upstream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<Value>,
    #[serde(rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    pub request_received_timestamp: String,
    pub stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// Always present for a resource, `""` for the core group, as upstream writes it.
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// RFC 3339 in UTC with microseconds, as upstream's MicroTime.
pub fn micro_time(t: Timestamp) -> String {
    format!(
        "{}.{:06}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_microsecond()
    )
}

/// What an event is made from, taken from the request before it is handled.
pub struct RequestFacts<'a> {
    pub info: &'a RequestInfo,
    pub uri: &'a http::Uri,
    pub headers: &'a http::HeaderMap,
    pub peer: Option<std::net::IpAddr>,
    pub user: Option<&'a User>,
    pub audit_id: &'a str,
    pub received: Timestamp,
}

impl Event {
    /// The event at RequestReceived: everything known before the request is handled.
    pub fn new(facts: &RequestFacts, level: Level) -> Event {
        let info = facts.info;
        let received = micro_time(facts.received);
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id: facts.audit_id.to_string(),
            stage: Stage::RequestReceived,
            request_uri: facts
                .uri
                .path_and_query()
                .map_or_else(|| facts.uri.path().to_string(), |pq| pq.as_str().into()),
            verb: info.api_verb.to_string(),
            user: facts.user.map_or_else(
                || serde_json::json!({}),
                crate::apiserver::handler::user_info,
            ),
            impersonated_user: None,
            source_ips: source_ips(facts.headers, facts.peer),
            user_agent: header(facts.headers, http::header::USER_AGENT).to_string(),
            object_ref: info.is_resource.then(|| ObjectRef {
                resource: info.resource.clone(),
                namespace: info.namespace.clone(),
                name: info.name.clone(),
                api_group: info.group.clone(),
                api_version: info.version.clone(),
                subresource: info.subresource.clone(),
                ..Default::default()
            }),
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: received.clone(),
            stage_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// What the request body says of its object: a create names its object only there.
    /// At Request level and above the body itself is kept too.
    pub fn set_request_body(&mut self, body: &[u8], omit_managed_fields: bool) {
        if body.is_empty() {
            return;
        }
        let Some(mut object) = parse_body(body) else {
            return;
        };
        if let (Some(r), Some(meta)) = (self.object_ref.as_mut(), object.get("metadata")) {
            let field = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("");
            for (slot, key) in [
                (&mut r.namespace, "namespace"),
                (&mut r.name, "name"),
                (&mut r.uid, "uid"),
                (&mut r.resource_version, "resourceVersion"),
            ] {
                if slot.is_empty() {
                    *slot = field(key).to_string();
                }
            }
        }
        if self.level >= Level::Request {
            if omit_managed_fields {
                strip_managed_fields(&mut object);
            }
            self.request_object = Some(object);
        }
    }

    /// The response's code, and for a Status (every failure) its status, reason, message and
    /// details, as upstream copies them; at RequestResponse level the whole body too.
    pub fn set_response(&mut self, code: u16, body: Option<&[u8]>, omit_managed_fields: bool) {
        let mut status = serde_json::json!({"metadata": {}, "code": code});
        let object = body.and_then(parse_body);
        if let Some(s) = object
            .as_ref()
            .filter(|o| o.get("kind").and_then(Value::as_str) == Some("Status"))
        {
            for key in ["status", "message", "reason", "details"] {
                if let Some(v) = s.get(key) {
                    status[key] = v.clone();
                }
            }
        }
        self.response_status = Some(status);
        if self.level >= Level::RequestResponse {
            self.response_object = object.map(|mut o| {
                if omit_managed_fields {
                    strip_managed_fields(&mut o);
                }
                o
            });
        }
    }
}

/// A body as JSON: JSON or YAML as sent, or Kubernetes protobuf (kubectl's creates) decoded, as
/// upstream logs the decoded object.
fn parse_body(body: &[u8]) -> Option<Value> {
    if body.starts_with(b"k8s\0") {
        return crate::apiserver::protobuf::decode_request(body).ok();
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .or_else(|| serde_yaml::from_slice::<Value>(body).ok())
        .filter(|v| v.is_object() || v.is_array())
}

/// omitManagedFields: an object's, or a list's items', metadata.managedFields.
fn strip_managed_fields(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip_managed_fields);
    }
}

fn header(headers: &http::HeaderMap, name: impl http::header::AsHeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// As upstream's utilnet.SourceIPs: X-Forwarded-For's addresses, else X-Real-Ip, then the
/// connection's peer unless it is already last.
pub fn source_ips(headers: &http::HeaderMap, peer: Option<std::net::IpAddr>) -> Vec<String> {
    let mut ips: Vec<std::net::IpAddr> = header(headers, "x-forwarded-for")
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            header(headers, "x-real-ip")
                .trim()
                .parse::<std::net::IpAddr>(),
        );
    }
    if let Some(p) = peer.filter(|p| ips.last() != Some(p)) {
        ips.push(p);
    }
    ips.iter().map(|ip| ip.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn facts_event(method: Method, uri: &str, level: Level) -> Event {
        let uri: http::Uri = uri.parse().unwrap();
        let info = crate::apiserver::request_info::classify(
            &method,
            uri.path(),
            uri.query(),
            "application/json",
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("user-agent", "kubectl/v1.32.0".parse().unwrap());
        headers.insert("x-forwarded-for", "10.0.0.1, 10.0.0.2".parse().unwrap());
        let user = User {
            uid: "u-1".into(),
            ..User::new("alice", &["devs", "system:authenticated"])
        };
        let facts = RequestFacts {
            info: &info,
            uri: &uri,
            headers: &headers,
            peer: Some("127.0.0.1".parse().unwrap()),
            user: Some(&user),
            audit_id: "id-1",
            received: "2026-12-03T16:48:09.5Z".parse().unwrap(),
        };
        Event::new(&facts, level)
    }

    #[test]
    fn metadata_event_has_upstreams_shape() {
        let mut ev = facts_event(
            Method::POST,
            "/api/v1/namespaces/ns1/configmaps?fieldManager=kubectl-create",
            Level::Metadata,
        );
        ev.set_request_body(br#"{"metadata":{"name":"cm1"},"data":{"k":"v"}}"#, false);
        ev.set_response(201, Some(br#"{"metadata":{"name":"cm1"}}"#), false);
        ev.stage = Stage::ResponseComplete;
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
                "auditID": "id-1", "stage": "ResponseComplete",
                "requestURI": "/api/v1/namespaces/ns1/configmaps?fieldManager=kubectl-create",
                "verb": "create",
                "user": {"username": "alice", "uid": "u-1", "groups": ["devs", "system:authenticated"]},
                "sourceIPs": ["10.0.0.1", "10.0.0.2", "127.0.0.1"],
                "userAgent": "kubectl/v1.32.0",
                "objectRef": {"resource": "configmaps", "namespace": "ns1", "name": "cm1",
                              "apiGroup": "", "apiVersion": "v1"},
                "responseStatus": {"metadata": {}, "code": 201},
                "requestReceivedTimestamp": "2026-12-03T16:48:09.500000Z",
                "stageTimestamp": "2026-12-03T16:48:09.500000Z",
            })
        );
    }

    #[test]
    fn request_response_keeps_bodies_and_failure_status() {
        let mut ev = facts_event(
            Method::PUT,
            "/apis/apps/v1/namespaces/ns1/deployments/web/scale",
            Level::RequestResponse,
        );
        ev.set_request_body(
            br#"{"metadata":{"name":"web","managedFields":[{"manager":"x"}]},"spec":{"replicas":3}}"#,
            true,
        );
        let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" not found","reason":"NotFound","details":{"name":"web","group":"apps","kind":"deployments"},"code":404}"#;
        ev.set_response(404, Some(status), true);
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["verb"], "update");
        assert_eq!(
            v["objectRef"],
            serde_json::json!({"resource": "deployments", "namespace": "ns1", "name": "web",
                "apiGroup": "apps", "apiVersion": "v1", "subresource": "scale"})
        );
        assert_eq!(
            v["requestObject"],
            serde_json::json!({"metadata": {"name": "web"}, "spec": {"replicas": 3}})
        );
        assert_eq!(v["responseStatus"]["code"], 404);
        assert_eq!(v["responseStatus"]["reason"], "NotFound");
        assert_eq!(v["responseStatus"]["status"], "Failure");
        assert_eq!(v["responseObject"]["kind"], "Status");
    }

    #[test]
    fn metadata_level_keeps_no_bodies_and_non_resources_have_no_object_ref() {
        let mut ev = facts_event(
            Method::POST,
            "/api/v1/namespaces/ns1/secrets",
            Level::Metadata,
        );
        ev.set_request_body(br#"{"metadata":{"name":"s"},"data":{"k":"dg=="}}"#, false);
        ev.set_response(201, Some(br#"{"metadata":{"name":"s"}}"#), false);
        assert!(ev.request_object.is_none() && ev.response_object.is_none());
        let ev = facts_event(Method::GET, "/healthz", Level::Request);
        let v = serde_json::to_value(&ev).unwrap();
        assert!(v.get("objectRef").is_none());
        assert_eq!(v["verb"], "get");
        assert_eq!(v["stage"], "RequestReceived");
    }

    #[test]
    fn source_ips_follow_upstream() {
        let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let mut h = http::HeaderMap::new();
        assert_eq!(source_ips(&h, Some(peer)), vec!["127.0.0.1"]);
        h.insert("x-real-ip", "10.1.1.1".parse().unwrap());
        assert_eq!(source_ips(&h, Some(peer)), vec!["10.1.1.1", "127.0.0.1"]);
        h.insert("x-forwarded-for", "127.0.0.1".parse().unwrap());
        assert_eq!(source_ips(&h, Some(peer)), vec!["127.0.0.1"]);
    }
}
