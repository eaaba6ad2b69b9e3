//! The EncryptionConfiguration file (apiserver.config.k8s.io/v1, kube-apiserver's
//! `--encryption-provider-config`), in YAML or JSON, and what it compiles to: for each group of
//! resources, the store prefixes it covers and its providers in order. The first provider
//! seals every write; all of them can open what they sealed.

use super::provider::{Key, Kind};
use base64::Engine;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
pub const KIND: &str = "EncryptionConfiguration";

/// The file, as written: kept so a key rotation can write it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub resources: Vec<ResourcesEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesEntry {
    pub resources: Vec<String>,
    pub providers: Vec<ProviderEntry>,
}

/// One provider: exactly one of the fields is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<Keys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aesgcm: Option<Keys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<Keys>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<Empty>,
    /// Accepted by the parser only to be refused with a clear message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keys {
    pub keys: Vec<KeyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    pub name: String,
    /// The key, base64.
    pub secret: String,
}

impl ProviderEntry {
    /// The provider's cipher and keys, or None for identity.
    pub fn keyed(&self) -> Option<(Kind, &Keys)> {
        [
            (Kind::AesCbc, &self.aescbc),
            (Kind::AesGcm, &self.aesgcm),
            (Kind::Secretbox, &self.secretbox),
        ]
        .into_iter()
        .find_map(|(kind, keys)| keys.as_ref().map(|k| (kind, k)))
    }

    pub fn keyed_mut(&mut self) -> Option<&mut Keys> {
        [&mut self.aescbc, &mut self.aesgcm, &mut self.secretbox]
            .into_iter()
            .find_map(|keys| keys.as_mut())
    }
}

/// A provider, compiled.
#[derive(Debug, Clone)]
pub enum Provider {
    Identity,
    Keyed(Vec<Key>),
}

/// One resources entry, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub resources: Vec<String>,
    /// Store key prefixes the entry covers, e.g. "/registry/core/secrets/".
    pub prefixes: Vec<String>,
    pub providers: Vec<Provider>,
}

impl Rule {
    /// The key new values are sealed with; None when the first provider is identity.
    pub fn write_key(&self) -> Option<&Key> {
        match self.providers.first() {
            Some(Provider::Keyed(keys)) => keys.first(),
            _ => None,
        }
    }

    pub fn covers(&self, store_key: &str) -> bool {
        self.prefixes.iter().any(|p| store_key.starts_with(p))
    }
}

/// A whole configuration, compiled.
#[derive(Debug, Clone)]
pub struct Config {
    pub file: File,
    pub rules: Vec<Rule>,
}

