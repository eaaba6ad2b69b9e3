//! The node's image store (issue 3): how an image reference becomes the stack of directories an
//! overlay mount is built from. See docs/images.md for the whole path.
//!
//! - [`reference`] parses and normalizes names (`busybox` -> `docker.io/library/busybox:latest`).
//! - [`store`] keeps blobs by digest and the table of names; [`manifest`] reads the JSON documents.
//! - [`pull`] fetches from registries through [`registry`] (HTTP, auth, TLS), configured by
//!   [`config`] (k3s's registries.yaml); [`import`] reads `docker save` and OCI archives.
//! - [`snapshot`] unpacks each layer once, with [`unpack`] doing the hostile-input-safe tar work.
//! - [`gc`] removes what no name needs; [`cli`] is `nanokube image`.
//!
//! The kubelet calls [`prepare`] (or [`ensure`], which pulls first if needed) and gets the lower
//! directories, top first, plus the image's process defaults.

pub mod cli;
pub mod config;
pub mod digest;
pub mod gc;
pub mod import;
pub mod manifest;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use digest::Digest;
pub use import::import_dir_tarballs;
pub use manifest::ImageConfig;
pub use reference::Reference;
pub use store::{ImageRecord, Store};

use manifest::{ConfigFile, Document, Manifest};
use std::path::{Path, PathBuf};

/// Errors of the image store as a whole.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] reference::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Manifest(#[from] manifest::Error),
    #[error(transparent)]
    Snapshot(#[from] snapshot::Error),
    /// An index named by an image points at another index; nanokube resolves one level only, as
    /// registries and builders produce.
    #[error("index {0} points at another index; nested indexes are not supported")]
    NestedIndex(Digest),
}

/// Everything the kubelet needs to run a container from an image.
#[derive(Debug, Clone)]
pub struct PreparedImage {
    /// The normalized name it was found under.
    pub name: String,
    /// What the name points at (index or manifest): the image's "repo digest".
    pub digest: Digest,
    /// The config digest: the image ID as `docker images` and `crictl images` show it.
    pub id: Digest,
    /// The platform manifest.
    pub manifest: Digest,
    /// Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts; empty if the image has none.
    pub config: ImageConfig,
    /// Overlay lower directories, topmost layer first, as `lowerdir=` lists them.
    pub lower_dirs: Vec<PathBuf>,
}

/// Looks up a reference in the store. A reference pinned by digest also matches an image of the
/// same repository recorded by tag whose content has that digest.
pub fn find(store: &Store, reference: &str) -> Result<ImageRecord, Error> {
    let r = Reference::parse(reference)?;
    let images = store.images()?;
    if let Some(rec) = images.get(&r.store_key()) {
        return Ok(rec.clone());
    }
    if let Some(d) = &r.digest {
        let name = r.name();
        if let Some(rec) = images.values().find(|rec| {
            (rec.digest == *d || rec.manifest == *d) && rec.name.starts_with(&name) && {
                let rest = &rec.name[name.len()..];
                rest.starts_with(':') || rest.starts_with('@')
            }
        }) {
            return Ok(rec.clone());
        }
    }
    Err(store::Error::ImageNotFound(r.store_key()).into())
}

/// The platform manifest and config of a recorded image.
pub fn load(store: &Store, record: &ImageRecord) -> Result<(Manifest, ConfigFile), Error> {
    let manifest = match Document::parse(&store.read_blob(&record.manifest)?, &record.manifest)? {
        Document::Manifest(m) => m,
        Document::Index(_) => return Err(Error::NestedIndex(record.manifest.clone())),
    };
    let config = ConfigFile::parse(&store.read_blob(&record.config)?, &record.config)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(manifest::Error::LayerCount {
            config: record.config.to_string(),
            manifest: record.manifest.to_string(),
            diff_ids: config.rootfs.diff_ids.len(),
            layers: manifest.layers.len(),
        }
        .into());
    }
    for layer in &manifest.layers {
        manifest::check_layer_media_type(layer)?;
    }
    Ok((manifest, config))
}

