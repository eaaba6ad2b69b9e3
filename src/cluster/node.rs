//! A node's two processes on the host.
//!
//! `boot` (outside the node) moves itself into the node's cgroup and network namespace and
//! unshares new mount, pid, cgroup, uts and ipc namespaces; its child, `init`, is then the
//! node's pid 1. On a server node `boot` stays to forward the host's loopback API port into
//! the node, since no route joins the host to a node.
//!
//! `init` gives the node what a machine has: its own /proc, a /sys of its network namespace,
//! cgroup hierarchies rooted at its cgroup, a hostname and a machine-id. It then runs
//! `nanokube server` or `nanokube agent` and restarts it when it exits, as systemd restarts
//! k3s; pods live on in their shims meanwhile, which init adopts as the pid namespace's
//! reaper. When init ends, the kernel kills every process of the node.

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{cgroups, forward, layout, Error};

#[derive(Debug, Args)]
pub struct BootArgs {
    #[arg(long)]
    pub clusters_dir: PathBuf,
    #[arg(long)]
    pub cluster: String,
    #[arg(long)]
    pub node: String,
    /// Forward this port of the host's loopback (0: any free one, written to `api-port`) to
    /// the node's API server.
    #[arg(long)]
    pub api_port: Option<u16>,
    /// What init runs: nanokube's arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[arg(long)]
    pub node_dir: PathBuf,
    #[arg(long)]
    pub hostname: String,
    #[arg(long)]
    pub exe: PathBuf,
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// The namespaces a node has of its own besides its network namespace.
const NODE_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWCGROUP)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

pub fn boot(args: BootArgs) -> Result<i32, Error> {
    let cluster = layout::Cluster::load(&args.clusters_dir, &args.cluster)
        .map_err(|e| Error::io(format!("reading cluster {:?}", args.cluster), e))?;
    let node = cluster
        .node(&args.node)
        .ok_or_else(|| Error::NoNode(args.node.clone(), cluster.name.clone()))?
        .clone();
    let dir = cluster.node_dir(&node);
    // The listener is made before leaving the host's network namespace: a socket stays in the
    // namespace it was made in.
    let listener = match args.api_port {
        Some(port) => {
            let l = std::net::TcpListener::bind(("127.0.0.1", port))
                .map_err(|e| Error::io(format!("listening on 127.0.0.1:{port}"), e))?;
            let port = l.local_addr().map_err(|e| Error::io("api port", e))?.port();
            std::fs::write(dir.join("api-port"), port.to_string())
                .map_err(|e| Error::io("writing api-port", e))?;
            Some(l)
        }
        None => None,
    };
    let rel = cluster.node_cgroup(&node);
    cgroups::create(&rel).map_err(|e| Error::io("node cgroup", e))?;
    cgroups::enter(&rel, std::process::id()).map_err(|e| Error::io("node cgroup", e))?;
    let netns = std::fs::File::open(
        Path::new(crate::network::netns::NAMED_DIR).join(cluster.node_netns(&node)),
    )
    .map_err(|e| Error::io("opening the node's network namespace", e))?;
    setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::sys("setns(net)", e))?;
    // The forwarder starts before the unshare: once this thread has a pid namespace for its
    // children that is not its own, it can no longer make threads (clone(2) says EINVAL), and
    // the forwarder's own thread, made now, keeps the old one and may go on making them.
    if let Some(l) = listener {
        let target = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, layout::API_PORT));
        std::thread::spawn(move || forward::serve(l, forward::Targets::new(vec![target])));
    }
    unshare(NODE_NAMESPACES).map_err(|e| Error::sys("unshare", e))?;
    // The node's processes go one level down, so that the namespace's root cgroup has none
    // and may hand controllers on to /kubepods (cgroup2's no-internal-processes rule).
    let init_rel = rel.join("init");
    cgroups::create(&init_rel).map_err(|e| Error::io("node cgroup", e))?;
    cgroups::enter(&init_rel, std::process::id()).map_err(|e| Error::io("node cgroup", e))?;
    // Mounts made inside the node must not reach the host (whose / is often shared); the
    // host's later mounts still show inside.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| Error::sys("making / a slave mount", e))?;
    let log = log_file(&dir.join("init.log"))?;
    let mut init = Command::new(&cluster.exe)
        .args(["cluster", "init", "--node-dir"])
        .arg(&dir)
        .args(["--hostname", &node.name, "--exe"])
        .arg(&cluster.exe)
        .arg("--")
        .args(&args.command)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| Error::io("init.log", e))?)
        .stderr(log)
        .spawn()
        .map_err(|e| Error::io("starting the node's init", e))?;
    std::fs::write(dir.join("init.pid"), init.id().to_string())
        .map_err(|e| Error::io("writing init.pid", e))?;
    let status = init.wait().map_err(|e| Error::io("waiting for init", e))?;
    eprintln!("node {}: init ended: {status}", node.name);
    Ok(status.code().unwrap_or(1))
}

fn log_file(path: &Path) -> Result<std::fs::File, Error> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

/// What the host has mounted under /sys/fs/cgroup, read before /sys is replaced.
struct CgroupTree {
    /// A tmpfs holding the hierarchies (hybrid and v1 hosts), or cgroup2 itself (v2 hosts).
    tmpfs: bool,
    mounts: Vec<crate::runtime::cgroups::CgroupMount>,
    /// Links such as cpu -> cpu,cpuacct.
    links: Vec<(PathBuf, PathBuf)>,
}

fn host_cgroup_tree() -> CgroupTree {
    let mounts = cgroups::hierarchies();
    let root = Path::new("/sys/fs/cgroup");
    let tmpfs = !mounts.iter().any(|m| m.point == root);
    let links = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((e.path(), target))
        })
        .collect();
    CgroupTree {
        tmpfs,
        mounts,
        links,
    }
}

