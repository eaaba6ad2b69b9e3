//! Pulling an image: resolve the reference to a manifest (through an index for multi-platform
//! images), then download the config and every missing layer, unpacking each layer as soon as it
//! has arrived while the others still download. The name is recorded last.
//!
//! Every blob streams into the store through a verifying writer, so a corrupt or truncated
//! download is an error naming its digest and leaves nothing behind. Downloads of one blob are
//! serialized by a lock file named after it: a second pull of the same image, in this process or
//! another, waits for the first download and then finds the blob present. An interrupted pull
//! leaves complete blobs (which the next pull reuses) and tmp/ files (which `image prune`
//! removes), but no name.

use super::config::{Endpoint, RegistriesConfig};
use super::digest::Digest;
use super::manifest::{self, ConfigFile, Descriptor, Document};
use super::reference::Reference;
use super::registry::{self, Client, READ_TIMEOUT};
use super::snapshot;
use super::store::{self, ImageRecord, Store};
use futures::StreamExt;
use http_body_util::BodyExt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often one blob download may resume (HTTP Range) after its connection broke.
const RESUME_ATTEMPTS: u32 = 3;

/// How many layers download at once (Docker's default too).
const CONCURRENT_DOWNLOADS: usize = 3;

/// Errors of pulling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] super::reference::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Image(#[from] Box<super::Error>),
    /// The registry returned a manifest whose digest is not the one asked for.
    #[error("manifest for {reference} hashes to {actual}, not {expected}; nothing was stored")]
    ManifestDigest {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    /// Downloading a blob failed midway.
    #[error("downloading {digest} from {url}: {message}")]
    Download {
        digest: Digest,
        url: String,
        message: String,
    },
    /// Every endpoint failed; each one's error is listed.
    #[error("pulling {reference}: {}", .errors.join("; "))]
    AllEndpoints {
        reference: String,
        errors: Vec<String>,
    },
    /// A blocking task (file locking, unpacking) panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl From<super::Error> for Error {
    fn from(e: super::Error) -> Error {
        Error::Image(Box::new(e))
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Default, Clone)]
pub struct PullOptions {
    pub registries: RegistriesConfig,
    /// Show a progress line (for terminals).
    pub progress: bool,
}

/// Bytes and layers done so far, shared by the downloads and the progress display.
#[derive(Debug, Default)]
struct Progress {
    bytes_total: AtomicU64,
    bytes_done: AtomicU64,
    layers_total: AtomicUsize,
    layers_done: AtomicUsize,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))
}

