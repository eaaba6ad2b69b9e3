//! The content store: blobs named by their digest, the table of image names, and the locks that
//! let several pulls, imports and a garbage collection share one directory safely.
//!
//! Layout under `<data-dir>/agent/images` (the directory k3s users drop air-gap tarballs into):
//!
//! ```text
//! blobs/sha256/<hex>        manifests, configs, indexes and layer blobs, verified when written
//! snapshots/<chain-id>/fs   one unpacked layer each (see snapshot.rs)
//! tmp/                      blobs and snapshots being written; renamed into place when complete
//! locks/                    flock(2) files: one per blob or snapshot being produced, plus gc.lock
//! images.json               image names -> digests, replaced atomically
//! imported.json             air-gap tarballs already imported (name, size, mtime)
//! ```
//!
//! Nothing half-written is ever visible under its final name: a blob is hashed while it streams
//! into `tmp/`, and renamed only if its digest and size match; an image name is recorded last,
//! after everything it needs is in place.

use super::digest::{Digest, HashingWriter};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory of the store could not be read or written.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// Content did not hash to the digest it was named by; it was discarded.
    #[error("content for {expected} does not match its digest (got {actual}); nothing was stored")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// Content had a different length than its descriptor said; it was discarded.
    #[error("content for {digest} is {actual} bytes, expected {expected}; nothing was stored")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// A blob an image needs is not in the store.
    #[error("blob {0} is not in the image store")]
    BlobMissing(Digest),
    /// No image is recorded under this name.
    #[error("image {0} is not in the image store")]
    ImageNotFound(String),
    /// images.json or imported.json could not be parsed.
    #[error("{path} is corrupt: {cause}")]
    Table {
        path: PathBuf,
        cause: serde_json::Error,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |cause| Error::Io { op, path, cause }
}

/// One named image: the name, what it points at, and what that resolves to on this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The normalized reference (`docker.io/library/busybox:latest` or `...@sha256:...`).
    pub name: String,
    /// What the name points at: an index (multi-platform) or a manifest.
    pub digest: Digest,
    /// The manifest for this host's platform (the same as `digest` for a single-platform image).
    pub manifest: Digest,
    pub config: Digest,
    /// Bytes stored for it: manifest, config and compressed layers.
    pub size: u64,
    /// Seconds since the epoch when the name was last recorded.
    pub recorded_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ImageTable {
    images: BTreeMap<String, ImageRecord>,
}

