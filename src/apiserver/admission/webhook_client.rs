//! The HTTPS client admission webhooks are called with: one POST of an AdmissionReview to a
//! webhook's `url`, the server verified against the configuration's `caBundle`, within its
//! timeout. A connection per call: webhooks are few and the simplicity keeps failures local.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use std::sync::Arc;
use std::time::Duration;

/// The most a webhook's answer may hold.
const MAX_RESPONSE: usize = 3 * 1024 * 1024;

/// host, port and path of an `https://host[:port][/path]` URL.
fn split_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("{url:?}: only https URLs are called"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6.split_once(']').ok_or("unclosed [ in the URL")?;
        (h.to_string(), tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port in {url:?}"))?,
        None => 443,
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok((host, port, path))
}

fn tls_config(ca_bundle: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_bundle[..]) {
        let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
        roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no caBundle: the webhook's certificate cannot be verified".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Where a call goes: the address dialled, the name the certificate must carry, the path.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub server_name: String,
    pub path: String,
    /// For messages: the URL as upstream writes it.
    pub url: String,
}

impl Target {
    /// A `clientConfig.url`.
    pub fn url(url: &str) -> Result<Target, String> {
        let (host, port, path) = split_url(url)?;
        Ok(Target {
            server_name: host.clone(),
            host,
            port,
            path,
            url: url.to_string(),
        })
    }
}

/// POSTs `body` (JSON) to the target and returns the answer's body; errors are texts for the
/// "failed calling webhook" Status.
pub async fn post(
    target: &Target,
    ca_bundle: &[u8],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, String> {
    let url = &target.url;
    let call = async {
        let (host, port, path) = (target.host.clone(), target.port, target.path.clone());
        let cfg = tls_config(ca_bundle)?;
        let name = rustls::pki_types::ServerName::try_from(target.server_name.clone())
            .map_err(|e| format!("{}: {e}", target.server_name))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("Post {url:?}: dial tcp {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("Post {url:?}: tls: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("Post {url:?}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = if port == 443 {
            target.server_name.clone()
        } else {
            format!("{}:{port}", target.server_name)
        };
        let req = http::Request::post(path)
            .header(http::header::HOST, authority)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("Post {url:?}: {e}"))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("reading the webhook's answer: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the server responded with the status code {} but did not return more information",
                status.as_u16()
            ));
        }
        Ok(bytes)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Post {url:?}: context deadline exceeded (timeout {}s)",
            timeout.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://127.0.0.1:8443/mutate?x=1").unwrap(),
            ("127.0.0.1".into(), 8443, "/mutate?x=1".into())
        );
        assert_eq!(
            split_url("https://hooks.example").unwrap(),
            ("hooks.example".into(), 443, "/".into())
        );
        assert_eq!(
            split_url("https://[::1]:9/v").unwrap(),
            ("::1".into(), 9, "/v".into())
        );
        assert!(split_url("http://127.0.0.1/").is_err());
    }
}
