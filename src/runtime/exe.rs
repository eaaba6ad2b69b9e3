//! The binary that enters a container runs from a sealed in-memory copy of ourselves
//! (CVE-2019-5736): a process in the container that opens /proc/<init>/exe reaches the memfd,
//! whose seals forbid writes, never the host's `nanokube` file.
//!
//! The copy is made once per process and kept (a long-running caller such as the kubelet pays
//! for it once); the CLI makes it once per command, which costs one in-kernel sendfile of the
//! binary into shmem.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Errors making the sealed copy.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call while copying or sealing failed.
    #[error("sealed copy of the runtime binary: {0}")]
    Io(#[from] std::io::Error),
}

static SEALED: OnceLock<OwnedFd> = OnceLock::new();

/// The sealed copy's descriptor (close-on-exec; `execveat(fd, "", AT_EMPTY_PATH)` runs it).
pub fn sealed_self() -> Result<RawFd, Error> {
    if let Some(fd) = SEALED.get() {
        return Ok(fd.as_raw_fd());
    }
    let fd = make_sealed_copy()?;
    // A racing thread may have won; either copy is fine, the loser's is dropped.
    Ok(SEALED.get_or_init(|| fd).as_raw_fd())
}

fn make_sealed_copy() -> Result<OwnedFd, Error> {
    let src = File::open("/proc/self/exe")?;
    let len = src.metadata()?.len();
    let name = c"nanokube-runtime";
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
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let mem = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut left = len as usize;
    while left > 0 {
        // SAFETY: both descriptors are open; a null offset uses and advances the file offsets.
        let n =
            unsafe { libc::sendfile(mem.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err.into());
        }
        if n == 0 {
            break;
        }
        left -= n as usize;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS on our own memfd.
    if unsafe { libc::fcntl(mem.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(mem)
}
