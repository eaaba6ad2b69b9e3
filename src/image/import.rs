//! Importing images from files: `docker save` archives (the legacy layout with `manifest.json`,
//! and Docker 25's OCI-based one), OCI image archives (a tar of an OCI layout, optionally gzip or
//! zstd compressed) and OCI layout directories. Also the agent's start-up import of tarballs
//! dropped into `<data-dir>/agent/images/`, the k3s air-gap convention.
//!
//! An archive is read in one pass: every file that could be a blob streams straight into the
//! store (verified against its name when it is under `blobs/sha256/`), and the small JSON
//! indexes are kept in memory. The images are then resolved, unpacked, and only then named.

use super::digest::Digest;
use super::manifest::{self, Descriptor, Document, Index, Manifest};
use super::reference::Reference;
use super::store::{self, read_json, write_json_atomic, ImageRecord, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// Errors of image import.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file or directory could not be read, or is not a (possibly compressed) tar.
    #[error("reading {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    /// The input has neither an OCI `index.json` nor a Docker `manifest.json`.
    #[error("{0} is not an image archive: it has neither index.json (OCI) nor manifest.json (docker save)")]
    NotAnImage(PathBuf),
    /// A JSON file inside the archive is malformed.
    #[error("{file} in {archive}: {cause}")]
    Json {
        archive: PathBuf,
        file: String,
        cause: serde_json::Error,
    },
    /// manifest.json names a file the archive does not contain.
    #[error("{archive}: manifest.json refers to {file}, which the archive does not contain")]
    MissingFile { archive: PathBuf, file: String },
    /// The archive names no image at all (no RepoTags, no ref.name annotations).
    #[error("{0}: the archive names no image (no RepoTags or image name annotations)")]
    Unnamed(PathBuf),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Image(#[from] Box<super::Error>),
    /// An image name in the archive is not a valid reference.
    #[error("{archive}: image name {name:?}: {cause}")]
    Name {
        archive: PathBuf,
        name: String,
        cause: super::reference::Error,
    },
}

impl From<super::Error> for Error {
    fn from(e: super::Error) -> Error {
        Error::Image(Box::new(e))
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports every image in the files or directories given, returning the names recorded.
pub fn import_paths(data_dir: &Path, paths: &[PathBuf]) -> Result<Vec<ImageRecord>> {
    let store = Store::open(data_dir)?;
    let _gc = store.gc_lock(false)?;
    let mut out = Vec::new();
    for path in paths {
        out.extend(import_one(&store, path)?);
    }
    Ok(out)
}

fn import_one(store: &Store, path: &Path) -> Result<Vec<ImageRecord>> {
    let meta = fs::metadata(path).map_err(|cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    let named = if meta.is_dir() {
        import_layout_dir(store, path)?
    } else {
        import_archive(store, path)?
    };
    if named.is_empty() {
        return Err(Error::Unnamed(path.to_path_buf()));
    }
    let mut records = Vec::new();
    for (name, top) in named {
        let rec = super::resolve(store, &name, &top)?;
        super::unpack(store, &rec)?;
        super::commit(store, &rec)?;
        records.push(rec);
    }
    Ok(records)
}

/// Opens a file that may be a gzip- or zstd-compressed tar, by its magic bytes.
fn open_maybe_compressed(path: &Path) -> Result<Box<dyn Read>> {
    let io = |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut input = BufReader::with_capacity(256 * 1024, File::open(path).map_err(io)?);
    let magic = input.fill_buf().map_err(io)?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(io)?)
    } else {
        Box::new(input)
    })
}

/// A path inside an archive without `./` or a leading `/`; `None` if it climbs with `..`.
fn clean(path: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?.to_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

/// Reads an archive in one pass, then works out which images it names.
fn import_archive(store: &Store, path: &Path) -> Result<Vec<(String, Digest)>> {
    let io = |cause| Error::Io {
        path: path.to_path_buf(),
        cause,
    };
    let mut archive = tar::Archive::new(open_maybe_compressed(path)?);
    let mut json: HashMap<String, Vec<u8>> = HashMap::new();
    // Every regular file stored, by its path in the archive; symlinks (docker save links
    // duplicate layers) by their resolved target.
    let mut files: HashMap<String, Digest> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let Some(name) = clean(&entry.path().map_err(io)?) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Some(target) = entry.link_name().map_err(io)? {
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(target) = clean(&base) {
                        links.insert(name, target);
                    }
                }
                continue;
            }
            _ => continue,
        }
        if matches!(
            name.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(io)?;
            json.insert(name, buf);
            continue;
        }
        let size = entry.header().size().map_err(io)?;
        let expected = name
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::from_hex(hex).ok());
        let digest = store.copy_blob(&mut entry, expected.as_ref(), Some(size))?;
        files.insert(name, digest);
    }
    let lookup = |file: &str| -> Result<Digest> {
        let mut name = file.to_string();
        for _ in 0..8 {
            if let Some(d) = files.get(&name) {
                return Ok(d.clone());
            }
            match links.get(&name) {
                Some(next) => name = next.clone(),
                None => break,
            }
        }
        Err(Error::MissingFile {
            archive: path.to_path_buf(),
            file: file.to_string(),
        })
    };
    let parse_json = |file: &str| -> Option<Result<serde_json::Value>> {
        json.get(file).map(|bytes| {
            serde_json::from_slice(bytes).map_err(|cause| Error::Json {
                archive: path.to_path_buf(),
                file: file.to_string(),
                cause,
            })
        })
    };
    if let Some(index) = parse_json("index.json") {
        let index: Index = serde_json::from_value(index?).map_err(|cause| Error::Json {
            archive: path.to_path_buf(),
            file: "index.json".into(),
            cause,
        })?;
        let named = names_from_index(path, &index)?;
        if !named.is_empty() {
            return Ok(named);
        }
    }
    let Some(save) = parse_json("manifest.json") else {
        if json.contains_key("index.json") {
            return Ok(Vec::new());
        }
        return Err(Error::NotAnImage(path.to_path_buf()));
    };
    let save: Vec<SaveEntry> = serde_json::from_value(save?).map_err(|cause| Error::Json {
        archive: path.to_path_buf(),
        file: "manifest.json".into(),
        cause,
    })?;
    let mut named = Vec::new();
    for entry in save {
        // The legacy layout has no manifest blob: write the Docker schema 2 manifest it implies.
        let descriptor = |digest: Digest, media_type: &str| -> Result<Descriptor> {
            let size = fs::metadata(store.blob_path(&digest))
                .map_err(|cause| Error::Io {
                    path: store.blob_path(&digest),
                    cause,
                })?
                .len();
            Ok(Descriptor {
                media_type: media_type.to_string(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
            })
        };
        let config = descriptor(lookup(&entry.config)?, manifest::DOCKER_CONFIG)?;
        let layers = entry
            .layers
            .iter()
            .map(|l| descriptor(lookup(l)?, manifest::DOCKER_LAYER_TAR))
            .collect::<Result<Vec<_>>>()?;
        let m = Manifest {
            schema_version: 2,
            media_type: Some(manifest::DOCKER_MANIFEST.to_string()),
            config,
            layers,
        };
        let digest =
            store.write_blob(&serde_json::to_vec(&m).expect("manifest serializes"), None)?;
        for tag in entry.repo_tags.unwrap_or_default() {
            named.push((normalize(path, &tag)?, digest.clone()));
        }
    }
    Ok(named)
}

