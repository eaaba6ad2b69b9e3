//! `nanokube runtime init`: the hidden subcommand the cloned child execs (from the sealed
//! memfd copy, see exe.rs). It is a fresh single-threaded process, so it may allocate and use
//! std freely. It reads its orders from the sync socket and either builds a container
//! (`container_init`) or runs an extra process inside a running one (`exec_init`).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use super::sync::{self, Channel, ExecConfig, InitConfig, Message};
use super::{mounts, process, seccomp, sys};

/// Environment variable naming the inherited sync socket.
pub const SYNC_FD_ENV: &str = "_NANOKUBE_SYNC_FD";
/// Environment variable giving how many descriptors after stdio the init keeps for the
/// container's process (`--preserve-fds`); absent means none.
pub const PRESERVE_FDS_ENV: &str = "_NANOKUBE_PRESERVE_FDS";

/// Errors inside the init (reported to the parent over the sync socket).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sync socket failed.
    #[error(transparent)]
    Sync(#[from] sync::Error),
    /// Building the filesystem failed.
    #[error(transparent)]
    Mounts(#[from] mounts::Error),
    /// Preparing the process failed.
    #[error(transparent)]
    Process(#[from] process::Error),
    /// A namespace, hostname or terminal step failed.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Installing the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(nix::Error),
    /// The parent sent something other than orders.
    #[error("unexpected message from the runtime")]
    Protocol,
    /// A createContainer or startContainer hook failed.
    #[error(transparent)]
    Hook(#[from] super::hooks::Error),
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

/// Entry point of the hidden subcommand. Never returns.
pub fn main() -> ! {
    let fd: RawFd = match std::env::var(SYNC_FD_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(fd) if fd > 2 => fd,
        _ => {
            eprintln!("nanokube runtime init: internal command, run by the runtime only");
            std::process::exit(2);
        }
    };
    let preserve = std::env::var(PRESERVE_FDS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    run(fd, None, None, preserve)
}

/// The init proper, on the sync socket `fd`: in a fresh `nanokube runtime init`, or (with
/// `trampoline`, see exe::Protection::InProcess) straight in the child cloned from a
/// single-threaded caller, which may pass the container's `orders` in memory (saving their
/// encoding and decoding). Never returns, not even by unwinding: a panic here must not run
/// the caller's code in this copy of it.
pub fn run(fd: RawFd, trampoline: Option<RawFd>, orders: Option<&Message>, preserve: u32) -> ! {
    // Nothing in the container may open /proc/<us>/exe or ptrace us (CVE-2019-5736).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // A write to a hook that exited early must be an error, not our death: ignore SIGPIPE,
    // as std does in an exec'd init (the clone's child reset it; `Prepared::exec` restores
    // the default for the user's program).
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Only stdio, the sync socket and the trampoline survive: anything else inherited could
    // be a host directory handed to the container (CVE-2024-21626).
    // Descriptors 3 .. 3+preserve were passed on purpose (`--preserve-fds`, $LISTEN_FDS).
    let mut keep = [fd, trampoline.unwrap_or(fd)];
    keep.sort_unstable();
    let mut from: libc::c_uint = 3 + preserve;
    for k in keep {
        if k as libc::c_uint >= from {
            // SAFETY: close_range over a range that excludes the fds we keep.
            unsafe { libc::close_range(from, (k - 1) as libc::c_uint, 0) };
            from = k as libc::c_uint + 1;
        }
    }
    // SAFETY: close_range above the last kept fd; fcntl on the socket we keep.
    unsafe {
        libc::close_range(from, libc::c_uint::MAX, 0);
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
    let outcome = std::panic::catch_unwind(|| {
        // SAFETY: fd is the inherited socket, owned by nothing else in this process.
        let mut chan = unsafe { Channel::from_raw(fd) };
        let result = match orders {
            Some(Message::Init(cfg)) => container_init(&mut chan, cfg, trampoline),
            Some(_) => Err(Error::Protocol),
            None => match chan.recv() {
                Ok((Message::Init(cfg), _)) => container_init(&mut chan, &cfg, trampoline),
                Ok((Message::Exec(cfg), fds)) => exec_init(&mut chan, *cfg, fds, trampoline),
                Ok(_) => Err(Error::Protocol),
                Err(e) => Err(e.into()),
            },
        };
        let err = match result {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = chan.send(&Message::Error {
            message: err.to_string(),
        });
    });
    exit(if outcome.is_ok() { 1 } else { 101 })
}

/// Ends the init without atexit handlers or std's stdout flush: in an init cloned from the
/// caller they would belong to the caller.
fn exit(code: i32) -> ! {
    // SAFETY: _exit has no preconditions.
    unsafe { libc::_exit(code) }
}

fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }
}

/// The clone(2) flags for the namespaces the spec wants created (those without a path).
/// The cgroup namespace is left out: the init unshares it after the parent has moved it into
/// its cgroup, so the namespace's root is the container's own cgroup. So is the user
/// namespace: the init unshares it once the container is built (`enter_user_namespace`).
pub fn clone_flags(spec: &Spec) -> libc::c_int {
    let mut flags = 0;
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        let later = matches!(
            ns.typ(),
            LinuxNamespaceType::Cgroup | LinuxNamespaceType::User
        );
        if ns.path().is_none() && !later {
            flags |= ns_flag(ns.typ());
        }
    }
    flags
}

fn setns(fd: &impl AsRawFd, flag: libc::c_int, what: &str) -> Result<(), Error> {
    // SAFETY: valid namespace fd and flag.
    sys::cvt(unsafe { libc::setns(fd.as_raw_fd(), flag) })
        .map_err(sys_err(format!("setns {what}")))?;
    Ok(())
}

/// Joins cgroup v1 hierarchies by writing "0" to their `tasks` files (this single-threaded
/// process moving itself).
fn join_tasks(files: &[std::path::PathBuf]) -> Result<(), Error> {
    for f in files {
        std::fs::write(f, "0").map_err(sys_err(format!("join cgroup {}", f.display())))?;
    }
    Ok(())
}

fn container_init(
    chan: &mut Channel,
    cfg: &InitConfig,
    trampoline: Option<RawFd>,
) -> Result<std::convert::Infallible, Error> {
    join_tasks(&cfg.join)?;
    if !cfg.no_new_keyring {
        join_session_keyring(&cfg.id)?;
    }
    let spec = &cfg.spec;
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    // Join the namespaces the spec names by path (a pod's shared net/ipc/uts); mount last,
    // since it changes how the other paths resolve.
    let mut joined = Vec::new();
    // (A pid namespace given by path was entered at clone time: see spawn::PidNsGuard.)
    for ns in namespaces
        .iter()
        .filter(|n| n.path().is_some() && n.typ() != LinuxNamespaceType::Pid)
    {
        let path = ns.path().as_ref().expect("filtered");
        let fd = sys::open(path, libc::O_RDONLY)
            .map_err(sys_err(format!("open namespace {}", path.display())))?;
        joined.push((ns.typ(), fd, path.display().to_string()));
    }
    joined.sort_by_key(|(t, _, _)| *t == LinuxNamespaceType::Mount);
    for (t, fd, path) in &joined {
        setns(fd, ns_flag(*t), path)?;
    }
    drop(joined);
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let new_cgroup_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none());
    let mut joined = false;
    // Without a cgroup namespace, the container sees its own cgroup directories (bound),
    // opened now while the host is visible.
    let has_cgroup_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup);
    let host_cgroups = if has_cgroup_ns {
        Vec::new()
    } else {
        mounts::open_host_cgroups(&cfg.cgroup_dirs)?
    };
    if has(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).map_err(|e| Error::Sys {
                what: "sethostname".into(),
                source: e.into(),
            })?;
        }
        if let Some(d) = spec.domainname() {
            // SAFETY: pointer and length describe `d`.
            sys::cvt(unsafe { libc::setdomainname(d.as_ptr() as *const libc::c_char, d.len()) })
                .map_err(sys_err("setdomainname"))?;
        }
    }
    // Grab the fifo before pivot_root hides the host.
    let fifo = sys::open(&cfg.fifo, libc::O_PATH).map_err(sys_err("open exec fifo"))?;
    let process = spec.process().clone().expect("validated");
    let hook_state;
    let deferred = if has(LinuxNamespaceType::Mount) {
        let mut hook = || {
            join_cgroup(chan, new_cgroup_ns, &mut joined)
                .map_err(|e| mounts::Error::Refused(e.to_string()))
        };
        let deferred = mounts::prepare_rootfs(spec, &cfg.rootfs, &host_cgroups, &mut hook)?;
        hook_state = container_hooks(chan, cfg, new_cgroup_ns, &mut joined)?;
        if cfg.no_pivot {
            mounts::move_root(&cfg.rootfs)?;
        } else {
            mounts::pivot(&cfg.rootfs)?;
        }
        deferred
    } else {
        hook_state = container_hooks(chan, cfg, new_cgroup_ns, &mut joined)?;
        let c = sys::cstr(&cfg.rootfs).map_err(sys_err("rootfs"))?;
        // SAFETY: valid C strings; without a mount namespace chroot is all we can do.
        sys::cvt(unsafe { libc::chroot(c.as_ptr()) }).map_err(sys_err("chroot"))?;
        // SAFETY: valid C string.
        sys::cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(sys_err("chdir /"))?;
        Vec::new()
    };
    let console = if process.terminal().unwrap_or(false) {
        Some(setup_console(
            &process,
            pty_owner(spec, process.user().uid()),
        )?)
    } else {
        None
    };
    // Masking goes last among the mounts, after the console bind is verified (CVE-2025-52565).
    if has(LinuxNamespaceType::Mount) {
        mounts::mask_paths(linux.masked_paths().as_deref().unwrap_or(&[]))?;
        mounts::readonly_paths(linux.readonly_paths().as_deref().unwrap_or(&[]))?;
    }
    // Everything above overlapped the parent's cgroup migration; from here on we need it.
    join_cgroup(chan, new_cgroup_ns, &mut joined)?;
    if has(LinuxNamespaceType::Mount) {
        mounts::mount_deferred(&deferred, &host_cgroups)?;
        mounts::readonly_dev(spec)?;
    }
    mounts::make_cwd(process.cwd())?;
    let readonly_root = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    if has(LinuxNamespaceType::Mount) && readonly_root {
        mounts::readonly_root()?;
    }
    let new_user_ns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let mut ask = |step: Step| match step {
        Step::EnterUser if new_user_ns => enter_user_namespace(chan),
        Step::EnterUser => Ok(()),
        Step::HandOver(listener) => hand_over_listener(chan, listener),
    };
    let prepared = prepare_process(&process, cfg.seccomp.as_ref(), trampoline, &mut ask)?;
    chan.send_with_fds(
        &Message::Ready { pid: 1 },
        console.as_ref().map(|c| c.as_raw_fd()).as_slice(),
    )?;
    drop(console);
    // Block until `start` opens the fifo for reading, then tell it we are about to exec.
    let writer = sys::open(Path::new(&sys::fd_path(&fifo)), libc::O_WRONLY)
        .map_err(sys_err("open exec fifo"))?;
    sys::write_fd(&writer, b"0").map_err(sys_err("write exec fifo"))?;
    drop(writer);
    drop(fifo);
    let start_hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_deref());
    let started = match (start_hooks, &hook_state) {
        (Some(hooks), Some(state)) => {
            let state = super::hooks::with_status(state, "created");
            super::hooks::run("startContainer", hooks, &state).map_err(Error::from)
        }
        _ => Ok(()),
    };
    let err = match started {
        Ok(()) => prepared.exec(),
        Err(e) => e,
    };
    // Nobody reads the sync socket once `start` has returned: say why on the container's
    // stderr, as runc does (`exec /run.sh: no such file or directory`, a failed
    // startContainer hook).
    let _ = writeln!(std::io::stderr(), "{err}");
    Err(err)
}

