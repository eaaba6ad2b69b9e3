//! The store conformance suite against a real etcd (Debian's etcd-server, /usr/bin/etcd), one
//! etcd per test on loopback ports, in a temporary data directory.

use async_trait::async_trait;
use nanokube::store::conformance::Factory;
use nanokube::store::{EtcdStore, Store};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An etcd server owned by one test; killed when dropped.
struct Etcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Mutex<Option<Child>>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Etcd {
    fn new() -> Etcd {
        Etcd {
            dir: tempfile::tempdir().unwrap(),
            client_port: free_port(),
            peer_port: free_port(),
            child: Mutex::new(None),
        }
    }

    fn binary() -> PathBuf {
        let path = PathBuf::from(std::env::var("NANOKUBE_ETCD").unwrap_or("/usr/bin/etcd".into()));
        assert!(
            path.exists(),
            "{} is missing: install etcd-server (scripts/deps.sh)",
            path.display()
        );
        path
    }

    /// Starts etcd, or restarts it with SIGKILL, as a crash would, keeping its data.
    fn start(&self) {
        let mut child = self.child.lock().unwrap();
        if let Some(mut old) = child.take() {
            old.kill().unwrap();
            old.wait().unwrap();
        }
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).unwrap();
        *child = Some(
            Command::new(Self::binary())
                .arg("--name=test")
                .arg(format!(
                    "--data-dir={}",
                    self.dir.path().join("data").display()
                ))
                .arg(format!("--listen-client-urls={client}"))
                .arg(format!("--advertise-client-urls={client}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=test={peer}"))
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    async fn connect(&self) -> Arc<EtcdStore> {
        let endpoint = vec![format!("http://127.0.0.1:{}", self.client_port)];
        let mut last = None;
        for _ in 0..300 {
            match EtcdStore::connect(&endpoint, Duration::from_secs(2)).await {
                Ok(store) => return store,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        panic!("etcd did not answer: {last:?}\n{log}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[async_trait]
impl Factory for Etcd {
    /// The first open starts etcd; a later one restarts it (kill -9), so the conformance
    /// suite's restart test checks etcd's durability too.
    async fn open(&self, _name: &str) -> Arc<dyn Store> {
        self.start();
        self.connect().await
    }
}

nanokube::store_conformance_tests!(Etcd::new());

#[tokio::test]
async fn datastore_endpoint_opens_etcd() {
    let etcd = Etcd::new();
    etcd.start();
    drop(etcd.connect().await);
    let endpoint = format!("http://127.0.0.1:{}", etcd.client_port);
    let data_dir = tempfile::tempdir().unwrap();
    let sqlite = data_dir.path().join("state.db");
    let store = nanokube::store::open_endpoint(Some(&endpoint), &sqlite, None)
        .await
        .unwrap();
    let kv = store.create("/endpoint/a", b"1".to_vec()).await.unwrap();
    assert_eq!(store.get("/endpoint/a").await.unwrap(), Some(kv));
    // Nothing went to SQLite: the data is in etcd.
    assert!(!sqlite.exists());
}
