//! `nanokube runtime`: a runc-compatible command line over the library API in container.rs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};

use clap::{Args, Subcommand};

use super::container::{CreateOptions, ExecOptions, Runtime, Stdio};
use super::{init, signal, state};

#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Directory holding container state.
    #[arg(long, global = true, default_value = state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Accepted for runc compatibility; errors go to stderr.
    #[arg(long, global = true, hide = true)]
    log: Option<PathBuf>,
    /// Accepted for runc compatibility.
    #[arg(long = "log-format", global = true, hide = true)]
    log_format: Option<String>,
    /// Accepted for runc compatibility.
    #[arg(long, global = true, hide = true)]
    debug: bool,
    /// Accepted for runc compatibility (cgroups are managed directly).
    #[arg(long = "systemd-cgroup", global = true, hide = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; it waits for `start`.
    Create(CreateArgs),
    /// Start a created container's program.
    Start { id: String },
    /// Create and start; without -d wait, delete, and exit with the container's status.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once started, leaving the container running.
        #[arg(short, long)]
        detach: bool,
    },
    /// Print the OCI state of a container as JSON.
    State { id: String },
    /// Send a signal (name or number, default TERM) to a container.
    Kill {
        /// Signal every process in the container, not only its init.
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Delete a stopped (or created, or with --force running) container.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
        #[arg(short, long, default_value = "table")]
        format: String,
    },
    /// Run a command inside a running container; exits with its status.
    Exec {
        /// Working directory inside the container.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// Extra environment variables (NAME=VALUE).
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// uid[:gid].
        #[arg(short, long)]
        user: Option<String>,
        /// Allocate a terminal; its master goes to --console-socket.
        #[arg(short, long)]
        tty: bool,
        /// Unix socket that receives the terminal master (with --tty).
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        id: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List the processes of a container.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
    },
    /// Internal: the container's init (run by the runtime itself).
    #[command(hide = true)]
    Init,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal master when process.terminal is true.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Apply the built-in default seccomp profile when the spec has none.
    #[arg(long = "default-seccomp")]
    default_seccomp: bool,
    id: String,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.clone(),
            spec: None,
            stdio: Stdio::default(),
            console_socket: self.console_socket.clone(),
            pid_file: self.pid_file.clone(),
            default_seccomp: self.default_seccomp,
        }
    }
}

/// Pid the foreground `run` forwards signals to.
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

pub fn run(args: RuntimeArgs) -> anyhow::Result<i32> {
    // Our errors already spell out their causes in one line; flattening keeps the caller's
    // `{:#}` from repeating each cause.
    run_command(args).map_err(|e| anyhow::anyhow!("{e}"))
}

fn run_command(args: RuntimeArgs) -> anyhow::Result<i32> {
    let mut rt = Runtime::new(&args.root);
    // One command per operation: a fresh sealed copy each time would cost more than the
    // whole container start (see exe.rs), so the CLI uses the read-only bind.
    rt.protection = super::exe::Protection::ReadOnlyBind;
    match args.command {
        Command::Init => init::main(),
        Command::Create(c) => {
            rt.create(&c.id, c.options())?;
            Ok(0)
        }
        Command::Start { id } => {
            rt.start(&id)?;
            Ok(0)
        }
        Command::Run { create, detach } => {
            let created = rt.create(&create.id, create.options())?;
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
            let status = rt.wait(&created);
            FORWARD_TO.store(0, Ordering::Relaxed);
            let _ = rt.delete(&create.id, true);
            Ok(status?.code)
        }
        Command::State { id } => {
            println!("{}", serde_json::to_string_pretty(&rt.state(&id)?)?);
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = signal::parse(signal.as_deref().unwrap_or("TERM"))?;
            rt.kill(&id, sig, all)?;
            Ok(0)
        }
        Command::Delete { force, id } => {
            rt.delete(&id, force)?;
            Ok(0)
        }
        Command::List { quiet, format } => {
            let list = rt.list()?;
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
                        "{:<24} {:<8} {:<10} {:<40} {:<32} root",
                        s.id,
                        s.pid,
                        s.status.to_string(),
                        s.bundle.display(),
                        s.created
                    );
                }
            }
            Ok(0)
        }
        Command::Exec {
            cwd,
            env,
            user,
            tty,
            console_socket,
            id,
            command,
        } => {
            if tty && console_socket.is_none() {
                anyhow::bail!("exec --tty needs --console-socket");
            }
            let user = match user {
                None => None,
                Some(u) => {
                    let mut parts = u.splitn(2, ':');
                    let uid: u32 = parts
                        .next()
                        .unwrap_or("")
                        .parse()
                        .map_err(|_| anyhow::anyhow!("--user: expected uid[:gid]"))?;
                    let gid: u32 = match parts.next() {
                        Some(g) => g
                            .parse()
                            .map_err(|_| anyhow::anyhow!("--user: expected uid[:gid]"))?,
                        None => 0,
                    };
                    Some((uid, gid))
                }
            };
            let mut proc = rt.exec(
                &id,
                ExecOptions {
                    args: command,
                    env,
                    cwd,
                    user,
                    tty,
                    stdio: Stdio::default(),
                },
            )?;
            if let (Some(master), Some(socket)) = (proc.pty_master.take(), &console_socket) {
                super::container::send_console(socket, &master)?;
            }
            forward_signals(proc.pid);
            Ok(proc.wait()?.code)
        }
        Command::Ps { format, id } => {
            let pids = rt.ps(&id)?;
            if format == "json" {
                println!("{}", serde_json::to_string(&pids)?);
                return Ok(0);
            }
            // Like runc: the host's `ps -ef`, filtered to the container's processes.
            let out = std::process::Command::new("ps").arg("-ef").output()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            if let Some(header) = lines.next() {
                println!("{header}");
            }
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
            Ok(0)
        }
    }
}
