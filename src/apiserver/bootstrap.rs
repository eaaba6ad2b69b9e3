//! Bootstrap data: what the servers of one cluster must share to be one cluster, kept in the
//! datastore as k3s keeps it (`/bootstrap/<token hash>`), so that a server started with the
//! same `--datastore-endpoint` and `--token` as a running one becomes another server of that
//! cluster rather than a cluster of its own. It holds the CA that signs every certificate, the
//! service account signing key, the admin token and the secrets encryption configuration,
//! sealed (AES-256-GCM) under a key derived from the join token: whoever can read the
//! datastore but lacks the token learns none of it.
//!
//! At start, before anything reads those files, [`sync`] writes the stored copy over the
//! local files it differs from. Only the encryption configuration may win by being newer (a
//! key rotation made by this server while another was down): it is stored instead. The CA
//! and keys are always the datastore's. A datastore holding no copy gets this server's once its files exist
//! ([`save`]).

use crate::store::{self, Store};
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The shared files, relative to `<data-dir>/server`.
pub const FILES: &[&str] = &[
    "tls/ca.crt",
    "tls/ca.key",
    "tls/service.key",
    "admin-token",
    "cred/encryption-config.json",
];

/// The one shared file a running server changes (`secrets-encrypt rotate-keys`).
const ROTATED: &str = "cred/encryption-config.json";

/// PBKDF2 rounds for the sealing key: the token is random (32 characters), so this only has
/// to make guessing a weak user-chosen token slow, not to stretch a password.
const ROUNDS: u32 = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bootstrap data: {0}")]
    Store(#[from] store::Error),
    #[error("bootstrap data: {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("bootstrap data at {0} cannot be opened with this token (damaged, or sealed by another version)")]
    Unsealed(String),
    #[error(
        "this datastore holds another cluster's bootstrap data: start with that cluster's --token"
    )]
    OtherToken,
    #[error("this datastore holds a cluster but no bootstrap data for this token: start with the cluster's --token, or from its first server's data directory")]
    NoBootstrap,
    #[error("another server stored the cluster's bootstrap data at the same moment: start this server again to join it")]
    Raced,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// What the store holds, once unsealed.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Files {
    files: BTreeMap<String, FileData>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct FileData {
    /// Base64 of the content.
    content: String,
    /// Modification time, milliseconds since the epoch.
    modified: u64,
}

/// What the store holds: the sealed `Files`.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    salt: String,
    nonce: String,
    data: String,
}

/// The store key of the bootstrap data sealed with `secret`.
pub fn key(secret: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
    format!("/bootstrap/{}", &hash[..12])
}

fn sealing_key(secret: &str, salt: &[u8]) -> ring::aead::LessSafeKey {
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        std::num::NonZeroU32::new(ROUNDS).expect("non-zero"),
        salt,
        secret.as_bytes(),
        &mut key,
    );
    let unbound =
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).expect("a 32-byte key");
    ring::aead::LessSafeKey::new(unbound)
}

fn seal(secret: &str, at: &str, files: &Files) -> Vec<u8> {
    use rand::RngCore;
    let (mut salt, mut nonce) = ([0u8; 16], [0u8; 12]);
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut nonce);
    let mut data = serde_json::to_vec(files).expect("json");
    sealing_key(secret, &salt)
        .seal_in_place_append_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(at.as_bytes()),
            &mut data,
        )
        .expect("sealing cannot fail for this size");
    serde_json::to_vec(&Sealed {
        salt: B64.encode(salt),
        nonce: B64.encode(nonce),
        data: B64.encode(data),
    })
    .expect("json")
}

