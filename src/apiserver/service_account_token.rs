//! Service account tokens: JSON Web Tokens signed by the server, as upstream's bound tokens.
//!
//! The signing key is an ECDSA P-256 key (ES256) made on first start and kept in
//! `<data-dir>/server/tls/service.key`, where k3s keeps its service account key, so every token
//! stays valid across restarts. A token's claims say who it is for and how long it lives: `iss`
//! (`--service-account-issuer`), `aud` (the audiences asked for, by default `--api-audiences`),
//! `iat`, `nbf`, `exp`, `sub` (`system:serviceaccount:<ns>:<name>`), and the `kubernetes.io`
//! private claim naming the ServiceAccount and the object the token is bound to (a pod, with its
//! node, or a secret) by name and uid. Checking that those objects still exist is the
//! authenticator's part (`auth`), since only the store knows.
//!
//! The public key is served as a JWKS (`/openid/v1/jwks`, `kid` the SHA-256 of the key's DER
//! SubjectPublicKeyInfo, as upstream derives it) with an OpenID discovery document, so anything
//! outside the cluster can verify a token without asking the server.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use rcgen::PublicKeyData as _;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// The issuer upstream's documentation and k3s use.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How much clock difference `nbf`, `exp` and a pod's deletion are allowed, as upstream's
/// validator (jwt.DefaultLeeway).
pub const LEEWAY_SECONDS: i64 = 60;

/// Errors of the signing key and of tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The key file holds no usable P-256 key.
    #[error("service account key: {0}")]
    Key(String),
    /// The token is not one of ours or not valid now; the text says why (TokenReview shows it).
    #[error("{0}")]
    Invalid(String),
}

/// A name and uid, as the `kubernetes.io` claim names objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` private claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    pub namespace: String,
    pub serviceaccount: Ref,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Private,
    pub nbf: i64,
    pub sub: String,
}

impl Claims {
    /// Claims for the account `namespace/name` (uid `uid`), valid from `now` for `seconds`.
    pub fn new(
        namespace: &str,
        account: Ref,
        audiences: Vec<String>,
        now: i64,
        seconds: i64,
    ) -> Self {
        Claims {
            aud: audiences,
            exp: now + seconds,
            iat: now,
            iss: String::new(),
            jti: uuid::Uuid::new_v4().to_string(),
            sub: format!("system:serviceaccount:{namespace}:{}", account.name),
            kubernetes: Private {
                namespace: namespace.into(),
                serviceaccount: account,
                ..Default::default()
            },
            nbf: now,
        }
    }
}

