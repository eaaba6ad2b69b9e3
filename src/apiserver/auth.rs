//! Stage 2 of the request pipeline, authentication: who is asking. Bearer tokens (the admin's and
//! the node join token, both kept in the data dir) and client certificates verified by TLS
//! against the cluster CA (CN the user, O the groups). What the user may do is the next stage's
//! question (`authorization`).

use std::path::Path;

/// An authenticated user, as upstream's user.Info: name, uid (empty when the credential carries
/// none, as for client certificates) and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        User {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// Errors of loading credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A token file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The tokens the server accepts.
#[derive(Debug, Clone)]
pub struct Authenticator {
    pub admin_token: String,
    pub node_token: String,
}

/// 32 random characters from [a-z0-9].
pub fn random_token() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn load_or_make(path: &Path, given: Option<&str>) -> Result<String, Error> {
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
    /// Loads the admin token and the node token from `server_dir` (creating them the first
    /// time); `--token` replaces the node token.
    pub fn load(server_dir: &Path, node_token: Option<&str>) -> Result<Self, Error> {
        Ok(Authenticator {
            admin_token: load_or_make(&server_dir.join("admin-token"), None)?,
            node_token: load_or_make(&server_dir.join("token"), node_token)?,
        })
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
            let token = h
                .strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))?
                .trim();
            if !token.is_empty() && constant_time_eq(token, &self.admin_token) {
                return Some(User::new("admin", &["system:masters"]));
            }
            // k3s's full form K10<ca hash>::server:<secret> carries the same secret.
            let secret = token.split_once("::server:").map_or(token, |(_, s)| s);
            if !secret.is_empty() && constant_time_eq(secret, &self.node_token) {
                return Some(User::new("nanokube-node", &["system:nodes"]));
            }
            // A wrong token is refused even when a certificate came along, as Kubernetes does.
            return None;
        }
        cert_user.cloned()
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
            "nanokube-node"
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
