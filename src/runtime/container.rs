//! The runtime's library API, used by the CLI and (later) the kubelet: create, start, state,
//! kill, delete, list, exec, ps, wait. Everything here runs in the caller's process, which
//! may be multi-threaded; the only fork is in spawn.rs.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::state::{self, OciState, Saved, Status};
use super::sync::{self, Channel, ExecConfig, InitConfig, Message};
use super::{cgroups, exe, hooks, init, seccomp, spawn, spec, sys};

/// Errors of container operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bundle or spec is unusable.
    #[error(transparent)]
    Spec(#[from] spec::Error),
    /// Container state could not be read or written (includes unknown and duplicate ids).
    #[error(transparent)]
    State(#[from] state::Error),
    /// The container's cgroup could not be created, joined or removed.
    #[error("cgroup: {0}")]
    Cgroup(#[from] cgroups::Error),
    /// The seccomp profile does not compile.
    #[error("seccomp: {0}")]
    Seccomp(#[from] seccomp::Error),
    /// The sealed copy of the runtime binary could not be made.
    #[error(transparent)]
    Exe(#[from] exe::Error),
    /// Talking to the container's init failed.
    #[error(transparent)]
    Sync(#[from] sync::Error),
    /// The container's init reported a failure while building the container.
    #[error("{0}")]
    Init(String),
    /// A createRuntime or prestart hook failed.
    #[error(transparent)]
    Hook(#[from] hooks::Error),
    /// An `update` request is malformed or cannot be applied.
    #[error(transparent)]
    Update(#[from] super::update::Error),
    /// A system call in the caller failed; `what` names the step.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// An extra process cannot join the cgroup it is to run in (`exec --cgroup`), in the
    /// words runc uses.
    #[error("adding pid to cgroups: {}: {reason}", path.join("cgroup.procs").display())]
    JoinCgroup { path: PathBuf, reason: String },
    /// The operation needs another status (e.g. start on a running container).
    #[error("container {id} is {status}: {message}")]
    WrongStatus {
        id: String,
        status: Status,
        message: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

fn sys_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

/// Descriptors to use as the container's stdin, stdout and stderr; `None` inherits the
/// caller's.
#[derive(Debug, Default)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Stdio {
    fn raw(&self) -> [RawFd; 3] {
        let r = |f: &Option<OwnedFd>| f.as_ref().map_or(-1, |f| f.as_raw_fd());
        [r(&self.stdin), r(&self.stdout), r(&self.stderr)]
    }
}

#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The bundle directory (holds config.json unless `spec` is given, and the rootfs if
    /// root.path is relative).
    pub bundle: PathBuf,
    /// Use this spec instead of reading bundle/config.json.
    pub spec: Option<Spec>,
    pub stdio: Stdio,
    /// With process.terminal: the unix socket that receives the pty master (SCM_RIGHTS).
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// Apply the built-in default seccomp profile when the spec has none.
    pub default_seccomp: bool,
    /// Move the rootfs onto / and chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Keep the caller's session keyring (else the container joins a new one).
    pub no_new_keyring: bool,
    /// Pass the caller's descriptors 3 .. 3+N on to the container's process.
    pub preserve_fds: u32,
    /// Added to process.env (e.g. LISTEN_FDS for socket-activated programs).
    pub extra_env: Vec<String>,
}

#[derive(Debug, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's process.env.
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// uid and gid; the container's process.user when `None`.
    pub user: Option<(u32, u32)>,
    /// Give the process a new terminal from the container's devpts; its master comes back in
    /// `ExecProcess::pty_master` (stdio is then ignored).
    pub tty: bool,
    pub stdio: Stdio,
    /// The whole process, as runc's `exec --process` takes it; the fields above (but stdio)
    /// are then ignored.
    pub process: Option<oci_spec::runtime::Process>,
    /// Do not wait for the process: it is reparented to the caller's subreaper, which reaps
    /// it (containerd's shim, conmon). `ExecProcess::wait` then has nothing to report.
    pub detach: bool,
    /// Which cgroup below the container's the process joins (`exec --cgroup`).
    pub cgroup: cgroups::SubCgroups,
    /// Pass the caller's descriptors 3 .. 3+N on to the process.
    pub preserve_fds: u32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Raw wait(2) status.
    pub raw: i32,
    /// The code a shell would report: the exit code, or 128+N for signal N.
    pub code: i32,
    pub signal: Option<i32>,
    /// The container's cgroup saw an OOM kill.
    pub oom_killed: bool,
}

impl ExitStatus {
    fn from_raw(raw: i32, oom_killed: bool) -> ExitStatus {
        ExitStatus {
            raw,
            code: sys::exit_code(raw),
            signal: libc::WIFSIGNALED(raw).then(|| libc::WTERMSIG(raw)),
            oom_killed,
        }
    }
}

/// A container created by this process (which is therefore its init's parent).
#[derive(Debug)]
pub struct Created {
    pub id: String,
    pub pid: i32,
    /// The terminal's master side, when process.terminal is set and no console socket was
    /// given: the caller relays it (a foreground `run` on the caller's own terminal).
    pub pty_master: Option<OwnedFd>,
}

/// An exec'd process; `wait` returns its status.
#[derive(Debug)]
pub struct ExecProcess {
    /// The process's pid in the caller's pid namespace.
    pub pid: i32,
    /// The terminal's master side when `ExecOptions::tty` was set.
    pub pty_master: Option<OwnedFd>,
    helper: i32,
    chan: Channel,
}

impl ExecProcess {
    pub fn wait(mut self) -> Result<ExitStatus> {
        let result = match self.chan.recv() {
            Ok((Message::Exited { status }, _)) => Ok(ExitStatus::from_raw(status, false)),
            Ok((Message::Error { message }, _)) => Err(Error::Init(message)),
            Ok(_) => Err(Error::Init("unexpected message from exec helper".into())),
            Err(e) => Err(e.into()),
        };
        if self.helper > 0 {
            let _ = sys::waitpid(self.helper);
        }
        result
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Channel({})", self.raw_fd())
    }
}

/// The runtime over one state root directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub root: PathBuf,
    /// How the runtime binary is protected inside containers (see exe.rs).
    pub protection: exe::Protection,
    /// The nanokube executable that becomes each container's init; `None` means this
    /// process's own binary (right for the CLI and the agent; tests name the real binary).
    pub binary: Option<PathBuf>,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new(state::DEFAULT_ROOT)
    }
}

/// A SIGKILL sent to a paused container stays pending while its tasks are frozen (v1
/// freezer): thaw them so it lands, as runc does. Other signals wait for `resume`.
fn thaw_for_kill(saved: &Saved, status: Status, signal: i32) {
    if status == Status::Paused && signal == libc::SIGKILL {
        if let Some(cg) = cgroup_open(&saved.cgroup_path) {
            let _ = cg.thaw();
        }
    }
}

fn default_cgroup_path(id: &str) -> String {
    format!("/nanokube/{id}")
}

fn cgroup_create(path: &str, spec: &Spec) -> Result<Option<cgroups::Cgroup>> {
    let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
    let cgroup = cgroups::Cgroup::create(path, resources)?;
    // Sharing a cgroup with other processes mixes their limits and accounting: allowed, as
    // runc 1.1 allows it, with its warning.
    if let Ok(pids) = cgroup.pids() {
        if !pids.is_empty() {
            super::warn(&format!(
                "container's cgroup is not empty: {} process(es) found",
                pids.len()
            ));
        }
    }
    Ok(Some(cgroup))
}

/// How a new process gets into a cgroup cheaply: born into its v2 directory (an fd for
/// clone3 CLONE_INTO_CGROUP), and joining each v1 hierarchy itself (`tasks` files for the
/// init). Moving a live process from outside costs an RCU grace period (~5-9 ms here).
#[derive(Default)]
struct CgroupEntry {
    /// The v2 directory, open and by name.
    v2: Option<(OwnedFd, PathBuf)>,
    v1_tasks: Vec<PathBuf>,
    /// Where to go instead when the v2 directory refuses processes (EBUSY: it has
    /// children with domain controllers on, so only leaves take processes): the init's own
    /// cgroup, as runc falls back for an exec.
    v2_fallback: Option<(OwnedFd, PathBuf)>,
}

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

impl CgroupEntry {
    /// Files cgroup directory `dir`, open as `fd`, under the hierarchy it belongs to.
    fn add(&mut self, fd: OwnedFd, dir: PathBuf) {
        if sys::fs_type(&fd).ok() == Some(CGROUP2_SUPER_MAGIC) {
            self.v2 = Some((fd, dir));
        } else {
            self.v1_tasks.push(dir.join("tasks"));
        }
    }
}

fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    sys::open(dir, libc::O_DIRECTORY | libc::O_RDONLY)
}

fn cgroup_entry(cg: &cgroups::Cgroup) -> CgroupEntry {
    let mut entry = CgroupEntry::default();
    for dir in cg.dirs() {
        if let Ok(fd) = open_dir(&dir) {
            entry.add(fd, dir);
        }
    }
    entry
}

/// The entry of an exec'd process placed by `sub` in container cgroup `cg` whose init is
/// `init_pid`: every directory must exist (unlike at create, where the runtime made them).
fn exec_entry(
    cg: &cgroups::Cgroup,
    sub: &cgroups::SubCgroups,
    init_pid: i32,
) -> Result<CgroupEntry> {
    let mut entry = CgroupEntry::default();
    for dir in cg.dirs_for(sub)? {
        let fd = sys::open(&dir.join("cgroup.procs"), libc::O_PATH)
            .and_then(|_| open_dir(&dir))
            .map_err(|e| Error::JoinCgroup {
                path: dir.clone(),
                reason: super::process::errno_text(&e),
            })?;
        entry.add(fd, dir);
    }
    // Only an exec without --cgroup may land elsewhere than asked.
    if *sub == cgroups::SubCgroups::Container {
        entry.v2_fallback =
            cgroups::v2_dir_of(init_pid).and_then(|dir| Some((open_dir(&dir).ok()?, dir)));
    }
    Ok(entry)
}

/// Clones with `plan` straight into the cgroup of `entry` (see `cgroup_entry`); returns
/// the pid and the v1 `tasks` files the new process must write itself (empty if we had to
/// move it the slow way).
fn spawn_into(
    plan: &spawn::Plan,
    flags: libc::c_int,
    entry: Option<&CgroupEntry>,
) -> Result<(i32, Vec<PathBuf>)> {
    let Some(entry) = entry else {
        let (pid, _) = plan.spawn(flags, None).map_err(sys_err("clone"))?;
        return Ok((pid, Vec::new()));
    };
    let busy = |e: &std::io::Error| e.raw_os_error() == Some(libc::EBUSY);
    let refused = |dir: &Path, e: &std::io::Error| Error::JoinCgroup {
        path: dir.to_path_buf(),
        reason: super::process::errno_text(e),
    };
    let mut v2 = entry.v2.as_ref();
    let spawned = match plan.spawn(flags, v2.map(|(f, _)| f.as_raw_fd())) {
        Err(e) if busy(&e) && entry.v2_fallback.is_some() => {
            v2 = entry.v2_fallback.as_ref();
            plan.spawn(flags, v2.map(|(f, _)| f.as_raw_fd()))
        }
        other => other,
    };
    let (pid, born_in) = spawned.map_err(|e| match v2 {
        Some((_, dir)) if busy(&e) => refused(dir, &e),
        _ => Error::Sys {
            what: "clone".into(),
            source: e,
        },
    })?;
    if let (Some((_, dir)), false) = (v2, born_in) {
        // No clone3: move it from outside. (The v1 tasks of a hybrid host go with it: a v2
        // directory here is then only the hybrid's process-tracking tree.)
        let mut moved = std::fs::write(dir.join("cgroup.procs"), pid.to_string());
        if let (Err(e), Some((_, other))) = (&moved, &entry.v2_fallback) {
            if busy(e) {
                moved = std::fs::write(other.join("cgroup.procs"), pid.to_string());
            }
        }
        if let Err(e) = moved {
            spawn::kill_and_reap(pid);
            return Err(refused(dir, &e));
        }
    }
    Ok((pid, entry.v1_tasks.clone()))
}

/// Writes the uid and gid maps of the user namespace process `pid` has just unshared (each
/// file in one write, as the kernel requires). We are root on the host, so any mapping of
/// host ids is allowed and setgroups stays usable inside.
fn write_id_maps(
    pid: i32,
    uids: &[oci_spec::runtime::LinuxIdMapping],
    gids: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<()> {
    for (file, maps) in [("uid_map", uids), ("gid_map", gids)] {
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        std::fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(sys_err(format!("write {file}")))?;
    }
    Ok(())
}

fn cgroup_open(path: &Option<String>) -> Option<cgroups::Cgroup> {
    path.as_deref().and_then(|p| cgroups::Cgroup::open(p).ok())
}

fn compile_seccomp(spec: &Spec, default: bool) -> Result<Option<sync::Filter>> {
    let profile = match spec.linux().as_ref().and_then(|l| l.seccomp().clone()) {
        Some(p) => p,
        None if default => seccomp::default_profile(),
        None => return Ok(None),
    };
    Ok(Some(sync::filter_to_wire(&seccomp::compile(&profile)?)))
}

/// Undoes a half-made container when create fails part way.
struct Cleanup<'a> {
    root: &'a Path,
    id: &'a str,
    pid: Option<i32>,
    cgroup: Option<cgroups::Cgroup>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.pid {
            spawn::kill_and_reap(pid);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.destroy();
        }
        let _ = state::remove_dir(self.root, self.id);
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            protection: exe::Protection::default(),
            binary: None,
        }
    }

    /// Builds the container up to the point just before the user's program: namespaces,
    /// filesystem, process attributes. The init then waits for `start`.
    pub fn create(&self, id: &str, opts: CreateOptions) -> Result<Created> {
        state::check_id(id)?;
        let bundle = std::path::absolute(&opts.bundle).map_err(sys_err("bundle path"))?;
        // The state dir keeps the config for `exec`: the bundle's own text when we read it
        // (already checked to parse), else the caller's spec encoded.
        let (mut spec, mut text) = match opts.spec {
            Some(s) => (s, None),
            None => {
                let text = spec::read(&bundle)?;
                (spec::parse(&text)?, Some(text))
            }
        };
        if !opts.extra_env.is_empty() {
            if let Some(p) = spec.process_mut() {
                let mut env = p.env().clone().unwrap_or_default();
                env.extend(opts.extra_env.iter().cloned());
                p.set_env(Some(env));
            }
            // The saved config is then ours, not the bundle's text.
            text = None;
        }
        spec::validate(&spec, &bundle)?;
        let rootfs = spec::rootfs_path(&spec, &bundle);
        let filter = compile_seccomp(&spec, opts.default_seccomp)?;
        let flags = init::clone_flags(&spec);
        let exe_src = exe::source(self.protection, flags, self.binary.as_deref())?;

        let dir = state::create_dir(&self.root, id)?;
        let mut cleanup = Cleanup {
            root: &self.root,
            id,
            pid: None,
            cgroup: None,
            armed: true,
        };
        let fifo = dir.join(state::FIFO);
        let cfifo = sys::cstr(&fifo).map_err(sys_err("fifo path"))?;
        // SAFETY: valid C string.
        sys::cvt(unsafe { libc::mkfifo(cfifo.as_ptr(), 0o622) }).map_err(sys_err("mkfifo"))?;
        // The init may drop to another user before opening it for writing.
        // SAFETY: valid C string.
        sys::cvt(unsafe { libc::chmod(cfifo.as_ptr(), 0o622) }).map_err(sys_err("chmod fifo"))?;
        let text = match text {
            Some(t) => t,
            None => serde_json::to_vec(&spec).map_err(|e| Error::Init(e.to_string()))?,
        };
        std::fs::write(dir.join(state::CONFIG), text).map_err(sys_err("save config"))?;

        let cgroup_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| default_cgroup_path(id));
        cleanup.cgroup = cgroup_create(&cgroup_path, &spec)?;
        let has_cgroup = cleanup.cgroup.is_some();

        let (mut parent, child) = Channel::pair()?;
        let entry = cleanup.cgroup.as_ref().map(cgroup_entry);
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let oom_score_adj = spec.process().as_ref().and_then(|p| p.oom_score_adj());
        let id_maps = spec.linux().as_ref().map(|l| {
            (
                l.uid_mappings().clone().unwrap_or_default(),
                l.gid_mappings().clone().unwrap_or_default(),
            )
        });
        let annotations = spec.annotations().clone().unwrap_or_default();
        let oci_version = spec.version().clone();
        let seccomp_profile = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let spec_hooks = spec.hooks().clone().unwrap_or_default();
        let init_hooks = spec_hooks.prestart().is_some()
            || spec_hooks.create_runtime().is_some()
            || spec_hooks.create_container().is_some()
            || spec_hooks.start_container().is_some();
        let later_hooks = (spec_hooks.poststart().is_some() || spec_hooks.poststop().is_some())
            .then(|| spec_hooks.clone());
        let pid_ns_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|n| n.iter().find(|n| n.typ() == LinuxNamespaceType::Pid))
            .and_then(|n| n.path().clone());
        let orders = Box::new(InitConfig {
            id: id.to_string(),
            spec,
            rootfs: rootfs.clone(),
            fifo,
            seccomp: filter,
            join: entry
                .as_ref()
                .map(|e| e.v1_tasks.clone())
                .unwrap_or_default(),
            cgroup_dirs: cleanup
                .cgroup
                .as_ref()
                .map(|c| c.dirs())
                .unwrap_or_default(),
            hooks: init_hooks,
            no_pivot: opts.no_pivot,
            no_new_keyring: opts.no_new_keyring,
        });
        // An init cloned from us takes its orders from its copy of our memory; an exec'd one
        // reads them from the socket.
        let (plan, to_send) = match exe_src {
            exe::Source::InProcess(_) => (
                spawn::Plan::new(exe_src, &child.raw_fd(), opts.stdio.raw())
                    .with_preserved_fds(opts.preserve_fds)
                    .with_orders(Message::Init(orders)),
                None,
            ),
            _ => (
                spawn::Plan::new(exe_src, &child.raw_fd(), opts.stdio.raw())
                    .with_preserved_fds(opts.preserve_fds),
                Some(orders),
            ),
        };
        let pid_ns = match &pid_ns_path {
            Some(p) => Some(
                spawn::PidNsGuard::enter(p)
                    .map_err(sys_err(format!("enter pid namespace {}", p.display())))?,
            ),
            None => None,
        };
        super::debug(|| {
            format!("nsexec container setup: cloning the init of {id} (clone flags {flags:#x})")
        });
        let spawned = spawn_into(&plan, flags, entry.as_ref());
        drop(pid_ns);
        let (pid, join) = spawned?;
        super::debug(|| format!("child process in init(): the init of {id} runs as pid {pid}"));
        cleanup.pid = Some(pid);
        drop(plan);
        drop(child);
        drop(opts.stdio);
        // A cloned init starts at once and may already have failed and closed its end; its
        // error then waits in the socket and says more than our broken pipe, so it wins.
        let sent = (|| -> Result<()> {
            if let Some(adj) = oom_score_adj {
                super::process::set_oom_score_adj(pid, adj)
                    .map_err(|e| Error::Init(e.to_string()))?;
            }
            if let Some(mut orders) = to_send {
                orders.join = join;
                parent.send(&Message::Init(orders))?;
            }
            // Hooks run before pivot_root: the init holds still for our word when it has any.
            let state = init_hooks.then(|| {
                hooks::state_json(&oci_version, id, "creating", pid, &bundle, &annotations)
            });
            if let Some(state) = &state {
                for (stage, list) in [
                    ("prestart", spec_hooks.prestart()),
                    ("createRuntime", spec_hooks.create_runtime()),
                ] {
                    hooks::run(stage, list.as_deref().unwrap_or_default(), state)?;
                }
            }
            // The init is in its cgroup by now, or joins the v1 hierarchies itself first
            // thing. (The init waits for this word only where it needs its cgroup; it leaves
            // room for a parent that has to move it slowly.)
            parent.send(&Message::CgroupJoined)?;
            if let Some(state) = state {
                parent.send(&Message::HookState { state })?;
            }
            Ok(())
        })();
        if let Err(e @ Error::Hook(_)) = sent {
            // The init still waits for our word: there is nothing to hear from it.
            return Err(e);
        }
        if sent.is_err() {
            // The init may be waiting for the word we failed to give: stop it, so that the
            // receive below ends with its own error (if it had one first) or end of file.
            // SAFETY: plain kill(2) of our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let (mut msg, mut fds) = match (parent.recv(), sent) {
            (Ok((Message::Error { message }, _)), _) => return Err(Error::Init(message)),
            (_, Err(e)) => return Err(e),
            (reply, Ok(())) => reply?,
        };
        // The init's requests in the order it makes them (maps for a new user namespace,
        // then a seccomp listener for the agent), until it is ready.
        loop {
            match (msg, &id_maps) {
                (Message::MapIds, Some((uids, gids))) => {
                    write_id_maps(pid, uids, gids)?;
                    parent.send(&Message::IdsMapped)?;
                }
                (Message::SeccompListener, _) => {
                    let state =
                        hooks::state_json(&oci_version, id, "creating", pid, &bundle, &annotations);
                    hand_to_agent(seccomp_profile.as_ref(), &state, pid, fds)?;
                    parent.send(&Message::SeccompListenerDelivered)?;
                }
                (Message::Error { message }, _) => return Err(Error::Init(message)),
                (Message::Ready { .. }, _) => {
                    super::debug(|| {
                        "init: closing the pipe to signal completion: the container is set up \
                         and its init waits for start"
                            .into()
                    });
                    break;
                }
                _ => return Err(Error::Init("unexpected message from init".into())),
            }
            (msg, fds) = parent.recv()?;
        }
        let mut pty_master = None;
        if terminal {
            let master = fds
                .into_iter()
                .next()
                .ok_or_else(|| Error::Init("init sent no terminal".into()))?;
            match &opts.console_socket {
                Some(socket) => send_console(socket, &master)?,
                None => pty_master = Some(master),
            }
        }
        let (start, _) =
            state::proc_stat(pid).ok_or_else(|| Error::Init("init vanished".into()))?;
        state::save(
            &self.root,
            &Saved {
                oci_version,
                id: id.to_string(),
                pid,
                bundle,
                rootfs,
                annotations,
                created: state::rfc3339_now(),
                init_start_time: start,
                cgroup_path: has_cgroup.then_some(cgroup_path),
                default_seccomp: opts.default_seccomp,
                hooks: later_hooks,
            },
        )?;
        if let Some(pf) = &opts.pid_file {
            std::fs::write(pf, pid.to_string())
                .map_err(sys_err(format!("pid file {}", pf.display())))?;
        }
        cleanup.armed = false;
        Ok(Created {
            id: id.to_string(),
            pid,
            pty_master,
        })
    }

    /// Lets a created container's init exec the user's program.
    pub fn start(&self, id: &str) -> Result<()> {
        let saved = state::load(&self.root, id)?;
        match state::status(&self.root, &saved) {
            Status::Created => {}
            status => {
                return Err(Error::WrongStatus {
                    id: id.into(),
                    status,
                    message: "only a created container can be started",
                })
            }
        }
        let fifo = state::dir(&self.root, id).join(state::FIFO);
        let fd = sys::open(&fifo, libc::O_RDONLY | libc::O_NONBLOCK)
            .map_err(sys_err("open exec fifo"))?;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n > 0 {
                let mut b = [0u8; 1];
                // SAFETY: valid fd and one-byte buffer.
                let r =
                    unsafe { libc::read(fd.as_raw_fd(), b.as_mut_ptr() as *mut libc::c_void, 1) };
                if r == 1 {
                    break;
                }
                if r == 0 || pfd.revents & libc::POLLHUP != 0 {
                    return Err(Error::Init(
                        "the container's init exited before start".into(),
                    ));
                }
            }
            if !state::init_alive(&saved) {
                return Err(Error::Init(
                    "the container's init exited before start".into(),
                ));
            }
        }
        let _ = std::fs::remove_file(&fifo);
        if let Some(h) = saved.hooks.as_ref().and_then(|h| h.poststart().as_deref()) {
            let state = self.hook_state(&saved, "running");
            hooks::run_warning("poststart", h, &state);
        }
        Ok(())
    }

    fn hook_state(&self, saved: &Saved, status: &str) -> String {
        hooks::state_json(
            &saved.oci_version,
            &saved.id,
            status,
            saved.pid,
            &saved.bundle,
            &saved.annotations,
        )
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let saved = state::load(&self.root, id)?;
        Ok(self.oci_state(&saved))
    }

    fn oci_state(&self, saved: &Saved) -> OciState {
        let status = state::status(&self.root, saved);
        let oom_killed = status == Status::Stopped
            && cgroup_open(&saved.cgroup_path).is_some_and(|c| c.oom_killed().unwrap_or(false));
        OciState {
            oci_version: saved.oci_version.clone(),
            id: saved.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                saved.pid
            },
            bundle: saved.bundle.clone(),
            rootfs: saved.rootfs.clone(),
            created: saved.created.clone(),
            annotations: saved.annotations.clone(),
            owner: String::new(),
            oom_killed,
        }
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let mut out = Vec::new();
        for id in state::list(&self.root)? {
            if let Ok(saved) = state::load(&self.root, &id) {
                out.push(self.oci_state(&saved));
            }
        }
        Ok(out)
    }

    /// A pidfd for the container's init, checked against its recorded start time so a
    /// reused pid is never signalled.
    fn init_pidfd(&self, saved: &Saved) -> Option<OwnedFd> {
        let fd = sys::pidfd_open(saved.pid).ok()?;
        state::init_alive(saved).then_some(fd)
    }

    /// Sends `signal` to the init, or with `all` to every process in the container.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let saved = state::load(&self.root, id)?;
        let status = state::status(&self.root, &saved);
        if all {
            // As runc: --all signals whatever is left in the cgroup, which after the init died
            // may be nothing at all (not an error).
            return match cgroup_open(&saved.cgroup_path) {
                Some(cg) => cg.kill_all(signal).map_err(Error::from),
                None if status == Status::Stopped => Ok(()),
                None => self.signal_init(id, &saved, signal),
            };
        }
        if status == Status::Stopped {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                message: "cannot signal a stopped container",
            });
        }
        self.signal_init(id, &saved, signal)?;
        thaw_for_kill(&saved, status, signal);
        Ok(())
    }

    fn signal_init(&self, id: &str, saved: &Saved, signal: i32) -> Result<()> {
        let pidfd = self.init_pidfd(saved).ok_or_else(|| Error::WrongStatus {
            id: id.into(),
            status: Status::Stopped,
            message: "cannot signal a stopped container",
        })?;
        sys::pidfd_send_signal(&pidfd, signal).map_err(sys_err("signal"))
    }

    /// Removes a container. A running one needs `force` (it is then killed first).
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let saved = match state::load(&self.root, id) {
            Ok(s) => s,
            // Nothing to delete is what --force asks for (runc exits 0; containerd relies on it).
            Err(state::Error::NotFound(_)) if force && !state::dir(&self.root, id).exists() => {
                return Ok(());
            }
            // A half-made dir (no state.json yet) of a crashed create can go with --force.
            Err(state::Error::NotFound(_)) if force && state::dir(&self.root, id).is_dir() => {
                return Ok(state::remove_dir(&self.root, id)?);
            }
            Err(e) => return Err(e.into()),
        };
        let status = state::status(&self.root, &saved);
        if status == Status::Running && !force {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                message: "stop it first or use --force",
            });
        }
        let cgroup = cgroup_open(&saved.cgroup_path);
        if status != Status::Stopped {
            if let Some(pidfd) = self.init_pidfd(&saved) {
                // Killing a pid namespace's init kills everything in it.
                let _ = sys::pidfd_send_signal(&pidfd, libc::SIGKILL);
                thaw_for_kill(&saved, status, libc::SIGKILL);
                let _ = sys::pidfd_wait_exit(&pidfd, 10_000);
            }
        }
        if let Some(cg) = cgroup {
            // Normally the pid namespace died with its init and the cgroup is empty; anything
            // left (a straggler still exiting, a process that joined from outside) is killed
            // (kill_all freezes first, so it cannot fork away) and the removal retried.
            if !cg.pids().map(|p| p.is_empty()).unwrap_or(false) {
                let _ = cg.kill_all(libc::SIGKILL);
            }
            let mut cg = Some(cg);
            for attempt in 0..2000 {
                let c = cg.take().expect("kept");
                match c.destroy() {
                    Ok(()) => break,
                    Err(e) => {
                        if attempt == 1999 {
                            return Err(e.into());
                        }
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        match cgroup_open(&saved.cgroup_path) {
                            Some(again) => {
                                if attempt % 100 == 99 {
                                    let _ = again.kill_all(libc::SIGKILL);
                                }
                                cg = Some(again)
                            }
                            None => break,
                        }
                    }
                }
            }
        }
        if let Some(h) = saved.hooks.as_ref().and_then(|h| h.poststop().as_deref()) {
            hooks::run_warning("poststop", h, &self.hook_state(&saved, "stopped"));
        }
        state::remove_dir(&self.root, id)?;
        Ok(())
    }

    /// Waits for a container created by this process to exit (we are its init's parent).
    pub fn wait(&self, created: &Created) -> Result<ExitStatus> {
        let raw = sys::waitpid(created.pid).map_err(sys_err("wait"))?;
        let saved = state::load(&self.root, &created.id)?;
        let oom = cgroup_open(&saved.cgroup_path).is_some_and(|c| c.oom_killed().unwrap_or(false));
        Ok(ExitStatus::from_raw(raw, oom))
    }

    /// A pidfd for the container's init (readable once it exits), for callers that wait in
    /// an event loop instead of blocking in `wait`.
    pub fn pidfd(&self, id: &str) -> Result<OwnedFd> {
        let saved = state::load(&self.root, id)?;
        self.init_pidfd(&saved).ok_or_else(|| Error::WrongStatus {
            id: id.into(),
            status: Status::Stopped,
            message: "the container's init is gone",
        })
    }

    /// Changes the resource limits of a live container.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let saved = state::load(&self.root, id)?;
        let cg = cgroup_open(&saved.cgroup_path).ok_or_else(|| Error::WrongStatus {
            id: id.into(),
            status: state::status(&self.root, &saved),
            message: "the container has no cgroup",
        })?;
        Ok(cg.update(resources)?)
    }

    /// Resource usage read back from the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<cgroups::Stats> {
        let saved = state::load(&self.root, id)?;
        let cg = cgroup_open(&saved.cgroup_path).ok_or_else(|| Error::WrongStatus {
            id: id.into(),
            status: state::status(&self.root, &saved),
            message: "the container has no cgroup",
        })?;
        Ok(cg.stats()?)
    }

    /// Pids (in our pid namespace) of every process in the container.
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let saved = state::load(&self.root, id)?;
        if let Some(cg) = cgroup_open(&saved.cgroup_path) {
            if let Ok(pids) = cg.pids() {
                return Ok(pids);
            }
        }
        if !state::init_alive(&saved) {
            return Ok(Vec::new());
        }
        // Without a cgroup: every process in the init's pid namespace.
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", saved.pid))
            .map_err(sys_err("read pid ns"))?;
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc")
            .map_err(sys_err("read /proc"))?
            .flatten()
        {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .ok()
                .as_ref()
                == Some(&ns)
            {
                pids.push(pid);
            }
        }
        pids.sort();
        Ok(pids)
    }

    /// Runs an extra process inside a running container, in all its namespaces and its
    /// cgroup, with the container's capabilities, no_new_privs and seccomp filter.
    pub fn exec(&self, id: &str, opts: ExecOptions) -> Result<ExecProcess> {
        let saved = state::load(&self.root, id)?;
        let status = state::status(&self.root, &saved);
        if status == Status::Stopped {
            return Err(Error::WrongStatus {
                id: id.into(),
                status,
                message: "cannot exec in a stopped container",
            });
        }
        let spec = self.saved_spec(id)?;
        let process = match opts.process.clone() {
            Some(p) => p,
            None => exec_process_from(&spec, &opts),
        };
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(Error::Init(
                "exec needs a command (process.args is empty)".into(),
            ));
        }
        let filter = compile_seccomp(&spec, saved.default_seccomp)?;
        self.exec_in(id, &saved, &spec, process, filter, opts)
    }

    /// The container's config as saved at create (what `exec` starts from).
    pub fn saved_spec(&self, id: &str) -> Result<Spec> {
        let text = std::fs::read(state::dir(&self.root, id).join(state::CONFIG))
            .map_err(sys_err("read saved config"))?;
        // Unknown capability names were warned about at create; runc does not repeat it.
        Ok(spec::parse_lenient(&text)?.0)
    }

    fn exec_in(
        &self,
        id: &str,
        saved: &Saved,
        spec: &Spec,
        process: oci_spec::runtime::Process,
        filter: Option<sync::Filter>,
        opts: ExecOptions,
    ) -> Result<ExecProcess> {
        // The container's namespaces, opened while we know the init is the one we recorded.
        let pidfd = self.init_pidfd(saved).ok_or_else(|| Error::WrongStatus {
            id: id.into(),
            status: Status::Stopped,
            message: "cannot exec in a stopped container",
        })?;
        let wanted: Vec<LinuxNamespaceType> = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default()
            .iter()
            .map(|n| n.typ())
            .collect();
        let mut names = Vec::new();
        let mut ns_fds = Vec::new();
        for (t, name) in [
            (LinuxNamespaceType::Cgroup, "cgroup"),
            (LinuxNamespaceType::Ipc, "ipc"),
            (LinuxNamespaceType::Uts, "uts"),
            (LinuxNamespaceType::Network, "net"),
            (LinuxNamespaceType::Pid, "pid"),
            (LinuxNamespaceType::Mount, "mnt"),
            // Last: once in it, the helper could not join the others (owned by the host's).
            (LinuxNamespaceType::User, "user"),
        ] {
            if wanted.contains(&t) {
                let fd = sys::open(
                    Path::new(&format!("/proc/{}/ns/{name}", saved.pid)),
                    libc::O_RDONLY,
                )
                .map_err(sys_err(format!("open {name} namespace")))?;
                names.push(name.to_string());
                ns_fds.push(fd);
            }
        }
        if !state::init_alive(saved) {
            return Err(Error::WrongStatus {
                id: id.into(),
                status: Status::Stopped,
                message: "cannot exec in a stopped container",
            });
        }
        drop(pidfd);
        let terminal_uid = if names.iter().any(|n| n == "user") {
            std::fs::read_to_string(format!("/proc/{}/uid_map", saved.pid))
                .ok()
                .and_then(|map| map_id(&map, process.user().uid()))
        } else {
            None
        };
        // A private mount namespace for the helper until it joins the container's.
        let flags = libc::CLONE_NEWNS;
        let exe_src = exe::source(self.protection, flags, self.binary.as_deref())?;
        let (mut parent, child) = Channel::pair()?;
        let plan = spawn::Plan::new(exe_src, &child.raw_fd(), opts.stdio.raw())
            .with_preserved_fds(opts.preserve_fds);
        let entry = match cgroup_open(&saved.cgroup_path) {
            Some(cg) => Some(exec_entry(&cg, &opts.cgroup, saved.pid)?),
            None if opts.cgroup != cgroups::SubCgroups::Container => {
                return Err(
                    cgroups::Error::NotFound(saved.cgroup_path.clone().unwrap_or_default()).into(),
                )
            }
            None => None,
        };
        super::debug(|| format!("nsexec container setup: cloning the exec helper for {id}"));
        let (helper, join) = spawn_into(&plan, flags, entry.as_ref())?;
        super::debug(|| {
            format!(
                "child process in init(): the exec helper runs as pid {helper}, joining {names:?}"
            )
        });
        drop(child);
        drop(opts.stdio);
        let fail = |e: Error| {
            spawn::kill_and_reap(helper);
            e
        };
        let raw: Vec<RawFd> = ns_fds.iter().map(|f| f.as_raw_fd()).collect();
        parent
            .send_with_fds(
                &Message::Exec(Box::new(ExecConfig {
                    process,
                    namespaces: names,
                    seccomp: filter,
                    join,
                    detach: opts.detach,
                    terminal_uid,
                })),
                &raw,
            )
            .map_err(|e| fail(e.into()))?;
        drop(ns_fds);
        let mut reply = parent.recv().map_err(|e| fail(e.into()))?;
        if let (Message::SeccompListener, _) = reply {
            // As runc, the state names the container's init and `pid` the process the filter
            // belongs to: the helper's one child, which sent the listener.
            let state = self.hook_state(saved, "running");
            let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
            let process = std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
                .unwrap_or(helper);
            hand_to_agent(profile, &state, process, std::mem::take(&mut reply.1)).map_err(fail)?;
            parent
                .send(&Message::SeccompListenerDelivered)
                .map_err(|e| fail(e.into()))?;
            reply = parent.recv().map_err(|e| fail(e.into()))?;
        }
        if let (Message::Ready { pid }, _) = reply {
            super::debug(|| {
                format!("setns_init: about to exec: process {pid} has joined the container's namespaces and runs its program")
            });
        }
        match reply {
            (Message::Ready { pid }, fds) if opts.detach => {
                // The helper leaves right after this word; reap it so it is no zombie.
                let _ = sys::waitpid(helper);
                Ok(ExecProcess {
                    pid,
                    pty_master: fds.into_iter().next(),
                    helper: 0,
                    chan: parent,
                })
            }
            (Message::Ready { pid }, fds) => Ok(ExecProcess {
                pid,
                pty_master: fds.into_iter().next(),
                helper,
                chan: parent,
            }),
            (Message::Error { message }, _) => Err(fail(Error::Init(message))),
            _ => Err(fail(Error::Init(
                "unexpected message from exec helper".into(),
            ))),
        }
    }
}

