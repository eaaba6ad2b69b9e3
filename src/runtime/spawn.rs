//! The one moment the runtime forks: clone(2) with the new namespaces' flags, and in the
//! child only async-signal-safe calls (dup2, fcntl, execveat) until it has become a fresh
//! `nanokube runtime init` from the sealed memfd. Everything the child touches is prepared
//! before the clone, so a multi-threaded caller (the kubelet's tokio process) is safe: no
//! lock another thread might hold is ever taken in the child. Only a caller with a single
//! thread may skip the exec (`Source::InProcess`): its child is then a consistent copy of it
//! and runs the init's code directly.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};

use super::exe::Source;
use super::init::{PRESERVE_FDS_ENV, SYNC_FD_ENV};
use super::sync::Message;
use super::sys;

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// struct clone_args of clone3(2), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What the child must do, laid out before clone(2) so the child does not allocate.
pub struct Plan {
    exe: Source,
    sync: RawFd,
    stdio: [RawFd; 3],
    _strings: Vec<CString>,
    argv: [*const libc::c_char; 4],
    envp: [*const libc::c_char; 3],
    /// Descriptors 3 .. 3+N the init passes on to the container's process (`--preserve-fds`).
    preserve_fds: u32,
    /// For `Source::InProcess`: the init's orders, read from the child's copy of our memory
    /// instead of the socket.
    orders: Option<Message>,
}

impl Plan {
    /// `stdio[i] == -1` keeps the caller's descriptor i.
    pub fn new(exe: Source, sync: &impl AsRawFd, stdio: [RawFd; 3]) -> Plan {
        let strings = vec![
            CString::new("nanokube").expect("static"),
            CString::new("runtime").expect("static"),
            CString::new("init").expect("static"),
            CString::new(format!("{SYNC_FD_ENV}={}", sync.as_raw_fd())).expect("digits"),
        ];
        let argv = [
            strings[0].as_ptr(),
            strings[1].as_ptr(),
            strings[2].as_ptr(),
            std::ptr::null(),
        ];
        let envp = [strings[3].as_ptr(), std::ptr::null(), std::ptr::null()];
        Plan {
            exe,
            sync: sync.as_raw_fd(),
            stdio,
            _strings: strings,
            argv,
            envp,
            preserve_fds: 0,
            orders: None,
        }
    }

    /// Keeps descriptors 3 .. 3+`n` of the caller open through the init for the container's
    /// process. They must not collide with the sync socket, which is why the caller opens
    /// the socket after they exist (its number is then above them).
    pub fn with_preserved_fds(mut self, n: u32) -> Plan {
        if n > 0 {
            self.preserve_fds = n;
            self._strings
                .push(CString::new(format!("{PRESERVE_FDS_ENV}={n}")).expect("digits"));
            self.envp[1] = self._strings.last().expect("pushed").as_ptr();
        }
        self
    }

    /// Hands the init its orders in memory (only with `Source::InProcess`).
    pub fn with_orders(mut self, orders: Message) -> Plan {
        self.orders = Some(orders);
        self
    }

