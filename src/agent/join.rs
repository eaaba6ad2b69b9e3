//! Joining a cluster with `--server URL --token T`, as k3s's agents do: fetch the CA from
//! `/cacerts`, check it against the hash in a `K10<sha256>::...` token (a bare secret cannot be
//! checked: the agent says so and trusts the first answer), then trade the token for the node's
//! own credentials (see `apiserver::join`). They are kept in `<data-dir>/agent/` and reused.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::sync::Arc;

/// What the server hands a joining node.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub ca: String,
    pub client_cert: String,
    pub client_key: String,
    pub serving_cert: String,
    pub serving_key: String,
}

const SAVED: &str = "agent/node-credentials.json";

/// One HTTPS request to the server; returns status and body.
async fn request(
    server: &str,
    tls: Arc<rustls::ClientConfig>,
    method: http::Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let uri: http::Uri = server.parse()?;
    let host = uri
        .host()
        .ok_or_else(|| anyhow::anyhow!("--server {server}: no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(6443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("{host}:{port}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = send.send_request(req.body(Empty::<Bytes>::new())?).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// The node's credentials: the saved ones, or new ones from the server.
pub async fn credentials(
    server: &str,
    token: &str,
    node: &str,
    node_ip: &str,
    data_dir: &Path,
) -> anyhow::Result<Credentials> {
    let saved = data_dir.join(SAVED);
    if let Ok(text) = std::fs::read(&saved) {
        if let Ok(c) = serde_json::from_slice::<Credentials>(&text) {
            return Ok(c);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let insecure = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        // Any certificate, only for fetching the CA, which is checked against the token next.
        .with_custom_certificate_verifier(Arc::new(crate::image::registry::NoVerification(
            provider.clone(),
        )))
        .with_no_client_auth();
    let (status, ca) = request(
        server,
        Arc::new(insecure),
        http::Method::GET,
        "/cacerts",
        None,
    )
    .await?;
    anyhow::ensure!(status.is_success(), "GET {server}/cacerts: {status}");
    let ca = String::from_utf8(ca.to_vec())?;
    match token.strip_prefix("K10").and_then(|t| t.split_once("::")) {
        Some((hash, _)) => {
            use sha2::Digest;
            let got = hex::encode(sha2::Sha256::digest(ca.as_bytes()));
            anyhow::ensure!(
                got.eq_ignore_ascii_case(hash),
                "the server's CA (sha256 {got}) is not the one the token names ({hash}): refusing to join"
            );
        }
        None => tracing::warn!(
            "the token names no CA hash (K10<hash>::...): trusting the CA the server sent"
        ),
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca.as_bytes()) {
        roots.add(c?)?;
    }
    let verified = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let path = format!("/v1-nanokube/node-credentials?name={node}&ip={node_ip}");
    let (status, body) = request(
        server,
        Arc::new(verified),
        http::Method::POST,
        &path,
        Some(token),
    )
    .await?;
    anyhow::ensure!(
        status.is_success(),
        "joining as {node}: {status}: {}",
        String::from_utf8_lossy(&body).trim()
    );
    let creds: Credentials = serde_json::from_slice(&body)?;
    if let Some(dir) = saved.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::apiserver::tls::write_private(&saved, &serde_json::to_vec(&creds)?)?;
    Ok(creds)
}