/// Passes the seccomp listener an init or exec helper sent (`fds`) to the agent the spec
/// names, with the container process state.
fn hand_to_agent(
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    state: &str,
    pid: i32,
    fds: Vec<OwnedFd>,
) -> Result<()> {
    let path = seccomp
        .and_then(|s| s.listener_path().clone())
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            Error::Init("a seccomp listener, but no linux.seccomp.listenerPath".into())
        })?;
    let listener = fds
        .into_iter()
        .next()
        .ok_or_else(|| Error::Init("the seccomp listener did not arrive".into()))?;
    let doc = seccomp::agent::process_state(
        state,
        pid,
        seccomp.and_then(|s| s.listener_metadata().as_deref()),
    );
    seccomp::agent::deliver(&path, &doc, &listener)?;
    Ok(())
}

/// The host id that `id` in a user namespace stands for, from its uid_map or gid_map text
/// (lines of "inside outside count").
fn map_id(map: &str, id: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|n| n.parse::<u64>().ok());
        let (inside, outside, count) = (f.next()??, f.next()??, f.next()??);
        let id = u64::from(id);
        (inside <= id && id < inside + count).then(|| (outside + id - inside) as u32)
    })
}

/// The process an `exec` without `ExecOptions::process` runs: the container's own, with the
/// options' command, environment, cwd, user and terminal.
fn exec_process_from(spec: &Spec, opts: &ExecOptions) -> oci_spec::runtime::Process {
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(opts.args.clone()));
    let mut env = process.env().clone().unwrap_or_default();
    for e in &opts.env {
        let name = e.split('=').next().unwrap_or("");
        env.retain(|x| x.split('=').next() != Some(name));
        env.push(e.clone());
    }
    process.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        process.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = opts.user {
        let mut user = process.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(None);
        process.set_user(user);
    }
    process.set_terminal(Some(opts.tty));
    process
}

/// Hands the pty master to whoever listens on the console socket, as runc does.
pub fn send_console(socket: &Path, master: &OwnedFd) -> Result<()> {
    let stream = UnixStream::connect(socket)
        .map_err(sys_err(format!("console socket {}", socket.display())))?;
    sync::send_fds(stream.as_raw_fd(), b"/dev/ptmx", &[master.as_raw_fd()])
        .map_err(sys_err("send console"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::map_id;

    #[test]
    fn ids_map_through_each_range_of_a_uid_map() {
        let map = "         0     100000      65536\n     65536       1000          1\n";
        assert_eq!(map_id(map, 0), Some(100000));
        assert_eq!(map_id(map, 1000), Some(101000));
        assert_eq!(map_id(map, 65536), Some(1000));
        assert_eq!(map_id(map, 65537), None);
    }
}