/// Gives the container a session keyring of its own (named `_ses.<id>`, as runc names it),
/// so it cannot read or add keys in the caller's. A kernel without keyrings (ENOSYS) or a
/// seccomp-confined caller (EPERM) leaves it sharing, as runc tolerates too.
fn join_session_keyring(id: &str) -> Result<(), Error> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(format!("_ses.{id}")).map_err(|_| Error::Protocol)?;
    // SAFETY: keyctl with a valid C string; the kernel copies the name.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return Err(Error::Sys {
                what: "join a new session keyring".into(),
                source: err,
            });
        }
    }
    Ok(())
}

/// Unshares a new user namespace, has the runtime write its uid and gid maps, and becomes its
/// root. It comes last, once the filesystem, devices, cgroups and sysctls are built with the
/// host's privileges, so none of that needs special cases; the other namespaces therefore stay
/// owned by the host's user namespace, and the container's capabilities apply only to its
/// own user namespace (uid isolation: its root is an unprivileged uid on the host).
/// What [`prepare_process`] needs its caller for, midway.
enum Step {
    /// Enter the container's user namespace (after rlimits, before the user is set).
    EnterUser,
    /// The seccomp filter is in and hands syscalls to an agent: this is its listener.
    HandOver(OwnedFd),
}

/// Gives the seccomp listener to the runtime, which passes it on to the agent at
/// listenerPath, and waits until it has: syscalls the filter hands over block until then.
fn hand_over_listener(chan: &mut Channel, listener: OwnedFd) -> Result<(), Error> {
    chan.send_with_fds(&Message::SeccompListener, &[listener.as_raw_fd()])?;
    drop(listener);
    match chan.recv()? {
        (Message::SeccompListenerDelivered, _) => Ok(()),
        // A runtime that cannot reach the agent reports that itself and stops us.
        _ => Err(Error::Protocol),
    }
}

