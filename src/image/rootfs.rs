//! A container's writable root: an overlay of the image's unpacked layers (read-only, shared by
//! every container of the image) under a fresh upper directory of its own.

use std::path::{Path, PathBuf};

/// Errors mounting or removing a root.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("mount overlay on {path}: {source}")]
    Mount {
        path: String,
        source: nix::errno::Errno,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Whether something is mounted exactly at `path` (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let want = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.split(' ').nth(4) == Some(&*want)))
        .unwrap_or(false)
}

/// Mounts the overlay of `lowers` (top first) at `<dir>/rootfs`, with `<dir>/upper` and
/// `<dir>/work`; a root already mounted there is kept. Returns the rootfs path.
pub fn mount(lowers: &[PathBuf], dir: &Path) -> Result<PathBuf, Error> {
    let rootfs = dir.join("rootfs");
    for d in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(dir.join(d))
            .map_err(io(format!("mkdir {}", dir.join(d).display())))?;
    }
    if is_mounted(&rootfs) {
        return Ok(rootfs);
    }
    let lower = lowers
        .iter()
        .map(|p| p.to_string_lossy().replace(':', "\\:"))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        dir.join("upper").display(),
        dir.join("work").display()
    );
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|source| Error::Mount {
        path: rootfs.display().to_string(),
        source,
    })?;
    Ok(rootfs)
}

/// Unmounts the root under `dir` (if mounted) and removes `dir` with everything in it.
pub fn remove(dir: &Path) -> Result<(), Error> {
    let rootfs = dir.join("rootfs");
    if is_mounted(&rootfs) {
        nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
            Error::Mount {
                path: rootfs.display().to_string(),
                source,
            }
        })?;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("remove {}", dir.display()))(e)),
    }
}
