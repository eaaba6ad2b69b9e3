//! Reaching into a pod's network namespace from the node: a TCP connection to the pod's own
//! loopback (what `kubectl port-forward` promises: a server that listens only on 127.0.0.1
//! inside the pod is reachable). A socket belongs to the namespace it was made in, so a helper
//! thread enters the namespace, connects and ends; the caller's thread never moves.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// Connects to `localhost:port` inside the network namespace at `netns` (a /proc/<pid>/ns/net),
/// over IPv4 and then IPv6; the error names both attempts as the CRI runtimes do.
pub fn connect_localhost(netns: &Path, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let e4 = match TcpStream::connect_timeout(&v4, timeout) {
                Ok(s) => return Ok(s),
                Err(e) => e,
            };
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            match TcpStream::connect_timeout(&v6, timeout) {
                Ok(s) => Ok(s),
                Err(e6) => Err(std::io::Error::new(
                    e4.kind(),
                    format!(
                        "failed to connect to localhost:{port} inside the pod's network namespace, IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {}",
                        e4.kind(),
                        e6.kind()
                    ),
                )),
            }
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    })
}

/// Where named network namespaces live, as `ip netns` keeps them (so `ip netns exec` works on
/// the ones made here).
pub const NAMED_DIR: &str = "/run/netns";

/// Creates the named network namespace `/run/netns/<name>`: a helper thread unshares a new
/// namespace and bind-mounts its handle onto the file, which then keeps it alive with no
/// process in it. An existing one is an error (two owners would tear it down twice).
pub fn create_named(name: &str) -> Result<std::path::PathBuf, super::Error> {
    let dir = Path::new(NAMED_DIR);
    std::fs::create_dir_all(dir).map_err(super::Error::io(format!("creating {NAMED_DIR}")))?;
    let path = dir.join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(super::Error::io(format!("creating {}", path.display())))?;
    let target = path.clone();
    let made = std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| super::Error::io("unshare(CLONE_NEWNET)")(e.into()))?;
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| super::Error::io(format!("bind-mounting {}", target.display()))(e.into()))
        })
        .join()
        .unwrap_or_else(|_| Err(super::Error::Netlink("netns thread panicked".into())))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Removes a namespace made by [`create_named`]; the kernel frees it once nothing else holds
/// it. A missing one is not an error.
pub fn delete_named(name: &str) -> Result<(), super::Error> {
    let path = Path::new(NAMED_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(super::Error::io(format!("unmounting {}", path.display()))(
                e.into(),
            ))
        }
    }
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(super::Error::io(format!("removing {}", path.display()))(e))
        }
        _ => Ok(()),
    }
}
