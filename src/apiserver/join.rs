//! How a node joins, as k3s's agents do it: `GET /cacerts` (open to anyone) gives the cluster
//! CA, which the agent checks against the hash in a `K10<sha256>::...` token. Then, as
//! Kubernetes' TLS bootstrapping, the agent authenticates with the token (the bootstrap user,
//! `auth::BOOTSTRAP_USER`) and sends CertificateSigningRequests for its client and serving
//! certificates, which the controller manager approves and signs
//! (`controllers::certificates`).

use bytes::Bytes;
use http::StatusCode;
use std::sync::{Arc, OnceLock};

use super::handler::{full, Resp};
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

/// The answer of `/cacerts`, or None for any other path.
pub fn serve(path: &str) -> Option<Result<Resp, ApiError>> {
    let pki = PKI.get()?;
    match path {
        "/cacerts" => Some(Ok(full(
            StatusCode::OK,
            "text/plain",
            Bytes::from(pki.ca_cert_pem.clone()),
        ))),
        _ => None,
    }
}