/// A configuration that cannot be used; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses a file's text (YAML, of which JSON is a part).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        // serde_yaml's messages start with the field's path already.
        let file: File = serde_yaml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        Config::compile(file)
    }

    /// Checks a parsed file and builds its rules.
    pub fn compile(file: File) -> Result<Config, ConfigError> {
        let bad = |field: String, why: &str| Err(ConfigError(format!("{field}: {why}")));
        if file.api_version != API_VERSION {
            return bad("apiVersion".into(), &format!("must be {API_VERSION}"));
        }
        if file.kind != KIND {
            return bad("kind".into(), &format!("must be {KIND}"));
        }
        let mut rules = Vec::new();
        for (i, entry) in file.resources.iter().enumerate() {
            let at = format!("resources[{i}]");
            if entry.resources.is_empty() {
                return bad(format!("{at}.resources"), "must name at least one resource");
            }
            let mut prefixes = Vec::new();
            for (j, resource) in entry.resources.iter().enumerate() {
                match store_prefix(resource) {
                    Some(p) => prefixes.push(p),
                    None => {
                        return bad(
                            format!("{at}.resources[{j}]"),
                            &format!(
                                "{resource:?} is not a resource (\"secrets\", \
                                 \"<plural>.<group>\", \"*.<group>\" or \"*.*\")"
                            ),
                        )
                    }
                }
            }
            if entry.providers.is_empty() {
                return bad(format!("{at}.providers"), "must list at least one provider");
            }
            let mut providers = Vec::new();
            for (j, p) in entry.providers.iter().enumerate() {
                let at = format!("{at}.providers[{j}]");
                let set = [
                    p.aescbc.is_some(),
                    p.aesgcm.is_some(),
                    p.secretbox.is_some(),
                    p.identity.is_some(),
                    p.kms.is_some(),
                ]
                .iter()
                .filter(|s| **s)
                .count();
                if set != 1 {
                    return bad(
                        at,
                        "must set exactly one of aescbc, aesgcm, secretbox, identity",
                    );
                }
                if p.kms.is_some() {
                    return bad(format!("{at}.kms"), "KMS providers are not supported");
                }
                let Some((kind, keys)) = p.keyed() else {
                    providers.push(Provider::Identity);
                    continue;
                };
                let at = format!("{at}.{}.keys", kind.name());
                if keys.keys.is_empty() {
                    return bad(at, "must list at least one key");
                }
                let mut compiled: Vec<Key> = Vec::new();
                for (k, key) in keys.keys.iter().enumerate() {
                    let at = format!("{at}[{k}]");
                    // A colon would make the stored prefix ambiguous to read back.
                    if key.name.is_empty() || key.name.contains(':') {
                        return bad(format!("{at}.name"), "must be non-empty, without ':'");
                    }
                    if compiled.iter().any(|c| c.name == key.name) {
                        return bad(
                            format!("{at}.name"),
                            &format!("{:?} is used twice", key.name),
                        );
                    }
                    let secret = base64::engine::general_purpose::STANDARD
                        .decode(key.secret.trim())
                        .map_err(|_| ConfigError(format!("{at}.secret: is not base64")))?;
                    if !kind.key_lengths().contains(&secret.len()) {
                        return bad(
                            format!("{at}.secret"),
                            &format!(
                                "is {} bytes; {} takes keys of {:?} bytes",
                                secret.len(),
                                kind.name(),
                                kind.key_lengths()
                            ),
                        );
                    }
                    compiled.push(Key::new(kind, &key.name, secret));
                }
                providers.push(Provider::Keyed(compiled));
            }
            rules.push(Rule {
                resources: entry.resources.clone(),
                prefixes,
                providers,
            });
        }
        Ok(Config { file, rules })
    }

    /// No encryption at all: what a cluster without a configuration has.
    pub fn identity() -> Config {
        Config {
            file: File {
                api_version: API_VERSION.into(),
                kind: KIND.into(),
                resources: Vec::new(),
            },
            rules: Vec::new(),
        }
    }

    /// What `--secrets-encryption` writes for a new cluster, as k3s does: Secrets sealed with
    /// one random 32-byte AES-CBC key, identity second so values written before still read.
    pub fn generate() -> Config {
        let file = File {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            resources: vec![ResourcesEntry {
                resources: vec!["secrets".into()],
                providers: vec![
                    ProviderEntry {
                        aescbc: Some(Keys {
                            keys: vec![new_key_entry(Kind::AesCbc)],
                        }),
                        ..Default::default()
                    },
                    ProviderEntry {
                        identity: Some(Empty {}),
                        ..Default::default()
                    },
                ],
            }],
        };
        Config::compile(file).expect("a generated configuration is valid")
    }

    /// The rule for a store key: the first whose resources cover it.
    pub fn rule_for(&self, store_key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.covers(store_key))
    }

    /// Whether anything is sealed on write.
    pub fn encrypts(&self) -> bool {
        self.rules.iter().any(|r| r.write_key().is_some())
    }

    /// The file's JSON, as it is written to disk.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&self.file).expect("the file serializes") + "\n"
    }

    /// The configuration with every rule also covering `prefix`: how the store conformance
    /// suite and the benchmarks put their own keys under encryption.
    pub fn covering(mut self, prefix: &str) -> Config {
        for rule in &mut self.rules {
            rule.prefixes.push(prefix.to_string());
        }
        self
    }
}

/// A new random key of `kind`, named as k3s names its keys (`aescbckey-<time>`, here without
/// the colons a key name may not hold).
pub fn new_key_entry(kind: Kind) -> KeyEntry {
    let now = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.fZ")
        .to_string();
    KeyEntry {
        name: format!("{}key-{now}", kind.name()),
        secret: base64::engine::general_purpose::STANDARD.encode(super::provider::random::<32>()),
    }
}