fn normalize(archive: &Path, name: &str) -> Result<String> {
    Reference::parse(name)
        .map(|r| r.store_key())
        .map_err(|cause| Error::Name {
            archive: archive.to_path_buf(),
            name: name.to_string(),
            cause,
        })
}

/// Image names in an OCI index.json: containerd's full-name annotation, else
/// `org.opencontainers.image.ref.name` when it is a full reference (it is often only a tag,
/// which names no repository, and then `docker save`'s manifest.json is used instead).
fn names_from_index(archive: &Path, index: &Index) -> Result<Vec<(String, Digest)>> {
    let mut out = Vec::new();
    for m in &index.manifests {
        let name = m.annotations.get("io.containerd.image.name").or_else(|| {
            m.annotations
                .get("org.opencontainers.image.ref.name")
                .filter(|n| n.contains('/') || n.contains(':'))
        });
        if let Some(name) = name {
            out.push((normalize(archive, name)?, m.digest.clone()));
        }
    }
    Ok(out)
}

/// An OCI layout directory: copies (and verifies) the blobs of this host's platform for every
/// named entry of index.json.
fn import_layout_dir(store: &Store, dir: &Path) -> Result<Vec<(String, Digest)>> {
    let index_path = dir.join("index.json");
    let bytes = fs::read(&index_path).map_err(|cause| match cause.kind() {
        io::ErrorKind::NotFound => Error::NotAnImage(dir.to_path_buf()),
        _ => Error::Io {
            path: index_path.clone(),
            cause,
        },
    })?;
    let index: Index = serde_json::from_slice(&bytes).map_err(|cause| Error::Json {
        archive: dir.to_path_buf(),
        file: "index.json".into(),
        cause,
    })?;
    let named = names_from_index(dir, &index)?;
    let copy = |d: &Digest| -> Result<Vec<u8>> {
        let src = dir.join("blobs/sha256").join(d.hex());
        if !store.has_blob(d) {
            let f = File::open(&src).map_err(|cause| Error::Io {
                path: src.clone(),
                cause,
            })?;
            store.copy_blob(f, Some(d), None)?;
        }
        Ok(store.read_blob(d)?)
    };
    for (_, top) in &named {
        let bytes = copy(top)?;
        let manifest_digest = match Document::parse(&bytes, top).map_err(super::Error::from)? {
            Document::Manifest(_) => top.clone(),
            Document::Index(i) => i
                .select(top, &manifest::host_platform())
                .map_err(super::Error::from)?
                .digest
                .clone(),
        };
        let bytes = copy(&manifest_digest)?;
        if let Document::Manifest(m) =
            Document::parse(&bytes, &manifest_digest).map_err(super::Error::from)?
        {
            for blob in std::iter::once(&m.config).chain(&m.layers) {
                if !store.has_blob(&blob.digest) {
                    let src = dir.join("blobs/sha256").join(blob.digest.hex());
                    let f = File::open(&src).map_err(|cause| Error::Io { path: src, cause })?;
                    store.copy_blob(f, Some(&blob.digest), Some(blob.size))?;
                }
            }
        }
    }
    Ok(named)
}