fn enter_user_namespace(chan: &mut Channel) -> Result<(), Error> {
    // SAFETY: unshare with a namespace flag; this process has one thread.
    sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWUSER) })
        .map_err(sys_err("unshare user namespace"))?;
    chan.send(&Message::MapIds)?;
    match chan.recv()? {
        (Message::IdsMapped, _) => {}
        _ => return Err(Error::Protocol),
    }
    become_root()
}

/// setresgid/setresuid to 0 of the user namespace we just entered (mapped by now).
fn become_root() -> Result<(), Error> {
    // SAFETY: integer arguments.
    sys::cvt(unsafe { libc::setresgid(0, 0, 0) }).map_err(sys_err("setresgid 0"))?;
    // SAFETY: integer arguments.
    sys::cvt(unsafe { libc::setresuid(0, 0, 0) }).map_err(sys_err("setresuid 0"))?;
    Ok(())
}

/// With hooks (`InitConfig::hooks`), before pivot_root: waits while the runtime runs its
/// createRuntime hooks, takes the state document, and runs the createContainer hooks here,
/// in the container's namespaces with the host's paths still visible. Returns the state for
/// startContainer.
fn container_hooks(
    chan: &mut Channel,
    cfg: &InitConfig,
    new_cgroup_ns: bool,
    joined: &mut bool,
) -> Result<Option<String>, Error> {
    if !cfg.hooks {
        return Ok(None);
    }
    join_cgroup(chan, new_cgroup_ns, joined)?;
    let state = match chan.recv()? {
        (Message::HookState { state }, _) => state,
        _ => return Err(Error::Protocol),
    };
    if let Some(hooks) = cfg
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_deref())
    {
        super::hooks::run_in("createContainer", hooks, &state, &cfg.rootfs)?;
    }
    Ok(Some(state))
}

