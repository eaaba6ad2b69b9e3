//! `nanokube shim`: one small process per pod that is the parent of the pod's containers (the
//! part containerd's shim and conmon play). It holds the pod's network, IPC and UTS namespaces
//! for the pod's life, is the subreaper of everything the containers start, copies their
//! output into CRI log files, and records each exit to a file, so that the agent can die, be
//! upgraded or restart without losing a container, an exit code or a log line. It knows nothing
//! of API types: the agent hands it finished OCI specs.
//!
//! One thread, one poll loop over the control socket, a signalfd and the containers' output
//! pipes: no locks, and a clone from it is an exact copy, so containers start without
//! re-executing the binary (runtime::exe's `InProcess`).

pub mod client;
pub mod logs;
pub mod protocol;

use clap::Args;
use logs::{LogFile, Stream};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use protocol::{Record, Request, Response, RunRequest};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runtime::container::{CreateOptions, Runtime, Stdio};

/// The control socket, pid file and container records inside a pod's directory.
pub const SOCKET: &str = "shim.sock";

/// Runs `f` on a path to `dir`'s socket that a sockaddr_un can hold (108 bytes): the socket's
/// own path when it fits, else `/proc/self/fd/<dir>/shim.sock` through an open handle of `dir`
/// (a deep `--data-dir`, such as a `nanokube cluster` node's, would not fit).
pub fn at_socket<T>(dir: &Path, f: impl FnOnce(&Path) -> std::io::Result<T>) -> std::io::Result<T> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let full = dir.join(SOCKET);
    if full.as_os_str().len() < 100 {
        return f(&full);
    }
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    f(&Path::new("/proc/self/fd")
        .join(handle.as_raw_fd().to_string())
        .join(SOCKET))
}
pub const PID_FILE: &str = "shim.pid";
pub const RECORDS: &str = "containers";
pub const LOG: &str = "shim.log";

#[derive(Debug, Clone, Args)]
pub struct ShimArgs {
    /// The pod's directory: socket, pid file, container records, the shim's own log.
    #[arg(long)]
    pub dir: PathBuf,
    /// The runtime's state root.
    #[arg(long, default_value = "/run/nanokube/runtime")]
    pub runtime_root: PathBuf,
    /// Give the pod new network, IPC and UTS namespaces (else it shares the host's).
    #[arg(long)]
    pub new_netns: bool,
    #[arg(long)]
    pub new_ipc: bool,
    #[arg(long)]
    pub new_uts: bool,
    /// The pod's hostname (with --new-uts).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Rotate a container's log when it reaches this many bytes (0: never).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub log_max_size: u64,
    /// Log files kept per container, the current one included.
    #[arg(long, default_value_t = 5)]
    pub log_max_files: usize,
    /// Start the shim in the background and return once it serves (prints its pid).
    #[arg(long)]
    pub detach: bool,
}

