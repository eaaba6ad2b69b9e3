//! `nanokube runtime`: a runc-compatible command line over the library API in container.rs.
//!
//! Errors go where runc sends them: with `--log FILE` a log line (text or JSON, the format
//! containerd and podman read the failure from) plus the bare message on stderr; without it,
//! one line on stderr.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use oci_spec::runtime::{Capability, Process};

use super::args::{Command, CreateArgs, ExecArgs, Global, LogFormat, Outcome, RuntimeArgs};
use super::container::{CreateOptions, ExecOptions, Runtime, Stdio};
use super::state::Status;
use super::{args, console, init, signal};

/// `nanokube runtime ARGS...`: parses `args` (what follows `runtime`) and runs the command;
/// returns the exit status. Usage errors exit 1 (3 for an unknown command) with one message,
/// help and version exit 0.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<i32> {
    match args::parse(args) {
        Ok(parsed) => {
            let log = Log::new(&parsed.global);
            if log.file.is_some() {
                // As runc: with --log, warnings are log lines, not stderr.
                let sink = Log::new(&parsed.global);
                super::set_warning_sink(move |m| {
                    sink.write("warning", m);
                });
            }
            if parsed.global.debug {
                let sink = Log::new(&parsed.global);
                super::set_debug_sink(move |m| sink.debug(m));
            }
            log.debug(&format!("{:?}", parsed.command));
            match run_command(&parsed.global, parsed.command, &log) {
                Ok(code) => Ok(code),
                Err(e) => {
                    // Our errors already spell out their causes in one line.
                    let message = e.to_string();
                    log.error(&message);
                    Ok(e.downcast_ref::<ExitWith>().map_or(1, |x| x.code))
                }
            }
        }
        Err(Outcome::Print(text)) => {
            print!("{text}");
            Ok(0)
        }
        Err(Outcome::Usage { message, code }) => {
            eprintln!("{message}");
            Ok(code)
        }
    }
}

/// A failure with its own exit status (runc's `exec` fails with 255).
#[derive(Debug)]
struct ExitWith {
    code: i32,
    message: String,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitWith {}

/// Where log lines go (`--log`, `--log-format`, `--debug`).
struct Log {
    file: Option<std::path::PathBuf>,
    format: LogFormat,
    debug: bool,
}

impl Log {
    fn new(g: &Global) -> Log {
        Log {
            file: g.log.clone(),
            format: g.log_format,
            debug: g.debug,
        }
    }

    fn line(&self, level: &str, message: &str) -> String {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        match self.format {
            LogFormat::Json => format!(
                "{}\n",
                serde_json::json!({"level": level, "msg": message, "time": time})
            ),
            LogFormat::Text => format!("time={time:?} level={level} msg={message:?}\n"),
        }
    }

    fn write(&self, level: &str, message: &str) -> bool {
        let Some(path) = &self.file else {
            return false;
        };
        let line = self.line(level, message);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        written.is_ok()
    }

    fn error(&self, message: &str) {
        // The message on stderr either way, so callers that do not read the log (people,
        // scripts) still see it; bare when it went to a log file, as runc prints it there
        // (podman quotes that line in its own error).
        if self.write("error", message) {
            eprintln!("{message}");
        } else {
            eprintln!("nanokube: {message}");
        }
    }

