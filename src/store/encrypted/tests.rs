use super::*;
use crate::store::sqlite::{Options, SqliteStore};

const SECRET: &str = "/registry/core/secrets/default/db";
const CONFIGMAP: &str = "/registry/core/configmaps/default/db";

fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    SqliteStore::open(&dir.path().join("s.db"), Options::default()).unwrap()
}

fn with_provider(provider: &str, key_name: &str) -> Config {
    let secret = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        provider::random::<32>(),
    );
    Config::parse(&format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
         - resources: [secrets]\n  providers:\n  - {provider}:\n      keys:\n      \
         - {{name: {key_name}, secret: {secret}}}\n  - identity: {{}}\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn covered_keys_are_sealed_and_others_pass_through() {
    for provider in ["aescbc", "aesgcm", "secretbox"] {
        let dir = tempfile::tempdir().unwrap();
        let raw = sqlite(&dir);
        let store = EncryptedStore::wrap(raw.clone(), with_provider(provider, "k1"), None);
        let kv = store
            .create(SECRET, b"{\"hunter2\"}".to_vec())
            .await
            .unwrap();
        assert_eq!(kv.value, b"{\"hunter2\"}");
        store
            .create(CONFIGMAP, b"{\"plain\"}".to_vec())
            .await
            .unwrap();
        let stored = raw.get(SECRET).await.unwrap().unwrap().value;
        let mark = format!("k8s:enc:{provider}:v1:k1:");
        assert!(stored.starts_with(mark.as_bytes()), "{provider}");
        assert!(!stored.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            raw.get(CONFIGMAP).await.unwrap().unwrap().value,
            b"{\"plain\"}"
        );
        assert_eq!(
            store.get(SECRET).await.unwrap().unwrap().value,
            b"{\"hunter2\"}"
        );
        let page = store.list("/registry/core/", None, 0, None).await.unwrap();
        let values: Vec<&[u8]> = page.items.iter().map(|kv| kv.value.as_slice()).collect();
        assert_eq!(values, [&b"{\"plain\"}"[..], b"{\"hunter2\"}"]);
        let (last, _) = store.delete(SECRET, None).await.unwrap();
        assert_eq!(last.value, b"{\"hunter2\"}");
    }
}

#[tokio::test]
async fn values_written_before_encryption_read_as_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sqlite(&dir);
    raw.create(SECRET, b"old".to_vec()).await.unwrap();
    let store = EncryptedStore::wrap(raw.clone(), with_provider("aescbc", "k1"), None);
    assert_eq!(store.get(SECRET).await.unwrap().unwrap().value, b"old");
}

#[tokio::test]
async fn a_value_sealed_with_an_unknown_key_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sqlite(&dir);
    let first = EncryptedStore::wrap(raw.clone(), with_provider("aesgcm", "gone"), None);
    first.create(SECRET, b"v".to_vec()).await.unwrap();
    let other = EncryptedStore::wrap(raw.clone(), with_provider("aesgcm", "k2"), None);
    let e = other.get(SECRET).await.unwrap_err().to_string();
    assert!(
        e.contains("aesgcm:gone") && e.contains("does not hold"),
        "{e}"
    );
    // The same name with another secret: refused, not garbage.
    let same_name = EncryptedStore::wrap(raw, with_provider("aesgcm", "gone"), None);
    let e = same_name.get(SECRET).await.unwrap_err().to_string();
    assert!(e.contains("cannot decrypt"), "{e}");
}

#[tokio::test]
async fn watch_events_carry_plain_values_and_prevs() {
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedStore::wrap(sqlite(&dir), with_provider("secretbox", "k1"), None);
    let mut watch = store.watch("/registry/", 0).await.unwrap();
    let one = store.create(SECRET, b"one".to_vec()).await.unwrap();
    store
        .update(SECRET, b"two".to_vec(), one.mod_revision)
        .await
        .unwrap();
    store.delete(SECRET, None).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(watch.next().await.unwrap().unwrap());
    }
    match &seen[1] {
        Event::Put { kv, prev } => {
            assert_eq!(kv.value, b"two");
            assert_eq!(prev.as_ref().unwrap().value, b"one");
        }
        other => panic!("{other:?}"),
    }
    match &seen[2] {
        Event::Delete { prev, .. } => assert_eq!(prev.value, b"two"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn rotation_rewrites_everything_and_drops_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sqlite(&dir);
    let file = dir.path().join("cred/encryption-config.json");
    let config = Config::generate();
    save(&file, &config).unwrap();
    let old = config.rules[0].write_key().unwrap().name.clone();
    let store = EncryptedStore::wrap(raw.clone(), config, Some(file.clone()));
    raw.create("/registry/core/secrets/a/plain", b"p".to_vec())
        .await
        .unwrap();
    for i in 0..7 {
        store
            .create(
                &format!("/registry/core/secrets/a/s{i}"),
                format!("v{i}").into_bytes(),
            )
            .await
            .unwrap();
    }
    store.create(CONFIGMAP, b"cm".to_vec()).await.unwrap();
    let rotation = store.rotate_keys().await.unwrap();
    assert_eq!(rotation.rewritten, 8);
    let new = &rotation.new_keys[0];
    assert_ne!(new, &old);
    let on_disk = load(&file).unwrap();
    assert_eq!(on_disk.rules[0].write_key().unwrap().name, *new);
    assert!(!on_disk.to_json().contains(&old), "the old key is dropped");
    let mark = format!("k8s:enc:aescbc:v1:{new}:");
    for kv in raw
        .list("/registry/core/secrets/", None, 0, None)
        .await
        .unwrap()
        .items
    {
        assert!(kv.value.starts_with(mark.as_bytes()), "{}", kv.key);
    }
    assert_eq!(raw.get(CONFIGMAP).await.unwrap().unwrap().value, b"cm");
    assert_eq!(
        store
            .get("/registry/core/secrets/a/s3")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"v3"
    );
    let status = store.status().await.unwrap();
    assert_eq!(status.stored.get(&format!("aescbc:{new}")), Some(&8));
    assert_eq!(
        status.resources[0].active_key.as_deref(),
        Some(&*format!("aescbc:{new}"))
    );
    // A restart with the file reads everything.
    let again = EncryptedStore::wrap(raw, load(&file).unwrap(), None);
    assert_eq!(
        again
            .get("/registry/core/secrets/a/plain")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"p"
    );
}

#[tokio::test]
async fn rotation_needs_encryption_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = EncryptedStore::wrap(sqlite(&dir), Config::identity(), None);
    assert!(matches!(
        store.rotate_keys().await,
        Err(EncryptionError::NotEnabled)
    ));
}
