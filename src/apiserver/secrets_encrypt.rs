//! The server's side of `nanokube secrets-encrypt` (k3s's command): where the encryption
//! layer is set up at start, and the private endpoints the command calls,
//! `GET /nanokube/secrets-encrypt/status` and `POST /nanokube/secrets-encrypt/rotate-keys`.
//!
//! Why through the running server rather than on the data directory: the server holds the
//! store (SQLite is opened by one process at a time) and the keys in memory, and a rotation
//! must change the keys in force at the moment every Secret is rewritten, with no write
//! sealed under the old ones still in flight. Only the server can order that against the
//! writes it serves (`EncryptedStore`'s gate). The endpoints answer only system:masters
//! (the admin certificate in the data directory), whatever the authorizer would allow: they
//! hand out no keys, but a rotation rewrites every Secret and compacts the history.

use super::auth::User;
use super::handler::{json, Resp};
use super::status::ApiError;
use crate::store::encrypted::{self, Config, EncryptedStore, EncryptionError};
use crate::store::Store;
use anyhow::Context;
use http::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

static STORE: OnceLock<Arc<EncryptedStore>> = OnceLock::new();

/// Where `--secrets-encryption` keeps the configuration it generates (k3s's path).
pub fn generated_config_path(server_dir: &Path) -> PathBuf {
    server_dir.join("cred").join("encryption-config.json")
}

/// The store behind the encryption layer, as the flags say: `--encryption-provider-config`
/// when given; else the generated file when it exists (a cluster that has encrypted keeps
/// its keys, whatever the flag says now); else, for a new cluster (nothing stored yet) with
/// `--secrets-encryption` on, a freshly generated file; else nothing is encrypted.
pub async fn layer(
    raw: Arc<dyn Store>,
    server_dir: &Path,
    config_file: Option<&Path>,
    secrets_encryption: bool,
) -> anyhow::Result<Arc<EncryptedStore>> {
    let generated = generated_config_path(server_dir);
    let (config, file) = if let Some(path) = config_file {
        (encrypted::load(path)?, Some(path.to_path_buf()))
    } else if generated.exists() {
        (encrypted::load(&generated)?, Some(generated))
    } else if secrets_encryption && raw.count("/registry/").await? == 0 {
        let config = Config::generate();
        encrypted::save(&generated, &config)?;
        tracing::info!("secrets encryption: generated {}", generated.display());
        (config, Some(generated))
    } else {
        if secrets_encryption {
            tracing::warn!(
                "secrets encryption: this cluster existed before it was on, Secrets stay \
                 unencrypted (give --encryption-provider-config to turn it on)"
            );
        }
        (Config::identity(), None)
    };
    match config.rules.iter().find_map(|r| r.write_key()) {
        Some(key) => tracing::info!(
            "secrets encryption: on, writing with {} key {:?}",
            key.kind.name(),
            key.name
        ),
        None => tracing::info!("secrets encryption: off"),
    }
    Ok(EncryptedStore::wrap(raw, config, file))
}

/// Makes `store` the one the endpoints act on (once per process, at server start).
pub fn install(store: Arc<EncryptedStore>) {
    let _ = STORE.set(store);
}