/// The image store of one data directory. Cheap to open; holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store under `<data_dir>/agent/images`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let root = data_dir.join("agent").join("images");
        for sub in ["blobs/sha256", "snapshots", "tmp", "locks", "leases"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobMissing(digest.clone()),
            _ => Error::Io {
                op: "read",
                path,
                cause: e,
            },
        })
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobMissing(digest.clone()),
            _ => Error::Io {
                op: "open",
                path,
                cause: e,
            },
        })
    }

    /// A unique path under tmp/ whose name records the writing process, so that garbage
    /// collection can tell abandoned files from ones still being written.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{what}.{}.{n}", std::process::id()))
    }

    /// Starts writing a blob. With `expected` set, the content must hash to it (and have
    /// `expected_size` bytes, if given) or [`BlobWriter::commit`] fails and nothing is stored.
    pub fn blob_writer(
        &self,
        expected: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<BlobWriter> {
        let tmp = self.tmp_path(expected.as_ref().map_or("blob", |d| d.hex()));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            expected,
            expected_size,
            out: Some(HashingWriter::new(BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
            keep_partial: false,
        })
    }

    /// A writer for the download of blob `digest` (`size` bytes) that continues what an
    /// earlier, interrupted pull left in `tmp/partial-<hex>`: those bytes are hashed again and
    /// writing goes on after them (`written()` says from where). Dropped without `commit`, it
    /// keeps the file for the next pull (or `image prune`). The caller holds the blob's lock.
    pub fn resumable_blob_writer(&self, digest: Digest, size: u64) -> Result<BlobWriter> {
        let tmp = self
            .root
            .join("tmp")
            .join(format!("partial-{}", digest.hex()));
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&tmp)
            .map_err(io_err("open", &tmp))?;
        let have = file.metadata().map_err(io_err("stat", &tmp))?.len();
        if have > size {
            file.set_len(0).map_err(io_err("truncate", &tmp))?;
        }
        let mut out = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
        if have <= size {
            let reader = File::open(&tmp).map_err(io_err("open", &tmp))?;
            out.already_written(reader).map_err(io_err("read", &tmp))?;
        }
        Ok(BlobWriter {
            store: self.clone(),
            tmp,
            expected: Some(digest),
            expected_size: Some(size),
            out: Some(out),
            keep_partial: true,
        })
    }

    /// Stores a small blob held in memory, verified against `expected` if given.
    pub fn write_blob(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut w = self.blob_writer(Some(digest.clone()), Some(bytes.len() as u64))?;
        w.write_all(bytes).map_err(io_err("write", &w.tmp))?;
        w.commit()?;
        Ok(digest)
    }

    /// Copies a stream into the store, verifying it if its digest is known.
    pub fn copy_blob(
        &self,
        mut from: impl Read,
        expected: Option<&Digest>,
        size: Option<u64>,
    ) -> Result<Digest> {
        if let Some(d) = expected {
            if self.has_blob(d) {
                return Ok(d.clone());
            }
        }
        let mut w = self.blob_writer(expected.cloned(), size)?;
        io::copy(&mut from, &mut w).map_err(io_err("write", &w.tmp))?;
        w.commit()
    }

    /// Takes an exclusive lock named `name` (a blob or snapshot being produced), blocking until
    /// whoever holds it (a thread of this process or another process) is done.
    pub fn lock(&self, name: &str) -> Result<FileLock> {
        self.flock(name, FlockArg::LockExclusive)
    }

    /// Pulls and imports hold this shared; garbage collection holds it exclusively, so it never
    /// deletes blobs a running pull has written but not yet named.
    pub fn gc_lock(&self, exclusive: bool) -> Result<FileLock> {
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        self.flock("gc", arg)
    }

    fn flock(&self, name: &str, arg: FlockArg) -> Result<FileLock> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let lock = Flock::lock(file, arg).map_err(|(_, errno)| Error::Io {
            op: "lock",
            path: path.clone(),
            cause: errno.into(),
        })?;
        Ok(FileLock { _lock: lock })
    }

    fn table_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// Every named image.
    pub fn images(&self) -> Result<BTreeMap<String, ImageRecord>> {
        Ok(read_json::<ImageTable>(&self.table_path())?.images)
    }

    pub fn image(&self, name: &str) -> Result<ImageRecord> {
        self.images()?
            .remove(name)
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))
    }

    /// Changes the image table under its lock and replaces the file atomically.
    pub fn update_images<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, ImageRecord>) -> T,
    ) -> Result<T> {
        let _lock = self.lock("images")?;
        let path = self.table_path();
        let mut table: ImageTable = read_json(&path)?;
        let out = f(&mut table.images);
        write_json_atomic(self, &path, &table)?;
        Ok(out)
    }
}

/// A lease: content a running container uses, kept by garbage collection whatever happens to
/// the image's name (`image rm`, a re-tag, image GC), as containerd's leases keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub id: String,
    pub image: ImageRecord,
    /// Seconds since the epoch when it was taken: the image's last use, for image GC.
    pub taken_at: u64,
}

impl Store {
    fn lease_path(&self, id: &str) -> PathBuf {
        self.root.join("leases").join(format!("{id}.json"))
    }

    /// Takes (or renews) lease `id` on `image`. Ids are the caller's (`<pod uid>_<container>`);
    /// they must be plain file names.
    pub fn put_lease(&self, id: &str, image: &ImageRecord) -> Result<()> {
        if id.is_empty() || id.contains(['/', '\0']) || id.starts_with('.') {
            return Err(Error::Io {
                op: "lease",
                path: self.lease_path(id),
                cause: io::Error::new(io::ErrorKind::InvalidInput, "not a plain name"),
            });
        }
        let lease = Lease {
            id: id.to_string(),
            image: image.clone(),
            taken_at: now_secs(),
        };
        write_json_atomic(self, &self.lease_path(id), &lease)
    }

    /// Every lease held.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let dir = self.root.join("leases");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("list", &dir))?.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path).map(|b| serde_json::from_slice::<Lease>(&b)) {
                Ok(Ok(l)) => out.push(l),
                // A lease that cannot be read still names nothing; it is left for a person.
                _ => tracing::warn!(path = %path.display(), "unreadable image lease"),
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Drops every lease whose id starts with `prefix` (a pod's, on its deletion); returns how
    /// many went.
    pub fn drop_leases(&self, prefix: &str) -> Result<usize> {
        let mut n = 0;
        for l in self.leases()? {
            if l.id.starts_with(prefix) {
                let path = self.lease_path(&l.id);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(io_err("remove", &path)(e))
                    }
                    _ => n += 1,
                }
            }
        }
        Ok(n)
    }
}