    /// Clones a child into new namespaces (`flags`, CLONE_NEW*) that execs the init.
    /// With `cgroup` (an fd of a cgroup v2 directory) the child is born in that cgroup
    /// (clone3 CLONE_INTO_CGROUP), which avoids the costly migration of a live process.
    /// Returns the child's pid in our pid namespace and whether it landed in `cgroup`
    /// (false when the kernel lacks clone3: the caller then moves it).
    pub fn spawn(&self, flags: libc::c_int, cgroup: Option<RawFd>) -> std::io::Result<(i32, bool)> {
        if let Some(fd) = cgroup {
            let args = CloneArgs {
                flags: flags as u64 | CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: fd as u64,
                ..CloneArgs::default()
            };
            // SAFETY: as for clone below; clone3 with a null stack and size is fork-like too.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    &args as *const CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                )
            };
            if ret == 0 {
                // SAFETY: only async-signal-safe calls; see `child`.
                unsafe { self.child() }
            }
            if ret > 0 {
                return Ok((ret as i32, true));
            }
            let err = std::io::Error::last_os_error();
            if !matches!(
                err.raw_os_error(),
                Some(libc::ENOSYS) | Some(libc::E2BIG) | Some(libc::EINVAL)
            ) {
                return Err(err);
            }
        }
        // SAFETY: a raw clone without CLONE_VM and with a null stack behaves like fork(2):
        // the child gets a copy of our memory and continues here. It then calls only
        // async-signal-safe functions on data prepared above, and never returns.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (flags | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if ret == 0 {
            // SAFETY: only async-signal-safe calls; see above.
            unsafe { self.child() }
        }
        Ok((ret as i32, false))
    }

    /// # Safety
    /// Only to be called in the freshly cloned child.
    unsafe fn child(&self) -> ! {
        // SAFETY: dup2/fcntl/execveat/_exit are async-signal-safe and get valid arguments;
        // `init::run` is only reached in a copy of a single-threaded process.
        unsafe {
            // Anything that goes wrong before exec shows up as the init closing the socket.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            for (target, &fd) in self.stdio.iter().enumerate() {
                if fd < 0 {
                    continue;
                }
                if fd == target as RawFd {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                } else if libc::dup2(fd, target as RawFd) < 0 {
                    libc::_exit(126);
                }
            }
            if libc::fcntl(self.sync, libc::F_SETFD, 0) < 0 {
                libc::_exit(126);
            }
            match &self.exe {
                Source::Sealed(fd) => {
                    libc::syscall(
                        libc::SYS_execveat,
                        *fd,
                        c"".as_ptr(),
                        self.argv.as_ptr(),
                        self.envp.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    );
                }
                Source::ReadOnlyBind(path) => {
                    // Our mount namespace is new (CLONE_NEWNS): keep the binds to ourselves,
                    // then make this namespace's view of the binary read-only.
                    let p = path.as_ptr();
                    let none = std::ptr::null();
                    if libc::mount(
                        none,
                        c"/".as_ptr(),
                        none,
                        libc::MS_SLAVE | libc::MS_REC,
                        std::ptr::null(),
                    ) < 0
                        || libc::mount(p, p, none, libc::MS_BIND, std::ptr::null()) < 0
                        || libc::mount(
                            none,
                            p,
                            none,
                            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                            std::ptr::null(),
                        ) < 0
                    {
                        libc::_exit(126);
                    }
                    libc::execve(p, self.argv.as_ptr(), self.envp.as_ptr());
                }
                Source::InProcess(trampoline) => {
                    // The caller had one thread at the clone (exe::source checked), so this
                    // copy of it may run ordinary code: the init, without an exec.
                    super::init::run(
                        self.sync,
                        Some(*trampoline),
                        self.orders.as_ref(),
                        self.preserve_fds,
                    );
                }
            }
            libc::_exit(127)
        }
    }
}

/// Kills and reaps a child we cloned (setup failed).
pub fn kill_and_reap(pid: i32) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = sys::waitpid(pid);
}

/// Makes the calling thread's next child start in the pid namespace at `path` (a pod sharing
/// its process namespace), restoring the thread's own on drop. A process cannot move itself
/// into another pid namespace, only its children, so this is done around the clone. The
/// setting is per thread (its nsproxy), so other threads of the caller are unaffected.
pub struct PidNsGuard {
    original: std::os::fd::OwnedFd,
}

impl PidNsGuard {
    pub fn enter(path: &std::path::Path) -> std::io::Result<PidNsGuard> {
        let original = sys::open(
            std::path::Path::new("/proc/thread-self/ns/pid_for_children"),
            libc::O_RDONLY,
        )?;
        let target = sys::open(path, libc::O_RDONLY)?;
        // SAFETY: valid namespace fd and flag.
        sys::cvt(unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWPID) })?;
        Ok(PidNsGuard { original })
    }
}

impl Drop for PidNsGuard {
    fn drop(&mut self) {
        // SAFETY: valid namespace fd and flag; returning to our own namespace.
        unsafe { libc::setns(self.original.as_raw_fd(), libc::CLONE_NEWPID) };
    }
}
