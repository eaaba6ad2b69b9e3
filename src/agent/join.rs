//! Joining a cluster with `--server URL --token T`, as k3s's agents do: fetch the CA from
//! `/cacerts` and check it against the hash in a `K10<sha256>::...` token (a bare secret cannot
//! be checked: the agent says so and trusts the first answer). Then Kubernetes' TLS
//! bootstrapping: the node makes its own keys and, authenticated by the token, sends a
//! CertificateSigningRequest for its client certificate (`system:node:<name>` in
//! `system:nodes`, signer `kubernetes.io/kube-apiserver-client-kubelet`); with that
//! certificate it asks for its kubelet's serving certificate (`kubernetes.io/kubelet-serving`,
//! its name and address). The controller manager approves and signs both
//! (`controllers::certificates`). The private keys never leave the node.
//!
//! The credentials are kept in `<data-dir>/agent/` and reused. Once 80% of a certificate's
//! life has passed, the agent renews both with requests made as the node itself
//! (`selfnodeclient`), at start or while it runs ([`renewal_due`]), and then starts again on
//! the new ones (pods keep running across that, as across any agent restart).

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

/// The node's credentials: the saved ones while they are fresh, else renewed as the node
/// itself while its certificate is still valid, else new ones through the join token.
pub async fn credentials(
    server: &str,
    token: &str,
    node: &str,
    node_ip: &str,
    data_dir: &Path,
) -> anyhow::Result<Credentials> {
    let saved = data_dir.join(SAVED);
    let current = std::fs::read(&saved)
        .ok()
        .and_then(|text| serde_json::from_slice::<Credentials>(&text).ok());
    let now = std::time::SystemTime::now();
    if let Some(c) = &current {
        match renewal_due(c) {
            Some(due) if due > now => return Ok(c.clone()),
            _ => {}
        }
    }
    let usable = current.filter(|c| validity(&c.client_cert).is_some_and(|(_, end)| end > now));
    // A renewal trusts the CA the node already has; only a first join fetches (and checks) it.
    let ca = match &usable {
        Some(c) => c.ca.clone(),
        None => fetch_ca(server, token).await?,
    };
    let asker = match &usable {
        Some(c) => {
            tracing::info!("renewing the node's certificates as {node}");
            crate::apiserver::identity::kubeconfig(server, &ca, &c.client_cert, &c.client_key)
        }
        None => token_kubeconfig(server, &ca, token),
    };
    let creds = request_credentials(&asker, server, &ca, node, node_ip).await?;
    if let Some(dir) = saved.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::apiserver::tls::write_private(&saved, &serde_json::to_vec(&creds)?)?;
    Ok(creds)
}

/// The cluster CA from `/cacerts`, checked against the token's hash.
async fn fetch_ca(server: &str, token: &str) -> anyhow::Result<String> {
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
    Ok(ca)
}

fn token_kubeconfig(server: &str, ca: &str, token: &str) -> String {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token:?}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n"
    )
}

/// Asks for a client certificate through `asker` (the token or the node's current
/// certificate), then for a serving certificate as the node the first one makes it.
async fn request_credentials(
    asker: &str,
    server: &str,
    ca: &str,
    node: &str,
    node_ip: &str,
) -> anyhow::Result<Credentials> {
    use crate::controllers::certificates::{KUBELET_CLIENT, KUBELET_SERVING};
    let client = crate::agent::client_from_kubeconfig(asker).await?;
    let (client_cert, client_key) =
        signed(&client, node, KUBELET_CLIENT, &[], "client auth").await?;
    let as_node = crate::agent::client_from_kubeconfig(&crate::apiserver::identity::kubeconfig(
        server,
        ca,
        &client_cert,
        &client_key,
    ))
    .await?;
    let mut sans = vec![node.to_string()];
    if node_ip.parse::<std::net::IpAddr>().is_ok() {
        sans.push(node_ip.to_string());
    }
    let (serving_cert, serving_key) =
        signed(&as_node, node, KUBELET_SERVING, &sans, "server auth").await?;
    Ok(Credentials {
        ca: ca.to_string(),
        client_cert,
        client_key,
        serving_cert,
        serving_key,
    })
}

/// How long a request may wait for its certificate.
const ISSUE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// A new key and its certificate from `signer`: (certificate PEM, key PEM).
async fn signed(
    client: &kube::Client,
    node: &str,
    signer: &str,
    sans: &[String],
    usage: &str,
) -> anyhow::Result<(String, String)> {
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequest, CertificateSigningRequestSpec,
    };
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(sans.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let pem = params.serialize_request(&key)?.pem()?;
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: kube::api::ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.into_bytes()),
            signer_name: signer.into(),
            usages: Some(vec!["digital signature".into(), usage.into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    let made = api
        .create(&Default::default(), &csr)
        .await
        .map_err(|e| anyhow::anyhow!("sending a certificate signing request ({signer}): {e}"))?;
    let name = made.metadata.name.unwrap_or_default();
    tracing::info!(csr = %name, signer, "certificate signing request sent");
    let deadline = std::time::Instant::now() + ISSUE_WAIT;
    loop {
        let got = api.get(&name).await?;
        let status = got.status.unwrap_or_default();
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok((String::from_utf8(cert.0)?, key.serialize_pem()));
        }
        if let Some(c) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            anyhow::bail!(
                "certificate signing request {name} {}: {}",
                c.type_.to_lowercase(),
                c.message.as_deref().unwrap_or("")
            );
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "certificate signing request {name} ({signer}) was not approved and signed within {}s (kubectl certificate approve {name})",
            ISSUE_WAIT.as_secs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A certificate's validity: (not before, not after).
fn validity(pem: &str) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
    let der = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?.1;
    let cert = der.parse_x509().ok()?;
    let at = |t: i64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
    Some((
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    ))
}

/// When the credentials are to be renewed: once 80% of the shorter-lived certificate's life
/// has passed (the kubelet renews between 70% and 90%). None when one cannot be read.
pub fn renewal_due(c: &Credentials) -> Option<std::time::SystemTime> {
    [&c.client_cert, &c.serving_cert]
        .into_iter()
        .map(|pem| {
            let (start, end) = validity(pem)?;
            let life = end.duration_since(start).ok()?;
            Some(start + life.mul_f64(0.8))
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}