/// The server's signing key, its public half, and what its tokens say and must say.
pub struct Keys {
    key: EcdsaKeyPair,
    /// The key's id in the JWKS and in every token's header.
    pub kid: String,
    /// `iss` of the tokens made and accepted.
    pub issuer: String,
    /// The audiences the API server accepts (`--api-audiences`); a token must name one.
    pub audiences: Vec<String>,
    /// Tokens whose signature was already checked, with their claims: verifying ES256 costs more
    /// than the rest of authentication, and a client sends the same token on every request.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// How many verified tokens are remembered; past that the memory starts over.
const VERIFIED_MAX: usize = 4096;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Keys {
    /// Loads the key at `path`, making it the first time, with the default issuer and audience.
    pub fn load_or_create(path: &Path) -> Result<Keys, Error> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let pem = match std::fs::read_to_string(path) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| Error::Key(e.to_string()))?;
                let pem = k.serialize_pem();
                super::tls::write_private(path, pem.as_bytes()).map_err(io)?;
                pem
            }
            Err(e) => return Err(io(e)),
        };
        let parsed = rcgen::KeyPair::from_pem(&pem).map_err(|e| Error::Key(e.to_string()))?;
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &parsed.serialize_der(),
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| Error::Key(format!("not a P-256 key: {e}")))?;
        let kid = B64.encode(sha2::Sha256::digest(parsed.subject_public_key_info()));
        Ok(Keys {
            key,
            kid,
            issuer: DEFAULT_ISSUER.into(),
            audiences: vec![DEFAULT_ISSUER.into()],
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Signs `claims` (their `iss` set to this issuer) into a compact JWS.
    pub fn sign(&self, mut claims: Claims) -> Result<String, Error> {
        claims.iss = self.issuer.clone();
        let header = json!({"alg": "ES256", "kid": self.kid});
        let body = serde_json::to_vec(&claims).map_err(|e| Error::Key(e.to_string()))?;
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(body));
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
            .map_err(|_| Error::Key("signing failed".into()))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of `token` if this server signed it, it is within its lifetime, and it names
    /// one of `audiences` (the server's own when empty). Whether its objects still exist is
    /// not looked at here.
    pub fn verify(&self, token: &str, audiences: &[String]) -> Result<Claims, Error> {
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .lock()
            .expect("token cache")
            .get(&digest)
            .cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let c = self.check_signature(token)?;
                let mut cache = self.verified.lock().expect("token cache");
                if cache.len() >= VERIFIED_MAX {
                    cache.clear();
                }
                cache.insert(digest, c.clone());
                c
            }
        };
        let invalid = |m: &str| Err(Error::Invalid(m.into()));
        if claims.iss != self.issuer {
            return invalid("token issuer is not accepted");
        }
        let t = now();
        if t > claims.exp + LEEWAY_SECONDS {
            return invalid("service account token has expired");
        }
        if t + LEEWAY_SECONDS < claims.nbf {
            return invalid("service account token is not valid yet");
        }
        let wanted = if audiences.is_empty() {
            &self.audiences
        } else {
            audiences
        };
        if !claims.aud.iter().any(|a| wanted.contains(a)) {
            return invalid("token audiences are not accepted");
        }
        Ok(claims)
    }

    fn check_signature(&self, token: &str) -> Result<Claims, Error> {
        let invalid = |m: &str| Error::Invalid(m.into());
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JSON web token"));
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("malformed token header"))?;
        if header["alg"] != "ES256" || header["kid"] != self.kid.as_str() {
            return Err(invalid("token was not signed by this server's key"));
        }
        let sig = B64
            .decode(s)
            .map_err(|_| invalid("malformed token signature"))?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public
            .verify(&token.as_bytes()[..h.len() + 1 + p.len()], &sig)
            .map_err(|_| invalid("token signature is invalid"))?;
        B64.decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| invalid("malformed token claims"))
    }

    /// The public key as a JSON Web Key Set.
    pub fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": B64.encode(&point[1..33]),
            "y": B64.encode(&point[33..65]),
        }]})
    }

    /// The OpenID provider configuration, naming the JWKS at `jwks_uri`.
    pub fn openid_configuration(&self, jwks_uri: &str) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }
}

/// Whether a bearer credential looks like a JWT (three dot-separated parts), so the static
/// tokens never reach the signature check.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Ref {
        Ref {
            name: "default".into(),
            uid: "u1".into(),
        }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_only_with_this_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service.key");
        let keys = Keys::load_or_create(&path).unwrap();
        let again = Keys::load_or_create(&path).unwrap();
        assert_eq!(keys.kid, again.kid);
        let claims = Claims::new("ns", account(), vec![DEFAULT_ISSUER.into()], now(), 3600);
        let token = keys.sign(claims.clone()).unwrap();
        let got = again.verify(&token, &[]).unwrap();
        assert_eq!(got.sub, "system:serviceaccount:ns:default");
        assert_eq!(got.iss, DEFAULT_ISSUER);
        assert!(matches!(
            keys.verify(&token, &["other".into()]),
            Err(Error::Invalid(m)) if m.contains("audiences")
        ));
        let old = Claims::new(
            "ns",
            account(),
            vec![DEFAULT_ISSUER.into()],
            now() - 7200,
            3600,
        );
        let expired = keys.sign(old).unwrap();
        assert!(
            matches!(keys.verify(&expired, &[]), Err(Error::Invalid(m)) if m.contains("expired"))
        );
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.verify(&tampered, &[]).is_err());
        let other = Keys::load_or_create(&dir.path().join("other.key")).unwrap();
        assert!(other.verify(&token, &[]).is_err());
        let jwks = keys.jwks();
        assert_eq!(jwks["keys"][0]["kid"], keys.kid.as_str());
        assert_eq!(
            B64.decode(jwks["keys"][0]["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
    }
}