/// A held flock(2); released when dropped.
pub struct FileLock {
    _lock: Flock<File>,
}

impl std::fmt::Debug for FileLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileLock")
    }
}

/// A blob being written. Dropped without [`commit`](BlobWriter::commit), it leaves nothing behind.
pub struct BlobWriter {
    store: Store,
    tmp: PathBuf,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    out: Option<HashingWriter<BufWriter<File>>>,
    /// A resumable download's file stays when the writer is dropped without commit.
    keep_partial: bool,
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.out.as_ref().map_or(0, |o| o.written())
    }

    /// Starts over from byte 0 (a registry that answered a resumed request with everything).
    pub fn restart(&mut self) -> Result<()> {
        let out = self.out.take().expect("not committed");
        let (_, buf) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &self.tmp)(e.into_error()))?;
        file.set_len(0).map_err(io_err("truncate", &self.tmp))?;
        self.out = Some(HashingWriter::new(BufWriter::with_capacity(
            256 * 1024,
            file,
        )));
        Ok(())
    }

    /// Verifies the content and moves it to its final name. Returns its digest.
    pub fn commit(mut self) -> Result<Digest> {
        let out = self.out.take().expect("commit is called once");
        let size = out.written();
        let (digest, buf) = out.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &self.tmp)(e.into_error()))?;
        if let Some(expected) = &self.expected {
            if *expected != digest {
                // Wrong bytes are not worth resuming from.
                self.keep_partial = false;
                return Err(Error::DigestMismatch {
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        if let Some(expected) = self.expected_size {
            if expected != size {
                self.keep_partial = false;
                return Err(Error::SizeMismatch {
                    digest,
                    expected,
                    actual: size,
                });
            }
        }
        // The data must be on disk before the name is, or a crash could leave a short blob
        // under a digest that vouches for it.
        file.sync_data().map_err(io_err("sync", &self.tmp))?;
        let dest = self.store.blob_path(&digest);
        fs::rename(&self.tmp, &dest).map_err(io_err("rename", &dest))?;
        Ok(digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // After a successful commit the file has been renamed away and this fails harmlessly.
        if !self.keep_partial {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

pub(crate) fn read_json<T: Default + serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|cause| Error::Table {
            path: path.to_path_buf(),
            cause,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

/// Writes JSON beside `path` and renames it over `path`, so readers see the old or the new
/// table, never a torn one. (Not in tmp/: garbage collection may empty tmp/ meanwhile.)
pub(crate) fn write_json_atomic<T: Serialize>(
    _store: &Store,
    path: &Path,
    value: &T,
) -> Result<()> {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp.{}.{n}", std::process::id()));
    let tmp = path.with_file_name(name);
    let bytes = serde_json::to_vec_pretty(value).expect("tables serialize");
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err("write", path))
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_writes_store_only_matching_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let good = store.write_blob(b"hello", None).unwrap();
        assert_eq!(store.read_blob(&good).unwrap(), b"hello");

        let claimed = Digest::of(b"something else");
        let mut w = store.blob_writer(Some(claimed.clone()), None).unwrap();
        w.write_all(b"hello, corrupted").unwrap();
        let err = w.commit().unwrap_err().to_string();
        assert!(err.contains(&claimed.to_string()), "{err}");
        assert!(!store.has_blob(&claimed));
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);

        let mut w = store.blob_writer(Some(good.clone()), Some(99)).unwrap();
        w.write_all(b"hello").unwrap();
        assert!(matches!(w.commit(), Err(Error::SizeMismatch { .. })));
    }

    #[test]
    fn image_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        let rec = ImageRecord {
            name: "docker.io/library/x:latest".into(),
            digest: d.clone(),
            manifest: d.clone(),
            config: d,
            size: 1,
            recorded_at: 0,
        };
        store
            .update_images(|t| t.insert(rec.name.clone(), rec.clone()))
            .unwrap();
        assert_eq!(store.image(&rec.name).unwrap(), rec);
        assert!(matches!(store.image("nope"), Err(Error::ImageNotFound(_))));
    }
}