    fn debug(&self, message: &str) {
        if self.debug && !self.write("debug", message) {
            eprint!("{}", self.line("debug", message));
        }
    }
}

/// $LISTEN_FDS of a socket-activated caller: those descriptors go on to the container too.
fn listen_fds() -> u32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn create_options(c: &CreateArgs) -> CreateOptions {
    let listen = listen_fds();
    CreateOptions {
        bundle: c.bundle.clone(),
        spec: None,
        stdio: Stdio::default(),
        console_socket: c.console_socket.clone(),
        pid_file: c.pid_file.clone(),
        default_seccomp: c.default_seccomp,
        no_pivot: c.no_pivot,
        no_new_keyring: c.no_new_keyring,
        preserve_fds: listen + c.preserve_fds,
        extra_env: if listen > 0 {
            // As runc: the container's process is pid 1 in its namespace.
            vec![format!("LISTEN_FDS={listen}"), "LISTEN_PID=1".into()]
        } else {
            Vec::new()
        },
    }
}

/// Pid the foreground `run` and `exec` forward signals to.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

fn forward_signals(pid: i32) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: installing a handler that only calls async-signal-safe kill(2).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether the spec in `bundle` asks for a terminal (the relay or a console socket).
fn wants_terminal(bundle: &Path) -> bool {
    super::spec::load(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

const DETACHED_TTY: &str =
    "cannot allocate a terminal for a detached process without --console-socket";

pub fn run(args: RuntimeArgs) -> anyhow::Result<i32> {
    let log = Log::new(&args.global);
    run_command(&args.global, args.command, &log).map_err(|e| anyhow::anyhow!("{e}"))
}

fn run_command(global: &Global, command: Command, log: &Log) -> anyhow::Result<i32> {
    let mut rt = Runtime::new(&global.root);
    // One command per operation, on one thread: the init runs in the cloned copy of this
    // process instead of loading the binary again (see exe.rs). A fresh sealed copy each time
    // would cost more than the whole container start.
    rt.protection = super::exe::Protection::InProcess;
    let systemd_refused = || {
        anyhow::anyhow!(
            "--systemd-cgroup: systemd is not running here (no /run/systemd/system); \
             use cgroupfs paths without --systemd-cgroup"
        )
    };
    if global.systemd_cgroup && matches!(command, Command::Create(_) | Command::Run { .. }) {
        return Err(systemd_refused());
    }
    match command {
        Command::Init => init::main(),
        Command::Create(c) => {
            if c.console_socket.is_none() && wants_terminal(&c.bundle) {
                anyhow::bail!("{DETACHED_TTY}");
            }
            let created = rt.create(&c.id, create_options(&c))?;
            log.debug(&format!("created {} with init pid {}", c.id, created.pid));
            Ok(0)
        }
        Command::Start { id } => {
            rt.start(&id)?;
            Ok(0)
        }
        Command::Run {
            create,
            detach,
            keep,
        } => {
            if detach && create.console_socket.is_none() && wants_terminal(&create.bundle) {
                anyhow::bail!("{DETACHED_TTY}");
            }
            let mut created = rt.create(&create.id, create_options(&create))?;
            if !detach {
                forward_signals(created.pid);
            }
            if let Err(e) = rt.start(&create.id) {
                let _ = rt.delete(&create.id, true);
                return Err(e.into());
            }
            if detach {
                return Ok(0);
            }
            if let Some(master) = created.pty_master.take() {
                console::relay(&master)?;
            }
            let status = rt.wait(&created);
            FORWARD_TO.store(0, Ordering::Relaxed);
            if !keep {
                let _ = rt.delete(&create.id, true);
            }
            Ok(status?.code)
        }
        Command::State { id } => {
            println!("{}", serde_json::to_string_pretty(&rt.state(&id)?)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let text = signal.as_deref().unwrap_or("TERM");
            if text == "0" && all {
                rt.kill(&id, 0, true)?;
                return Ok(0);
            }
            if text == "0" {
                // Signal 0 asks only whether the container is alive.
                return match rt.state(&id)?.status {
                    Status::Stopped => anyhow::bail!("container not running"),
                    _ => Ok(0),
                };
            }
            rt.kill(&id, signal::parse(text)?, all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            rt.delete(&id, force)?;
            Ok(0)
        }
        Command::List { quiet, format } => {
            let mut list = rt.list()?;
            for s in &mut list {
                s.owner = owner_of(&super::state::dir(&global.root, &s.id));
            }
            if quiet {
                for s in &list {
                    println!("{}", s.id);
                }
            } else if format == "json" {
                println!("{}", serde_json::to_string(&list)?);
            } else {
                println!(
                    "{:<24} {:<8} {:<10} {:<40} {:<32} OWNER",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for s in &list {
                    println!(
                        "{:<24} {:<8} {:<10} {:<40} {:<32} {}",
                        s.id,
                        s.pid,
                        s.status.to_string(),
                        s.bundle.display(),
                        s.created,
                        s.owner
                    );
                }
            }
            Ok(0)
        }
        Command::Exec(e) => exec(&rt, e),
        Command::Ps {
            format,
            id,
            ps_args,
        } => ps(&rt, &format, &id, ps_args),
        Command::Pause { id } => {
            rt.pause(&id)?;
            Ok(0)
        }
        Command::Resume { id } => {
            rt.resume(&id)?;
            Ok(0)
        }
        Command::Update {
            id,
            resources,
            flags,
        } => {
            let json = match resources.as_deref() {
                None => None,
                Some("-") => {
                    let mut buf = Vec::new();
                    std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
                    Some(buf)
                }
                Some(path) => Some(
                    std::fs::read(path).map_err(|e| anyhow::anyhow!("--resources {path}: {e}"))?,
                ),
            };
            super::update::update(&rt, &id, &flags, json.as_deref())?;
            Ok(0)
        }
        Command::Events {
            id,
            stats,
            interval,
        } => {
            let stdout = std::io::stdout();
            super::events::run(&rt, &id, stats, interval, &mut stdout.lock())?;
            Ok(0)
        }
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&super::features::document())?
            );
            Ok(0)
        }
        Command::Spec { bundle, rootless } => {
            let dir = bundle.unwrap_or_else(|| ".".into());
            super::template::write(&dir, rootless)?;
            Ok(0)
        }
        Command::Unsupported { name } => {
            anyhow::bail!("{name} is not supported: nanokube has no checkpoint/restore (CRIU)")
        }
    }
}

/// The user owning a container's state dir, by name (`list` shows it, as runc does).
fn owner_of(dir: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata(dir).map(|m| m.uid()) else {
        return String::new();
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            (id == uid).then(|| name.to_string())
        })
        .next()
        .unwrap_or_else(|| format!("#{uid}"))
}

/// A capability name as the spec spells it (`CAP_NET_ADMIN`; `NET_ADMIN` is accepted too).
fn capability(name: &str) -> anyhow::Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| anyhow::anyhow!("--cap: unknown capability {name:?}"))
}

