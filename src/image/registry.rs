//! A small client for the OCI distribution API (what Docker Hub and every other registry speak),
//! over hyper and rustls: GET manifests and blobs, follow redirects (blob storage often lives
//! elsewhere), and authenticate when challenged.
//!
//! Authentication follows the `WWW-Authenticate` challenge of a 401: `Basic` resends the request
//! with the configured username and password; `Bearer` (Docker Hub's token scheme) fetches a token
//! for `repository:<name>:pull` from the challenge's realm, presenting the credentials if there
//! are any (anonymous otherwise), and retries with it. Tokens are cached per host and repository.
//!
//! Each request uses a fresh connection: a pull makes a handful of requests, and unshared
//! connections keep concurrent layer downloads independent.

use super::config::{Endpoint, RegistriesConfig, TlsConfig};
use base64::Engine as _;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

const USER_AGENT: &str = concat!("nanokube/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a response (headers, or the next chunk of a body) may take before the pull gives up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Manifests and token responses are small; a larger one is refused rather than buffered.
const MAX_DOCUMENT: usize = 8 << 20;
const MAX_REDIRECTS: usize = 5;

/// Errors of registry requests.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL (an endpoint, a redirect, a token realm) could not be understood.
    #[error("invalid URL {0:?}")]
    Url(String),
    /// No TCP connection could be made.
    #[error("connecting to {host}: {cause}")]
    Connect { host: String, cause: std::io::Error },
    /// The TLS handshake failed (an unknown CA, a wrong name, a plain-HTTP server...).
    #[error("TLS handshake with {host}: {cause}")]
    Tls { host: String, cause: std::io::Error },
    /// TLS settings from registries.yaml could not be loaded.
    #[error("TLS settings for {host}: {message}")]
    TlsConfig { host: String, message: String },
    /// The HTTP exchange failed midway.
    #[error("{url}: {cause}")]
    Http { url: String, cause: String },
    /// The server did not answer in time.
    #[error("{url}: no response for {secs}s", secs = READ_TIMEOUT.as_secs())]
    Timeout { url: String },
    /// The registry requires credentials and none are configured.
    #[error("{url}: the registry requires authentication, and no credentials for {host} are configured (registries.yaml configs.\"{host}\".auth)")]
    AuthRequired { url: String, host: String },
    /// The registry (or its token service) rejected the credentials.
    #[error("{url}: the registry rejected the credentials configured for {host}: {message}")]
    AuthRejected {
        url: String,
        host: String,
        message: String,
    },
    /// The registry answered with an error status.
    #[error("{url}: {status}{message}")]
    Status {
        url: String,
        status: StatusCode,
        message: String,
    },
    /// A manifest or token response was too large or malformed.
    #[error("{url}: {message}")]
    BadResponse { url: String, message: String },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// A parsed http(s) URL: enough for registry, redirect and token URLs.
#[derive(Debug, Clone)]
struct Url {
    https: bool,
    host: String,
    /// Path and query.
    path: String,
}

impl Url {
    fn parse(s: &str) -> Result<Url> {
        let (https, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(Error::Url(s.to_string()));
        };
        let (host, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if host.is_empty() {
            return Err(Error::Url(s.to_string()));
        }
        Ok(Url {
            https,
            host: host.to_string(),
            path,
        })
    }

    /// host:port for connecting, with the scheme's default port.
    fn authority(&self) -> String {
        let has_port = match self.host.rfind(']') {
            Some(i) => self.host[i..].contains(':'),
            None => self.host.contains(':'),
        };
        if has_port {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, if self.https { 443 } else { 80 })
        }
    }

    fn bare_host(&self) -> String {
        let host = &self.host;
        if let Some(rest) = host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or("").to_string();
        }
        host.rsplit_once(':')
            .map_or(host.clone(), |(h, _)| h.to_string())
    }

    /// Resolves a Location header against this URL.
    fn join(&self, location: &str) -> Result<Url> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else if location.starts_with('/') {
            Ok(Url {
                path: location.to_string(),
                ..self.clone()
            })
        } else {
            Err(Error::Url(location.to_string()))
        }
    }
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host, self.path)
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What a request asks for beyond the URL.
#[derive(Debug, Default, Clone, Copy)]
struct Ask<'a> {
    accept: Option<&'a str>,
    /// `Range: bytes=from-`.
    from: Option<u64>,
}

/// A response whose body is still to be read.
pub struct Response {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Incoming,
    pub url: String,
}

impl Response {
    /// Whether this is a partial answer (206) whose Content-Range starts at `from`.
    pub fn resumes_at(&self, from: u64) -> bool {
        self.status == StatusCode::PARTIAL_CONTENT
            && self
                .headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok())
                == Some(from)
    }

    /// Reads the whole body, refusing more than `MAX_DOCUMENT` bytes.
    pub async fn bytes(self) -> Result<Bytes> {
        let url = self.url;
        let collected = tokio::time::timeout(
            READ_TIMEOUT,
            Limited::new(self.body, MAX_DOCUMENT).collect(),
        )
        .await
        .map_err(|_| Error::Timeout { url: url.clone() })?
        .map_err(|e| Error::BadResponse {
            url: url.clone(),
            message: format!("reading body: {e}"),
        })?;
        Ok(collected.to_bytes())
    }
}

