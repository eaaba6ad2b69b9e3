//! The store conformance suite against the encryption layer over SQLite, with every key the
//! suite writes covered by the configuration, so each value it checks went through a cipher.

use async_trait::async_trait;
use nanokube::store::conformance::Factory;
use nanokube::store::encrypted::{Config, EncryptedStore};
use nanokube::store::sqlite::{Options, SqliteStore};
use nanokube::store::Store;
use std::sync::Arc;

struct Encrypted {
    dir: tempfile::TempDir,
    /// One configuration for the factory's life, so a reopened store has the same keys.
    config: Config,
}

#[async_trait]
impl Factory for Encrypted {
    async fn open(&self, name: &str) -> Arc<dyn Store> {
        let options = Options {
            compaction: None,
            ..Options::default()
        };
        let raw = SqliteStore::open(&self.dir.path().join(format!("{name}.db")), options).unwrap();
        EncryptedStore::wrap(raw, self.config.clone(), None)
    }
}

fn encrypted() -> Encrypted {
    Encrypted {
        dir: tempfile::tempdir().unwrap(),
        // Every key of the suite is under "/".
        config: Config::generate().covering("/"),
    }
}

nanokube::store_conformance_tests!(encrypted());

// What the suite cannot see: the backend holds no value in the clear.
#[tokio::test]
async fn the_backend_holds_only_sealed_values() {
    let dir = tempfile::tempdir().unwrap();
    let raw = SqliteStore::open(&dir.path().join("s.db"), Options::default()).unwrap();
    let store = EncryptedStore::wrap(raw.clone(), Config::generate().covering("/"), None);
    store.create("/a/b", b"clear text".to_vec()).await.unwrap();
    let stored = raw.get("/a/b").await.unwrap().unwrap().value;
    assert!(stored.starts_with(b"k8s:enc:aescbc:v1:"));
    assert!(!stored.windows(10).any(|w| w == b"clear text"));
}
