//! Unpacking one layer tar into one snapshot directory, rendered the way overlayfs reads lower
//! directories: an OCI whiteout `.wh.NAME` becomes a 0:0 character device `NAME`, and an opaque
//! marker `.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on its directory. Nothing is
//! deleted, because each layer has a directory of its own and overlayfs does the stacking.
//!
//! A layer comes from the network, so every path is treated as hostile. All writes go through
//! directory file descriptors opened one component at a time with `O_NOFOLLOW`, starting at the
//! snapshot root: an entry whose path contains `..`, or whose parent directories pass through a
//! symlink, is refused before anything is written, and an absolute path is taken relative to the
//! snapshot root (as in every other image tool). Hard links may only point inside the snapshot.
//! Xattrs in the `trusted.overlay.` namespace are dropped: a layer must not steer overlayfs.

// Extended attributes (overlay opaque markers, file capabilities) have no safe std API.
#![allow(unsafe_code)]

use super::digest::{Digest, HashingReader};
use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

/// Errors of layer unpacking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The layer could not be read or decompressed, or is not a valid tar.
    #[error("reading layer: {0}")]
    Read(io::Error),
    /// An entry tried to reach outside its snapshot (through `..` or a symlink); nothing of it was written.
    #[error("layer entry {entry:?} {reason}; refusing to unpack the layer")]
    Escape { entry: String, reason: &'static str },
    /// Writing an entry into the snapshot failed.
    #[error("unpacking layer entry {entry:?}: {op}: {cause}")]
    Write {
        entry: String,
        op: &'static str,
        cause: io::Error,
    },
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// The OCI whiteout prefix, and the name that marks a directory opaque.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Unpacks a layer blob (gzip, zstd or plain tar, told apart by their magic bytes) into `dest`,
/// an existing empty directory. Returns the digest of the uncompressed tar (the layer's diff id)
/// and its length.
pub fn unpack_layer(blob: impl Read, dest: &Path) -> Result<(Digest, u64)> {
    let mut input = BufReader::with_capacity(256 * 1024, blob);
    let magic = input.fill_buf().map_err(Error::Read)?;
    let tar: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(input).map_err(Error::Read)?)
    } else {
        Box::new(input)
    };
    let mut hashed = HashingReader::new(tar);
    let mut unpacker = Unpacker::new(dest)?;
    {
        let mut archive = tar::Archive::new(&mut hashed);
        for entry in archive.entries().map_err(Error::Read)? {
            unpacker.entry(entry.map_err(Error::Read)?)?;
        }
    }
    unpacker.finish();
    hashed.finish().map_err(Error::Read)
}

/// Path components of an entry, relative to the snapshot root.
fn components(entry: &str, path: &Path) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(name) => out.push(name.to_os_string()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(Error::Escape {
                    entry: entry.to_string(),
                    reason: "contains '..'",
                })
            }
        }
    }
    Ok(out)
}