/// Waits (once) for the parent's word that we sit in our cgroup, then makes the cgroup
/// namespace, whose root is thereby the container's own cgroup.
fn join_cgroup(chan: &mut Channel, new_ns: bool, done: &mut bool) -> Result<(), Error> {
    if *done {
        return Ok(());
    }
    *done = true;
    match chan.recv()? {
        (Message::CgroupJoined, _) => {}
        _ => return Err(Error::Protocol),
    }
    if new_ns {
        // SAFETY: unshare with a namespace flag.
        sys::cvt(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) })
            .map_err(sys_err("unshare cgroup namespace"))?;
    }
    Ok(())
}

/// What is left to do at the very end, after which only execve(2) runs.
struct Prepared {
    /// Exec through this sealed trampoline (an init that runs the host's binary).
    trampoline: Option<RawFd>,
    program: std::ffi::CString,
    args: Vec<std::ffi::CString>,
    env: Vec<std::ffi::CString>,
}

impl Prepared {
    fn exec(self) -> Error {
        // The Rust runtime ignored SIGPIPE in this process and a caller may have blocked
        // signals; the user's program must start with the defaults (ignored and blocked
        // signals survive execve).
        // SAFETY: plain signal-state calls with valid arguments.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        }
        // The trampoline could only say "cannot execute": name a missing interpreter here.
        let path = Path::new(std::ffi::OsStr::from_bytes(self.program.as_bytes()));
        if let Err(e) = process::exec_precheck(path) {
            return e.into();
        }
        let err = match self.trampoline {
            Some(t) => super::trampoline::exec(t, &self.program, &self.args, &self.env),
            None => process::exec(&self.program, &self.args, &self.env),
        };
        process::Error::Exec {
            path: path.display().to_string(),
            source: err,
        }
        .into()
    }
}

