//! `nanokube runtime`: a runc-compatible command line over the library API in container.rs.

use std::sync::atomic::{AtomicI32, Ordering};

use super::args::{Command, CreateArgs, Outcome, RuntimeArgs};
use super::container::{CreateOptions, ExecOptions, Runtime, Stdio};
use super::{args, init, signal};

/// `nanokube runtime ARGS...`: parses `args` (what follows `runtime`) and runs the command;
/// returns the exit status. Usage errors exit 2 with one message, help and version exit 0.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> anyhow::Result<i32> {
    match args::parse(args) {
        Ok(parsed) => run(parsed),
        Err(Outcome::Print(text)) => {
            print!("{text}");
            Ok(0)
        }
        Err(Outcome::Usage(text)) => {
            eprintln!("{text}");
            Ok(2)
        }
    }
}

fn create_options(c: &CreateArgs) -> CreateOptions {
    CreateOptions {
        bundle: c.bundle.clone(),
        spec: None,
        stdio: Stdio::default(),
        console_socket: c.console_socket.clone(),
        pid_file: c.pid_file.clone(),
        default_seccomp: c.default_seccomp,
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
    // One command per operation, on one thread: the init runs in the cloned copy of this
    // process instead of loading the binary again (see exe.rs). A fresh sealed copy each time
    // would cost more than the whole container start.
    rt.protection = super::exe::Protection::InProcess;
    match args.command {
        Command::Init => init::main(),
        Command::Create(c) => {
            rt.create(&c.id, create_options(&c))?;
            Ok(0)
        }
        Command::Start { id } => {
            rt.start(&id)?;
            Ok(0)
        }
        Command::Run { create, detach } => {
            let created = rt.create(&create.id, create_options(&create))?;
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