/// Pulls `reference` into the store of `data_dir`, unpacks it, and records its name.
pub async fn pull(data_dir: &Path, reference: &str, options: &PullOptions) -> Result<ImageRecord> {
    let r = Reference::parse(reference)?;
    let store = Store::open(data_dir)?;
    let gc_store = store.clone();
    let _gc = blocking(move || gc_store.gc_lock(false)).await??;
    let client = Arc::new(Client::new(options.registries.clone()));
    let progress = Arc::new(Progress::default());
    let ticker = options.progress.then(|| {
        let progress = progress.clone();
        let name = r.to_string();
        tokio::spawn(async move {
            loop {
                draw(&name, &progress, false);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    let endpoints = options.registries.endpoints(&r.registry);
    let mut errors = Vec::new();
    let mut result = None;
    for ep in &endpoints {
        match pull_from(&client, &store, ep, &r, &progress).await {
            Ok(rec) => {
                result = Some(rec);
                break;
            }
            Err(e) => {
                tracing::debug!(endpoint = %ep.host, error = %e, "pull from endpoint failed");
                errors.push((ep.host.clone(), e));
            }
        }
    }
    if let Some(t) = ticker {
        t.abort();
        draw(&r.to_string(), &progress, true);
    }
    match result {
        Some(rec) => Ok(rec),
        // One endpoint: its error as it is, so callers can match on it.
        None if errors.len() == 1 => Err(errors.pop().expect("one error").1),
        None => Err(Error::AllEndpoints {
            reference: r.to_string(),
            errors: errors
                .into_iter()
                .map(|(h, e)| format!("{h}: {e}"))
                .collect(),
        }),
    }
}

fn draw(name: &str, p: &Progress, last: bool) {
    let mb = |b: u64| b as f64 / 1e6;
    let mut out = std::io::stdout().lock();
    let _ = write!(
        out,
        "\r\x1b[2K{name}: layers {}/{}, {:.1}/{:.1} MB{}",
        p.layers_done.load(Ordering::Relaxed),
        p.layers_total.load(Ordering::Relaxed),
        mb(p.bytes_done.load(Ordering::Relaxed)),
        mb(p.bytes_total.load(Ordering::Relaxed)),
        if last { "\n" } else { "" }
    );
    let _ = out.flush();
}

/// Fetches a manifest or index by tag or digest, verifying it against the digest when known.
async fn fetch_document(
    client: &Client,
    ep: &Endpoint,
    r: &Reference,
    key: &str,
    expected: Option<&Digest>,
) -> Result<(Vec<u8>, Digest)> {
    let resp = client
        .get(
            ep,
            &r.repository,
            &format!("manifests/{key}"),
            Some(manifest::ACCEPT),
        )
        .await?;
    let bytes = resp.bytes().await?.to_vec();
    let actual = Digest::of(&bytes);
    if let Some(expected) = expected {
        if *expected != actual {
            return Err(Error::ManifestDigest {
                reference: format!("{}@{key}", r.name()),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok((bytes, actual))
}

async fn pull_from(
    client: &Arc<Client>,
    store: &Store,
    ep: &Endpoint,
    r: &Reference,
    progress: &Arc<Progress>,
) -> Result<ImageRecord> {
    let (top_bytes, top) =
        fetch_document(client, ep, r, &r.manifest_key(), r.digest.as_ref()).await?;
    let manifest = match Document::parse(&top_bytes, &top).map_err(super::Error::from)? {
        Document::Manifest(m) => m,
        Document::Index(index) => {
            let chosen = index
                .select(&top, &manifest::host_platform())
                .map_err(super::Error::from)?
                .digest
                .clone();
            let (bytes, _) =
                fetch_document(client, ep, r, &chosen.to_string(), Some(&chosen)).await?;
            let m = match Document::parse(&bytes, &chosen).map_err(super::Error::from)? {
                Document::Manifest(m) => m,
                Document::Index(_) => return Err(super::Error::NestedIndex(chosen).into()),
            };
            store.write_blob(&bytes, Some(&chosen))?;
            m
        }
    };
    for layer in &manifest.layers {
        manifest::check_layer_media_type(layer).map_err(super::Error::from)?;
    }
    // The config first: its diff ids name the snapshots the layers unpack into.
    download(client, store, ep, r, &manifest.config, None).await?;
    let config = ConfigFile::parse(
        &store.read_blob(&manifest.config.digest)?,
        &manifest.config.digest,
    )
    .map_err(super::Error::from)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(super::Error::from(manifest::Error::LayerCount {
            config: manifest.config.digest.to_string(),
            manifest: top.to_string(),
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        })
        .into());
    }
    let chains = snapshot::chain_ids(&config.rootfs.diff_ids);
    progress
        .layers_total
        .store(manifest.layers.len(), Ordering::Relaxed);
    progress.bytes_total.store(
        manifest.layers.iter().map(|l| l.size).sum(),
        Ordering::Relaxed,
    );
    let jobs = manifest
        .layers
        .iter()
        .cloned()
        .zip(chains)
        .zip(config.rootfs.diff_ids.iter().cloned())
        .map(|((layer, chain), diff_id)| {
            let client = client.clone();
            let store = store.clone();
            let progress = progress.clone();
            async move {
                // The blob is kept even when its snapshot exists (another image may have the
                // same layer compressed differently): names always own all their blobs.
                download(&client, &store, ep, r, &layer, Some(&progress)).await?;
                let s = store.clone();
                blocking(move || snapshot::ensure(&s, &chain, &layer, &diff_id))
                    .await?
                    .map_err(super::Error::from)?;
                progress.layers_done.fetch_add(1, Ordering::Relaxed);
                Ok::<(), Error>(())
            }
        });
    let results: Vec<Result<()>> = futures::stream::iter(jobs)
        .buffer_unordered(CONCURRENT_DOWNLOADS)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    // Everything is in place: now the manifest, and last the name.
    store.write_blob(&top_bytes, Some(&top))?;
    let rec = super::resolve(store, &r.store_key(), &top)?;
    super::commit(store, &rec)?;
    Ok(rec)
}

/// Downloads one blob into the store unless it is there, under the blob's lock.
async fn download(
    client: &Client,
    store: &Store,
    ep: &Endpoint,
    r: &Reference,
    desc: &Descriptor,
    progress: Option<&Progress>,
) -> Result<()> {
    if store.has_blob(&desc.digest) {
        if let Some(p) = progress {
            p.bytes_done.fetch_add(desc.size, Ordering::Relaxed);
        }
        return Ok(());
    }
    let lock_store = store.clone();
    let lock_name = format!("blob-{}", desc.digest.hex());
    let _lock = blocking(move || lock_store.lock(&lock_name)).await??;
    if store.has_blob(&desc.digest) {
        // Another pull downloaded it while we waited.
        if let Some(p) = progress {
            p.bytes_done.fetch_add(desc.size, Ordering::Relaxed);
        }
        return Ok(());
    }
    let path = format!("blobs/{}", desc.digest);
    // What an earlier, interrupted pull got of this blob is kept; ask only for the rest.
    let mut writer = store.resumable_blob_writer(desc.digest.clone(), desc.size)?;
    if writer.written() == desc.size {
        // An earlier pull got every byte but died before naming them: check and name them.
        // Bytes that fail the check are dropped with the writer, and we start over.
        match blocking(move || writer.commit()).await? {
            Ok(_) => {
                if let Some(p) = progress {
                    p.bytes_done.fetch_add(desc.size, Ordering::Relaxed);
                }
                return Ok(());
            }
            Err(_) => writer = store.resumable_blob_writer(desc.digest.clone(), desc.size)?,
        }
    }
    let have = writer.written();
    let partial = match have {
        0 => None,
        _ => client.get_from(ep, &r.repository, &path, have).await.ok(),
    };
    let resp = match partial {
        Some(resp) if resp.resumes_at(have) => resp,
        // The registry sent everything instead: take it from the start.
        Some(resp) if resp.status.as_u16() == 200 => {
            writer.restart()?;
            resp
        }
        // No partial file, or a registry that will not resume (416): start over.
        _ => {
            if have > 0 {
                writer.restart()?;
            }
            client.get(ep, &r.repository, &path, None).await?
        }
    };
    if let Some(p) = progress {
        p.bytes_done.fetch_add(writer.written(), Ordering::Relaxed);
    }
    let url = resp.url.clone();
    let mut body = resp.body;
    let fail = |message: String| Error::Download {
        digest: desc.digest.clone(),
        url: url.clone(),
        message,
    };
    let mut resumed = 0;
    loop {
        let broken = match tokio::time::timeout(READ_TIMEOUT, body.frame()).await {
            Ok(None) => break,
            Ok(Some(Ok(frame))) => {
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if writer.written() + data.len() as u64 > desc.size {
                    // Longer than the descriptor says: stop now instead of filling the disk.
                    return Err(store::Error::SizeMismatch {
                        digest: desc.digest.clone(),
                        expected: desc.size,
                        actual: writer.written() + data.len() as u64,
                    }
                    .into());
                }
                writer.write_all(&data).map_err(|e| fail(e.to_string()))?;
                if let Some(p) = progress {
                    p.bytes_done.fetch_add(data.len() as u64, Ordering::Relaxed);
                }
                continue;
            }
            Ok(Some(Err(e))) => e.to_string(),
            Err(_) => format!("no data for {}s", READ_TIMEOUT.as_secs()),
        };
        // The connection broke or stalled mid-blob: ask for the rest (Range), keeping what is
        // written and hashed so far, a few times before giving up.
        if resumed == RESUME_ATTEMPTS {
            return Err(fail(format!("{broken} (after {resumed} resumed requests)")));
        }
        resumed += 1;
        let from = writer.written();
        tracing::debug!(digest = %desc.digest, from, %broken, "resuming a blob download");
        let rest = client.get_from(ep, &r.repository, &path, from).await?;
        if !rest.resumes_at(from) {
            return Err(fail(format!(
                "{broken}; the registry cannot resume from byte {from}"
            )));
        }
        body = rest.body;
    }
    // Verification (digest and size) and the rename happen here; fsync is blocking work.
    blocking(move || writer.commit()).await??;
    Ok(())
}
