//! The store conformance suite against the SQLite backend, each test in its own temporary
//! directory.

use async_trait::async_trait;
use nanokube::store::conformance::Factory;
use nanokube::store::sqlite::{Options, SqliteStore};
use nanokube::store::Store;
use std::sync::Arc;

struct Sqlite {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Factory for Sqlite {
    async fn open(&self, name: &str) -> Arc<dyn Store> {
        let options = Options {
            compaction: None,
            ..Options::default()
        };
        SqliteStore::open(&self.dir.path().join(format!("{name}.db")), options).unwrap()
    }
}

fn sqlite() -> Sqlite {
    Sqlite {
        dir: tempfile::tempdir().unwrap(),
    }
}

nanokube::store_conformance_tests!(sqlite());
