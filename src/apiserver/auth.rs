//! Stage 2 of the request pipeline, authentication: who is asking. Bearer tokens (the admin's and
//! the node join token, both kept in the data dir, and service account JWTs signed by the
//! server), and client certificates verified by TLS against the cluster CA (CN the user, O the
//! groups). What the user may do is the next stage's question (`authorization`).
//!
//! A service account token is checked in two steps: its signature, issuer, audience and lifetime
//! (`service_account_token`, cached per token since the signature check is the costly part), then
//! the objects it names, read from the store on every request (two point reads), so that deleting
//! the ServiceAccount, or the pod or secret the token is bound to, makes it useless at once.

use super::handler::Api;
use super::service_account_token::{self as sat, Claims, Keys};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// An authenticated user, as upstream's user.Info: name, uid (empty when the credential carries
/// none, as for client certificates), groups, and extra facts (a service account token's pod
/// and node, which the Node authorizer can use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            extra: BTreeMap::new(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Errors of loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The service account signing key could not be loaded or made.
    #[error("{0}")]
    ServiceAccountKey(#[from] sat::Error),
}

/// The tokens the server accepts.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub admin_token: String,
    pub node_token: String,
    /// Signs and checks service account tokens.
    pub service_accounts: Arc<Keys>,
    /// Requests with no credentials at all act as `system:anonymous` (else they are 401).
    pub anonymous: bool,
}

/// Who the join token is, as upstream names a bootstrap token's user: a node that has no
/// certificate yet, allowed only to ask for one (`system:node-bootstrapper`).
pub const BOOTSTRAP_USER: &str = "system:bootstrap:nanokube";
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers";

/// 32 random characters from [a-z0-9].
pub fn random_token() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// The token in `path`, `given` (written there) or, the first time, a new random one.
pub fn load_or_make(path: &Path, given: Option<&str>) -> Result<String, Error> {
    let err = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(t) = given {
        crate::apiserver::tls::write_private(path, t.as_bytes()).map_err(err)?;
        return Ok(t.to_string());
    }
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => {
            let t = random_token();
            crate::apiserver::tls::write_private(path, t.as_bytes()).map_err(err)?;
            Ok(t)
        }
    }
}

impl Authenticator {
    /// Loads the admin token, the node token and the service account key from `server_dir`
    /// (creating them the first time); `--token` replaces the node token.
    pub fn load(server_dir: &Path, node_token: Option<&str>) -> Result<Self, Error> {
        let keys = Keys::load_or_create(&server_dir.join("tls/service.key"))?;
        Ok(Authenticator {
            admin_token: load_or_make(&server_dir.join("admin-token"), None)?,
            node_token: load_or_make(&server_dir.join("token"), node_token)?,
            service_accounts: Arc::new(keys),
            anonymous: false,
        })
    }

    /// The user of a request that presented no credentials: `system:anonymous` when
    /// anonymous requests are enabled.
    pub fn anonymous_user(&self) -> Option<User> {
        self.anonymous
            .then(|| User::new("system:anonymous", &["system:unauthenticated"]))
    }

    /// Sets the issuer of service account tokens (`--service-account-issuer`) and the
    /// audiences the server accepts (`--api-audiences`; the issuer when none are given).
    pub fn with_issuer(mut self, issuer: &str, audiences: &[String]) -> Self {
        let keys = Arc::get_mut(&mut self.service_accounts)
            .expect("the issuer is set before the authenticator is shared");
        keys.issuer = issuer.to_string();
        keys.audiences = if audiences.is_empty() {
            vec![issuer.to_string()]
        } else {
            audiences.to_vec()
        };
        self
    }

    /// The user of a request: a bearer token first, else the verified client certificate.
    /// Every authenticated user is also in `system:authenticated`, as in Kubernetes.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        cert_user: Option<&User>,
    ) -> Option<User> {
        let mut user = self.identify(authorization, cert_user)?;
        if !user.groups.iter().any(|g| g == "system:authenticated") {
            user.groups.push("system:authenticated".into());
        }
        Some(user)
    }

    fn identify(&self, authorization: Option<&str>, cert_user: Option<&User>) -> Option<User> {
        if let Some(h) = authorization {
            let token = bearer(h)?;
            if !token.is_empty() && constant_time_eq(token, &self.admin_token) {
                return Some(User::new("admin", &["system:masters"]));
            }
            // k3s's full form K10<ca hash>::server:<secret> carries the same secret.
            let secret = token.split_once("::server:").map_or(token, |(_, s)| s);
            if !secret.is_empty() && constant_time_eq(secret, &self.node_token) {
                return Some(User::new(BOOTSTRAP_USER, &[BOOTSTRAP_GROUP]));
            }
            // A wrong token is refused even when a certificate came along, as Kubernetes does
            // (a service account token is checked by `Api::authenticate`).
            return None;
        }
        cert_user.cloned()
    }
}

/// The bearer token of an Authorization header.
fn bearer(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}

