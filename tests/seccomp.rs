//! seccomp filters installed for real: a forked child sets no_new_privs, installs a compiled
//! profile and reports what each system call returned. No root needed.
//!
//! The profile is compiled before fork; after fork the child only makes raw system calls
//! (this test process is multithreaded, so nothing that allocates or locks is safe there).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nanokube::runtime::seccomp::{self, Program};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder};

/// What each probe call returned: 0 for success, else the errno.
const PROBES: usize = 10;

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// errno of the last call, or 0 if `rc` says it succeeded.
fn outcome(rc: libc::c_long) -> i32 {
    if rc >= 0 {
        0
    } else {
        // SAFETY: reading this thread's errno.
        unsafe { *libc::__errno_location() }
    }
}

/// Forks; the child installs `program` and runs `body`, whose results come back through a
/// pipe. Returns the results and how the child ended.
fn in_filtered_child(
    program: &Program,
    body: fn(&mut [i32; PROBES]),
) -> (Option<[i32; PROBES]>, WaitStatus) {
    let (r, w) = pipe();
    // SAFETY: the child only makes async-signal-safe calls (prctl, seccomp via install, raw
    // syscalls, write, _exit) and never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: plain prctl; no memory is passed.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(100) };
        }
        if seccomp::install(program).is_err() {
            // SAFETY: as above.
            unsafe { libc::_exit(101) };
        }
        let mut results = [0i32; PROBES];
        body(&mut results);
        // SAFETY: results is a plain array of PROBES i32s.
        unsafe {
            libc::write(
                w.as_raw_fd(),
                results.as_ptr().cast(),
                std::mem::size_of_val(&results),
            );
            libc::_exit(0)
        };
    }
    drop(w);
    let mut buf = [0u8; PROBES * 4];
    let results = File::from(r).read_exact(&mut buf).ok().map(|_| {
        let mut out = [0i32; PROBES];
        for (i, chunk) in buf.chunks_exact(4).enumerate() {
            out[i] = i32::from_ne_bytes(chunk.try_into().unwrap());
        }
        out
    });
    let status = waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    (results, status)
}

#[test]
fn default_profile_denies_what_docker_denies() {
    let program = seccomp::compile(&seccomp::default_profile()).unwrap();
    let (results, status) = in_filtered_child(&program, |out| {
        // SAFETY: raw system calls whose pointers are null or valid C strings; on a broken
        // filter the ones that would succeed are harmless in a child that exits right after.
        unsafe {
            out[0] = outcome(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWNS));
            out[1] = outcome(libc::syscall(
                libc::SYS_keyctl,
                0, /* KEYCTL_GET_KEYRING_ID */
                -3,
                0,
            ));
            out[2] = outcome(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0));
            out[3] = outcome(libc::syscall(
                libc::SYS_mount,
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null::<u8>(),
            ));
            // clone with a namespace flag: if the filter let it through, the new child exits.
            let rc = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long,
                0,
                0,
                0,
                0,
            );
            if rc == 0 {
                libc::_exit(0);
            }
            out[4] = outcome(rc);
            out[5] = if libc::syscall(libc::SYS_getpid) == libc::getpid() as libc::c_long {
                0
            } else {
                -1
            };
            // A plain fork (glibc uses clone without namespace flags) works and is waitable.
            let child = libc::fork();
            if child == 0 {
                libc::_exit(7);
            }
            let mut status = 0;
            out[6] = if child > 0
                && libc::waitpid(child, &mut status, 0) == child
                && libc::WEXITSTATUS(status) == 7
            {
                0
            } else {
                -1
            };
            out[7] = outcome(libc::syscall(
                libc::SYS_personality,
                0x0040_0000, /* READ_IMPLIES_EXEC */
            ));
            out[8] = outcome(libc::syscall(
                libc::SYS_personality,
                0xffff_ffffu32 as libc::c_long,
            ));
            out[9] = outcome(libc::syscall(0x4000_0000 | libc::SYS_getpid));
        }
    });
    assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    let r = results.expect("child reported");
    assert_eq!(r[0], libc::EPERM, "unshare(CLONE_NEWNS)");
    assert_eq!(r[1], libc::EPERM, "keyctl");
    assert_eq!(r[2], libc::ENOSYS, "clone3");
    assert_eq!(r[3], libc::EPERM, "mount");
    assert_eq!(r[4], libc::EPERM, "clone(CLONE_NEWUSER)");
    assert_eq!(r[5], 0, "getpid");
    assert_eq!(r[6], 0, "fork");
    assert_eq!(r[7], libc::EPERM, "personality(READ_IMPLIES_EXEC)");
    assert_eq!(r[8], 0, "personality(query)");
    assert_eq!(r[9], libc::ENOSYS, "x32 getpid");
}

#[test]
fn custom_actions_take_effect() {
    let syscalls = vec![
        LinuxSyscallBuilder::default()
            .names(vec!["getppid".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(42u32)
            .build()
            .unwrap(),
        LinuxSyscallBuilder::default()
            .names(vec!["getpgrp".to_string()])
            .action(LinuxSeccompAction::ScmpActKillProcess)
            .build()
            .unwrap(),
    ];
    let profile = LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .syscalls(syscalls)
        .build()
        .unwrap();
    let program = seccomp::compile(&profile).unwrap();

    let (results, status) = in_filtered_child(&program, |out| {
        // SAFETY: argument-less system calls.
        unsafe {
            out[0] = outcome(libc::syscall(libc::SYS_getppid));
            out[1] = outcome(libc::syscall(libc::SYS_getuid));
        }
    });
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    let r = results.unwrap();
    assert_eq!(r[0], 42, "getppid with errnoRet 42");
    assert_eq!(r[1], 0, "getuid under default allow");

    let (results, status) = in_filtered_child(&program, |_| {
        // SAFETY: argument-less system call; the filter kills the process here.
        unsafe { libc::syscall(libc::SYS_getpgrp) };
    });
    assert_eq!(results, None);
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

#[test]
fn install_refuses_an_empty_program() {
    assert_eq!(
        seccomp::install(&Program::default()).err(),
        Some(nix::Error::EINVAL)
    );
}
