//! The token API: `POST serviceaccounts/<name>/token` (authentication.k8s.io/v1 TokenRequest,
//! what `kubectl create token` and the kubelet ask), `POST tokenreviews` (TokenReview: is this
//! token good, and for whom), and the OpenID discovery document and JWKS by which anyone can
//! verify the tokens offline. Tokens are made and checked by `service_account_token` and
//! `auth`; this module reads and answers the requests, with upstream's messages.

use super::handler::{json, user_info, Api, ResourceRequest, Resp};
use super::resources::meta_str;
use super::service_account_token::{Claims, Ref};
use super::status::{ApiError, Cause};
use super::{encoding, protobuf};
use http::StatusCode;
use serde_json::{json, Value};

const GROUP: &str = "authentication.k8s.io";

/// The shortest token lifetime that may be asked for, as upstream.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime given when none is asked for.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// A request body of `kind` in JSON, YAML or protobuf (kubectl's typed client sends protobuf).
fn parse(content_type: &str, body: &[u8], kind: &str) -> Result<Value, ApiError> {
    let undecodable = |e: String| {
        ApiError::BadRequest(format!("the body of the request could not be decoded: {e}"))
    };
    let v: Value = if body.is_empty() {
        json!({})
    } else if protobuf::is_protobuf(content_type) {
        protobuf::decode_request(body).map_err(|e| undecodable(format!("protobuf: {e}")))?
    } else {
        let format = encoding::body_format(content_type).unwrap_or(encoding::BodyFormat::Json);
        encoding::parse_body(body, format).map_err(|e| undecodable(e.to_string()))?
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

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Upstream's TokenRequest validation: the lifetime's bounds.
fn validate_expiration(name: &str, seconds: i64) -> Result<(), ApiError> {
    let message = if seconds < MIN_EXPIRATION_SECONDS {
        format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes")
    } else if seconds > u32::MAX as i64 {
        format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds")
    } else {
        return Ok(());
    };
    Err(ApiError::invalid(
        GROUP,
        "TokenRequest",
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message,
            field: "spec.expirationSeconds".into(),
        }],
    ))
}

fn uid(obj: &Value) -> String {
    meta_str(obj, "uid").unwrap_or_default().to_string()
}