/// runc's exec: the container's process with the flags applied on top, or `--process` whole.
fn exec_process(rt: &Runtime, e: &ExecArgs) -> anyhow::Result<Process> {
    if let Some(path) = &e.process {
        let text = std::fs::read(path)
            .map_err(|err| anyhow::anyhow!("--process {}: {err}", path.display()))?;
        let mut doc: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|err| anyhow::anyhow!("--process {}: {err}", path.display()))?;
        // Go's decoder leaves absent fields zero, and runc takes such a file: root, and "/"
        // (runc's tty.bats sends one without user or cwd).
        if let Some(map) = doc.as_object_mut() {
            map.entry("user")
                .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
            map.entry("cwd").or_insert_with(|| serde_json::json!("/"));
        }
        let p: Process = serde_json::from_value(doc)
            .map_err(|err| anyhow::anyhow!("--process {}: {err}", path.display()))?;
        return Ok(p);
    }
    let spec = rt.saved_spec(&e.id)?;
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(e.command.clone()));
    if let Some(cwd) = &e.cwd {
        p.set_cwd(cwd.clone());
    }
    if !e.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let add = |set: &Option<oci_spec::runtime::Capabilities>, c: Capability| {
            let mut s = set.clone().unwrap_or_default();
            s.insert(c);
            Some(s)
        };
        for name in &e.caps {
            let c = capability(name)?;
            caps.set_bounding(add(caps.bounding(), c));
            caps.set_effective(add(caps.effective(), c));
            caps.set_permitted(add(caps.permitted(), c));
            caps.set_ambient(add(caps.ambient(), c));
        }
        p.set_capabilities(Some(caps));
    }
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(e.env.iter().cloned());
    p.set_env(Some(env));
    p.set_terminal(Some(e.tty.unwrap_or(false)));
    if let Some(nnp) = e.no_new_privs {
        p.set_no_new_privileges(Some(nnp));
    }
    let mut user = p.user().clone();
    if let Some(u) = &e.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u.as_str(), None),
        };
        if let Some(g) = gid {
            user.set_gid(g.parse().map_err(|_| {
                anyhow::anyhow!("parsing {g} as int for gid failed: invalid syntax")
            })?);
        }
        user.set_uid(
            uid.parse().map_err(|_| {
                anyhow::anyhow!("parsing {uid} as int for uid failed: invalid syntax")
            })?,
        );
    }
    if !e.additional_gids.is_empty() {
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        for g in &e.additional_gids {
            let n: i64 = g
                .parse()
                .map_err(|_| anyhow::anyhow!("--additional-gids: {g:?} is not a number"))?;
            if n < 0 || n > u32::MAX as i64 {
                anyhow::bail!("additional-gids must be a positive number {n}");
            }
            gids.push(n as u32);
        }
        user.set_additional_gids(Some(gids));
    }
    p.set_user(user);
    Ok(p)
}