/// The answer to `/nanokube/secrets-encrypt/<action>`.
pub async fn serve(action: &str, method: &Method, user: &User) -> Result<Resp, ApiError> {
    if !user.groups.iter().any(|g| g == "system:masters") {
        return Err(ApiError::Forbidden {
            message: format!(
                "User \"{}\" cannot use secrets-encrypt: only system:masters may",
                user.name
            ),
            target: Default::default(),
        });
    }
    let store = STORE
        .get()
        .ok_or_else(|| ApiError::ServiceUnavailable("the store is not open yet".into()))?;
    let failed = |e: EncryptionError| match e {
        EncryptionError::NotEnabled => ApiError::BadRequest(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    };
    match (action, method) {
        ("status", &Method::GET) => {
            let status = store.status().await?;
            Ok(json(
                StatusCode::OK,
                &serde_json::to_value(status).expect("json"),
            ))
        }
        ("rotate-keys", &Method::POST) => {
            let rotation = store.rotate_keys().await.map_err(failed)?;
            // The other servers of the cluster read the new keys from the datastore.
            if let Err(e) = super::bootstrap::changed().await {
                tracing::warn!(error = %e, "storing the rotated keys as bootstrap data");
            }
            tracing::info!(
                new_keys = ?rotation.new_keys,
                rewritten = rotation.rewritten,
                "secrets encryption: keys rotated"
            );
            Ok(json(
                StatusCode::OK,
                &serde_json::to_value(rotation).expect("json"),
            ))
        }
        ("status" | "rotate-keys", m) => Err(ApiError::MethodNotAllowed(format!(
            "{m} is not supported on /nanokube/secrets-encrypt/{action}"
        ))),
        _ => Err(ApiError::NotFound {
            message: format!("no secrets-encrypt action {action:?} (status, rotate-keys)"),
            target: Default::default(),
        }),
    }
}

/// `nanokube secrets-encrypt`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CliArgs {
    #[command(subcommand)]
    pub command: CliCommand,
    /// The server's data directory: the admin certificate the command uses is there.
    #[arg(long, default_value = "/var/lib/nanokube", global = true)]
    pub data_dir: PathBuf,
    /// The server to ask (k3s's flag).
    #[arg(
        long,
        short = 's',
        default_value = "https://127.0.0.1:6443",
        global = true
    )]
    pub server: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum CliCommand {
    /// Whether Secrets are encrypted, with which key, and what the stored ones are sealed by.
    Status,
    /// Generates a new key, rewrites every Secret with it, then drops the old key.
    RotateKeys,
}

/// Runs `nanokube secrets-encrypt ...`.
pub fn cli(args: CliArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(cli_async(args))
}

async fn cli_async(args: CliArgs) -> anyhow::Result<i32> {
    let tls = args.data_dir.join("server/tls");
    let read = |name: &str| {
        std::fs::read_to_string(tls.join(name)).with_context(|| {
            format!(
                "reading {} (run as the server's user)",
                tls.join(name).display()
            )
        })
    };
    let kubeconfig = super::identity::kubeconfig(
        &args.server,
        &read("ca.crt")?,
        &read("admin.crt")?,
        &read("admin.key")?,
    );
    let client = crate::agent::client_from_kubeconfig(&kubeconfig).await?;
    let (method, action) = match args.command {
        CliCommand::Status => (Method::GET, "status"),
        CliCommand::RotateKeys => (Method::POST, "rotate-keys"),
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("/nanokube/secrets-encrypt/{action}"))
        .body(Vec::new())?;
    let text = client
        .request_text(request)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {}", args.server, one_line(&e)))?;
    match args.command {
        CliCommand::Status => print_status(&serde_json::from_str(&text)?),
        CliCommand::RotateKeys => {
            let r: encrypted::Rotation = serde_json::from_str(&text)?;
            println!(
                "keys rotated: now writing with {}; {} stored values rewritten, history before \
                 revision {} compacted, old keys dropped",
                r.new_keys.join(", "),
                r.rewritten,
                r.compacted_at
            );
        }
    }
    Ok(0)
}

fn one_line(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

fn print_status(s: &encrypted::Status) {
    println!(
        "Encryption Status: {}",
        if s.enabled { "Enabled" } else { "Disabled" }
    );
    if let Some(file) = &s.config_file {
        println!("Config: {file}");
    }
    for rule in &s.resources {
        println!();
        println!("Resources: {}", rule.resources.join(", "));
        println!(
            "Active Key: {}",
            rule.active_key
                .as_deref()
                .unwrap_or("none (identity writes)")
        );
        println!("{:<7} {:<18} {:<10} Name", "Active", "Key Type", "Provider");
        let mut first = true;
        for p in &rule.providers {
            let names = if p.keys.is_empty() {
                vec![String::new()]
            } else {
                p.keys.clone()
            };
            for name in names {
                let active = if first && !name.is_empty() { " *" } else { "" };
                first = false;
                println!("{active:<7} {:<18} {:<10} {name}", p.key_type, p.provider);
            }
        }
    }
    if !s.stored.is_empty() {
        println!();
        println!("Stored values:");
        for (by, n) in &s.stored {
            println!("  {n:>6}  {by}");
        }
    }
}
