//! Encryption at rest: a store layer (as kine layers its drivers) that wraps any [`Store`] and
//! seals the values of keys under the configured resource prefixes before they reach the
//! backend, and opens them on every way back out: get, list, the values create, update and
//! delete return, and both values of every watch event. Keys, revisions and everything the
//! backend orders by stay in the clear; only values change.
//!
//! The configuration is upstream's EncryptionConfiguration (`config`); the ciphers are
//! upstream's aescbc, aesgcm and secretbox with upstream's stored prefix (`provider`). A value
//! without the `k8s:enc:` mark is read as it is, so turning encryption on needs no migration:
//! old values read in the clear until they are next written (or `rotate_keys` rewrites them).

pub mod config;
pub mod provider;

use super::WatchStream;
use super::{Error, Event, KeyValue, ListPage, ProgressWatchStream, Result, Store, WatchItem};
use async_trait::async_trait;
pub use config::Config;
use config::Provider;
use futures::StreamExt;
use provider::ENCRYPTED_MARK;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Failures of loading, writing or rotating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    // The cause is part of the message, not a `source`: the error prints as one line.
    #[error("encryption provider config {path}: {error}")]
    Config {
        path: String,
        error: config::ConfigError,
    },
    #[error("encryption provider config {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("secrets encryption is not enabled (no provider that encrypts comes first)")]
    NotEnabled,
    #[error(transparent)]
    Store(#[from] Error),
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> std::result::Result<Config, EncryptionError> {
    let text = std::fs::read_to_string(path).map_err(|error| EncryptionError::Io {
        path: path.display().to_string(),
        error,
    })?;
    Config::parse(&text).map_err(|error| EncryptionError::Config {
        path: path.display().to_string(),
        error,
    })
}

/// Writes `config` to `path` (mode 0600) so that a crash leaves the old file or the new one,
/// never half of either: the keys in it are the only way to read what they sealed.
pub fn save(path: &Path, config: &Config) -> std::result::Result<(), EncryptionError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |error| EncryptionError::Io {
        path: path.display().to_string(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(config.to_json().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

/// The layer.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    /// The configuration in force. Readers (and watch streams, event by event) take the one in
    /// force when they decode, so values sealed with a key added a moment ago open.
    current: Arc<RwLock<Arc<Config>>>,
    /// Held shared by each write from sealing until the backend has it, and exclusively to
    /// change the configuration: once a change returns, no write sealed under the previous
    /// configuration is still in flight, which is what lets a rotation rewrite every value
    /// in one pass.
    gate: tokio::sync::RwLock<()>,
    /// One rotation at a time.
    rotating: tokio::sync::Mutex<()>,
    /// Where the configuration lives; a rotation writes it back there.
    file: Option<PathBuf>,
}

impl EncryptedStore {
    /// `inner` behind `config`; `file` is where `config` was read from (None: nowhere, it is
    /// not rewritten).
    pub fn wrap(inner: Arc<dyn Store>, config: Config, file: Option<PathBuf>) -> Arc<Self> {
        Arc::new(EncryptedStore {
            inner,
            current: Arc::new(RwLock::new(Arc::new(config))),
            gate: tokio::sync::RwLock::new(()),
            rotating: tokio::sync::Mutex::new(()),
            file,
        })
    }

    pub fn config(&self) -> Arc<Config> {
        self.current.read().expect("config lock").clone()
    }

    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Puts `config` in force, after writing it to the file.
    async fn install(&self, config: Config) -> std::result::Result<(), EncryptionError> {
        if let Some(path) = &self.file {
            save(path, &config)?;
        }
        let _writes_drained = self.gate.write().await;
        *self.current.write().expect("config lock") = Arc::new(config);
        Ok(())
    }

    /// What `secrets-encrypt status` shows: the providers of each resources entry, the key
    /// that writes, and how many stored values each key (or none) holds now.
    pub async fn status(&self) -> Result<Status> {
        let config = self.config();
        let mut stored = BTreeMap::new();
        for prefix in prefixes(&config) {
            for kv in self.raw_list(&prefix).await? {
                *stored.entry(sealed_by(&kv.value)).or_insert(0) += 1;
            }
        }
        Ok(Status {
            enabled: config.encrypts(),
            config_file: self.file.as_ref().map(|p| p.display().to_string()),
            resources: config
                .rules
                .iter()
                .map(|rule| RuleStatus {
                    resources: rule.resources.clone(),
                    active_key: rule
                        .write_key()
                        .map(|k| format!("{}:{}", k.kind.name(), k.name)),
                    providers: rule
                        .providers
                        .iter()
                        .map(|p| match p {
                            Provider::Identity => ProviderStatus {
                                provider: "identity".into(),
                                key_type: "Identity".into(),
                                keys: Vec::new(),
                            },
                            Provider::Keyed(keys) => ProviderStatus {
                                provider: keys[0].kind.name().into(),
                                key_type: keys[0].kind.display().into(),
                                keys: keys.iter().map(|k| k.name.clone()).collect(),
                            },
                        })
                        .collect(),
                })
                .collect(),
            stored,
        })
    }

    /// k3s's `secrets-encrypt rotate-keys`: a new random key goes first in each resources
    /// entry whose first provider encrypts, every stored value of those resources is rewritten
    /// with it, the history before the rewrite is compacted away (its revisions were sealed
    /// with the old keys, and a rotation is often done because an old key may have leaked),
    /// and only then are the old keys of that provider dropped from the configuration.
    pub async fn rotate_keys(&self) -> std::result::Result<Rotation, EncryptionError> {
        let _one = self.rotating.lock().await;
        let before = self.config();
        if !before.encrypts() {
            return Err(EncryptionError::NotEnabled);
        }
        let mut file = before.file.clone();
        let mut rotated = Vec::new();
        for (i, entry) in file.resources.iter_mut().enumerate() {
            let Some(first) = entry.providers.first_mut() else {
                continue;
            };
            let Some((kind, _)) = first.keyed() else {
                continue;
            };
            let key = config::new_key_entry(kind);
            let keys = first.keyed_mut().expect("keyed provider");
            let old: Vec<String> = keys.keys.iter().map(|k| k.name.clone()).collect();
            rotated.push((i, key.name.clone(), old));
            keys.keys.insert(0, key);
        }
        let with_both = Config::compile(file.clone()).map_err(|error| EncryptionError::Config {
            path: "(rotated)".into(),
            error,
        })?;
        self.install(with_both.clone()).await?;

        let mut rewritten = 0;
        for prefix in prefixes(&with_both) {
            for kv in self.raw_list(&prefix).await? {
                if self.rewrite(&with_both, kv).await? {
                    rewritten += 1;
                }
            }
        }
        let revision = self.inner.current_revision().await?;
        self.inner.compact(revision).await?;

        for (i, _, old) in &rotated {
            let keys = file.resources[*i].providers[0]
                .keyed_mut()
                .expect("keyed provider");
            keys.keys.retain(|k| !old.contains(&k.name));
        }
        let after = Config::compile(file).map_err(|error| EncryptionError::Config {
            path: "(rotated)".into(),
            error,
        })?;
        self.install(after).await?;
        Ok(Rotation {
            new_keys: rotated.into_iter().map(|(_, name, _)| name).collect(),
            rewritten,
            compacted_at: revision,
        })
    }

    /// Rewrites one stored value with the key that now writes, unless it has it already.
    /// A write that wins the race was sealed under the new configuration (the gate saw to
    /// that), but it is checked again rather than trusted.
    async fn rewrite(&self, config: &Config, mut kv: KeyValue) -> Result<bool> {
        loop {
            let Some(key) = config.rule_for(&kv.key).and_then(|r| r.write_key()) else {
                return Ok(false);
            };
            if kv.value.starts_with(&key.prefix()) {
                return Ok(false);
            }
            let plain = open(config, &kv.key, kv.value)?;
            let sealed = key.seal(&kv.key, &plain);
            match self.inner.update(&kv.key, sealed, kv.mod_revision).await {
                Ok(_) => return Ok(true),
                Err(Error::Conflict { .. } | Error::NotFound(_)) => {
                    match self.inner.get(&kv.key).await? {
                        Some(now) => kv = now,
                        None => return Ok(false),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every stored key-value under `prefix`, values as stored.
    async fn raw_list(&self, prefix: &str) -> Result<Vec<KeyValue>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        let mut revision = None;
        loop {
            let page = self
                .inner
                .list(prefix, after.as_deref(), 500, revision)
                .await?;
            revision = Some(page.revision);
            after = page.items.last().map(|kv| kv.key.clone());
            all.extend(page.items);
            if !page.more {
                return Ok(all);
            }
        }
    }
}

/// The distinct prefixes a configuration covers, shortest first so that covered prefixes
/// inside another are dropped.
fn prefixes(config: &Config) -> Vec<String> {
    let mut all: Vec<String> = config
        .rules
        .iter()
        .flat_map(|r| r.prefixes.iter().cloned())
        .collect();
    all.sort_by_key(|p| p.len());
    let mut out: Vec<String> = Vec::new();
    for p in all {
        if !out.iter().any(|o| p.starts_with(o.as_str())) {
            out.push(p);
        }
    }
    out
}

/// "<provider>:<key name>" of a stored value, or "identity".
fn sealed_by(value: &[u8]) -> String {
    let Some(rest) = value.strip_prefix(ENCRYPTED_MARK) else {
        return "identity".into();
    };
    let mut parts = rest.splitn(4, |b| *b == b':');
    let kind = parts.next().unwrap_or_default();
    let _version = parts.next();
    let name = parts.next().unwrap_or_default();
    format!(
        "{}:{}",
        String::from_utf8_lossy(kind),
        String::from_utf8_lossy(name)
    )
}

/// `plain` as it is stored under `store_key`.
fn seal(config: &Config, store_key: &str, plain: Vec<u8>) -> Vec<u8> {
    match config.rule_for(store_key).and_then(|r| r.write_key()) {
        Some(key) => key.seal(store_key, &plain),
        None => plain,
    }
}

/// The plain value of a stored one. Any key of the configuration may open it, not only the
/// keys of the resources entry that covers it now, so a resource taken out of an entry still
/// reads until it is rewritten.
fn open(config: &Config, store_key: &str, stored: Vec<u8>) -> Result<Vec<u8>> {
    if !stored.starts_with(ENCRYPTED_MARK) {
        return Ok(stored);
    }
    let keys = config
        .rules
        .iter()
        .flat_map(|r| &r.providers)
        .flat_map(|p| match p {
            Provider::Keyed(keys) => keys.as_slice(),
            Provider::Identity => &[],
        });
    for key in keys {
        let prefix = key.prefix();
        if let Some(payload) = stored.strip_prefix(prefix.as_slice()) {
            return key
                .open(store_key, payload)
                .map_err(|e| Error::Backend(format!("{store_key}: {e}")));
        }
    }
    Err(Error::Backend(format!(
        "{store_key}: stored encrypted with {}, a key the encryption configuration does not \
         hold (no key named so)",
        sealed_by(&stored)
    )))
}

fn open_kv(config: &Config, mut kv: KeyValue) -> Result<KeyValue> {
    kv.value = open(config, &kv.key, std::mem::take(&mut kv.value))?;
    Ok(kv)
}

fn open_event(config: &Config, event: Event) -> Result<Event> {
    Ok(match event {
        Event::Put { kv, prev } => Event::Put {
            kv: open_kv(config, kv)?,
            prev: prev.map(|p| open_kv(config, p)).transpose()?,
        },
        Event::Delete { prev, revision } => Event::Delete {
            prev: open_kv(config, prev)?,
            revision,
        },
    })
}

#[async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let config = self.config();
        let kv = self.inner.get(key).await?;
        kv.map(|kv| open_kv(&config, kv)).transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> Result<ListPage> {
        let config = self.config();
        let mut page = self
            .inner
            .list(prefix, start_after, limit, revision)
            .await?;
        page.items = page
            .items
            .into_iter()
            .map(|kv| open_kv(&config, kv))
            .collect::<Result<_>>()?;
        Ok(page)
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        self.inner.count(prefix).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let _gate = self.gate.read().await;
        let sealed = seal(&self.config(), key, value.clone());
        let mut kv = self.inner.create(key, sealed).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        let _gate = self.gate.read().await;
        let sealed = seal(&self.config(), key, value.clone());
        let mut kv = self.inner.update(key, sealed, expected_revision).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let config = self.config();
        let (kv, revision) = self.inner.delete(key, expected_revision).await?;
        Ok((open_kv(&config, kv)?, revision))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> Result<WatchStream> {
        let current = self.current.clone();
        let events = self.inner.watch(prefix, after_revision).await?;
        Ok(events
            .map(move |item| {
                let config = current.read().expect("config lock").clone();
                item.and_then(|event| open_event(&config, event))
            })
            .boxed())
    }

    async fn watch_with_progress(
        &self,
        prefix: &str,
        after_revision: i64,
        interval: std::time::Duration,
    ) -> Result<ProgressWatchStream> {
        let current = self.current.clone();
        let items = self
            .inner
            .watch_with_progress(prefix, after_revision, interval)
            .await?;
        Ok(items
            .map(move |item| match item {
                Ok(WatchItem::Event(event)) => {
                    let config = current.read().expect("config lock").clone();
                    open_event(&config, event).map(WatchItem::Event)
                }
                other => other,
            })
            .boxed())
    }

    async fn current_revision(&self) -> Result<i64> {
        self.inner.current_revision().await
    }

    async fn compacted_revision(&self) -> Result<i64> {
        self.inner.compacted_revision().await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await
    }
}

/// What `status` reports (the JSON of the server's endpoint).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub enabled: bool,
    pub config_file: Option<String>,
    pub resources: Vec<RuleStatus>,
    /// Stored values of the covered resources by what sealed them: "aescbc:<key>" or
    /// "identity".
    pub stored: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleStatus {
    pub resources: Vec<String>,
    /// "<provider>:<key name>" of the key that writes, None when identity does.
    pub active_key: Option<String>,
    pub providers: Vec<ProviderStatus>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    pub provider: String,
    pub key_type: String,
    pub keys: Vec<String>,
}

/// What `rotate_keys` did.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    pub new_keys: Vec<String>,
    pub rewritten: u64,
    /// History before this revision was compacted away.
    pub compacted_at: i64,
}

#[cfg(test)]
mod tests;