/// As runc: every failure before the process runs (one that cannot start included, also
/// with --detach) is `exec failed: ...` with status 255, which containerd and podman read.
fn exec(rt: &Runtime, e: ExecArgs) -> anyhow::Result<i32> {
    exec_inner(rt, e).map_err(|err| {
        ExitWith {
            code: 255,
            message: format!("exec failed: {err}"),
        }
        .into()
    })
}

fn exec_inner(rt: &Runtime, e: ExecArgs) -> anyhow::Result<i32> {
    for (flag, value) in [
        ("--apparmor", &e.apparmor),
        ("--process-label", &e.process_label),
    ] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            anyhow::bail!("exec {flag} is not supported by nanokube");
        }
    }
    if !e.ignore_paused && rt.state(&e.id)?.status == Status::Paused {
        anyhow::bail!("cannot exec in a paused container (use --ignore-paused to override)");
    }
    let process = exec_process(rt, &e)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && e.detach && e.console_socket.is_none() {
        anyhow::bail!("{DETACHED_TTY}");
    }
    let mut proc = rt.exec(
        &e.id,
        ExecOptions {
            process: Some(process),
            detach: e.detach,
            preserve_fds: listen_fds() + e.preserve_fds,
            cgroup: e.cgroup.clone(),
            ..Default::default()
        },
    )?;
    if let Some(pf) = &e.pid_file {
        write_pid_file(pf, proc.pid)?;
    }
    let master = proc.pty_master.take();
    if let (Some(master), Some(socket)) = (&master, &e.console_socket) {
        super::container::send_console(socket, master)?;
    }
    if e.detach {
        return Ok(0);
    }
    forward_signals(proc.pid);
    let relayed = match (&master, &e.console_socket) {
        (Some(master), None) => console::relay(master),
        _ => Ok(()),
    };
    drop(master);
    // Once the process runs, its status is the answer (not a failure of exec).
    let code = proc.wait().map(|s| s.code);
    relayed?;
    Ok(code?)
}

/// Writes the pid file atomically (a reader never sees it half-written), as runc does.
fn write_pid_file(path: &Path, pid: i32) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| anyhow::anyhow!("pid file {}: {e}", path.display()))
}

/// Like runc: the host's ps(1) with the caller's arguments (default `-ef`), keeping the header
/// and the lines whose PID column names a process of the container.
fn ps(rt: &Runtime, format: &str, id: &str, ps_args: Vec<String>) -> anyhow::Result<i32> {
    let pids = rt.ps(id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args = if ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        ps_args
    };
    let out = std::process::Command::new("ps").args(&args).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(0);
    };
    let column = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| anyhow::anyhow!("ps {}: no PID column in its output", args.join(" ")))?;
    let stdout = std::io::stdout();
    let mut w = stdout.lock();
    writeln!(w, "{header}")?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(w, "{line}")?;
        }
    }
    Ok(0)
}