/// The user a service account token stands for, as upstream's token authenticator makes it.
pub fn service_account_user(c: &Claims) -> User {
    let ns = &c.kubernetes.namespace;
    let mut user = User {
        name: format!(
            "system:serviceaccount:{ns}:{}",
            c.kubernetes.serviceaccount.name
        ),
        uid: c.kubernetes.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
        extra: BTreeMap::new(),
    };
    let mut extra = |k: &str, v: &str| {
        user.extra.insert(
            format!("authentication.kubernetes.io/{k}"),
            vec![v.to_string()],
        );
    };
    extra("credential-id", &format!("JTI={}", c.jti));
    if let Some(pod) = &c.kubernetes.pod {
        extra("pod-name", &pod.name);
        extra("pod-uid", &pod.uid);
    }
    if let Some(node) = &c.kubernetes.node {
        extra("node-name", &node.name);
        extra("node-uid", &node.uid);
    }
    user
}

impl Api {
    /// The user of a request: the static tokens and certificates first (`Authenticator`), then
    /// a service account token.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        cert_user: Option<&User>,
    ) -> Option<User> {
        if let Some(user) = self.auth.authenticate(authorization, cert_user) {
            return Some(user);
        }
        let token = bearer(authorization?)?;
        if !sat::looks_like_jwt(token) {
            return None;
        }
        match self.review_token(token, &[]).await {
            Ok((user, _)) => Some(user),
            Err(e) => {
                tracing::debug!(error = %e, "service account token refused");
                None
            }
        }
    }

    /// Checks a service account token for `audiences` (the server's when empty): signed here,
    /// in its lifetime, and its ServiceAccount and bound pod or secret still there with the uids
    /// it names. Gives the user and the token's audiences, or why it is refused.
    pub async fn review_token(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Result<(User, Vec<String>), String> {
        let claims = self
            .auth
            .service_accounts
            .verify(token, audiences)
            .map_err(|e| e.to_string())?;
        let k = &claims.kubernetes;
        let ns = k.namespace.as_str();
        let sa = self
            .stored("serviceaccounts", ns, &k.serviceaccount.name)
            .await?
            .ok_or_else(|| format!("serviceaccount {ns}/{} not found", k.serviceaccount.name))?;
        if sa["metadata"]["uid"] != k.serviceaccount.uid.as_str() {
            return Err(format!(
                "service account UID ({}) does not match claim ({})",
                sa["metadata"]["uid"].as_str().unwrap_or(""),
                k.serviceaccount.uid
            ));
        }
        for (plural, bound) in [("pods", &k.pod), ("secrets", &k.secret)] {
            let Some(bound) = bound else { continue };
            let obj = self
                .stored(plural, ns, &bound.name)
                .await?
                .ok_or_else(|| format!("{plural} \"{}\" not found", bound.name))?;
            if obj["metadata"]["uid"] != bound.uid.as_str() {
                return Err(format!(
                    "{plural} UID ({}) does not match claim ({})",
                    obj["metadata"]["uid"].as_str().unwrap_or(""),
                    bound.uid
                ));
            }
            // A deleted object's token lives on for the leeway, as upstream allows.
            let deleted = obj["metadata"]["deletionTimestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if deleted.is_some_and(|t| {
                t.timestamp() + sat::LEEWAY_SECONDS < chrono::Utc::now().timestamp()
            }) {
                return Err("service account token has been invalidated".into());
            }
        }
        let wanted = if audiences.is_empty() {
            &self.auth.service_accounts.audiences
        } else {
            audiences
        };
        let audiences = claims
            .aud
            .iter()
            .filter(|a| wanted.contains(a))
            .cloned()
            .collect();
        Ok((service_account_user(&claims), audiences))
    }

    /// A core/v1 object from the store, as JSON.
    async fn stored(
        &self,
        plural: &str,
        ns: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, String> {
        let info = self
            .registry
            .lookup("", "v1", plural)
            .ok_or_else(|| format!("{plural} are not served"))?;
        let found = self
            .get_object(&info, Some(ns), name)
            .await
            .map_err(|e| e.to_string())?;
        Ok(found.map(|(v, _)| v))
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_persist_and_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let a = Authenticator::load(dir.path(), None).unwrap();
        let b = Authenticator::load(dir.path(), None).unwrap();
        assert_eq!(a.admin_token, b.admin_token);
        let c = Authenticator::load(dir.path(), Some("join-me")).unwrap();
        assert_eq!(c.node_token, "join-me");
        let admin = c
            .authenticate(Some(&format!("Bearer {}", c.admin_token)), None)
            .unwrap();
        assert_eq!(admin.name, "admin");
        assert_eq!(
            c.authenticate(Some("Bearer join-me"), None).unwrap().name,
            BOOTSTRAP_USER
        );
        assert!(c.authenticate(Some("Bearer nope"), None).is_none());
        assert!(c.authenticate(None, None).is_none());
        let u = User::new("x", &[]);
        assert_eq!(c.authenticate(None, Some(&u)).unwrap().name, "x");
        assert!(c
            .authenticate(None, Some(&u))
            .unwrap()
            .groups
            .contains(&"system:authenticated".to_string()));
    }
}