/// What was imported from a tarball in the images directory, so an unchanged file is skipped
/// at the next start.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportedTable {
    files: BTreeMap<String, ImportedFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ImportedFile {
    size: u64,
    mtime_ns: i128,
    images: Vec<String>,
}

const TARBALL_SUFFIXES: &[&str] = &[".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst"];

/// Imports the image tarballs placed in `<data_dir>/agent/images/` (k3s's air-gap directory),
/// skipping those imported before and unchanged since (same size and mtime). A file that fails
/// is logged and retried at the next start; the others still import. Returns the images named.
pub fn import_dir_tarballs(data_dir: &Path) -> anyhow::Result<Vec<ImageRecord>> {
    let store = Store::open(data_dir)?;
    let _gc = store.gc_lock(false)?;
    let table_path = store.root().join("imported.json");
    let mut table: ImportedTable = read_json(&table_path)?;
    let mut imported = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(store.root())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            TARBALL_SUFFIXES.iter().any(|s| name.ends_with(s))
        })
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata()?;
        let stamp = (
            meta.size(),
            meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        );
        if table
            .files
            .get(&name)
            .is_some_and(|f| (f.size, f.mtime_ns) == stamp)
        {
            continue;
        }
        match import_one(&store, &entry.path()) {
            Ok(records) => {
                tracing::info!(file = %name, images = records.len(), "imported air-gap image tarball");
                table.files.insert(
                    name,
                    ImportedFile {
                        size: stamp.0,
                        mtime_ns: stamp.1,
                        images: records.iter().map(|r| r.name.clone()).collect(),
                    },
                );
                imported.extend(records);
            }
            Err(e) => tracing::warn!(file = %name, error = %e, "could not import image tarball"),
        }
    }
    write_json_atomic(&store, &table_path, &table)?;
    Ok(imported)
}
