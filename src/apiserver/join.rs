//! How a node joins, as k3s's agents do it: `GET /cacerts` (open to anyone) gives the cluster
//! CA, which the agent checks against the hash in a `K10<sha256>::...` token; then
//! `POST /v1-nanokube/node-credentials?name=<node>&ip=<addr>`, authenticated by the join token
//! (group `system:nodes`), answers the node's own credentials: a client certificate for
//! `system:node:<name>` in `system:nodes` and a serving certificate for its kubelet port.
//! (Kubernetes' CSR flow, certificates.k8s.io, is meant to replace the second step.)

use bytes::Bytes;
use http::StatusCode;
use std::sync::{Arc, OnceLock};

use super::auth::User;
use super::handler::{full, json, Resp};
use super::status::ApiError;
use super::tls::Pki;

static PKI: OnceLock<Arc<Pki>> = OnceLock::new();

/// Set once by the server: the CA that signs node credentials.
pub fn install(pki: Arc<Pki>) {
    let _ = PKI.set(pki);
}

/// `K10<sha256 of the CA PEM>::server:<secret>`, k3s's full token form: it lets a joining
/// agent check that it talks to this cluster before it sends the secret.
pub fn full_token(ca_pem: &str, secret: &str) -> String {
    use sha2::Digest;
    format!(
        "K10{}::server:{secret}",
        hex::encode(sha2::Sha256::digest(ca_pem.as_bytes()))
    )
}

/// A token's parts: the CA hash of k3s's full form (`K10<hash>::server:<secret>`, or
/// `K10<hash>::<user>:<secret>`), if it has one, and the secret.
pub fn parse_token(token: &str) -> (Option<&str>, &str) {
    let token = token.trim();
    match token.strip_prefix("K10").and_then(|t| t.split_once("::")) {
        Some((hash, rest)) => (
            Some(hash),
            rest.split_once(':').map_or(rest, |(_, secret)| secret),
        ),
        None => (None, token),
    }
}

/// The answers of the join paths, or None for any other path.
pub fn serve(
    path: &str,
    method: &http::Method,
    query: Option<&str>,
    user: Option<&User>,
) -> Option<Result<Resp, ApiError>> {
    let pki = PKI.get()?;
    match path {
        "/cacerts" => Some(Ok(full(
            StatusCode::OK,
            "text/plain",
            Bytes::from(pki.ca_cert_pem.clone()),
        ))),
        "/v1-nanokube/node-credentials" => Some(credentials(pki, method, query, user)),
        _ => None,
    }
}

fn credentials(
    pki: &Pki,
    method: &http::Method,
    query: Option<&str>,
    user: Option<&User>,
) -> Result<Resp, ApiError> {
    if method != http::Method::POST {
        return Err(ApiError::MethodNotAllowed(format!(
            "{method} is not supported on /v1-nanokube/node-credentials"
        )));
    }
    let user = user.ok_or(ApiError::Unauthorized)?;
    if !user
        .groups
        .iter()
        .any(|g| g == "system:nodes" || g == "system:masters")
    {
        return Err(ApiError::Forbidden {
            message: format!(
                "User \"{}\" cannot join nodes: only the join token can",
                user.name
            ),
            target: Default::default(),
        });
    }
    let q = super::encoding::parse_query(query);
    let name = q.get("name").cloned().unwrap_or_default();
    if name.is_empty() || !super::validation::names::dns1123_subdomain(&name).is_empty() {
        return Err(ApiError::BadRequest(format!(
            "invalid node name {name:?}: a DNS-1123 subdomain is required"
        )));
    }
    let mut sans = vec![name.clone()];
    if let Some(ip) = q
        .get("ip")
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
    {
        sans.push(ip.clone());
    }
    let internal = |e: super::tls::Error| ApiError::Internal(e.to_string());
    let (cert, key) = pki
        .issue_client(&format!("system:node:{name}"), &["system:nodes"])
        .map_err(internal)?;
    let (serving_cert, serving_key) = pki.issue_serving(&name, &sans).map_err(internal)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "ca": pki.ca_cert_pem,
            "clientCert": cert,
            "clientKey": key,
            "servingCert": serving_cert,
            "servingKey": serving_key,
        }),
    ))
}
