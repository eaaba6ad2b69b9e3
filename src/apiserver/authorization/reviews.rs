//! authorization.k8s.io/v1 SelfSubjectAccessReview ("may I do this?") and
//! SelfSubjectRulesReview ("what may I do in this namespace?"), answered by the server's
//! authorizer for the requesting user: what `kubectl auth can-i` and `can-i --list` ask. And
//! SubjectAccessReview / LocalSubjectAccessReview, the same question about another user.

use super::{Attributes, Authorizer, Decision};
use crate::apiserver::auth::User;
use crate::apiserver::status::{ApiError, Cause};
use crate::apiserver::{encoding, protobuf};
use serde_json::{json, Value};

const GROUP: &str = "authorization.k8s.io";

/// The review in the body: JSON, YAML or protobuf (kubectl's typed client sends protobuf).
fn parse(content_type: &str, body: &[u8], kind: &str) -> Result<Value, ApiError> {
    let v: Value = if protobuf::is_protobuf(content_type) {
        protobuf::decode_request(body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body of the request could not be decoded: protobuf: {e}"
            ))
        })?
    } else {
        let format = encoding::body_format(content_type).unwrap_or(encoding::BodyFormat::Json);
        encoding::parse_body(body, format).map_err(|e| {
            ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
        })?
    };
    if !v.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the body of the request must be a {kind} object"
        )));
    }
    match v["kind"].as_str() {
        Some(k) if k != kind => Err(ApiError::BadRequest(format!(
            "{k} in version \"v1\" cannot be handled as a {kind}: the kind in the data ({k}) does not match the expected kind ({kind})"
        ))),
        _ => Ok(v),
    }
}

fn text(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_default().to_string()
}

/// POST selfsubjectaccessreviews: the spec's attributes asked of the authorizer for `user`.
pub fn access_review(
    z: &dyn Authorizer,
    user: &User,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let review = parse(content_type, body, "SelfSubjectAccessReview")?;
    answer(z, "SelfSubjectAccessReview", user, &review)
}

/// POST subjectaccessreviews (cluster-wide) and namespaces/<ns>/localsubjectaccessreviews:
/// may the user the spec names do this? What webhooks and admins ask about others.
pub fn subject_access_review(
    z: &dyn Authorizer,
    namespace: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let kind = if namespace.is_some() {
        "LocalSubjectAccessReview"
    } else {
        "SubjectAccessReview"
    };
    let mut review = parse(content_type, body, kind)?;
    let spec = &review["spec"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let user = User {
        name: text(spec, "user"),
        uid: text(spec, "uid"),
        groups: strings(&spec["groups"]),
        extra: spec["extra"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), strings(v)))
            .collect(),
    };
    let invalid = |field: &str, message: String| {
        ApiError::invalid(
            GROUP,
            kind,
            "",
            vec![Cause {
                reason: "FieldValueInvalid".into(),
                message,
                field: field.into(),
            }],
        )
    };
    if user.name.is_empty() && user.groups.is_empty() {
        return Err(invalid(
            "spec.user",
            "Invalid value: \"\": at least one of user or group must be specified".into(),
        ));
    }
    if let Some(ns) = namespace {
        // A local review asks about its own namespace only.
        let asked = text(&spec["resourceAttributes"], "namespace");
        if spec["nonResourceAttributes"].is_object() {
            return Err(invalid(
                "spec.nonResourceAttributes",
                "Invalid value: \"{}\": disallowed on this kind of request".into(),
            ));
        }
        if asked.is_empty() && spec["resourceAttributes"].is_object() {
            review["spec"]["resourceAttributes"]["namespace"] = json!(ns);
        } else if asked != ns {
            return Err(invalid(
                "spec.resourceAttributes.namespace",
                format!("Invalid value: \"{asked}\": must match metadata.namespace"),
            ));
        }
        review["metadata"]["namespace"] = json!(ns);
    }
    answer(z, kind, &user, &review)
}

