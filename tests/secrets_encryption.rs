//! Secrets encrypted at rest, end to end: a real server (encryption on by default for a new
//! cluster), real kubectl, the SQLite files read directly, and `nanokube secrets-encrypt`.

mod api_support;

use api_support::Server;
use base64::Engine;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const SECRETS: [(&str, &str); 3] = [
    ("db", "correct-horse-battery-staple-1"),
    ("api", "tr0ub4dor-and-3-more-words-22"),
    ("tls", "a-third-secret-value-nobody-333"),
];
const CONFIGMAP_VALUE: &str = "configmap-value-stays-readable-44";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Every byte of the database's files (the db, its WAL and shared memory).
fn db_bytes(s: &Server) -> Vec<u8> {
    let dir = s.data_dir().join("server/db");
    let mut all = Vec::new();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        names.push(path.file_name().unwrap().to_string_lossy().to_string());
        all.extend(std::fs::read(&path).unwrap());
    }
    assert!(names.iter().any(|n| n == "state.db"), "{names:?}");
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The current stored value of each key under `prefix`, read from the SQLite file
/// (read-only, next to the running server).
fn stored(s: &Server, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let db = rusqlite::Connection::open_with_flags(
        s.data_dir().join("server/db/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut q = db
        .prepare(
            "SELECT c.key, l.value FROM current c JOIN log l ON l.revision = c.revision \
             WHERE substr(c.key, 1, ?1) = ?2 ORDER BY c.key",
        )
        .unwrap();
    let rows = q
        .query_map(
            rusqlite::params![prefix.len() as i64, prefix.as_bytes()],
            |r| {
                let key: Vec<u8> = r.get(0)?;
                Ok((String::from_utf8(key).unwrap(), r.get::<_, Vec<u8>>(1)?))
            },
        )
        .unwrap();
    rows.map(Result::unwrap).collect()
}

fn secrets_encrypt(s: &Server, command: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nanokube"))
        .args(["secrets-encrypt", command, "--data-dir"])
        .arg(s.data_dir())
        .args(["--server", &s.url()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "secrets-encrypt {command}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn active_key(s: &Server) -> String {
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.data_dir().join("server/cred/encryption-config.json")).unwrap(),
    )
    .unwrap();
    config["resources"][0]["providers"][0]["aescbc"]["keys"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_all_readable(s: &Server) {
    for (name, value) in SECRETS {
        let got = s.ok(&["get", "secret", name, "-o", "jsonpath={.data.password}"]);
        assert_eq!(got.trim(), b64(value), "secret {name}");
    }
}

#[test]
fn secrets_are_encrypted_at_rest_and_keys_rotate() {
    let mut s = Server::start();
    let config = s.data_dir().join("server/cred/encryption-config.json");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first_key = active_key(&s);

    for (name, value) in SECRETS {
        s.ok(&[
            "create",
            "secret",
            "generic",
            name,
            &format!("--from-literal=password={value}"),
        ]);
    }
    s.configmap("settings", "default", &[("value", CONFIGMAP_VALUE)]);
    assert_all_readable(&s);

    // The check can fail: the ConfigMap's value is found in the same bytes.
    let bytes = db_bytes(&s);
    assert!(contains(&bytes, CONFIGMAP_VALUE));
    for (name, value) in SECRETS {
        assert!(!contains(&bytes, value), "secret {name} in the clear");
        assert!(!contains(&bytes, &b64(value)), "secret {name} in base64");
    }
    let mark = format!("k8s:enc:aescbc:v1:{first_key}:");
    let secrets = stored(&s, "/registry/core/secrets/default/");
    assert_eq!(secrets.len(), SECRETS.len());
    for (key, value) in &secrets {
        assert!(value.starts_with(mark.as_bytes()), "{key}");
    }

    let status = secrets_encrypt(&s, "status");
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
    assert!(
        status.contains(&format!("Active Key: aescbc:{first_key}")),
        "{status}"
    );

    let rotated = secrets_encrypt(&s, "rotate-keys");
    assert!(rotated.contains("keys rotated"), "{rotated}");
    let second_key = active_key(&s);
    assert_ne!(second_key, first_key);
    let config_text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !config_text.contains(&first_key),
        "old key dropped: {config_text}"
    );
    assert_all_readable(&s);
    let mark = format!("k8s:enc:aescbc:v1:{second_key}:");
    for (key, value) in stored(&s, "/registry/core/secrets/") {
        assert!(value.starts_with(mark.as_bytes()), "{key} not rewritten");
    }
    let configmap = stored(&s, "/registry/core/configmaps/default/settings");
    assert!(
        configmap[0].1.starts_with(b"{"),
        "a ConfigMap stays identity"
    );
    let status = secrets_encrypt(&s, "status");
    assert!(
        status.contains(&format!("Active Key: aescbc:{second_key}")),
        "{status}"
    );

    // A restart reads the rotated file.
    s.restart();
    assert_all_readable(&s);
}

#[test]
fn secrets_encrypt_is_for_system_masters_only() {
    let s = Server::start();
    let token = api_support::raw::service_account_token(&s, "someone");
    let (code, body, _) = api_support::raw::curl_args(
        &s,
        &format!("token:{token}"),
        "POST",
        "/nanokube/secrets-encrypt/rotate-keys",
        &[],
    );
    assert_eq!(code, 403, "{body}");
}

#[test]
fn encryption_can_be_off_for_a_new_cluster() {
    let s = Server::start_with(&["--secrets-encryption=false"]);
    assert!(!s
        .data_dir()
        .join("server/cred/encryption-config.json")
        .exists());
    s.ok(&[
        "create",
        "secret",
        "generic",
        "plain",
        "--from-literal=k=visible-value-55",
    ]);
    assert!(contains(&db_bytes(&s), &b64("visible-value-55")));
    let status = secrets_encrypt(&s, "status");
    assert!(status.contains("Encryption Status: Disabled"), "{status}");
}

#[test]
fn a_bad_configuration_file_stops_the_server_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("enc.yaml");
    std::fs::write(
        &file,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
         - resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      \
         - {name: k1, secret: not-base64!}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nanokube"))
        .args(["server", "--disable-agent", "--bind-address", "127.0.0.1"])
        .args(["--https-listen-port", "0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.path().join("kc"))
        .arg("--encryption-provider-config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("nanokube: encryption provider config")
            && last.ends_with("resources[0].providers[0].aesgcm.keys[0].secret: is not base64"),
        "{stderr}"
    );
}
