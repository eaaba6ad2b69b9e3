//! Snapshots: each layer unpacked once into `snapshots/<chain-id>/fs`, ready to be an overlay
//! lower directory. A snapshot is keyed by the layer's chain id (its diff id combined with every
//! diff id below it, per the OCI image spec), the same key containerd uses, so one directory
//! never serves two different stacks.
//!
//! A snapshot is unpacked into `tmp/` and renamed into place when complete, under a lock named
//! after it, so concurrent users wait for one unpack instead of racing, and an interrupted unpack
//! leaves only a tmp/ directory for garbage collection.

use super::digest::Digest;
use super::manifest::Descriptor;
use super::store::{self, Store};
use super::unpack;
use std::fs;
use std::io;
use std::path::PathBuf;

/// Errors of snapshot preparation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The layer blob could not be unpacked.
    #[error("layer {layer}: {cause}")]
    Unpack { layer: Digest, cause: unpack::Error },
    /// The uncompressed layer does not hash to the diff id the image config promises.
    #[error("layer {layer} unpacks to {actual}, but the image config says {expected}; the snapshot was discarded")]
    DiffId {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    /// A file operation on the snapshot directories failed.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

/// The chain ids of a stack of layers, bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = Digest::chain(out.last(), diff_id);
        out.push(chain);
    }
    out
}

/// The directory of a snapshot (holding `fs/`).
pub fn snapshot_dir(store: &Store, chain_id: &Digest) -> PathBuf {
    store.root().join("snapshots").join(chain_id.hex())
}

/// The overlay lower directory of a snapshot.
pub fn lower_dir(store: &Store, chain_id: &Digest) -> PathBuf {
    snapshot_dir(store, chain_id).join("fs")
}

/// Makes sure the snapshot `chain_id` exists, unpacking `layer` (whose uncompressed digest must
/// be `diff_id`) if not. Returns its lower directory.
pub fn ensure(
    store: &Store,
    chain_id: &Digest,
    layer: &Descriptor,
    diff_id: &Digest,
) -> Result<PathBuf, Error> {
    let lower = lower_dir(store, chain_id);
    if lower.exists() {
        return Ok(lower);
    }
    let _lock = store.lock(&format!("snapshot-{}", chain_id.hex()))?;
    if lower.exists() {
        // Someone else unpacked it while we waited.
        return Ok(lower);
    }
    let blob = store.open_blob(&layer.digest)?;
    let tmp = store.tmp_path(&format!("snapshot-{}", chain_id.short()));
    let io_err = |op, path: &PathBuf| {
        let path = path.clone();
        move |cause| Error::Io { op, path, cause }
    };
    let result = (|| {
        let fs_dir = tmp.join("fs");
        fs::create_dir_all(&fs_dir).map_err(io_err("create", &fs_dir))?;
        let (actual, _) = unpack::unpack_layer(blob, &fs_dir).map_err(|cause| Error::Unpack {
            layer: layer.digest.clone(),
            cause,
        })?;
        if actual != *diff_id {
            return Err(Error::DiffId {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        let dest = snapshot_dir(store, chain_id);
        fs::rename(&tmp, &dest).map_err(io_err("rename", &dest))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| lower)
}
