//! Image references, normalized the way Docker does: `busybox` means
//! `docker.io/library/busybox:latest`, `host:5000/app` keeps its registry, and a digest
//! (`@sha256:...`) pins the content whatever the tag says.

use super::digest::Digest;
use std::fmt;
use std::str::FromStr;

/// The registry used when a reference names none.
pub const DEFAULT_REGISTRY: &str = "docker.io";
/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";

/// Errors of reference parsing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference is empty.
    #[error("empty image reference")]
    Empty,
    /// The repository path has characters or a shape registries do not accept.
    #[error("invalid image reference {0:?}: repository names are lowercase letters, digits and separators (. _ __ -) between '/'")]
    InvalidName(String),
    /// The tag is longer than 128 characters or has characters other than letters, digits, `_ . -`.
    #[error("invalid tag in image reference {0:?}")]
    InvalidTag(String),
    /// The part after `@` is not a valid digest.
    #[error("invalid digest in image reference {reference:?}: {cause}")]
    InvalidDigest {
        reference: String,
        cause: super::digest::Error,
    },
}

/// A fully qualified image reference.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`).
    pub repository: String,
    /// The tag; kept even when a digest is given, though the digest then decides the content.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference as the Docker CLI does.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        if s.is_empty() {
            return Err(Error::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                let digest = digest.parse().map_err(|cause| Error::InvalidDigest {
                    reference: s.to_string(),
                    cause,
                })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(Error::InvalidTag(s.to_string()));
            }
        }
        // The first component is a registry only if it looks like a host name: Docker's rule.
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if registry.is_empty() || !valid_repository(&repository) {
            return Err(Error::InvalidName(s.to_string()));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if there is one, else the tag.
    pub fn manifest_key(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The key an image is recorded under in the store: by digest if pinned (the tag is then
    /// only decoration and would make two names for one thing), else by tag.
    pub fn store_key(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.name()),
            None => format!(
                "{}:{}",
                self.name(),
                self.tag.as_deref().unwrap_or(DEFAULT_TAG)
            ),
        }
    }

    /// The same repository pinned to a digest.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Each path component is `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|component| {
            let b = component.as_bytes();
            if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
                return false;
            }
            let mut i = 0;
            while i < b.len() {
                if is_alnum(b[i]) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < b.len() && !is_alnum(b[i]) {
                    i += 1;
                }
                let sep = &component[start..i];
                let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
                if !ok {
                    return false;
                }
            }
            true
        })
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            norm("index.docker.io/library/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        assert_eq!(
            norm("registry.example:5000/app"),
            "registry.example:5000/app:latest"
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(&format!("registry.example:5000/app@{d}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), d);
        assert_eq!(r.manifest_key(), d);
        assert_eq!(r.store_key(), format!("registry.example:5000/app@{d}"));
        let r = Reference::parse(&format!("busybox:1.36@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("1.36"));
        assert_eq!(r.manifest_key(), d);
        assert_eq!(r.store_key(), format!("docker.io/library/busybox@{d}"));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "a//b",
            "-a",
            "a:b:c",
            "busybox@sha256:12",
            "a/b@md5:00",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(Reference::parse(&format!("a:{}", "x".repeat(129))).is_err());
    }
}