struct Unpacker {
    root: OwnedFd,
    /// The directory the previous entry went into: tars list a directory's entries together.
    cached: Option<(Vec<OsString>, OwnedFd)>,
    /// Directory mtimes, set at the end because adding entries changes them.
    dir_times: Vec<(Vec<OsString>, i64)>,
    copy_buf: Vec<u8>,
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Unpacker {
    fn new(dest: &Path) -> Result<Unpacker> {
        let root = openat(nix::fcntl::AT_FDCWD, dest, dir_flags(), Mode::empty()).map_err(|e| {
            Error::Write {
                entry: "/".into(),
                op: "open snapshot",
                cause: e.into(),
            }
        })?;
        Ok(Unpacker {
            root,
            cached: None,
            dir_times: Vec::new(),
            copy_buf: vec![0; 256 * 1024],
        })
    }

    /// Opens the directory `comps` below the root one component at a time, never following a
    /// symlink; with `create`, missing directories are made (mode 0755, as Docker does).
    fn walk(&self, entry: &str, comps: &[OsString], create: bool) -> Result<OwnedFd> {
        let mut dir = self.root.try_clone().map_err(|e| w(entry, "dup", e))?;
        for c in comps {
            let next = match openat(&dir, c.as_os_str(), dir_flags(), Mode::empty()) {
                Err(Errno::ENOENT) if create => {
                    mkdirat(&dir, c.as_os_str(), Mode::from_bits_truncate(0o755))
                        .map_err(|e| w(entry, "mkdir", e.into()))?;
                    openat(&dir, c.as_os_str(), dir_flags(), Mode::empty())
                }
                other => other,
            };
            dir = match next {
                Ok(fd) => fd,
                Err(Errno::ELOOP) => {
                    return Err(Error::Escape {
                        entry: entry.to_string(),
                        reason: "goes through a symlink",
                    })
                }
                // With O_DIRECTORY, Linux reports a symlink as ENOTDIR rather than ELOOP.
                Err(Errno::ENOTDIR) => {
                    let is_link = fstatat(
                        &dir,
                        c.as_os_str(),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .is_ok_and(|st| {
                        SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
                    });
                    return Err(Error::Escape {
                        entry: entry.to_string(),
                        reason: if is_link {
                            "goes through a symlink"
                        } else {
                            "goes through a non-directory"
                        },
                    });
                }
                Err(e) => return Err(w(entry, "open directory", e.into())),
            };
        }
        Ok(dir)
    }

    fn parent(&mut self, entry: &str, comps: &[OsString]) -> Result<OwnedFd> {
        if let Some((path, fd)) = &self.cached {
            if path.as_slice() == comps {
                return fd.try_clone().map_err(|e| w(entry, "dup", e));
            }
        }
        let fd = self.walk(entry, comps, true)?;
        let out = fd.try_clone().map_err(|e| w(entry, "dup", e))?;
        self.cached = Some((comps.to_vec(), fd));
        Ok(out)
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let path = entry.path().map_err(Error::Read)?.into_owned();
        let name_str = path.to_string_lossy().into_owned();
        let comps = components(&name_str, &path)?;
        let xattrs = xattrs(&mut entry)?;
        let header = entry.header().clone();
        let mode = header.mode().map_err(Error::Read)? & 0o7777;
        let uid = header.uid().map_err(Error::Read)? as u32;
        let gid = header.gid().map_err(Error::Read)? as u32;
        let mtime = header.mtime().map_err(Error::Read)? as i64;

        let Some((name, parent_comps)) = comps.split_last() else {
            // The layer's root directory: its metadata becomes the snapshot root's.
            if kind.is_dir() {
                let root = self.root.try_clone().map_err(|e| w(&name_str, "dup", e))?;
                set_fd_meta(&name_str, root.as_fd(), uid, gid, mode, &xattrs)?;
                self.dir_times.push((Vec::new(), mtime));
            }
            return Ok(());
        };
        let parent = self.parent(&name_str, parent_comps)?;
        let name_bytes = name.as_bytes();

        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if name_bytes == OPAQUE_MARKER.as_bytes() {
                return set_xattr(parent.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| w(&name_str, "mark directory opaque", e));
            }
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(Error::Escape {
                    entry: name_str,
                    reason: "is a whiteout of an invalid name",
                });
            }
            self.remove_existing(&name_str, parent.as_fd(), hidden, false)?;
            return mknodat(&parent, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| w(&name_str, "create whiteout device", e.into()));
        }

        self.remove_existing(&name_str, parent.as_fd(), name, kind.is_dir())?;
        let perm = Mode::from_bits_truncate(mode);
        match kind {
            tar::EntryType::Directory => {
                match mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(w(&name_str, "mkdir", e.into())),
                }
                let dir = openat(&parent, name.as_os_str(), dir_flags(), Mode::empty())
                    .map_err(|e| w(&name_str, "open directory", e.into()))?;
                set_fd_meta(&name_str, dir.as_fd(), uid, gid, mode, &xattrs)?;
                self.dir_times.push((comps.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = openat(
                    &parent,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| w(&name_str, "create", e.into()))?;
                let mut file = File::from(fd);
                loop {
                    let n = match entry.read(&mut self.copy_buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(Error::Read(e)),
                    };
                    file.write_all(&self.copy_buf[..n])
                        .map_err(|e| w(&name_str, "write", e))?;
                }
                set_fd_meta(&name_str, file.as_fd(), uid, gid, mode, &xattrs)?;
                let t = TimeSpec::new(mtime, 0);
                futimens(&file, &t, &t).map_err(|e| w(&name_str, "set mtime", e.into()))?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(Error::Read)?.ok_or_else(|| {
                    w(
                        &name_str,
                        "read link target",
                        io::ErrorKind::InvalidData.into(),
                    )
                })?;
                // The target is only text: it is resolved inside the container, never here.
                symlinkat(target.as_ref(), &parent, name.as_os_str())
                    .map_err(|e| w(&name_str, "symlink", e.into()))?;
                self.set_path_meta(
                    &name_str,
                    parent.as_fd(),
                    name,
                    uid,
                    gid,
                    None,
                    mtime,
                    &xattrs,
                )?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(Error::Read)?
                    .ok_or_else(|| {
                        w(
                            &name_str,
                            "read link target",
                            io::ErrorKind::InvalidData.into(),
                        )
                    })?
                    .into_owned();
                let target_comps = components(&name_str, &target)?;
                let Some((target_name, target_parent)) = target_comps.split_last() else {
                    return Err(Error::Escape {
                        entry: name_str,
                        reason: "is a hard link to the layer root",
                    });
                };
                let target_dir = self.walk(&name_str, target_parent, false)?;
                // Without AT_SYMLINK_FOLLOW a link to a symlink links the symlink itself, so
                // the target's last component cannot lead outside either.
                linkat(
                    &target_dir,
                    target_name.as_os_str(),
                    &parent,
                    name.as_os_str(),
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|e| w(&name_str, "hard link", e.into()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = header.device_major().map_err(Error::Read)?.unwrap_or(0);
                        let minor = header.device_minor().map_err(Error::Read)?.unwrap_or(0);
                        let sflag = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (sflag, libc::makedev(major, minor))
                    }
                };
                mknodat(&parent, name.as_os_str(), sflag, perm, dev)
                    .map_err(|e| w(&name_str, "mknod", e.into()))?;
                self.set_path_meta(
                    &name_str,
                    parent.as_fd(),
                    name,
                    uid,
                    gid,
                    Some(perm),
                    mtime,
                    &xattrs,
                )?;
            }
            // Other types (GNU volume labels, extensions the tar crate passes through) carry no files.
            _ => {}
        }
        Ok(())
    }

    /// Clears the way for a new entry: a later entry for the same path replaces the earlier
    /// one, except that a directory over a directory merges.
    fn remove_existing(
        &mut self,
        entry: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        new_is_dir: bool,
    ) -> Result<()> {
        let st = match fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(w(entry, "stat", e.into())),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir && new_is_dir {
            return Ok(());
        }
        if is_dir {
            // The cached directory may be inside what goes away.
            self.cached = None;
            // remove_dir_all does not follow symlinks inside the tree it removes; the path
            // reaches the directory through our descriptor, so nothing above it is re-resolved.
            let path = Path::new("/proc/self/fd")
                .join(parent.as_raw_fd().to_string())
                .join(name);
            std::fs::remove_dir_all(&path).map_err(|e| w(entry, "remove directory", e))
        } else {
            unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                .map_err(|e| w(entry, "remove", e.into()))
        }
    }

    /// Ownership, mode, xattrs and mtime for entries that cannot be opened (symlinks, devices).
    #[allow(clippy::too_many_arguments)]
    fn set_path_meta(
        &self,
        entry: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        uid: u32,
        gid: u32,
        perm: Option<Mode>,
        mtime: i64,
        xattrs: &[(CString, Vec<u8>)],
    ) -> Result<()> {
        fchownat(
            parent,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| w(entry, "chown", e.into()))?;
        if let Some(perm) = perm {
            // mknod applied the umask; the entry itself was just created and is no symlink.
            fchmodat(parent, name, perm, FchmodatFlags::NoFollowSymlink)
                .or_else(|e| match e {
                    Errno::EOPNOTSUPP => fchmodat(parent, name, perm, FchmodatFlags::FollowSymlink),
                    e => Err(e),
                })
                .map_err(|e| w(entry, "chmod", e.into()))?;
        }
        if !xattrs.is_empty() {
            let path = CString::new(
                format!("/proc/self/fd/{}/", parent.as_raw_fd())
                    .into_bytes()
                    .into_iter()
                    .chain(name.as_bytes().iter().copied())
                    .collect::<Vec<u8>>(),
            )
            .map_err(|e| {
                w(
                    entry,
                    "xattr path",
                    io::Error::new(io::ErrorKind::InvalidInput, e),
                )
            })?;
            for (key, value) in xattrs {
                // SAFETY: path and key are NUL-terminated and live for the call; value's pointer and
                // length describe a live slice. lsetxattr does not follow the final symlink.
                let rc = unsafe {
                    libc::lsetxattr(
                        path.as_ptr(),
                        key.as_ptr(),
                        value.as_ptr().cast(),
                        value.len(),
                        0,
                    )
                };
                if rc != 0 {
                    xattr_error(entry, io::Error::last_os_error())?;
                }
            }
        }
        let t = TimeSpec::new(mtime, 0);
        utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| w(entry, "set mtime", e.into()))
    }

