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