/// Errors of the shim.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: nix::errno::Errno,
    },
    #[error("shim did not start: {0}")]
    Start(String),
    #[error("shim request: {0}")]
    Protocol(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn sys(what: impl Into<String>) -> impl FnOnce(nix::errno::Errno) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

pub fn run(args: ShimArgs) -> anyhow::Result<i32> {
    if args.detach {
        let pid = launch(&args)?;
        println!("{pid}");
        return Ok(0);
    }
    serve(args)?;
    Ok(0)
}

/// Starts a shim for `args.dir` that is not our child (it runs on when we exit) and returns its
/// pid once it listens on its socket.
pub fn launch(args: &ShimArgs) -> Result<i32, Error> {
    std::fs::create_dir_all(&args.dir).map_err(io(format!("pod dir {}", args.dir.display())))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.dir.join(LOG))
        .map_err(io("shim log"))?;
    // Our own image, even when the file was replaced by an upgrade since we started.
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.arg("shim")
        .arg("--dir")
        .arg(&args.dir)
        .arg("--runtime-root")
        .arg(&args.runtime_root)
        .arg("--log-max-size")
        .arg(args.log_max_size.to_string())
        .arg("--log-max-files")
        .arg(args.log_max_files.to_string());
    for (on, flag) in [
        (args.new_netns, "--new-netns"),
        (args.new_ipc, "--new-ipc"),
        (args.new_uts, "--new-uts"),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    if let Some(h) = &args.hostname {
        cmd.arg("--hostname").arg(h);
    }
    // Its own process group: a ^C meant for the agent's terminal does not reach the pod.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    // The middle process: it reports the real shim's pid and exits, so the shim is reparented
    // away from us at once.
    cmd.env("NANOKUBE_SHIM_FORK", "1");
    let mut child = cmd.spawn().map_err(io("spawn shim"))?;
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let status = child.wait().map_err(io("wait for shim"))?;
    let line = line.trim();
    match line.strip_prefix("ready ") {
        Some(pid) if status.success() => pid
            .parse()
            .map_err(|_| Error::Start(format!("bad readiness line {line:?}"))),
        _ => {
            let log = std::fs::read_to_string(args.dir.join(LOG)).unwrap_or_default();
            let last = log.lines().last().unwrap_or("").to_string();
            Err(Error::Start(if last.is_empty() {
                format!("exited with {status}")
            } else {
                last
            }))
        }
    }
}

struct Pipe {
    fd: std::fs::File,
    stream: Stream,
    container: String,
}

/// A client attached to one output stream of a container: the write end of the pipe it reads.
struct Attached {
    container: String,
    stream: Stream,
    fd: std::fs::File,
}

struct Shim {
    args: ShimArgs,
    runtime: Runtime,
    records: BTreeMap<String, Record>,
    logs: BTreeMap<String, LogFile>,
    pipes: Vec<Pipe>,
    /// Exec'd processes by pid, with the connection their exit code goes to.
    execs: BTreeMap<i32, UnixStream>,
    /// Our end of each container's stdin (pipe write end or pty master), kept so that attaching
    /// clients can come and go; containers in `stdin_once` give theirs to the first one.
    stdins: BTreeMap<String, OwnedFd>,
    stdin_once: std::collections::BTreeSet<String>,
    attached: Vec<Attached>,
    stopping: bool,
}

fn serve(args: ShimArgs) -> Result<(), Error> {
    if std::env::var_os("NANOKUBE_SHIM_FORK").is_some() {
        std::env::remove_var("NANOKUBE_SHIM_FORK");
        // The shim proper is the child; this process only tells the launcher its pid.
        if crate::runtime::sys::fork_detached()
            .map_err(io("fork"))?
            .is_some()
        {
            std::process::exit(0);
        }
    }
    // Named for ps and top (it runs as /proc/self/exe, which would show as "exe").
    let _ = nix::sys::prctl::set_name(c"nanokube-shim");
    nix::sys::prctl::set_child_subreaper(true).map_err(sys("set child subreaper"))?;
    let mut flags = nix::sched::CloneFlags::empty();
    for (on, f) in [
        (args.new_netns, nix::sched::CloneFlags::CLONE_NEWNET),
        (args.new_ipc, nix::sched::CloneFlags::CLONE_NEWIPC),
        (args.new_uts, nix::sched::CloneFlags::CLONE_NEWUTS),
    ] {
        if on {
            flags |= f;
        }
    }
    nix::sched::unshare(flags).map_err(sys("unshare the pod's namespaces"))?;
    if let (true, Some(h)) = (args.new_uts, &args.hostname) {
        nix::unistd::sethostname(h).map_err(sys("sethostname"))?;
    }
    std::fs::create_dir_all(args.dir.join(RECORDS)).map_err(io("records dir"))?;
    let sock = args.dir.join(SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = at_socket(&args.dir, |p| UnixListener::bind(p))
        .map_err(io(format!("bind {}", sock.display())))?;
    listener.set_nonblocking(true).map_err(io("nonblocking"))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    mask.thread_block().map_err(sys("block signals"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(sys("signalfd"))?;
    let pid = std::process::id();
    std::fs::write(args.dir.join(PID_FILE), pid.to_string()).map_err(io("pid file"))?;
    let mut runtime = Runtime::new(&args.runtime_root);
    runtime.protection = crate::runtime::exe::Protection::InProcess;
    let mut shim = Shim {
        args,
        runtime,
        records: BTreeMap::new(),
        logs: BTreeMap::new(),
        pipes: Vec::new(),
        execs: BTreeMap::new(),
        stdins: BTreeMap::new(),
        stdin_once: Default::default(),
        attached: Vec::new(),
        stopping: false,
    };
    // Readiness goes to the launcher through stdout, which then points nowhere.
    println!("ready {pid}");
    let _ = std::io::stdout().flush();
    let null = std::fs::File::open("/dev/null").map_err(io("/dev/null"))?;
    nix::unistd::dup2_stdout(&null).map_err(sys("dup2"))?;
    shim.run(&listener, &signals)
}

impl Shim {
    fn run(&mut self, listener: &UnixListener, signals: &SignalFd) -> Result<(), Error> {
        loop {
            let (conn_ready, sig_ready, pipe_ready) = {
                let mut fds = vec![
                    PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                    PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                ];
                fds.extend(
                    self.pipes
                        .iter()
                        .map(|p| PollFd::new(p.fd.as_fd(), PollFlags::POLLIN)),
                );
                match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(sys("poll")(e)),
                }
                let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
                (
                    ready(&fds[0]),
                    ready(&fds[1]),
                    fds[2..].iter().map(ready).collect::<Vec<_>>(),
                )
            };
            // Output first: an exit is recorded after the lines written before it. Pipes are
            // read in the order they were made (stdout before stderr), and removed afterwards.
            let ended: Vec<usize> = (0..pipe_ready.len())
                .filter(|&i| pipe_ready[i] && self.drain(i))
                .collect();
            for i in ended.into_iter().rev() {
                self.close_pipe(i);
            }
            if sig_ready {
                while let Ok(Some(info)) = signals.read_signal() {
                    if info.ssi_signo == Signal::SIGTERM as u32 {
                        self.stopping = true;
                    }
                }
                self.reap();
            }
            if conn_ready {
                while let Ok((conn, _)) = listener.accept() {
                    self.converse(conn);
                }
            }
            if self.stopping {
                self.shutdown();
                return Ok(());
            }
        }
    }

    /// Reads what one pipe has; true when it has ended (the caller then closes it).
    fn drain(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let pipe = &mut self.pipes[i];
            match pipe.fd.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    if let Some(log) = self.logs.get_mut(&pipe.container) {
                        if let Err(e) = log.write(pipe.stream, &buf[..n]) {
                            eprintln!("log of {}: {e}", pipe.container);
                        }
                    }
                    let (container, stream) = (pipe.container.clone(), pipe.stream);
                    self.copy_to_attached(&container, stream, &buf[..n]);
                    if n < buf.len() {
                        return false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    /// Gives attached clients their copy of a container's output. The log has it already; a
    /// client that reads too slowly loses what its pipe cannot take rather than stalling the
    /// container and every other client, and a client that went away is dropped.
    fn copy_to_attached(&mut self, container: &str, stream: Stream, data: &[u8]) {
        self.attached.retain_mut(|a| {
            if a.container != container || a.stream != stream {
                return true;
            }
            let mut rest = data;
            while !rest.is_empty() {
                match a.fd.write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return false,
                }
            }
            true
        });
    }

    /// Drops an ended pipe, flushing its stream's last line; clients attached to that stream
    /// see its end.
    fn close_pipe(&mut self, i: usize) {
        let pipe = self.pipes.remove(i);
        if let Some(log) = self.logs.get_mut(&pipe.container) {
            let _ = log.close(pipe.stream);
        }
        self.attached
            .retain(|a| a.container != pipe.container || a.stream != pipe.stream);
    }

    /// Collects every ended child; the containers' inits get their exits recorded.
    fn reap(&mut self) {
        loop {
            match nix::sys::wait::waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { continue };
                    let (code, signal) = match status {
                        WaitStatus::Exited(_, c) => (c, None),
                        WaitStatus::Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
                        _ => continue,
                    };
                    if let Some(conn) = self.execs.remove(&pid.as_raw()) {
                        let done = Response {
                            exit_code: Some(code),
                            ..Response::ok()
                        };
                        let mut line = serde_json::to_vec(&done).unwrap_or_default();
                        line.push(b'\n');
                        let _ = (&conn).write_all(&line);
                        continue;
                    }
                    let Some(rec) = self
                        .records
                        .values_mut()
                        .find(|r| r.pid == pid.as_raw() && r.running())
                    else {
                        continue;
                    };
                    rec.finished_at = Some(now());
                    rec.exit_code = Some(code);
                    rec.signal = signal;
                    rec.oom_killed = self.runtime.state(&rec.id).is_ok_and(|s| s.oom_killed);
                    let rec = rec.clone();
                    self.stdins.remove(&rec.id);
                    self.stdin_once.remove(&rec.id);
                    self.save(&rec);
                }
            }
        }
    }

    fn save(&self, rec: &Record) {
        let dir = self.args.dir.join(RECORDS);
        let tmp = dir.join(format!(".{}.tmp", rec.id));
        let done = serde_json::to_vec(rec)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|_| std::fs::rename(&tmp, dir.join(format!("{}.json", rec.id))));
        if let Err(e) = done {
            eprintln!("saving the record of {}: {e}", rec.id);
        }
    }

    fn converse(&mut self, conn: UnixStream) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut reader = BufReader::new(&conn);
        let mut line = String::new();
        let response = match reader.read_line(&mut line) {
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                Ok(Request::Exec {
                    id,
                    args,
                    tty,
                    stdin,
                }) => {
                    drop(reader);
                    return self.exec(conn, &id, args, tty, stdin);
                }
                Ok(Request::Attach { id, stdin }) => {
                    drop(reader);
                    return self.attach(conn, &id, stdin);
                }
                Ok(req) => self.handle(req),
                Err(e) => Response::error(format!("bad request: {e}")),
            },
            Err(e) => Response::error(format!("reading the request: {e}")),
        };
        let mut out = serde_json::to_vec(&response).unwrap_or_default();
        out.push(b'\n');
        let _ = (&conn).write_all(&out);
    }

    /// Starts an exec'd process as our child (reaped by [`Shim::reap`], which answers its exit
    /// on `conn`) and hands its stdio to the caller.
    fn exec(&mut self, conn: UnixStream, id: &str, args: Vec<String>, tty: bool, stdin: bool) {
        let fail = |conn: &UnixStream, e: String| {
            let mut out = serde_json::to_vec(&Response::error(e)).unwrap_or_default();
            out.push(b'\n');
            let _ = (&*conn).write_all(&out);
        };
        if !self.records.get(id).is_some_and(Record::running) {
            return fail(&conn, format!("container {id} is not running"));
        }
        let mut ours: Vec<OwnedFd> = Vec::new();
        let mut stdio = Stdio::default();
        if !tty {
            let made = (|| -> std::io::Result<()> {
                if stdin {
                    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                    stdio.stdin = Some(r);
                    ours.push(w);
                } else {
                    stdio.stdin = Some(std::fs::File::open("/dev/null")?.into());
                }
                for slot in [&mut stdio.stdout, &mut stdio.stderr] {
                    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
                    *slot = Some(w);
                    ours.push(r);
                }
                Ok(())
            })();
            if let Err(e) = made {
                return fail(&conn, e.to_string());
            }
        }
        let opts = crate::runtime::container::ExecOptions {
            args,
            tty,
            stdio,
            detach: true,
            ..Default::default()
        };
        let proc = match self.runtime.exec(id, opts) {
            Ok(p) => p,
            Err(e) => return fail(&conn, e.to_string()),
        };
        if let Some(m) = proc.pty_master {
            ours.push(m);
        }
        let answer = Response {
            pid: Some(proc.pid),
            ..Response::ok()
        };
        if let Err(e) = answer_with_fds(&conn, &answer, ours) {
            eprintln!("exec {id}: handing over stdio: {e}");
        }
        self.execs.insert(proc.pid, conn);
    }

    /// Attaches a client to a running container's own stdio (see [`Request::Attach`]).
    fn attach(&mut self, conn: UnixStream, id: &str, want_stdin: bool) {
        let Some(rec) = self.records.get(id).filter(|r| r.running()) else {
            let mut out =
                serde_json::to_vec(&Response::error(format!("container {id} is not running")))
                    .unwrap_or_default();
            out.push(b'\n');
            let _ = (&conn).write_all(&out);
            return;
        };
        let (pid, tty) = (rec.pid, rec.tty);
        let mut give: Vec<OwnedFd> = Vec::new();
        if want_stdin {
            let stdin = if self.stdin_once.remove(id) {
                self.stdins.remove(id)
            } else {
                self.stdins.get(id).and_then(|f| f.try_clone().ok())
            };
            give.extend(stdin);
        }
        let has_stdin = !give.is_empty();
        let streams: &[Stream] = if tty {
            &[Stream::Stdout]
        } else {
            &[Stream::Stdout, Stream::Stderr]
        };
        let mut made = Vec::new();
        for &stream in streams {
            match pipe_for_attach() {
                Ok((r, w)) => {
                    give.push(r);
                    made.push(Attached {
                        container: id.to_string(),
                        stream,
                        fd: w.into(),
                    });
                }
                Err(e) => eprintln!("attach {id}: pipe: {e}"),
            }
        }
        let answer = Response {
            pid: Some(pid),
            stdin: has_stdin,
            ..Response::ok()
        };
        match answer_with_fds(&conn, &answer, give) {
            Ok(()) => self.attached.extend(made),
            Err(e) => eprintln!("attach {id}: handing over stdio: {e}"),
        }
    }

    fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Run(r) => match self.start(r) {
                Ok(pid) => Response {
                    pid: Some(pid),
                    ..Response::ok()
                },
                Err(e) => Response::error(e),
            },
            Request::Kill { id, signal } => {
                match self.records.get(&id) {
                    Some(r) if r.running() => {}
                    Some(_) => return Response::ok(),
                    None => return Response::error(format!("no container {id}")),
                }
                match self.runtime.kill(&id, signal, false) {
                    Ok(()) => Response::ok(),
                    Err(e) => Response::error(e.to_string()),
                }
            }
            Request::Remove { id } => {
                if self.records.get(&id).is_some_and(Record::running) {
                    return Response::error(format!("container {id} is running"));
                }
                let _ = self.runtime.delete(&id, true);
                self.records.remove(&id);
                self.logs.remove(&id);
                self.stdins.remove(&id);
                let _ =
                    std::fs::remove_file(self.args.dir.join(RECORDS).join(format!("{id}.json")));
                Response::ok()
            }
            Request::List => Response {
                containers: self.records.values().cloned().collect(),
                ..Response::ok()
            },
            Request::Exec { .. } | Request::Attach { .. } => {
                Response::error("exec and attach are answered on their own connections")
            }
            Request::Shutdown => {
                self.stopping = true;
                Response::ok()
            }
        }
    }

    fn start(&mut self, r: RunRequest) -> Result<i32, String> {
        if let Some(old) = self.records.get(&r.id) {
            return if old.running() {
                Ok(old.pid)
            } else {
                Err(format!("container {} exists and has ended", r.id))
            };
        }
        let spec: oci_spec::runtime::Spec =
            serde_json::from_value(r.spec).map_err(|e| format!("bad spec: {e}"))?;
        let log = LogFile::open(&r.log_path, self.args.log_max_size, self.args.log_max_files)
            .map_err(|e| format!("log file {}: {e}", r.log_path.display()))?;
        let tty = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let mut outputs = Vec::new();
        let mut stdin_end = None;
        // With a terminal, its master carries both output streams and stdin, and the runtime
        // makes it; else output goes through two pipes and stdin is a pipe or /dev/null.
        let stdio = if tty {
            Stdio::default()
        } else {
            let (out_r, out_w) = pipe().map_err(|e| e.to_string())?;
            let (err_r, err_w) = pipe().map_err(|e| e.to_string())?;
            outputs.push((out_r, Stream::Stdout));
            outputs.push((err_r, Stream::Stderr));
            let stdin = if r.stdin {
                let (rd, wr) =
                    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
                stdin_end = Some(wr);
                rd
            } else {
                std::fs::File::open("/dev/null")
                    .map_err(|e| e.to_string())?
                    .into()
            };
            Stdio {
                stdin: Some(stdin),
                stdout: Some(out_w),
                stderr: Some(err_w),
            }
        };
        let created = self
            .runtime
            .create(
                &r.id,
                CreateOptions {
                    bundle: r.bundle.clone(),
                    spec: Some(spec),
                    stdio,
                    default_seccomp: false,
                    ..Default::default()
                },
            )
            .map_err(|e| e.to_string())?;
        if let Some(master) = created.pty_master {
            set_nonblocking(&master).map_err(|e| e.to_string())?;
            if r.stdin {
                stdin_end = Some(master.try_clone().map_err(|e| e.to_string())?);
            }
            outputs.push((master, Stream::Stdout));
        }
        if let Some(end) = stdin_end {
            self.stdins.insert(r.id.clone(), end);
            if r.stdin_once {
                self.stdin_once.insert(r.id.clone());
            }
        }
        self.logs.insert(r.id.clone(), log);
        for (fd, stream) in outputs {
            self.pipes.push(Pipe {
                fd: fd.into(),
                stream,
                container: r.id.clone(),
            });
        }
        let rec = Record {
            id: r.id.clone(),
            name: r.name,
            attempt: r.attempt,
            pid: created.pid,
            log_path: r.log_path,
            started_at: now(),
            finished_at: None,
            exit_code: None,
            signal: None,
            oom_killed: false,
            tty,
            stdin: r.stdin,
        };
        if let Err(e) = self.runtime.start(&r.id) {
            let _ = self.runtime.delete(&r.id, true);
            self.reap();
            return Err(e.to_string());
        }
        self.save(&rec);
        self.records.insert(r.id, rec);
        Ok(created.pid)
    }

    /// Ends the pod: kills what runs (the agent already asked politely), waits for the exits,
    /// deletes the containers, and removes the socket.
    fn shutdown(&mut self) {
        let ids: Vec<String> = self.records.keys().cloned().collect();
        for id in &ids {
            if self.records[id].running() {
                let _ = self.runtime.kill(id, libc::SIGKILL, true);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.records.values().any(Record::running) && std::time::Instant::now() < deadline {
            self.reap();
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in (0..self.pipes.len()).rev() {
            if self.drain(i) {
                self.close_pipe(i);
            }
        }
        for id in &ids {
            let _ = self.runtime.delete(id, true);
        }
        let _ = std::fs::remove_file(self.args.dir.join(SOCKET));
        let _ = std::fs::remove_file(self.args.dir.join(PID_FILE));
    }
}

/// A pipe whose read end (ours, polled) does not block.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    set_nonblocking(&r)?;
    Ok((r, w))
}

/// A pipe for an attached client: the write end (ours) does not block, see
/// [`Shim::copy_to_attached`].
fn pipe_for_attach() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
    set_nonblocking(&w)?;
    Ok((r, w))
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map(drop)
    .map_err(std::io::Error::from)
}