/// The store prefix a resource name of the file covers. This store keys objects
/// `/registry/<group>/<plural>/...` with the core group spelt `core` (apiserver::registry), so
/// upstream's "secrets" is `/registry/core/secrets/`, "deployments.apps"
/// `/registry/apps/deployments/`, "*.apps" `/registry/apps/`, "*." the core group and "*.*"
/// everything.
pub fn store_prefix(resource: &str) -> Option<String> {
    let resource = resource.trim().to_ascii_lowercase();
    let (plural, group) = match resource.split_once('.') {
        Some((p, g)) => (p.to_string(), g.to_string()),
        None => (resource.clone(), String::new()),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    };
    match (plural.as_str(), group.as_str()) {
        ("*", "*") => Some("/registry/".into()),
        ("*", "") => Some("/registry/core/".into()),
        ("*", g) if name_ok(g) => Some(format!("/registry/{g}/")),
        (p, "") if name_ok(p) => Some(format!("/registry/core/{p}/")),
        (p, g) if name_ok(p) && name_ok(g) && !g.contains('*') => {
            Some(format!("/registry/{g}/{p}/"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn upstream_example_parses() {
        let c = Config::parse(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
             - resources: [secrets, configmaps, deployments.apps]\n  providers:\n\
             \x20 - aesgcm:\n      keys:\n      - name: key1\n        secret: c2VjcmV0IGlzIHNlY3VyZQ==\n\
             \x20 - secretbox:\n      keys:\n      - {name: key2, secret: YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY=}\n\
             \x20 - identity: {}\n",
        )
        .unwrap();
        let rule = &c.rules[0];
        assert_eq!(
            rule.prefixes,
            [
                "/registry/core/secrets/",
                "/registry/core/configmaps/",
                "/registry/apps/deployments/"
            ]
        );
        assert_eq!(rule.write_key().unwrap().name, "key1");
        assert_eq!(rule.providers.len(), 3);
        assert!(c.rule_for("/registry/core/secrets/ns/x").is_some());
        assert!(c.rule_for("/registry/core/pods/ns/x").is_none());
        // What is written back parses to the same.
        let again = Config::parse(&c.to_json()).unwrap();
        assert_eq!(again.rules[0].prefixes, rule.prefixes);
    }

    #[test]
    fn bad_files_name_the_field() {
        let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n";
        assert_eq!(
            err("apiVersion: v1\nkind: EncryptionConfiguration\nresources: []"),
            "apiVersion: must be apiserver.config.k8s.io/v1"
        );
        let e = err(&format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - {{name: k, secret: c2hvcnQ=}}\n"));
        assert!(
            e.starts_with("resources[0].providers[0].aescbc.keys[0].secret: is 5 bytes"),
            "{e}"
        );
        let e = err(&format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - {{name: k, secret: '!!'}}\n"));
        assert_eq!(
            e,
            "resources[0].providers[0].aescbc.keys[0].secret: is not base64"
        );
        let e = err(&format!("{head}resources:\n- resources: [secrets]\n  providers:\n  - aescbc:\n      keys:\n      - {{name: k, sekret: x}}\n"));
        assert!(
            e.starts_with("resources[0].providers[0].aescbc.keys[0]: unknown field `sekret`"),
            "{e}"
        );
        let e = err(&format!(
            "{head}resources:\n- resources: [secrets]\n  providers:\n  - {{}}\n"
        ));
        assert!(
            e.starts_with("resources[0].providers[0]: must set exactly one"),
            "{e}"
        );
        let e = err(&format!(
            "{head}resources:\n- resources: ['a b']\n  providers:\n  - identity: {{}}\n"
        ));
        assert!(e.starts_with("resources[0].resources[0]:"), "{e}");
        let e = err(&format!(
            "{head}resources:\n- resources: [secrets]\n  providers:\n  - kms: {{name: x}}\n"
        ));
        assert_eq!(
            e,
            "resources[0].providers[0].kms: KMS providers are not supported"
        );
    }

    #[test]
    fn generated_configuration_seals_secrets_with_aescbc() {
        let c = Config::generate();
        let key = c
            .rule_for("/registry/core/secrets/default/s")
            .unwrap()
            .write_key()
            .unwrap();
        assert_eq!(key.kind, Kind::AesCbc);
        assert!(!key.name.contains(':'));
        assert!(
            Config::generate().to_json() != c.to_json(),
            "keys are random"
        );
    }

    #[test]
    fn resource_names_map_to_this_stores_prefixes() {
        assert_eq!(store_prefix("secrets").unwrap(), "/registry/core/secrets/");
        assert_eq!(
            store_prefix("deployments.apps").unwrap(),
            "/registry/apps/deployments/"
        );
        assert_eq!(store_prefix("*.apps").unwrap(), "/registry/apps/");
        assert_eq!(store_prefix("*.").unwrap(), "/registry/core/");
        assert_eq!(store_prefix("*.*").unwrap(), "/registry/");
        assert!(store_prefix("").is_none());
        assert!(store_prefix("x/y").is_none());
    }
}
