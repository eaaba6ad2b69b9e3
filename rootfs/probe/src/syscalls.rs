//! `probe syscall NAME`: one attempt at a privileged or filtered syscall, reported as "ok" or
//! "errno NAME". Each attempt is chosen to be harmless even where it is allowed: invalid magic
//! numbers or flags that the kernel checks only after the permission check, own namespaces,
//! and immediate undo of anything that succeeds.

use crate::errno;
use std::ffi::CString;

pub const NAMES: &[&str] = &[
    "unshare-mnt",
    "unshare-user",
    "mount-tmpfs",
    "keyctl",
    "bpf",
    "ptrace-attach-1",
    "clone3",
    "clone-newns",
    "setns",
    "reboot",
    "swapon",
    "init-module",
    "personality-linux32",
    "chroot",
    "mknod-char",
    "sethostname",
    "kexec-load",
];

/// Reaps a child created by a raw clone; its exit status does not matter.
fn reap(pid: i64) {
    let mut st = 0;
    // SAFETY: waiting on our own child with a valid status pointer.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut st, 0) };
}

pub fn attempt(name: &str) -> Option<String> {
    let r: i64 = match name {
        // SAFETY: flags only; the new namespace dies with the probe.
        "unshare-mnt" => unsafe { libc::unshare(libc::CLONE_NEWNS) as i64 },
        // SAFETY: flags only; the probe is single-threaded, as CLONE_NEWUSER requires.
        "unshare-user" => unsafe { libc::unshare(libc::CLONE_NEWUSER) as i64 },
        "mount-tmpfs" => {
            let dir = c"/tmp";
            // SAFETY: valid C strings; the mount, if allowed, is undone at once.
            let r = unsafe {
                libc::mount(
                    c"probe".as_ptr(),
                    dir.as_ptr(),
                    c"tmpfs".as_ptr(),
                    0,
                    std::ptr::null(),
                )
            };
            if r == 0 {
                // SAFETY: detaching the mount we just made.
                unsafe { libc::umount2(dir.as_ptr(), libc::MNT_DETACH) };
            }
            r as i64
        }
        // KEYCTL_GET_KEYRING_ID (0) of the user keyring (-4), without creating it.
        // SAFETY: integer arguments only.
        "keyctl" => unsafe { libc::syscall(libc::SYS_keyctl, 0, -4i64, 0) },
        "bpf" => {
            // BPF_MAP_CREATE of a one-entry array map: succeeds where bpf is allowed.
            let mut attr = [0u32; 32];
            attr[0] = 2; // BPF_MAP_TYPE_ARRAY
            attr[1] = 4; // key_size
            attr[2] = 4; // value_size
            attr[3] = 1; // max_entries
                         // SAFETY: `attr` is a valid, zero-padded bpf_attr of the size passed.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    0,
                    attr.as_mut_ptr(),
                    std::mem::size_of_val(&attr),
                )
            };
            if fd >= 0 {
                // SAFETY: closing the map fd we own.
                unsafe { libc::close(fd as i32) };
            }
            fd
        }
        "ptrace-attach-1" => {
            // SAFETY: integer arguments; a successful attach is detached right away.
            let r = unsafe { libc::ptrace(libc::PTRACE_ATTACH, 1, 0, 0) };
            if r == 0 {
                let mut st = 0;
                // SAFETY: waiting for the attach stop, then detaching.
                unsafe {
                    libc::waitpid(1, &mut st, libc::__WALL);
                    libc::ptrace(libc::PTRACE_DETACH, 1, 0, 0);
                }
            }
            r as i64
        }
        "clone3" => {
            // struct clone_args { flags, pidfd, child_tid, parent_tid, exit_signal, ... }
            let mut args = [0u64; 8];
            args[4] = libc::SIGCHLD as u64;
            // SAFETY: `args` is a valid clone_args of the size passed; no stack is given, so
            // the child runs on a copy of ours like fork, and leaves with a raw exit.
            let pid = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    args.as_mut_ptr(),
                    std::mem::size_of_val(&args),
                )
            };
            if pid == 0 {
                // SAFETY: the child ends at once without running any Rust code.
                unsafe { libc::syscall(libc::SYS_exit_group, 0) };
            }
            if pid > 0 {
                reap(pid);
            }
            pid
        }
        "clone-newns" => {
            let flags = (libc::CLONE_NEWNS | libc::SIGCHLD) as u64;
            // SAFETY: raw clone without a new stack is fork-like; the child exits at once.
            let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
            if pid == 0 {
                // SAFETY: the child ends at once without running any Rust code.
                unsafe { libc::syscall(libc::SYS_exit_group, 0) };
            }
            if pid > 0 {
                reap(pid);
            }
            pid
        }
        "setns" => {
            // Re-joining our own UTS namespace: needs CAP_SYS_ADMIN but changes nothing.
            // SAFETY: valid path; the fd is closed after use.
            let fd = unsafe {
                libc::open(
                    c"/proc/self/ns/uts".as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                -1
            } else {
                // SAFETY: `fd` is a namespace fd we own.
                let r = unsafe { libc::setns(fd, libc::CLONE_NEWUTS) };
                let e = errno::last();
                // SAFETY: closing our own fd.
                unsafe { libc::close(fd) };
                if r == -1 {
                    // Restore errno for the caller's report after close.
                    // SAFETY: writing the thread's errno location.
                    unsafe { *libc::__errno_location() = e };
                }
                r as i64
            }
        }
        // Bad magic: the kernel checks CAP_SYS_BOOT first, then rejects the magic with EINVAL.
        // SAFETY: integer arguments only.
        "reboot" => unsafe { libc::syscall(libc::SYS_reboot, 0, 0, 0, 0) },
        // SAFETY: valid C string; a missing file cannot become swap.
        "swapon" => unsafe { libc::swapon(c"/nonexistent-probe-swap".as_ptr(), 0) as i64 },
        "init-module" => {
            let image = [0u8; 16];
            // SAFETY: a valid buffer of the length passed; not an ELF module, so nothing loads.
            unsafe {
                libc::syscall(
                    libc::SYS_init_module,
                    image.as_ptr(),
                    image.len(),
                    c"".as_ptr(),
                )
            }
        }
        "personality-linux32" => {
            // SAFETY: querying and setting the execution domain of this process only.
            let old = unsafe { libc::personality(0xffff_ffff) };
            // SAFETY: as above.
            let r = unsafe { libc::personality(0x0008) }; // PER_LINUX32
            if r != -1 {
                // SAFETY: as above.
                unsafe { libc::personality(old as libc::c_ulong) };
            }
            r as i64
        }
        // SAFETY: valid C string; chroot to "/" changes nothing visible.
        "chroot" => unsafe { libc::chroot(c"/".as_ptr()) as i64 },
        "mknod-char" => {
            // The first directory whose filesystem is writable: the question is CAP_MKNOD and
            // seccomp, not a read-only root.
            let mut r = -1;
            for dir in ["/tmp", "/dev", "/dev/shm", "/run"] {
                // SAFETY: getpid cannot fail.
                let pid = unsafe { libc::getpid() };
                let path = CString::new(format!("{dir}/.probe-null-{pid}")).expect("no NUL");
                // SAFETY: valid C string; the node (1:3, like /dev/null) is removed at once.
                r = unsafe {
                    libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3))
                };
                if r == 0 {
                    // SAFETY: valid C string.
                    unsafe { libc::unlink(path.as_ptr()) };
                    break;
                }
                if ![libc::EROFS, libc::ENOENT, libc::EACCES].contains(&errno::last()) {
                    break;
                }
            }
            r as i64
        }
        "sethostname" => {
            let mut buf = [0u8; 65];
            // SAFETY: the buffer is valid; setting the name it already has changes nothing.
            let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
            if r != 0 {
                return Some(errno::outcome(-1));
            }
            let len = buf.iter().position(|&b| b == 0).unwrap_or(0);
            // SAFETY: `buf` holds `len` valid bytes.
            unsafe { libc::sethostname(buf.as_ptr().cast(), len) as i64 }
        }
        // An unknown flag bit (0x8000): checked after CAP_SYS_BOOT, so nothing is ever loaded.
        // SAFETY: integer and null arguments only.
        "kexec-load" => unsafe {
            libc::syscall(libc::SYS_kexec_load, 0, 0, std::ptr::null::<u8>(), 0x8000)
        },
        _ => return None,
    };
    Some(errno::outcome(r))
}
