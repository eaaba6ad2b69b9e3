//! The cluster's PKI: a CA made on first start and kept in `<data-dir>/server/tls`, the serving
//! certificate and the admin client certificate signed by it at every start (so their names
//! follow the host), and the rustls configuration that asks clients for an optional certificate.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a certificate or key file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The CA and the certificates issued at this start.
#[derive(Debug)]
pub struct Pki {
    pub ca_cert_pem: String,
    ca_key: KeyPair,
    pub serving_cert_pem: String,
    serving_key: KeyPair,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file readable only by its owner (keys, tokens, kubeconfigs).
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // `mode` only applies on create: a kubeconfig left by an older start keeps tight permissions too.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
}

fn validity(params: &mut CertificateParams, years: i32) {
    use chrono::Datelike;
    let now = chrono::Utc::now();
    params.not_before = rcgen::date_time_ymd(now.year() - 1, now.month() as u8, 1);
    params.not_after = rcgen::date_time_ymd(now.year() + years, now.month() as u8, 1);
}

impl Pki {
    /// Loads the CA from `dir` (creating it the first time) and issues this start's certificates.
    /// `sans` are the serving certificate's names and addresses.
    pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, Error> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let (ca_crt, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        let (ca_cert_pem, ca_key) = if ca_crt.exists() && ca_key_path.exists() {
            let cert = std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?;
            let key = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
            (cert, KeyPair::from_pem(&key)?)
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = rcgen::DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, "nanokube-ca");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, 10);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes())
                .map_err(io(&ca_key_path))?;
            write_private(&ca_crt, cert.pem().as_bytes()).map_err(io(&ca_crt))?;
            (cert.pem(), key)
        };
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, &ca_key)?;

        let serving_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 1);
        let serving = params.signed_by(&serving_key, &issuer)?;
        let serving_cert_pem = serving.pem();
        for (name, data) in [
            ("serving.crt", serving_cert_pem.clone()),
            ("serving.key", serving_key.serialize_pem()),
        ] {
            let p = dir.join(name);
            write_private(&p, data.as_bytes()).map_err(io(&p))?;
        }

        let mut pki = Pki {
            ca_cert_pem,
            ca_key,
            serving_cert_pem,
            serving_key,
            admin_cert_pem: String::new(),
            admin_key_pem: String::new(),
        };
        let (cert, key) = pki.issue_client("system:admin", &["system:masters"])?;
        for (name, data) in [("admin.crt", &cert), ("admin.key", &key)] {
            let p = dir.join(name);
            write_private(&p, data.as_bytes()).map_err(io(&p))?;
        }
        pki.admin_cert_pem = cert;
        pki.admin_key_pem = key;
        Ok(pki)
    }

    /// A client certificate (PEM cert, PEM key) for user `cn` in groups `orgs`.
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), Error> {
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, &self.ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        for o in orgs {
            params.distinguished_name.push(DnType::OrganizationName, *o);
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, 1);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn ca_der(&self) -> Result<CertificateDer<'static>, Error> {
        let parsed = x509_parser::pem::parse_x509_pem(self.ca_cert_pem.as_bytes())
            .map_err(|e| Error::Tls(rustls::Error::General(format!("CA PEM: {e}"))))?;
        Ok(CertificateDer::from(parsed.1.contents))
    }

    /// The server's TLS configuration: serving certificate chain, optional client certificates
    /// verified against the CA (token clients present none), ALPN h2 and http/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = self.ca_der()?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()?;
        let serving = x509_parser::pem::parse_x509_pem(self.serving_cert_pem.as_bytes())
            .map_err(|e| Error::Tls(rustls::Error::General(format!("serving PEM: {e}"))))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.serving_key.serialize_der()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![CertificateDer::from(serving.1.contents), ca], key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// The serving certificate's names: loopback, the host, the in-cluster service names.
pub fn default_sans(bind_address: &str) -> Vec<String> {
    let mut sans: Vec<String> = [
        "127.0.0.1",
        "::1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.43.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str().filter(|h| !h.is_empty()) {
            sans.push(h.to_string());
        }
    }
    if !matches!(bind_address, "0.0.0.0" | "::" | "") && !sans.iter().any(|s| s == bind_address) {
        sans.push(bind_address.to_string());
    }
    sans
}

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn identity_of(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, groups))
}

impl Pki {
    /// A serving certificate for `cn` with names and addresses `sans` (a kubelet's HTTPS port).
    pub fn issue_serving(&self, cn: &str, sans: &[String]) -> Result<(String, String), Error> {
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, &self.ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 1);
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// What a signed certificate is for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Client,
    Server,
}

impl Pki {
    /// Signs a certificate signing request (PEM, its signature checked) with the CA: the
    /// subject and names it asks for, used for `usage`, valid from a little before now (clocks
    /// of a cluster drift: five minutes, or a tenth of a short lifetime, so that renewing at
    /// 80% of the validity still falls in the future) to `lifetime` from now. What may be
    /// signed is the caller's to decide.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        usage: Usage,
        lifetime: std::time::Duration,
    ) -> Result<String, Error> {
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, &self.ca_key)?;
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let p = &mut csr.params;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![match usage {
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        }];
        let now = time::OffsetDateTime::now_utc();
        let backdate = (lifetime / 10).min(std::time::Duration::from_secs(300));
        p.not_before = now - backdate;
        p.not_after = now + lifetime;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        p.use_authority_key_identifier_extension = true;
        Ok(csr.signed_by(&issuer)?.pem())
    }
}

fn pem_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(rustls::Error::General(format!("certificate PEM: {e}"))))
}

fn pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, Error> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| Error::Tls(rustls::Error::General(format!("key PEM: {e}"))))?
        .ok_or_else(|| Error::Tls(rustls::Error::General("no private key in PEM".into())))
}

fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(ca_pem)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// A server that only talks to clients with a certificate from `ca_pem` (the kubelet's port,
/// which only the API server may use).
pub fn mutual_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider.clone(),
    )
    .build()?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem_certs(cert_pem)?, pem_key(key_pem)?)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client presenting `cert_pem` that trusts servers signed by `ca_pem`.
pub fn mutual_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(pem_certs(cert_pem)?, pem_key(key_pem)?)?;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_and_client_certs_carry_identity() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_create(dir.path(), &default_sans("0.0.0.0")).unwrap();
        let b = Pki::load_or_create(dir.path(), &default_sans("0.0.0.0")).unwrap();
        assert_eq!(a.ca_cert_pem, b.ca_cert_pem);
        b.server_config().unwrap();
        let der = x509_parser::pem::parse_x509_pem(b.admin_cert_pem.as_bytes())
            .unwrap()
            .1
            .contents;
        assert_eq!(
            identity_of(&der),
            Some(("system:admin".into(), vec!["system:masters".into()]))
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
