//! Registry configuration in k3s's registries.yaml format, so a file written for k3s works here:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://mirror.local:5000", "https://registry-1.docker.io"]
//!   "*":                       # every registry without an entry of its own
//!     endpoint: ["https://cache.local"]
//! configs:
//!   mirror.local:5000:         # keyed by the host (and port) the request goes to
//!     auth: {username: u, password: p}
//!     tls: {ca_file: /etc/ssl/my-ca.pem, cert_file: c.pem, key_file: k.pem, insecure_skip_verify: false}
//! ```
//!
//! A mirror may also rename repositories for its endpoints, as k3s allows:
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://mirror.local:5000"]
//!     rewrite:
//!       "^library/(.*)": "dockerhub-cache/$1"   # docker.io/library/busybox -> dockerhub-cache/busybox
//! ```
//!
//! Endpoints are tried in order, then the registry itself, as k3s does. Without configuration a
//! registry is reached over HTTPS, except on loopback where plain HTTP is used, as Docker allows.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Errors of registries.yaml handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file exists but could not be read.
    #[error("reading {path}: {cause}")]
    Read { path: PathBuf, cause: io::Error },
    /// The file is not valid YAML of the k3s registries.yaml shape.
    #[error("{path}: {cause}")]
    Parse {
        path: PathBuf,
        cause: serde_yaml::Error,
    },
    /// A mirror's rewrite pattern is not a valid regular expression.
    #[error("registries.yaml: mirrors.{registry}.rewrite: {pattern:?}: {cause}")]
    Rewrite {
        registry: String,
        pattern: String,
        cause: regex::Error,
    },
    /// An endpoint is not an http:// or https:// URL.
    #[error("registries.yaml: endpoint {0:?} is not an http:// or https:// URL with a host")]
    Endpoint(String),
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct Mirror {
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository renames for this mirror's endpoints: a regular expression over the
    /// repository name (`library/busybox`) and its replacement (`$1` for a group). The first
    /// pattern that matches, in key order, applies; the registry itself is asked for the
    /// original name.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct RegistryConfig {
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`, as in a Docker config.json.
    #[serde(default)]
    pub auth: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Where requests for a registry go: scheme, host[:port] and the API root path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    /// host or host:port, as in URLs and as registries.yaml `configs` are keyed.
    pub host: String,
    /// The API root, `/v2` unless a mirror endpoint's URL gives a path prefix.
    pub api_root: String,
    /// The mirror's repository renames (none for the registry itself).
    pub rewrites: Vec<Rewrite>,
}

/// One compiled `rewrite` entry of a mirror.
#[derive(Debug, Clone)]
pub struct Rewrite {
    pattern: regex::Regex,
    replacement: String,
}

impl PartialEq for Rewrite {
    fn eq(&self, other: &Rewrite) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.replacement == other.replacement
    }
}

impl Eq for Rewrite {}

/// A mirror's rewrites, compiled, in key order.
fn compile_rewrites(registry: &str, mirror: &Mirror) -> Result<Vec<Rewrite>, Error> {
    mirror
        .rewrite
        .iter()
        .map(|(pattern, replacement)| {
            Ok(Rewrite {
                pattern: regex::Regex::new(pattern).map_err(|cause| Error::Rewrite {
                    registry: registry.to_string(),
                    pattern: pattern.clone(),
                    cause,
                })?,
                replacement: replacement.clone(),
            })
        })
        .collect()
}

impl Endpoint {
    /// The name this endpoint knows `repository` by: the first rewrite that matches, applied
    /// (every match, as Go's ReplaceAllString does), else the name itself.
    pub fn repository<'a>(&self, repository: &'a str) -> std::borrow::Cow<'a, str> {
        match self
            .rewrites
            .iter()
            .find(|r| r.pattern.is_match(repository))
        {
            Some(r) => r
                .pattern
                .replace_all(repository, r.replacement.as_str())
                .into_owned()
                .into(),
            None => repository.into(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}{}{path}",
            if self.https { "https" } else { "http" },
            self.host,
            self.api_root
        )
    }

    /// Parses a registries.yaml endpoint URL; like k3s, a URL without a scheme means https.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let (https, rest) = match url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            Some(_) => return Err(Error::Endpoint(url.to_string())),
            None => (true, url),
        };
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if host.is_empty() {
            return Err(Error::Endpoint(url.to_string()));
        }
        let api_root = if path.ends_with("/v2") {
            path.to_string()
        } else {
            format!("{path}/v2")
        };
        Ok(Endpoint {
            https,
            host: host.to_string(),
            api_root,
            rewrites: Vec::new(),
        })
    }
}

/// Whether a host (with optional port) is a loopback address, where Docker allows plain HTTP.
pub fn is_loopback(host: &str) -> bool {
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl RegistriesConfig {
    /// Loads the file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<RegistriesConfig, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(RegistriesConfig::default()),
            Err(cause) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    cause,
                })
            }
        };
        if text.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        let config: RegistriesConfig =
            serde_yaml::from_str(&text).map_err(|cause| Error::Parse {
                path: path.to_path_buf(),
                cause,
            })?;
        for (registry, m) in &config.mirrors {
            for e in &m.endpoint {
                Endpoint::parse(e)?;
            }
            compile_rewrites(registry, m)?;
        }
        Ok(config)
    }

    /// The settings for requests to `host`.
    pub fn config_for(&self, host: &str) -> Option<&RegistryConfig> {
        self.configs.get(host)
    }

    /// The endpoints to try for `registry`, in order: its mirrors (or the `*` mirrors), then the
    /// registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirror = match self.mirrors.get_key_value(registry) {
            Some(found) => Some(found),
            None => self.mirrors.get_key_value("*"),
        };
        let mut out: Vec<Endpoint> = mirror
            .map(|(key, m)| {
                // Checked when the file was loaded; a configuration built in memory that does
                // not compile gets no rewrites rather than a panic.
                let rewrites = compile_rewrites(key, m).unwrap_or_default();
                m.endpoint
                    .iter()
                    .filter_map(|e| Endpoint::parse(e).ok())
                    .map(|ep| Endpoint {
                        rewrites: rewrites.clone(),
                        ..ep
                    })
                    .collect()
            })
            .unwrap_or_default();
        let default = if registry == super::reference::DEFAULT_REGISTRY {
            Endpoint {
                https: true,
                host: "registry-1.docker.io".to_string(),
                api_root: "/v2".to_string(),
                rewrites: Vec::new(),
            }
        } else {
            let has_tls = self.config_for(registry).is_some_and(|c| c.tls.is_some());
            Endpoint {
                https: has_tls || !is_loopback(registry),
                host: registry.to_string(),
                api_root: "/v2".to_string(),
                rewrites: Vec::new(),
            }
        };
        if !out.contains(&default) {
            out.push(default);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads `yaml` as a registries.yaml file.
    fn load_yaml(yaml: &str) -> RegistriesConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        std::fs::write(&path, yaml).unwrap();
        RegistriesConfig::load(&path).unwrap()
    }

    #[test]
    fn mirror_rewrites_rename_repositories_for_the_mirror_only() {
        let yaml = r#"
mirrors:
  docker.io:
    endpoint: ["http://127.0.0.1:5000"]
    rewrite:
      "^library/(.*)": "hub/$1"
      "^rancher/(.*)": "rancher-images/$1"
"#;
        let c = load_yaml(yaml);
        let eps = c.endpoints("docker.io");
        assert_eq!(eps[0].repository("library/busybox"), "hub/busybox");
        assert_eq!(eps[0].repository("rancher/k3s"), "rancher-images/k3s");
        assert_eq!(eps[0].repository("team/app"), "team/app");
        // The registry itself is asked for the original name.
        assert_eq!(eps[1].repository("library/busybox"), "library/busybox");
    }

    #[test]
    fn reads_k3s_registries_yaml() {
        let yaml = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "mirror.example:8443/prefix"
configs:
  "127.0.0.1:5000":
    auth:
      username: u
      password: p
    tls:
      insecure_skip_verify: true
"#;
        let c = load_yaml(yaml);
        let eps = c.endpoints("docker.io");
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].url("/x"), "http://127.0.0.1:5000/v2/x");
        assert_eq!(eps[1].url("/"), "https://mirror.example:8443/prefix/v2/");
        assert_eq!(eps[2].host, "registry-1.docker.io");
        assert_eq!(
            c.config_for("127.0.0.1:5000")
                .unwrap()
                .auth
                .as_ref()
                .unwrap()
                .username
                .as_deref(),
            Some("u")
        );
        // Loopback registries default to plain HTTP, others to HTTPS.
        assert!(!c.endpoints("localhost:5000")[0].https);
        assert!(!c.endpoints("[::1]:5000")[0].https);
        assert!(c.endpoints("registry.example:5000")[0].https);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        assert!(RegistriesConfig::load(&path).unwrap().mirrors.is_empty());
        std::fs::write(&path, "mirrors: [").unwrap();
        assert!(RegistriesConfig::load(&path).is_err());
    }
}