fn mount_fs(fstype: &str, target: &Path, flags: MsFlags, data: Option<&str>) -> Result<(), Error> {
    std::fs::create_dir_all(target)
        .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
    mount(Some(fstype), target, Some(fstype), flags, data)
        .map_err(|e| Error::sys(format!("mounting {fstype} on {}", target.display()), e))
}

/// Gives the node its own view of the machine (see the module comment).
fn set_up_machine(args: &InitArgs) -> Result<(), Error> {
    let cg = host_cgroup_tree();
    let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount_fs("proc", Path::new("/proc"), quiet, None)?;
    mount_fs("sysfs", Path::new("/sys"), quiet, None)?;
    let root = Path::new("/sys/fs/cgroup");
    if cg.tmpfs {
        mount_fs("tmpfs", root, quiet, Some("mode=755"))?;
    }
    for m in &cg.mounts {
        let options: Vec<&str> = m
            .options
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro"))
            .collect();
        mount_fs(&m.fstype, &m.point, quiet, Some(&options.join(",")))?;
    }
    if cg.tmpfs {
        for (link, target) in &cg.links {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    // Other clusters' namespaces are mounted under /run/netns of the host; a copy held here
    // would keep them alive after their own cluster is deleted.
    for e in std::fs::read_dir(crate::network::netns::NAMED_DIR)
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
    }
    let machine_id = Path::new("/etc/machine-id");
    if machine_id.exists() {
        let mine = args.node_dir.join("machine-id");
        if !mine.exists() {
            let id: String = (0..32)
                .map(|_| char::from_digit(rand::random::<u32>() % 16, 16).unwrap_or('0'))
                .collect();
            std::fs::write(&mine, format!("{id}\n")).map_err(|e| Error::io("machine-id", e))?;
        }
        mount(
            Some(&mine),
            machine_id,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::sys("bind-mounting the machine-id", e))?;
    }
    nix::unistd::sethostname(&args.hostname).map_err(|e| Error::sys("sethostname", e))?;
    Ok(())
}

/// How long init waits before starting the node's process again: 1 s doubling to 30 s, back to
/// 1 s once a run lasted a minute.
fn next_backoff(previous: Duration, ran: Duration) -> Duration {
    if ran >= Duration::from_secs(60) {
        Duration::from_secs(1)
    } else {
        (previous * 2).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }
}

pub fn init(args: InitArgs) -> Result<i32, Error> {
    set_up_machine(&args)?;
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals
        .thread_block()
        .map_err(|e| Error::sys("blocking signals", e))?;
    let sfd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| Error::sys("signalfd", e))?;
    let log_path = args.node_dir.join("nanokube.log");
    let start = || -> Result<(u32, Instant), Error> {
        let log = log_file(&log_path)?;
        // std resets the signal mask in the child, so it gets SIGTERM as usual.
        let child = Command::new(&args.exe)
            .args(&args.command)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| Error::io("nanokube.log", e))?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(format!("starting {}", args.exe.display()), e))?;
        eprintln!(
            "init: started {:?} as pid {}",
            args.command.first(),
            child.id()
        );
        Ok((child.id(), Instant::now()))
    };
    let (mut pid, mut started) = start()?;
    let mut alive = true;
    let mut backoff = Duration::ZERO;
    let mut restart_at: Option<Instant> = None;
    let mut stopping: Option<Instant> = None;
    loop {
        let timeout = restart_at
            .or(stopping.map(|s| s + Duration::from_secs(20)))
            .map(|t| t.saturating_duration_since(Instant::now()));
        if wait_readable(&sfd, timeout) {
            if let Ok(Some(info)) = sfd.read_signal() {
                match info.ssi_signo as i32 {
                    s if s == Signal::SIGCHLD as i32 => {}
                    _ if stopping.is_none() => {
                        eprintln!("init: stopping the node");
                        stopping = Some(Instant::now());
                        restart_at = None;
                        if alive {
                            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                        }
                    }
                    _ => {}
                }
            }
        }
        // Reap everything: the node's process, and any orphan (a shim's, a hook's) that the
        // pid namespace hands to its pid 1.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if status.pid() == Some(Pid::from_raw(pid as i32)) {
                        alive = false;
                        eprintln!("init: {:?} ended: {status:?}", args.command.first());
                        if stopping.is_none() {
                            backoff = next_backoff(backoff, started.elapsed());
                            restart_at = Some(Instant::now() + backoff);
                        }
                    }
                }
            }
        }
        if let Some(s) = stopping {
            if !alive || s.elapsed() >= Duration::from_secs(20) {
                return Ok(0);
            }
        }
        if restart_at.is_some_and(|t| Instant::now() >= t) {
            restart_at = None;
            match start() {
                Ok((p, s)) => {
                    (pid, started, alive) = (p, s, true);
                }
                Err(e) => {
                    eprintln!("init: {e}");
                    backoff = next_backoff(backoff, Duration::ZERO);
                    restart_at = Some(Instant::now() + backoff);
                }
            }
        }
    }
}

/// Waits until the signalfd can be read or `timeout` passes (None: forever).
fn wait_readable(sfd: &SignalFd, timeout: Option<Duration>) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(t) => PollTimeout::try_from(t.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    poll(&mut fds, timeout).is_ok_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_recover() {
        let s = Duration::from_secs;
        assert_eq!(next_backoff(Duration::ZERO, s(0)), s(1));
        assert_eq!(next_backoff(s(1), s(2)), s(2));
        assert_eq!(next_backoff(s(16), s(2)), s(30));
        assert_eq!(next_backoff(s(30), s(2)), s(30));
        assert_eq!(next_backoff(s(30), s(61)), s(1));
    }
}
