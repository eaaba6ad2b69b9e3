//! Bearer-token auth, Docker Hub style: a real docker-registry configured for token auth, and a
//! small token service (in this test, on 127.0.0.1) that issues ES256-signed JWTs: anonymous
//! clients may pull `public/*`, the test user may pull and push everything, wrong credentials
//! get a 401. Run as root: `cargo test --test images_token`.

mod images_util;

use base64::Engine as _;
use images_util::*;
use nanokube::image;
use rcgen::{CertificateParams, KeyPair, SigningKey};
use serde_json::json;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const USER: &str = "tokenuser";
const PASSWORD: &str = "token-pass";
const SERVICE: &str = "nanokube-test-registry";
const ISSUER: &str = "nanokube-test-issuer";

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// ECDSA signatures come DER-encoded from rcgen; JWS wants r and s as two 32-byte integers.
fn der_to_jws(der: &[u8]) -> Vec<u8> {
    fn int(b: &[u8]) -> (&[u8], &[u8]) {
        assert_eq!(b[0], 0x02);
        let len = b[1] as usize;
        (&b[2..2 + len], &b[2 + len..])
    }
    assert_eq!(der[0], 0x30);
    let body = &der[2..];
    let (r, rest) = int(body);
    let (s, _) = int(rest);
    let mut out = Vec::new();
    for v in [r, s] {
        let v = &v[v.len().saturating_sub(32)..];
        out.extend(std::iter::repeat_n(0u8, 32 - v.len()));
        out.extend_from_slice(v);
    }
    out
}

/// The token service. Returns its port and a counter of tokens issued.
fn token_server(key: KeyPair, cert_der: Vec<u8>) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = issued.clone();
    let good = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut authorization = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("authorization") {
                        authorization = Some(v.trim().to_string());
                    }
                }
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .to_string();
            let query = path
                .split_once('?')
                .map(|(_, q)| q.to_string())
                .unwrap_or_default();
            let mut scopes = Vec::new();
            for pair in query.split('&') {
                if let Some(v) = pair.strip_prefix("scope=") {
                    scopes.push(
                        v.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ","),
                    );
                }
            }
            let user = match authorization.as_deref() {
                None => None,
                Some(a) if a == good => Some(USER),
                Some(_) => {
                    let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
            };
            let access: Vec<_> = scopes
                .iter()
                .filter_map(|s| {
                    let mut parts = s.splitn(3, ':');
                    let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                    let allowed: Vec<&str> = actions
                        .split(',')
                        .filter(|a| user.is_some() || (*a == "pull" && name.starts_with("public/")))
                        .collect();
                    Some(json!({"type": kind, "name": name, "actions": allowed}))
                })
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(&cert_der)]});
            let claims = json!({
                "iss": ISSUER, "sub": user.unwrap_or(""), "aud": SERVICE,
                "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{now}"),
                "access": access,
            });
            let signing_input = format!(
                "{}.{}",
                b64url(&serde_json::to_vec(&header).unwrap()),
                b64url(&serde_json::to_vec(&claims).unwrap())
            );
            let sig = der_to_jws(&key.sign(signing_input.as_bytes()).unwrap());
            let token = format!("{signing_input}.{}", b64url(&sig));
            let body = serde_json::to_vec(&json!({"token": token, "expires_in": 300})).unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
    });
    (port, issued)
}

#[test]
fn pull_with_bearer_tokens() {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["token-signer".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_pem = cert.pem();
    let (token_port, issued) = token_server(key, cert.der().to_vec());
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("token-ca.pem");
    fs::write(&bundle, cert_pem).unwrap();
    let reg = Registry::start(RegistryOpts {
        extra_config: Some(format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            bundle.display()
        )),
        ..Default::default()
    });

    let mut layout = Layout::new(&tmp.path().join("layout"));
    let mut l = LayerBuilder::new();
    l.file("hello", b"token world\n", 0o644);
    let desc = layout.image(&[(l.finish(), Compression::Gzip)], "amd64", json!({}));
    layout.tag(desc, "v1").finish();
    let creds = format!("{USER}:{PASSWORD}");
    reg.push(&layout.dir, "v1", "public/app:v1", Some(&creds), false);
    reg.push(&layout.dir, "v1", "private/app:v1", Some(&creds), false);

    let data = tmp.path().join("data");
    let registries = tmp.path().join("registries.yaml");
    let pull = |reference: &str| {
        let mut c = nanokube();
        c.arg("image")
            .arg("--data-dir")
            .arg(&data)
            .arg("--registries-config")
            .arg(&registries)
            .args(["pull", reference]);
        c
    };

    // Anonymous token: enough for public/, not for private/.
    let before = issued.load(Ordering::SeqCst);
    run_ok(&mut pull(&format!("{}/public/app:v1", reg.host())));
    assert!(
        issued.load(Ordering::SeqCst) > before,
        "a token was fetched"
    );
    let private = format!("{}/private/app:v1", reg.host());
    let err = run_err(&mut pull(&private));
    assert!(err.contains("requires authentication"), "{err}");

    fs::write(
        &registries,
        format!(
            "configs:\n  \"{}\":\n    auth:\n      username: {USER}\n      password: nope\n",
            reg.host()
        ),
    )
    .unwrap();
    let err = run_err(&mut pull(&private));
    assert!(err.contains("rejected the credentials"), "{err}");

    fs::write(
        &registries,
        format!(
            "configs:\n  \"{}\":\n    auth:\n      username: {USER}\n      password: {PASSWORD}\n",
            reg.host()
        ),
    )
    .unwrap();
    run_ok(&mut pull(&private));
    let img = image::prepare(&data, &private).unwrap();
    assert_eq!(
        fs::read_to_string(img.lower_dirs[0].join("hello")).unwrap(),
        "token world\n"
    );
}