/// What a 401 asked for.
#[derive(Debug, PartialEq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Bearer realm="...",service="...",scope="..."` (quoted values may hold commas).
fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let mut params = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, rest) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, val);
        s = rest.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A registry client for one pull (or a kubelet's lifetime): holds the configuration, TLS
/// settings per host, and tokens.
pub struct Client {
    config: RegistriesConfig,
    tls: Mutex<HashMap<String, Arc<rustls::ClientConfig>>>,
    /// Authorization header values by (host, repository).
    auth: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(config: RegistriesConfig) -> Client {
        Client {
            config,
            tls: Mutex::new(HashMap::new()),
            auth: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &RegistriesConfig {
        &self.config
    }

    /// `username:password` for a host, from registries.yaml.
    fn credentials(&self, host: &str) -> Option<(String, String)> {
        let auth = self.config.config_for(host)?.auth.as_ref()?;
        if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
            return Some((u.clone(), p.clone()));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.auth.as_ref()?.trim())
            .ok()?;
        let (u, p) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    /// GET `<endpoint>/<repository>/<path>` with authentication and redirects handled.
    pub async fn get(
        &self,
        ep: &Endpoint,
        repository: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<Response> {
        let ask = Ask { accept, from: None };
        self.get_with(ep, repository, path, ask).await
    }

    /// As `get`, for the bytes of `path` from offset `from` on (`Range: bytes=from-`). The
    /// caller checks that the answer is 206 starting there (`resumes_at`): a registry may
    /// ignore the range and send everything.
    pub async fn get_from(
        &self,
        ep: &Endpoint,
        repository: &str,
        path: &str,
        from: u64,
    ) -> Result<Response> {
        let ask = Ask {
            accept: None,
            from: Some(from),
        };
        self.get_with(ep, repository, path, ask).await
    }

    async fn get_with(
        &self,
        ep: &Endpoint,
        repository: &str,
        path: &str,
        ask: Ask<'_>,
    ) -> Result<Response> {
        // A mirror may know the repository by another name (registries.yaml `rewrite`).
        let repository = &*ep.repository(repository);
        let url = Url::parse(&ep.url(&format!("/{repository}/{path}")))?;
        let key = (ep.host.clone(), repository.to_string());
        let mut authorization = self.auth.lock().unwrap().get(&key).cloned();
        let mut tried_auth = false;
        loop {
            let resp = self
                .get_following(&url, ask, authorization.as_deref())
                .await?;
            if resp.status != StatusCode::UNAUTHORIZED {
                return check_status(resp).await;
            }
            let challenge = resp
                .headers
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let creds = self.credentials(&ep.host);
            if tried_auth {
                let message = error_message(resp).await;
                return Err(match creds {
                    Some(_) => Error::AuthRejected {
                        url: url.to_string(),
                        host: ep.host.clone(),
                        message,
                    },
                    None => Error::AuthRequired {
                        url: url.to_string(),
                        host: ep.host.clone(),
                    },
                });
            }
            tried_auth = true;
            authorization = Some(match challenge {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }) => {
                    let scope = scope.unwrap_or_else(|| format!("repository:{repository}:pull"));
                    self.token(
                        &url,
                        &ep.host,
                        &realm,
                        service.as_deref(),
                        &scope,
                        creds.as_ref(),
                    )
                    .await?
                }
                _ => match creds {
                    Some((u, p)) => Client::basic(&u, &p),
                    None => {
                        return Err(Error::AuthRequired {
                            url: url.to_string(),
                            host: ep.host.clone(),
                        })
                    }
                },
            });
            self.auth
                .lock()
                .unwrap()
                .insert(key.clone(), authorization.clone().unwrap_or_default());
        }
    }

    /// Fetches a bearer token from a challenge's realm.
    async fn token(
        &self,
        for_url: &Url,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&(String, String)>,
    ) -> Result<String> {
        let mut query = format!("scope={}", percent_encode(scope));
        if let Some(s) = service {
            query.push_str(&format!("&service={}", percent_encode(s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let token_url = Url::parse(&format!("{realm}{sep}{query}"))?;
        let basic = creds.map(|(u, p)| Client::basic(u, p));
        let resp = self
            .get_following(&token_url, Ask::default(), basic.as_deref())
            .await?;
        if resp.status == StatusCode::UNAUTHORIZED || resp.status == StatusCode::FORBIDDEN {
            let message = error_message(resp).await;
            return Err(match creds {
                Some(_) => Error::AuthRejected {
                    url: for_url.to_string(),
                    host: host.to_string(),
                    message,
                },
                None => Error::AuthRequired {
                    url: for_url.to_string(),
                    host: host.to_string(),
                },
            });
        }
        let resp = check_status(resp).await?;
        let url = resp.url.clone();
        let body = resp.bytes().await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::BadResponse {
                url: url.clone(),
                message: format!("token response: {e}"),
            })?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::BadResponse {
                url,
                message: "token response has no token".into(),
            })?;
        Ok(format!("Bearer {token}"))
    }

    /// One GET, following redirects. Credentials are sent to the original host only: a
    /// redirect to blob storage elsewhere must not receive them.
    async fn get_following(
        &self,
        url: &Url,
        ask: Ask<'_>,
        authorization: Option<&str>,
    ) -> Result<Response> {
        let mut current = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let auth = if current.host == url.host {
                authorization
            } else {
                None
            };
            let resp = self.send(&current, ask, auth).await?;
            if resp.status.is_redirection() {
                if let Some(loc) = resp
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    current = current.join(loc)?;
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(Error::Http {
            url: url.to_string(),
            cause: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    async fn send(&self, url: &Url, ask: Ask<'_>, authorization: Option<&str>) -> Result<Response> {
        let authority = url.authority();
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
            .await
            .map_err(|_| Error::Connect {
                host: authority.clone(),
                cause: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|cause| Error::Connect {
                host: authority.clone(),
                cause,
            })?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = if url.https {
            let config = self.tls_config(&url.host)?;
            let name =
                ServerName::try_from(url.bare_host()).map_err(|_| Error::Url(url.to_string()))?;
            let tls = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| Error::Tls {
                host: url.host.clone(),
                cause: std::io::ErrorKind::TimedOut.into(),
            })?
            .map_err(|cause| Error::Tls {
                host: url.host.clone(),
                cause,
            })?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let http_err = |e: hyper::Error| Error::Http {
            url: url.to_string(),
            cause: e.to_string(),
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(http_err)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::get(&url.path)
            .header(header::HOST, &url.host)
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(a) = ask.accept {
            req = req.header(header::ACCEPT, a);
        }
        if let Some(from) = ask.from {
            req = req.header(header::RANGE, format!("bytes={from}-"));
        }
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| Error::Http {
            url: url.to_string(),
            cause: e.to_string(),
        })?;
        let resp = tokio::time::timeout(READ_TIMEOUT, sender.send_request(req))
            .await
            .map_err(|_| Error::Timeout {
                url: url.to_string(),
            })?
            .map_err(http_err)?;
        let (parts, body) = resp.into_parts();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
            url: url.to_string(),
        })
    }

    /// The rustls configuration for a host: the system's CAs plus registries.yaml's `ca_file`,
    /// a client certificate if configured, or no verification at all with `insecure_skip_verify`.
    fn tls_config(&self, host: &str) -> Result<Arc<rustls::ClientConfig>> {
        if let Some(c) = self.tls.lock().unwrap().get(host) {
            return Ok(c.clone());
        }
        let settings = self
            .config
            .config_for(host)
            .and_then(|c| c.tls.clone())
            .unwrap_or_default();
        let config = Arc::new(build_tls(&settings).map_err(|message| Error::TlsConfig {
            host: host.to_string(),
            message,
        })?);
        self.tls
            .lock()
            .unwrap()
            .insert(host.to_string(), config.clone());
        Ok(config)
    }
}

/// Where Debian (and most distributions) keep the system's trusted CAs.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn build_tls(settings: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    // Both ring and aws-lc-rs are compiled in (through other crates), so the provider is named
    // explicitly rather than relying on a process default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(bundle) = SYSTEM_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
        {
            roots.add_parsable_certificates(read_certs(&bundle)?);
        }
        if let Some(ca) = &settings.ca_file {
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match (&settings.cert_file, &settings.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let f = std::fs::File::open(key).map_err(|e| format!("{}: {e}", key.display()))?;
            let key_der = rustls_pemfile::private_key(&mut BufReader::new(f))
                .map_err(|e| format!("{}: {e}", key.display()))?
                .ok_or_else(|| format!("{}: no private key found", key.display()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| e.to_string())?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("cert_file and key_file must be given together".into()),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `insecure_skip_verify`: accepts any certificate, but still checks the handshake signatures
/// so the connection is at least encrypted to whoever answered.
#[derive(Debug)]
pub struct NoVerification(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Turns an error status into an error carrying the registry's own message
/// (`{"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}`).
async fn check_status(resp: Response) -> Result<Response> {
    if resp.status.is_success() {
        return Ok(resp);
    }
    let url = resp.url.clone();
    let status = resp.status;
    let message = error_message(resp).await;
    Err(Error::Status {
        url,
        status,
        message: if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        },
    })
}

async fn error_message(resp: Response) -> String {
    let Ok(body) = resp.bytes().await else {
        return String::new();
    };
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => e
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn parses_urls() {
        let u = Url::parse("https://auth.example/token?x=1").unwrap();
        assert_eq!(
            (u.authority().as_str(), u.path.as_str()),
            ("auth.example:443", "/token?x=1")
        );
        let u = Url::parse("http://[::1]:5000/v2/").unwrap();
        assert_eq!(
            (u.authority().as_str(), u.bare_host().as_str()),
            ("[::1]:5000", "::1")
        );
        assert_eq!(
            u.join("/v2/x").unwrap().to_string(),
            "http://[::1]:5000/v2/x"
        );
        assert!(Url::parse("ftp://x").is_err());
    }
}
