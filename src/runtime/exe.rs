//! The binary that enters a container runs from a sealed in-memory copy of ourselves
//! (CVE-2019-5736): a process in the container that opens /proc/<init>/exe reaches the memfd,
//! whose seals forbid writes, never the host's `nanokube` file.
//!
//! The copy is made once per process and kept: a long-running caller such as the kubelet
//! pays for it once. A short-lived caller (the CLI, one command per container operation)
//! would pay a copy of the whole binary every time (tens of milliseconds), so it can choose
//! `Protection::ReadOnlyBind` instead: the cloned child, already in its own mount namespace,
//! makes its view of the binary a read-only bind mount before exec'ing it. /proc/<pid>/exe then
//! names that read-only mount, so opening it for writing fails with EROFS, and the mount
//! vanishes with the namespace. Either way the init also makes itself non-dumpable.
//!
//! A single-threaded caller (the CLI) need not exec an init at all: `Protection::InProcess`
//! lets the cloned child, an exact copy of a process with one thread, run the init's code
//! directly, which saves loading the whole binary a second time per container. Its
//! `/proc/self/exe` is then the host's file, so two things keep the defence whole: the child
//! makes itself non-dumpable first (no container process can open its exe or ptrace it), and
//! it execs the user's program through the sealed trampoline (trampoline.rs), so even a
//! `#!/proc/self/exe` program never runs the host's binary inside the container.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::trampoline;

/// Errors making the sealed copy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call while copying or sealing failed.
    #[error("sealed copy of the runtime binary: {0}")]
    Io(#[from] std::io::Error),
}

/// How the runtime binary is protected while it runs inside a container's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protection {
    /// Exec a sealed memfd copy (made once per process).
    #[default]
    SealedCopy,
    /// Exec the binary through a read-only bind mount made in the child's own mount
    /// namespace (needs CLONE_NEWNS on the clone; falls back to the sealed copy otherwise).
    ReadOnlyBind,
    /// No exec: the child runs the init in the copy of our process, and execs the user's
    /// program through the sealed trampoline. Only for a process that has a single thread
    /// at the clone (checked; otherwise as `ReadOnlyBind`) and runs on an architecture with
    /// a trampoline.
    InProcess,
}

/// What the cloned child execs.
#[derive(Debug)]
pub enum Source {
    /// execveat(fd, "", AT_EMPTY_PATH) of the sealed copy.
    Sealed(RawFd),
    /// Bind the binary read-only onto itself, then execve(path).
    ReadOnlyBind(std::ffi::CString),
    /// Run the init in the cloned child itself; the fd is the sealed trampoline.
    InProcess(RawFd),
}

/// Picks the source for a clone with `clone_flags`. `binary` is the nanokube executable to
/// run as init (default: ourselves; a test harness names the real binary).
pub fn source(
    protection: Protection,
    clone_flags: libc::c_int,
    binary: Option<&Path>,
) -> Result<Source, Error> {
    // A named binary is a test harness's way to run the real init; that needs an exec.
    if protection == Protection::InProcess
        && binary.is_none()
        && trampoline::supported()
        && single_threaded()
    {
        return Ok(Source::InProcess(
            trampoline::sealed().map_err(|trampoline::Error::Io(e)| Error::Io(e))?,
        ));
    }
    let bind = matches!(protection, Protection::ReadOnlyBind | Protection::InProcess);
    if bind && clone_flags & libc::CLONE_NEWNS != 0 {
        let path = match binary {
            Some(p) => std::fs::canonicalize(p)?,
            None => std::fs::read_link("/proc/self/exe")?,
        };
        let text = path.to_string_lossy();
        // A binary replaced while we run shows as "... (deleted)"; only the copy helps then.
        if !text.ends_with(" (deleted)") {
            if let Ok(c) = std::ffi::CString::new(text.as_bytes()) {
                return Ok(Source::ReadOnlyBind(c));
            }
        }
    }
    Ok(Source::Sealed(sealed_copy(
        binary.unwrap_or(Path::new("/proc/self/exe")),
    )?))
}

/// Whether this process has exactly one thread, so that a cloned child is a consistent copy
/// (no lock held by another thread, no allocator state mid-update).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// Sealed copies made so far, by source path; kept for the life of the process.
static SEALED: Mutex<Vec<(PathBuf, OwnedFd)>> = Mutex::new(Vec::new());

/// The sealed copy's descriptor (close-on-exec; `execveat(fd, "", AT_EMPTY_PATH)` runs it).
pub fn sealed_copy(binary: &Path) -> Result<RawFd, Error> {
    let mut cache = SEALED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, fd)) = cache.iter().find(|(p, _)| p == binary) {
        return Ok(fd.as_raw_fd());
    }
    let fd = make_sealed_copy(binary)?;
    let raw = fd.as_raw_fd();
    cache.push((binary.to_path_buf(), fd));
    Ok(raw)
}

fn make_sealed_copy(binary: &Path) -> Result<OwnedFd, Error> {
    let src = File::open(binary)?;
    let len = src.metadata()?.len();
    let mem = sealed_memfd(c"nanokube-runtime", |mem| {
        let mut left = len as usize;
        while left > 0 {
            // SAFETY: both descriptors are open; a null offset uses and advances the offsets.
            let n = unsafe {
                libc::sendfile(mem.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left)
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                break;
            }
            left -= n as usize;
        }
        Ok(())
    })?;
    Ok(mem)
}

/// An executable memfd named `name`, filled by `fill`, then sealed against any change
/// (F_SEAL_WRITE, SHRINK, GROW, and SEAL itself). Close-on-exec; run it with
/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`.
pub(super) fn sealed_memfd(
    name: &std::ffi::CStr,
    fill: impl FnOnce(&OwnedFd) -> std::io::Result<()>,
) -> std::io::Result<OwnedFd> {
    const MFD_EXEC: libc::c_uint = 0x10;
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create takes a valid C string and flags; it returns a new fd or -1.
    let mut raw = unsafe { libc::memfd_create(name.as_ptr(), base | MFD_EXEC) };
    if raw < 0 {
        // Kernels before 6.3 reject MFD_EXEC; their memfds are executable anyway.
        // SAFETY: as above.
        raw = unsafe { libc::memfd_create(name.as_ptr(), base) };
    }
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let mem = unsafe { OwnedFd::from_raw_fd(raw) };
    fill(&mem)?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on our own memfd.
    if unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(mem)
}
