//! Garbage collection: deletes the blobs and snapshots no named image needs, and whatever
//! interrupted pulls and unpacks left in tmp/.
//!
//! Marking starts from the image table and the leases: each name, and each image a running
//! container holds a lease on, keeps its index (if any), its platform manifest, config and
//! layer blobs, and the snapshots of its layer chain. Collection holds the
//! store's gc lock exclusively; pulls, imports and `prepare` hold it shared, so nothing they have
//! written but not yet named can be swept, and nothing is in tmp/ but leftovers.

use super::digest::Digest;
use super::manifest::{ConfigFile, Document};
use super::snapshot;
use super::store::{self, Store};
use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;

/// Errors of garbage collection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A directory of the store could not be listed or an entry removed.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        cause: io::Error,
    },
}

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub blobs: usize,
    pub blob_bytes: u64,
    pub snapshots: usize,
    pub leftovers: usize,
}

/// Removes everything unreferenced. Blobs an image name needs but that cannot be parsed are
/// kept (and logged): collection must never make a damaged store worse.
pub fn collect(store: &Store) -> Result<Report, Error> {
    let _gc = store.gc_lock(true)?;
    let mut blobs: HashSet<Digest> = HashSet::new();
    let mut snapshots: HashSet<Digest> = HashSet::new();
    let leased: Vec<store::ImageRecord> = store.leases()?.into_iter().map(|l| l.image).collect();
    for rec in store.images()?.values().chain(leased.iter()) {
        blobs.extend([rec.digest.clone(), rec.manifest.clone(), rec.config.clone()]);
        if let Ok(bytes) = store.read_blob(&rec.manifest) {
            if let Ok(Document::Manifest(m)) = Document::parse(&bytes, &rec.manifest) {
                blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
            }
        }
        match store
            .read_blob(&rec.config)
            .map(|b| ConfigFile::parse(&b, &rec.config))
        {
            Ok(Ok(config)) => snapshots.extend(snapshot::chain_ids(&config.rootfs.diff_ids)),
            _ => {
                tracing::warn!(image = %rec.name, "cannot read image config; keeping all snapshots")
            }
        }
    }
    let mut report = Report::default();

    let blob_dir = store.root().join("blobs/sha256");
    for entry in list(&blob_dir)? {
        let name = entry.file_name();
        let keep = Digest::from_hex(&name.to_string_lossy()).is_ok_and(|d| blobs.contains(&d));
        if !keep {
            report.blob_bytes += entry.metadata().map_or(0, |m| m.len());
            remove(&entry.path())?;
            report.blobs += 1;
        }
    }
    let snap_dir = store.root().join("snapshots");
    for entry in list(&snap_dir)? {
        let name = entry.file_name();
        let keep = Digest::from_hex(&name.to_string_lossy()).is_ok_and(|d| snapshots.contains(&d));
        if !keep {
            remove(&entry.path())?;
            report.snapshots += 1;
        }
    }
    for entry in list(&store.root().join("tmp"))? {
        remove(&entry.path())?;
        report.leftovers += 1;
    }
    Ok(report)
}

/// Named images no lease uses and none used or recorded in the last `min_age_secs` (the
/// kubelet's imageMinimumGCAge), least recently used first (by their last lease, else by when
/// the name was recorded): what image GC may remove.
pub fn unused(store: &Store, min_age_secs: u64) -> Result<Vec<store::ImageRecord>, Error> {
    let leases = store.leases()?;
    let mut last_use: std::collections::HashMap<Digest, u64> = Default::default();
    for l in &leases {
        let t = last_use.entry(l.image.config.clone()).or_default();
        *t = (*t).max(l.taken_at);
    }
    let used: HashSet<&Digest> = leases.iter().map(|l| &l.image.config).collect();
    let last = |r: &store::ImageRecord| {
        r.recorded_at
            .max(last_use.get(&r.config).copied().unwrap_or(0))
    };
    let now = store::now_secs();
    let mut out: Vec<store::ImageRecord> = store
        .images()?
        .into_values()
        .filter(|r| !used.contains(&r.config) && now.saturating_sub(last(r)) >= min_age_secs)
        .collect();
    out.sort_by_key(|r| (last(r), r.name.clone()));
    Ok(out)
}

/// Removes the names given (normalized references), then collects what they alone kept.
pub fn remove_images(store: &Store, names: &[String]) -> Result<Report, Error> {
    store.update_images(|t| {
        for n in names {
            t.remove(n);
        }
    })?;
    collect(store)
}

fn list(dir: &Path) -> Result<Vec<fs::DirEntry>, Error> {
    let rd = fs::read_dir(dir).map_err(|cause| Error::Io {
        op: "list",
        path: dir.to_path_buf(),
        cause,
    })?;
    Ok(rd.filter_map(|e| e.ok()).collect())
}

fn remove(path: &Path) -> Result<(), Error> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(cause) => {
            return Err(Error::Io {
                op: "stat",
                path: path.to_path_buf(),
                cause,
            })
        }
    };
    let result = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::Io {
            op: "remove",
            path: path.to_path_buf(),
            cause: e,
        }),
        _ => Ok(()),
    }
}