/// Resolves what `top` (an index or manifest already in the store) means on this host, as the
/// record naming it `name` would say. Every blob it needs must be present. Nothing is written:
/// callers unpack first and then [`commit`], so a name never points at an unusable image.
pub fn resolve(store: &Store, name: &str, top: &Digest) -> Result<ImageRecord, Error> {
    let bytes = store.read_blob(top)?;
    let mut size = bytes.len() as u64;
    let manifest_digest = match Document::parse(&bytes, top)? {
        Document::Manifest(_) => top.clone(),
        Document::Index(index) => {
            let chosen = index.select(top, &manifest::host_platform())?;
            chosen.digest.clone()
        }
    };
    let manifest_bytes = store.read_blob(&manifest_digest)?;
    let manifest = match Document::parse(&manifest_bytes, &manifest_digest)? {
        Document::Manifest(m) => m,
        Document::Index(_) => return Err(Error::NestedIndex(manifest_digest)),
    };
    if manifest_digest != *top {
        size += manifest_bytes.len() as u64;
    }
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if !store.has_blob(&blob.digest) {
            return Err(store::Error::BlobMissing(blob.digest.clone()).into());
        }
        size += blob.size;
    }
    Ok(ImageRecord {
        name: name.to_string(),
        digest: top.clone(),
        manifest: manifest_digest,
        config: manifest.config.digest.clone(),
        size,
        recorded_at: store::now_secs(),
    })
}

/// Records `rec` in the image table (replacing what its name pointed at before).
pub fn commit(store: &Store, rec: &ImageRecord) -> Result<(), Error> {
    store.update_images(|t| t.insert(rec.name.clone(), rec.clone()))?;
    Ok(())
}

/// Unpacks every layer of a recorded image that is not unpacked yet (in parallel, since layers
/// are independent) and returns the lower directories, top first.
pub fn unpack(store: &Store, record: &ImageRecord) -> Result<(ConfigFile, Vec<PathBuf>), Error> {
    let (manifest, config) = load(store, record)?;
    let chains = snapshot::chain_ids(&config.rootfs.diff_ids);
    let results: Vec<Result<PathBuf, snapshot::Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = manifest
            .layers
            .iter()
            .zip(&chains)
            .zip(&config.rootfs.diff_ids)
            .map(|((layer, chain), diff_id)| {
                s.spawn(move || snapshot::ensure(store, chain, layer, diff_id))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("unpack thread panicked"))
            .collect()
    });
    let mut lowers = Vec::with_capacity(results.len());
    for r in results {
        lowers.push(r?);
    }
    lowers.reverse();
    Ok((config, lowers))
}

/// The kubelet's entry point for an image already in the store: finds it, unpacks what is not
/// unpacked yet, and returns the overlay lower directories and the image's process defaults.
pub fn prepare(data_dir: &Path, reference: &str) -> Result<PreparedImage, Error> {
    let store = Store::open(data_dir)?;
    let _gc = store.gc_lock(false)?;
    let record = find(&store, reference)?;
    let (config, lower_dirs) = unpack(&store, &record)?;
    Ok(PreparedImage {
        name: record.name,
        digest: record.digest.clone(),
        id: record.config.clone(),
        manifest: record.manifest.clone(),
        config: config.config.unwrap_or_default(),
        lower_dirs,
    })
}

/// Takes lease `id` on the prepared image (see [`store::Lease`]), under the same lock
/// collection takes, after checking that its snapshots are still there: a collection that ran
/// since `prepare` (with the name removed meanwhile) is an error to retry, never a container
/// on missing layers.
pub fn lease(data_dir: &Path, id: &str, image: &PreparedImage) -> Result<(), Error> {
    let store = Store::open(data_dir)?;
    let _gc = store.gc_lock(false)?;
    if let Some(gone) = image.lower_dirs.iter().find(|d| !d.exists()) {
        return Err(Error::Store(store::Error::Io {
            op: "lease",
            path: gone.clone(),
            cause: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the image's layers were collected",
            ),
        }));
    }
    let record = ImageRecord {
        name: image.name.clone(),
        digest: image.digest.clone(),
        manifest: image.manifest.clone(),
        config: image.id.clone(),
        size: 0,
        recorded_at: 0,
    };
    Ok(store.put_lease(id, &record)?)
}

/// Drops the leases whose ids start with `prefix` (a deleted pod's).
pub fn release(data_dir: &Path, prefix: &str) -> Result<usize, Error> {
    Ok(Store::open(data_dir)?.drop_leases(prefix)?)
}

/// Like [`prepare`], but pulls the image first if the store does not have it (the kubelet's
/// `IfNotPresent` policy); `always` pulls every time (`Always`), reusing blobs already present.
pub async fn ensure(
    data_dir: &Path,
    reference: &str,
    always: bool,
    options: &pull::PullOptions,
) -> anyhow::Result<PreparedImage> {
    let present = {
        let store = Store::open(data_dir)?;
        find(&store, reference).is_ok()
    };
    if always || !present {
        pull::pull(data_dir, reference, options).await?;
    }
    let data_dir = data_dir.to_path_buf();
    let reference = reference.to_string();
    Ok(tokio::task::spawn_blocking(move || prepare(&data_dir, &reference)).await??)
}
