//! `probe api PATH [BODY]`: what an in-cluster client does with the pod's service account mount.
//! It reads the token and CA the kubelet wrote under /var/run/secrets/kubernetes.io/serviceaccount,
//! finds the API server through KUBERNETES_SERVICE_HOST/PORT, sends `GET PATH` (`POST` with the
//! JSON BODY when one is given) over TLS with the token as a bearer credential and prints
//! `status <code>` and the body. The test then knows the
//! pod reached the API server as its service account, through the same files and variables the
//! kube crate's and the Python client's in-cluster configs use.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub fn call(path: &str, body: Option<&str>) -> i32 {
    match run(path, body) {
        Ok((status, body)) => {
            println!("status {status}");
            println!("{body}");
            0
        }
        Err(e) => {
            eprintln!("probe api: {e}");
            1
        }
    }
}

fn run(path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let token =
        std::fs::read_to_string(format!("{DIR}/token")).map_err(|e| format!("token: {e}"))?;
    let host =
        std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| "KUBERNETES_SERVICE_HOST unset")?;
    let port =
        std::env::var("KUBERNETES_SERVICE_PORT").map_err(|_| "KUBERNETES_SERVICE_PORT unset")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(format!("{DIR}/ca.crt"))
        .map_err(|e| format!("ca.crt: {e}"))?
    {
        roots
            .add(cert.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| format!("ca.crt: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    let addr = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let tcp = TcpStream::connect(&addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let (method, payload) = match body {
        Some(b) => ("POST", b),
        None => ("GET", ""),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
        token.trim(),
        payload.len()
    );
    tls.write_all(request.as_bytes())
        .map_err(|e| format!("TLS: {e}"))?;
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify; what arrived before is the answer.
    if let Err(e) = tls.read_to_end(&mut raw) {
        if raw.is_empty() {
            return Err(format!("reading the answer: {e}"));
        }
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Ok((
        status,
        if chunked {
            unchunk(body)
        } else {
            body.to_string()
        },
    ))
}

/// The body of a chunked HTTP/1.1 answer.
fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    out
}