fn unseal(secret: &str, at: &str, value: &[u8]) -> Result<Files, Error> {
    let bad = || Error::Unsealed(at.to_string());
    let sealed: Sealed = serde_json::from_slice(value).map_err(|_| bad())?;
    let salt = B64.decode(&sealed.salt).map_err(|_| bad())?;
    let nonce: [u8; 12] = B64
        .decode(&sealed.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(bad)?;
    let mut data = B64.decode(&sealed.data).map_err(|_| bad())?;
    let plain = sealing_key(secret, &salt)
        .open_in_place(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(at.as_bytes()),
            &mut data,
        )
        .map_err(|_| bad())?;
    serde_json::from_slice(plain).map_err(|_| bad())
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The shared files present in `dir`.
fn read_local(dir: &Path) -> Result<Files, Error> {
    let mut out = Files::default();
    for name in FILES {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(content) => {
                let modified = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map_or(0, millis);
                out.files.insert(
                    name.to_string(),
                    FileData {
                        content: B64.encode(content),
                        modified,
                    },
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(out)
}

/// What [`sync`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// The datastore had the cluster's data, now in the local files.
    Joined,
    /// The datastore has none yet: this is the cluster's first server, which calls [`save`]
    /// once its files exist.
    First,
}

/// Brings the local files in `dir` (`<data-dir>/server`) in line with the datastore's copy.
pub async fn sync(store: &dyn Store, dir: &Path, secret: &str) -> Result<Synced, Error> {
    let at = key(secret);
    let Some(kv) = store.get(&at).await? else {
        let others = store.list("/bootstrap/", None, 1, None).await?;
        if !others.items.is_empty() {
            return Err(Error::OtherToken);
        }
        // A cluster whose first server has no files here (or was made before bootstrap data
        // was kept) cannot be joined from nothing: a new CA would split it.
        if !dir.join("tls/ca.key").exists() && store.count("/registry/").await? > 0 {
            return Err(Error::NoBootstrap);
        }
        return Ok(Synced::First);
    };
    let stored = unseal(secret, &at, &kv.value)?;
    let local = read_local(dir)?;
    let mut local_newer = false;
    // Only the files this server knows: a name from the store never picks a path.
    for (name, data) in stored
        .files
        .iter()
        .filter(|(n, _)| FILES.contains(&n.as_str()))
    {
        match local.files.get(name) {
            Some(mine) if mine.content == data.content => {}
            // Only what a server changes while it runs (a key rotation) may win by being
            // newer: the CA and keys are the datastore's, whatever a stale data directory
            // (a server that lost the race to be first) holds.
            Some(mine) if name == ROTATED && mine.modified > data.modified => local_newer = true,
            _ => {
                let path = dir.join(name);
                let content = B64
                    .decode(&data.content)
                    .map_err(|_| Error::Unsealed(at.clone()))?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io(parent))?;
                }
                crate::apiserver::tls::write_private(&path, &content).map_err(io(&path))?;
                let when = UNIX_EPOCH + Duration::from_millis(data.modified);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(when))
                    .map_err(io(&path))?;
                tracing::info!("bootstrap data: {name} from the datastore");
            }
        }
    }
    local_newer |= local.files.contains_key(ROTATED) && !stored.files.contains_key(ROTATED);
    if local_newer {
        tracing::info!("bootstrap data: this server's files are newer; storing them");
        store_files(store, dir, secret, Some(kv.mod_revision)).await?;
    }
    Ok(Synced::Joined)
}

/// Stores the local files as the cluster's bootstrap data (the first server, after its files
/// were made).
pub async fn save(store: &dyn Store, dir: &Path, secret: &str) -> Result<(), Error> {
    store_files(store, dir, secret, None).await
}

async fn store_files(
    store: &dyn Store,
    dir: &Path,
    secret: &str,
    expected: Option<i64>,
) -> Result<(), Error> {
    let at = key(secret);
    let sealed = seal(secret, &at, &read_local(dir)?);
    match expected {
        Some(revision) => store.update(&at, sealed, revision).await.map(drop),
        None => store.create(&at, sealed).await.map(drop),
    }
    .map_err(|e| match e {
        store::Error::AlreadyExists(_) | store::Error::Conflict { .. } => Error::Raced,
        other => Error::Store(other),
    })
}

struct Saver {
    store: Arc<dyn Store>,
    dir: PathBuf,
    secret: String,
}

static SAVER: OnceLock<Saver> = OnceLock::new();

/// Set once by the server, so that a change it makes to a shared file while it runs (a
/// secrets key rotation) reaches the datastore at once.
pub fn install(store: Arc<dyn Store>, dir: PathBuf, secret: String) {
    let _ = SAVER.set(Saver { store, dir, secret });
}

/// Stores the shared files again after this server changed one.
pub async fn changed() -> Result<(), Error> {
    let Some(s) = SAVER.get() else {
        return Ok(());
    };
    let at = key(&s.secret);
    let current = s.store.get(&at).await?.map(|kv| kv.mod_revision);
    store_files(s.store.as_ref(), &s.dir, &s.secret, current).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{Options, SqliteStore};

    fn server_dir(root: &Path, name: &str, ca: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        std::fs::write(dir.join("tls/ca.crt"), ca).unwrap();
        std::fs::write(dir.join("tls/ca.key"), format!("{ca}-key")).unwrap();
        std::fs::write(dir.join("admin-token"), "admin").unwrap();
        dir
    }

    #[test]
    fn sealed_data_opens_only_with_its_token_and_key() {
        let mut files = Files::default();
        files.files.insert(
            "admin-token".into(),
            FileData {
                content: B64.encode("x"),
                modified: 1,
            },
        );
        let sealed = seal("secret", "/bootstrap/a", &files);
        assert_eq!(unseal("secret", "/bootstrap/a", &sealed).unwrap(), files);
        assert!(matches!(
            unseal("other", "/bootstrap/a", &sealed),
            Err(Error::Unsealed(_))
        ));
        // Bound to its key too: moved to another one, it does not open.
        assert!(unseal("secret", "/bootstrap/b", &sealed).is_err());
        let text = String::from_utf8_lossy(&sealed);
        assert!(!text.contains(&B64.encode("x")), "{text}");
    }

    #[tokio::test]
    async fn a_second_server_gets_the_first_ones_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&tmp.path().join("db"), Options::default()).unwrap();
        let first = server_dir(tmp.path(), "one", "ca-one");
        assert_eq!(
            sync(store.as_ref(), &first, "tok").await.unwrap(),
            Synced::First
        );
        save(store.as_ref(), &first, "tok").await.unwrap();
        // A second server with nothing of its own.
        let second = tmp.path().join("two");
        assert_eq!(
            sync(store.as_ref(), &second, "tok").await.unwrap(),
            Synced::Joined
        );
        for name in ["tls/ca.crt", "tls/ca.key", "admin-token"] {
            assert_eq!(
                std::fs::read(second.join(name)).unwrap(),
                std::fs::read(first.join(name)).unwrap(),
                "{name}"
            );
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(second.join("tls/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another token finds this datastore taken.
        assert!(matches!(
            sync(store.as_ref(), &tmp.path().join("three"), "wrong").await,
            Err(Error::OtherToken)
        ));
        // A second first server loses the race instead of replacing the CA.
        assert!(matches!(
            save(store.as_ref(), &second, "tok").await,
            Err(Error::Raced)
        ));
    }

    #[tokio::test]
    async fn a_newer_local_file_is_stored_and_an_older_one_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&tmp.path().join("db"), Options::default()).unwrap();
        let first = server_dir(tmp.path(), "one", "ca");
        save(store.as_ref(), &first, "tok").await.unwrap();
        let second = tmp.path().join("two");
        sync(store.as_ref(), &second, "tok").await.unwrap();
        // The first server rotates a key while the second is down.
        std::fs::create_dir_all(first.join("cred")).unwrap();
        std::fs::write(first.join("cred/encryption-config.json"), "rotated").unwrap();
        std::fs::write(first.join("admin-token"), "new-admin").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(first.join("admin-token"))
            .unwrap()
            .set_modified(later)
            .unwrap();
        sync(store.as_ref(), &first, "tok").await.unwrap();
        sync(store.as_ref(), &second, "tok").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(second.join("cred/encryption-config.json")).unwrap(),
            "rotated"
        );
        // The admin token is the datastore's: a newer local one does not replace it.
        assert_eq!(
            std::fs::read_to_string(second.join("admin-token")).unwrap(),
            "admin"
        );
        assert_eq!(
            std::fs::read_to_string(first.join("admin-token")).unwrap(),
            "admin"
        );
        // An older local change loses to the stored copy.
        std::fs::write(second.join("admin-token"), "stale").unwrap();
        std::fs::File::options()
            .write(true)
            .open(second.join("admin-token"))
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(1))
            .unwrap();
        sync(store.as_ref(), &second, "tok").await.unwrap();
        assert_eq!(
            std::fs::read_to_string(second.join("admin-token")).unwrap(),
            "admin"
        );
    }

    #[tokio::test]
    async fn a_populated_datastore_without_data_is_not_joined_from_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&tmp.path().join("db"), Options::default()).unwrap();
        store
            .create("/registry/namespaces/default", b"{}".to_vec())
            .await
            .unwrap();
        assert!(matches!(
            sync(store.as_ref(), &tmp.path().join("empty"), "tok").await,
            Err(Error::NoBootstrap)
        ));
        // Its first server (which has the CA) stores it on its next start.
        let first = server_dir(tmp.path(), "one", "ca");
        assert_eq!(
            sync(store.as_ref(), &first, "tok").await.unwrap(),
            Synced::First
        );
    }
}