impl Api {
    /// POST serviceaccounts/<name>/token.
    pub async fn create_token(&self, r: &ResourceRequest) -> Result<Resp, ApiError> {
        let name = r.name.clone().unwrap_or_default();
        let ns = r.namespace.clone().unwrap_or_default();
        let mut req = parse(&r.content_type, &r.body, "TokenRequest")?;
        let spec = &req["spec"];
        let seconds = spec["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        validate_expiration(&name, seconds)?;
        let mut audiences = strings(&spec["audiences"]);
        if audiences.is_empty() {
            audiences = self.auth.service_accounts.audiences.clone();
        }
        let lookup = |plural: &str| {
            self.registry
                .lookup("", "v1", plural)
                .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))
        };
        let Some((sa, _)) = self
            .get_object(lookup("serviceaccounts")?.as_ref(), Some(&ns), &name)
            .await?
        else {
            return Err(ApiError::not_found("", "serviceaccounts", &name));
        };
        let now = chrono::Utc::now().timestamp();
        let account = Ref {
            name: name.clone(),
            uid: uid(&sa),
        };
        let mut claims = Claims::new(&ns, account, audiences.clone(), now, seconds);
        let bound = spec["boundObjectRef"].clone();
        if bound.is_object() {
            self.bind_token(&mut claims, &bound, &ns, &name).await?;
        }
        let token = self
            .auth
            .service_accounts
            .sign(claims.clone())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        req["apiVersion"] = json!("authentication.k8s.io/v1");
        req["kind"] = json!("TokenRequest");
        req["metadata"]["name"] = json!(name);
        req["metadata"]["namespace"] = json!(ns);
        req["metadata"]["creationTimestamp"] = json!(null);
        req["spec"]["audiences"] = json!(audiences);
        req["spec"]["expirationSeconds"] = json!(seconds);
        req["spec"]["boundObjectRef"] = if bound.is_object() {
            bound
        } else {
            json!(null)
        };
        req["status"] = json!({"token": token, "expirationTimestamp": expires});
        Ok(json(StatusCode::CREATED, &req))
    }

    /// Binds the token to the pod or secret `bound` names: it must exist (with the uid given,
    /// if one is), and a pod must run as the account; a pod's node is named too.
    async fn bind_token(
        &self,
        claims: &mut Claims,
        bound: &Value,
        ns: &str,
        account: &str,
    ) -> Result<(), ApiError> {
        let kind = bound["kind"].as_str().unwrap_or("");
        let api_version = bound["apiVersion"].as_str().unwrap_or("v1");
        let object = bound["name"].as_str().unwrap_or("");
        let plural = match (kind, api_version) {
            ("Pod", "v1" | "") => "pods",
            ("Secret", "v1" | "") => "secrets",
            ("Node", "v1" | "") => "nodes",
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "cannot bind token to object of type {api_version}, Kind={kind}"
                )))
            }
        };
        let info = self
            .registry
            .lookup("", "v1", plural)
            .ok_or_else(|| ApiError::Internal(format!("{plural} are not served")))?;
        let scope = (plural != "nodes").then_some(ns);
        let Some((obj, _)) = self.get_object(info.as_ref(), scope, object).await? else {
            return Err(ApiError::not_found("", plural, object));
        };
        let want = bound["uid"].as_str().unwrap_or("");
        if !want.is_empty() && want != uid(&obj) {
            return Err(ApiError::Conflict {
                message: format!(
                    "Operation cannot be fulfilled on {kind} \"{object}\": the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"
                ),
                target: super::status::Target {
                    group: String::new(),
                    kind: kind.into(),
                    name: object.into(),
                },
            });
        }
        let this = Ref {
            name: object.into(),
            uid: uid(&obj),
        };
        match plural {
            "pods" => {
                let runs_as = obj["spec"]["serviceAccountName"].as_str().unwrap_or("");
                if runs_as != account {
                    return Err(ApiError::BadRequest(format!(
                        "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
                    )));
                }
                if let Some(node) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    let nodes = self.registry.lookup("", "v1", "nodes");
                    if let Some(info) = nodes {
                        if let Some((n, _)) = self.get_object(info.as_ref(), None, node).await? {
                            claims.kubernetes.node = Some(Ref {
                                name: node.into(),
                                uid: uid(&n),
                            });
                        }
                    }
                }
                claims.kubernetes.pod = Some(this);
            }
            "secrets" => claims.kubernetes.secret = Some(this),
            _ => claims.kubernetes.node = Some(this),
        }
        Ok(())
    }

    /// POST tokenreviews: whether `spec.token` authenticates, as whom, for which audiences.
    /// Only service account tokens are reviewed; any other token is unauthenticated.
    pub async fn token_review(&self, content_type: &str, body: &[u8]) -> Result<Resp, ApiError> {
        let mut review = parse(content_type, body, "TokenReview")?;
        let token = review["spec"]["token"].as_str().unwrap_or("").to_string();
        let audiences = strings(&review["spec"]["audiences"]);
        let status = match self.review_token(&token, &audiences).await {
            Ok((user, audiences)) => json!({
                "authenticated": true,
                "user": user_info(&user),
                "audiences": audiences,
            }),
            Err(e) => json!({"user": {}, "error": format!("[invalid bearer token, {e}]")}),
        };
        review["apiVersion"] = json!("authentication.k8s.io/v1");
        review["kind"] = json!("TokenReview");
        review["metadata"]["creationTimestamp"] = json!(null);
        review["status"] = status;
        Ok(json(StatusCode::CREATED, &review))
    }

    /// GET /.well-known/openid-configuration.
    pub fn openid_configuration(&self) -> Resp {
        let jwks = format!("https://{}/openid/v1/jwks", self.server_address);
        json(
            StatusCode::OK,
            &self.auth.service_accounts.openid_configuration(&jwks),
        )
    }

    /// GET /openid/v1/jwks.
    pub fn jwks(&self) -> Resp {
        super::handler::full(
            StatusCode::OK,
            "application/jwk-set+json",
            self.auth.service_accounts.jwks().to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_bounded_as_upstream() {
        assert!(validate_expiration("default", 600).is_ok());
        let e = validate_expiration("default", 599).unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(e.to_string().contains(
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        ), "{e}");
        assert!(validate_expiration("d", 1 << 33).is_err());
    }
}