    /// Sets directory mtimes last; a directory that a later entry removed is skipped.
    fn finish(&mut self) {
        self.cached = None;
        for (comps, mtime) in std::mem::take(&mut self.dir_times) {
            if let Ok(dir) = self.walk("", &comps, false) {
                let t = TimeSpec::new(mtime, 0);
                let _ = futimens(&dir, &t, &t);
            }
        }
    }
}

fn w(entry: &str, op: &'static str, cause: io::Error) -> Error {
    Error::Write {
        entry: entry.to_string(),
        op,
        cause,
    }
}

/// Owner first, then mode: chown clears set-id bits.
fn set_fd_meta(
    entry: &str,
    fd: BorrowedFd<'_>,
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: &[(CString, Vec<u8>)],
) -> Result<()> {
    fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
        .map_err(|e| w(entry, "chown", e.into()))?;
    fchmod(fd, Mode::from_bits_truncate(mode)).map_err(|e| w(entry, "chmod", e.into()))?;
    for (key, value) in xattrs {
        if let Err(e) = set_xattr_c(fd, key, value) {
            xattr_error(entry, e)?;
        }
    }
    Ok(())
}

/// Filesystems without xattr support lose only the xattrs; anything else is an error.
fn xattr_error(entry: &str, e: io::Error) -> Result<()> {
    if e.raw_os_error() == Some(libc::ENOTSUP) {
        tracing::warn!(entry, "filesystem does not support xattrs; dropped");
        Ok(())
    } else {
        Err(w(entry, "set xattr", e))
    }
}

fn set_xattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let name = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    set_xattr_c(fd, &name, value)
}

fn set_xattr_c(fd: BorrowedFd<'_>, name: &CString, value: &[u8]) -> io::Result<()> {
    // SAFETY: fd is open for the duration of the call, name is NUL-terminated, and value's
    // pointer and length describe a live slice.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The entry's xattrs from its PAX `SCHILY.xattr.` records, minus the overlay namespace.
fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(CString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(Error::Read)? {
        for ext in exts {
            let ext = ext.map_err(Error::Read)?;
            let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                continue;
            };
            if name.starts_with(b"trusted.overlay.") {
                continue;
            }
            if let Ok(name) = CString::new(name) {
                out.push((name, ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}