/// Sends `answer` as one line with `fds` attached (SCM_RIGHTS); ours are closed afterwards, so
/// the caller holds the only copies.
fn answer_with_fds(conn: &UnixStream, answer: &Response, fds: Vec<OwnedFd>) -> nix::Result<()> {
    let mut line = serde_json::to_vec(answer).unwrap_or_default();
    line.push(b'\n');
    let raw: Vec<std::os::fd::RawFd> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    let iov = [std::io::IoSlice::new(&line)];
    nix::sys::socket::sendmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(conn),
        &iov,
        if raw.is_empty() { &[] } else { &cmsg },
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map(drop)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Reads a pod's container records from its directory (what the shim last wrote).
pub fn read_records(dir: &Path) -> Vec<Record> {
    let mut out: Vec<Record> = std::fs::read_dir(dir.join(RECORDS))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a: &Record, b| a.started_at.cmp(&b.started_at));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_in_a_directory_too_deep_for_sockaddr_un_still_binds_and_answers() {
        let top = tempfile::tempdir().unwrap();
        let dir = top.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(dir.join(SOCKET).as_os_str().len() > 108);
        let listener = at_socket(&dir, |p| UnixListener::bind(p)).unwrap();
        assert!(
            dir.join(SOCKET).exists(),
            "the socket is where its path says"
        );
        let mut client = at_socket(&dir, |p| UnixStream::connect(p)).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(b"x").unwrap();
        let mut got = [0u8; 1];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
    }
}