/// User, caps, rlimits, cwd and seccomp, in the order the kernel allows: with no_new_privs
/// the filter goes in last (it may then forbid what setup still needs); without it the filter
/// needs CAP_SYS_ADMIN, so it goes in before capabilities are dropped. Either way it is in
/// before the init reports ready, as runc installs it: the startContainer hooks run under
/// it, and an agent's listener can still reach the runtime that waits for that report.
fn prepare_process(
    process: &Process,
    filter: Option<&sync::Filter>,
    trampoline: Option<RawFd>,
    ask: &mut dyn FnMut(Step) -> Result<(), Error>,
) -> Result<Prepared, Error> {
    let env = process::finish_env(process.env().as_deref().unwrap_or(&[]), || {
        process::home_of(process.user().uid())
    });
    let args: Vec<String> = process.args().clone().unwrap_or_default();
    process::set_rlimits(process)?;
    // After rlimits: inside a user namespace a hard limit could not be raised any more.
    ask(Step::EnterUser)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    let filter = filter.map(sync::filter_from_wire);
    let mut install = |p: &seccomp::Program| -> Result<(), Error> {
        if let Some(listener) = seccomp::install(p).map_err(Error::Seccomp)? {
            ask(Step::HandOver(listener))?;
        }
        Ok(())
    };
    if !nnp {
        if let Some(p) = &filter {
            install(p)?;
        }
    }
    // chdir before dropping privileges, as runc does (a WORKDIR only root can enter works
    // for any user); retried as the user if root was refused.
    let cwd_done = process::enter_cwd_early(process.cwd())?;
    process::set_user_and_caps(process)?;
    if !cwd_done {
        process::chdir(process.cwd())?;
    }
    process::check_cwd(process.cwd())?;
    let program = process::find_program(&args[0], &env)?;
    if nnp {
        process::set_no_new_privs()?;
    }
    if nnp {
        if let Some(p) = &filter {
            install(p)?;
        }
    }
    Ok(Prepared {
        trampoline,
        program,
        args: process::cstrings(&args),
        env: process::cstrings(&env),
    })
}

const TIOCGPTPEER: libc::c_ulong = 0x5441;
const UNIX98_PTY_SLAVE_MAJOR: u32 = 136;