/// The decision on a parsed access review's attributes, for `user`.
fn answer(z: &dyn Authorizer, kind: &str, user: &User, review: &Value) -> Result<Value, ApiError> {
    let spec = &review["spec"];
    let res = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let attrs = match (res, non) {
        (Some(r), None) => Attributes {
            user: user.clone(),
            verb: text(r, "verb"),
            resource_request: true,
            namespace: text(r, "namespace"),
            api_group: text(r, "group"),
            api_version: text(r, "version"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            name: text(r, "name"),
            path: String::new(),
        },
        (None, Some(n)) => Attributes {
            user: user.clone(),
            verb: text(n, "verb"),
            resource_request: false,
            path: text(n, "path"),
            ..Attributes::default()
        },
        (r, _) => {
            // Upstream's two messages: both given, or neither.
            let (field, message) = if r.is_some() {
                (
                    "spec.nonResourceAttributes",
                    "Invalid value: \"{}\": cannot be specified in combination with resourceAttributes",
                )
            } else {
                (
                    "spec.resourceAttributes",
                    "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            };
            return Err(ApiError::invalid(
                GROUP,
                kind,
                "",
                vec![Cause {
                    reason: "FieldValueInvalid".into(),
                    message: message.into(),
                    field: field.into(),
                }],
            ));
        }
    };
    let mut status = json!({"allowed": false});
    match z.authorize(&attrs) {
        Decision::Allow => status["allowed"] = json!(true),
        Decision::Deny(reason) => {
            status["denied"] = json!(true);
            if !reason.is_empty() {
                status["reason"] = json!(reason);
            }
        }
        Decision::NoOpinion => {}
        Decision::NoOpinionBecause(reason) => status["reason"] = json!(reason),
    }
    let mut metadata = json!({"creationTimestamp": null});
    if let Some(ns) = review["metadata"]["namespace"].as_str() {
        metadata["namespace"] = json!(ns);
    }
    Ok(json!({
        "kind": kind,
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    }))
}

/// POST selfsubjectrulesreviews: the authorizer's rules for `user` in `spec.namespace`.
pub fn rules_review(
    z: &dyn Authorizer,
    user: &User,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let review = parse(content_type, body, "SelfSubjectRulesReview")?;
    let namespace = text(&review["spec"], "namespace");
    let rules = z.rules_for(user, &namespace);
    let resource: Vec<Value> = rules
        .resource
        .iter()
        .map(|r| {
            let mut v =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                v["resourceNames"] = json!(r.resource_names);
            }
            v
        })
        .collect();
    let non: Vec<Value> = rules
        .non_resource
        .iter()
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    Ok(json!({
        "kind": "SelfSubjectRulesReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": {"namespace": namespace},
        "status": {"resourceRules": resource, "nonResourceRules": non, "incomplete": rules.incomplete},
    }))
}

#[cfg(test)]
mod tests {
    use super::super::{AlwaysAllowAuthenticated, AlwaysDeny};
    use super::*;

    const J: &str = "application/json";

    #[test]
    fn reviews_ask_the_authorizer() {
        let x = User::new("x", &["system:authenticated"]);
        let body = br#"{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","spec":{"resourceAttributes":{"namespace":"default","verb":"list","resource":"pods"}}}"#;
        let yes = access_review(&AlwaysAllowAuthenticated, &x, J, body).unwrap();
        assert_eq!(yes["status"]["allowed"], true);
        assert_eq!(yes["spec"]["resourceAttributes"]["verb"], "list");
        let no = access_review(&AlwaysDeny, &x, J, body).unwrap();
        assert_eq!(no["status"]["allowed"], false);
        assert_eq!(no["status"]["denied"], true);
        assert_eq!(no["status"]["reason"], "Everything is forbidden.");
        let path = br#"{"spec":{"nonResourceAttributes":{"path":"/metrics","verb":"get"}}}"#;
        assert_eq!(
            access_review(&AlwaysAllowAuthenticated, &x, J, path).unwrap()["status"]["allowed"],
            true
        );
        let neither =
            access_review(&AlwaysAllowAuthenticated, &x, J, br#"{"spec":{}}"#).unwrap_err();
        assert_eq!(neither.code(), 422);
        let rules = br#"{"spec":{"namespace":"default"}}"#;
        let all = rules_review(&AlwaysAllowAuthenticated, &x, J, rules).unwrap();
        assert_eq!(all["status"]["resourceRules"][0]["verbs"][0], "*");
        assert_eq!(all["status"]["incomplete"], false);
        let none = rules_review(&AlwaysDeny, &x, J, rules).unwrap();
        assert_eq!(none["status"]["resourceRules"], json!([]));
        assert_eq!(none["status"]["nonResourceRules"], json!([]));
    }
}
