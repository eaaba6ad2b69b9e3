//! `tmpcopyup`: a tmpfs mounted over a directory starts with a copy of what the directory held
//! (podman's `--tmpfs` and `--read-only` ask for it on /tmp, /run, /var/tmp). The directory
//! stays reachable through a descriptor opened before the mount, so the copy reads from below
//! the new tmpfs and writes into it; every step is relative to a directory fd and never
//! follows a link, so an image's symlinks cannot lead it outside the container.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use super::sys;

/// Copies the entries of directory `src` into directory `dst` (both O_DIRECTORY fds):
/// directories, files, symlinks and device nodes, with their modes and owners.
pub fn copy_tree(src: &OwnedFd, dst: &OwnedFd) -> io::Result<()> {
    copy_dir(src, dst, 0)
}

fn copy_dir(src: &OwnedFd, dst: &OwnedFd, depth: u32) -> io::Result<()> {
    if depth > 256 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    // read_dir through /proc/self/fd names the directory itself: the path is not walked again.
    for entry in std::fs::read_dir(sys::fd_path(src))? {
        let entry = entry?;
        let name = CString::new(entry.file_name().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let st = fstatat(src.as_raw_fd(), &name)?;
        let mode = st.st_mode & 0o7777;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                sys::mkdirat(dst.as_raw_fd(), &name, 0o700)?;
                let from = openat(
                    src.as_raw_fd(),
                    &name,
                    libc::O_DIRECTORY | libc::O_RDONLY,
                    0,
                )?;
                let to = openat(
                    dst.as_raw_fd(),
                    &name,
                    libc::O_DIRECTORY | libc::O_RDONLY,
                    0,
                )?;
                copy_dir(&from, &to, depth + 1)?;
            }
            libc::S_IFREG => {
                let from = openat(src.as_raw_fd(), &name, libc::O_RDONLY, 0)?;
                let to = openat(
                    dst.as_raw_fd(),
                    &name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )?;
                io::copy(&mut std::fs::File::from(from), &mut std::fs::File::from(to))?;
            }
            libc::S_IFLNK => {
                let target = std::fs::read_link(format!(
                    "{}/{}",
                    sys::fd_path(src),
                    OsStr::from_bytes(name.as_bytes()).to_string_lossy()
                ))?;
                let target = sys::cstr(&target)?;
                // SAFETY: valid C strings and dirfd.
                sys::cvt(unsafe {
                    libc::symlinkat(target.as_ptr(), dst.as_raw_fd(), name.as_ptr())
                })?;
            }
            kind => {
                // SAFETY: valid dirfd and C string; the node is made with the source's type.
                sys::cvt(unsafe {
                    libc::mknodat(dst.as_raw_fd(), name.as_ptr(), kind | mode, st.st_rdev)
                })?;
            }
        }
        // SAFETY: valid dirfd and C string; never follows a link.
        sys::cvt(unsafe {
            libc::fchownat(
                dst.as_raw_fd(),
                name.as_ptr(),
                st.st_uid,
                st.st_gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            // After chown, which clears set-id bits; links have no mode of their own.
            // SAFETY: valid dirfd and C string; the entry is ours, not a link.
            sys::cvt(unsafe { libc::fchmodat(dst.as_raw_fd(), name.as_ptr(), mode, 0) })?;
        }
    }
    Ok(())
}

fn fstatat(dir: RawFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data the kernel fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid dirfd, C string and stat buffer.
    sys::cvt(unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(st)
}

fn openat(dir: RawFd, name: &CStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: valid dirfd and C string; O_NOFOLLOW refuses a link swapped in.
    let fd = sys::cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: the kernel returned a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        sys::open(p, libc::O_DIRECTORY | libc::O_RDONLY).unwrap()
    }

    #[test]
    fn copies_files_dirs_links_and_modes() {
        let base = std::env::temp_dir().join(format!("nk-copyup-{}", std::process::id()));
        let (src, dst) = (base.join("src"), base.join("dst"));
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::create_dir_all(&dst).unwrap();
        std::fs::write(src.join("sub/deeper/file"), b"content").unwrap();
        std::fs::set_permissions(src.join("sub"), PermissionsExt::from_mode(0o1750)).unwrap();
        std::fs::set_permissions(
            src.join("sub/deeper/file"),
            PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("link")).unwrap();

        copy_tree(&dir_fd(&src), &dir_fd(&dst)).unwrap();

        assert_eq!(
            std::fs::read(dst.join("sub/deeper/file")).unwrap(),
            b"content"
        );
        let md = std::fs::metadata(dst.join("sub")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o1750);
        let md = std::fs::metadata(dst.join("sub/deeper/file")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o640);
        assert_eq!(
            std::fs::read_link(dst.join("link")).unwrap(),
            std::path::Path::new("/etc/passwd")
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