/// Creates the container's terminal in its own devpts, verifies the peer really is a pty of
/// that devpts before binding it to /dev/console (CVE-2025-52565), and makes it our stdio.
/// Returns the master, which goes to the console socket.
fn setup_console(process: &Process, owner: Option<u32>) -> Result<OwnedFd, Error> {
    let (master, peer) = open_pty(process, owner)?;
    let console = sys::open(
        Path::new("/dev/console"),
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CREAT,
    );
    let console = match console {
        Ok(fd) => fd,
        Err(_) => {
            // O_PATH ignores O_CREAT; create the file first, then take a path handle.
            std::fs::File::create("/dev/console").map_err(sys_err("create /dev/console"))?;
            sys::open(Path::new("/dev/console"), libc::O_PATH | libc::O_NOFOLLOW)
                .map_err(sys_err("open /dev/console"))?
        }
    };
    sys::mount(
        Some(&sys::fd_path(&peer)),
        &sys::fd_path(&console),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(sys_err("bind /dev/console"))?;
    make_controlling_terminal(&peer)?;
    Ok(master)
}

/// A new pty from the devpts mounted at /dev/pts (the container's, after pivot_root or setns),
/// with its peer opened through the master (TIOCGPTPEER, no path lookup to race) and verified
/// to be a pty slave on devpts.
/// The host uid that owns the container's terminal: its user's, as with runc, so a
/// non-root process may reopen and chmod its own tty. With a new user namespace that is the
/// uid the namespace maps it to (we are still outside it); None if it maps to nothing.
fn pty_owner(spec: &Spec, uid: u32) -> Option<u32> {
    let linux = spec.linux().as_ref();
    let new_userns = linux
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    if !new_userns {
        return Some(uid);
    }
    super::spec::host_id(linux?.uid_mappings(), uid)
}

fn open_pty(process: &Process, owner: Option<u32>) -> Result<(OwnedFd, OwnedFd), Error> {
    let master = sys::open(Path::new("/dev/pts/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
        .map_err(sys_err("open /dev/pts/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to int.
    sys::cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .map_err(sys_err("/dev/pts/ptmx is not a pty master: unlockpt"))?;
    // SAFETY: integer argument; returns a new fd.
    let peer = sys::cvt(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
    .map_err(sys_err("open pty peer"))?;
    // SAFETY: fresh fd we own.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    let st = sys::fstat(&peer).map_err(sys_err("fstat pty"))?;
    let major = libc::major(st.st_rdev);
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR
        || !(UNIX98_PTY_SLAVE_MAJOR..UNIX98_PTY_SLAVE_MAJOR + 8).contains(&major)
        || sys::fs_type(&peer).map_err(sys_err("statfs pty"))? != libc::DEVPTS_SUPER_MAGIC
    {
        return Err(Error::Sys {
            what: "pty peer is not a devpts terminal".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    if let Some(uid) = owner {
        // The group stays devpts' (its gid= option, tty by convention), as runc leaves it.
        // SAFETY: a valid fd; -1 keeps the group.
        sys::cvt(unsafe { libc::fchown(peer.as_raw_fd(), uid, u32::MAX) })
            .map_err(sys_err("chown pty"))?;
    }
    if let Some(size) = process.console_size() {
        let ws = libc::winsize {
            ws_row: size.height() as u16,
            ws_col: size.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ takes a pointer to winsize.
        sys::cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
            .map_err(sys_err("set console size"))?;
    }
    Ok((master, peer))
}

/// The exec'd child's last word when its program cannot start: the reason, to the helper.
fn report_and_exit(pipe: &OwnedFd, message: &str) -> ! {
    let _ = sys::write_fd(pipe, message.as_bytes());
    // SAFETY: _exit skips atexit handlers that belong to the parent.
    unsafe { libc::_exit(255) }
}

/// A pipe whose ends close at execve.
fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    sys::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).map_err(sys_err("pipe"))?;
    // SAFETY: both fds were just created and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// New session with `peer` as its controlling terminal and as stdin, stdout and stderr.
fn make_controlling_terminal(peer: &OwnedFd) -> Result<(), Error> {
    // SAFETY: setsid has no arguments; a new session lets the pty become our terminal.
    unsafe { libc::setsid() };
    // SAFETY: valid fd; TIOCSCTTY takes an integer.
    sys::cvt(unsafe { libc::ioctl(peer.as_raw_fd(), libc::TIOCSCTTY, 0) })
        .map_err(sys_err("set controlling terminal"))?;
    for target in 0..3 {
        // SAFETY: valid fds.
        sys::cvt(unsafe { libc::dup2(peer.as_raw_fd(), target) }).map_err(sys_err("dup2 pty"))?;
    }
    Ok(())
}

/// Runs an extra process in a running container: join its namespaces (fds from the parent,
/// in order), fork so the child lands in the container's pid namespace, set it up like the
/// container's process and exec. This process stays outside to report the exit status.
fn exec_init(
    chan: &mut Channel,
    cfg: ExecConfig,
    fds: Vec<OwnedFd>,
    trampoline: Option<RawFd>,
) -> Result<std::convert::Infallible, Error> {
    if fds.len() != cfg.namespaces.len() {
        return Err(Error::Protocol);
    }
    join_tasks(&cfg.join)?;
    let mut user_ns = None;
    for (name, fd) in cfg.namespaces.iter().zip(&fds) {
        if name == "user" {
            // Joined last, by the process itself: see `enter_user` below.
            user_ns = Some(fd.as_raw_fd());
            continue;
        }
        let flag = match name.as_str() {
            "ipc" => libc::CLONE_NEWIPC,
            "uts" => libc::CLONE_NEWUTS,
            "net" => libc::CLONE_NEWNET,
            "pid" => libc::CLONE_NEWPID,
            "mnt" => libc::CLONE_NEWNS,
            "cgroup" => libc::CLONE_NEWCGROUP,
            _ => return Err(Error::Protocol),
        };
        setns(fd, flag, name)?;
    }
    // A terminal comes from the container's own devpts, now that we are in its mount namespace.
    let pty = if cfg.process.terminal().unwrap_or(false) {
        // Inside a joined user namespace the container's uid is another host uid, which the
        // runtime looked up in the init's uid_map.
        let owner = if cfg.namespaces.iter().any(|n| n == "user") {
            cfg.terminal_uid
        } else {
            Some(cfg.process.user().uid())
        };
        Some(open_pty(&cfg.process, owner)?)
    } else {
        None
    };
    // The child reports a failure to start through this pipe; it closes on a successful
    // execve (O_CLOEXEC), so EOF with nothing read means the program runs. As runc, the caller
    // learns of a program that cannot run from `exec` itself, also with --detach.
    let (report_r, report_w) = cloexec_pipe()?;
    // SAFETY: this process is single-threaded, so fork is safe; the child only runs our code.
    let child = sys::cvt(unsafe { libc::fork() }).map_err(sys_err("fork"))?;
    if child == 0 {
        drop(report_r);
        if let Some((_, peer)) = &pty {
            if let Err(e) = make_controlling_terminal(peer) {
                report_and_exit(&report_w, &e.to_string());
            }
        }
        drop(pty);
        // The exec'd helper (our parent) reads nothing from the channel until we exec or
        // fail, so the listener goes to the runtime on it directly.
        let mut ask = |step: Step| match (step, user_ns) {
            (Step::EnterUser, Some(fd)) => {
                // SAFETY: a namespace fd we hold (`fds` lives until this process execs).
                sys::cvt(unsafe { libc::setns(fd, libc::CLONE_NEWUSER) })
                    .map_err(sys_err("setns user"))?;
                become_root()
            }
            (Step::EnterUser, None) => Ok(()),
            (Step::HandOver(listener), _) => hand_over_listener(chan, listener),
        };
        let result = prepare_process(&cfg.process, cfg.seccomp.as_ref(), trampoline, &mut ask)
            .map(|p| p.exec());
        let err = match result {
            Ok(e) | Err(e) => e,
        };
        report_and_exit(&report_w, &err.to_string());
    }
    drop(report_w);
    drop(fds);
    let mut report = String::new();
    let _ = std::fs::File::from(report_r).read_to_string(&mut report);
    if !report.is_empty() {
        let _ = sys::waitpid(child);
        chan.send(&Message::Error {
            message: format!("unable to start container process: {report}"),
        })?;
        exit(0);
    }
    let master = pty.map(|(master, _peer)| master);
    chan.send_with_fds(
        &Message::Ready { pid: child },
        master.as_ref().map(|m| m.as_raw_fd()).as_slice(),
    )?;
    drop(master);
    if cfg.detach {
        // Leaving now hands the process to the caller's subreaper (or the host's init).
        exit(0);
    }
    let status = sys::waitpid(child).map_err(sys_err("wait"))?;
    chan.send(&Message::Exited { status })?;
    exit(0);
}
