//! The host's way into a cluster: a TCP forwarder from a listener to addresses inside the
//! cluster's network namespaces (what kind's and k3d's published API port is, and with several
//! servers k3d's server load balancer). The listener was made where its clients are and
//! connections to the targets are made in the caller's namespace, so one process bridges the
//! two.
//!
//! Connections go round-robin over the targets; a target that refused or did not answer
//! within [`CONNECT_TIMEOUT`] is skipped for [`DOWN_FOR`] and the next one tried, so a dead
//! server costs its clients one timeout, not one per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// The targets, where the next connection goes and which are down.
pub struct Targets {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Targets {
    pub fn new(addrs: Vec<SocketAddr>) -> Arc<Targets> {
        let n = addrs.len();
        Arc::new(Targets {
            addrs,
            next: AtomicUsize::new(0),
            down_until: Mutex::new(vec![None; n]),
        })
    }

    /// A connection to the next target that answers: those not known to be down first, in
    /// turn, then those that are (one may have come back).
    fn connect(&self) -> std::io::Result<TcpStream> {
        let n = self.addrs.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let down: Vec<bool> = {
            let d = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
            d.iter().map(|t| t.is_some_and(|t| t > now)).collect()
        };
        let order = (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !down[*i])
            .chain((0..n).map(|i| (start + i) % n).filter(|i| down[*i]));
        let mut last = std::io::Error::other("no targets");
        for i in order {
            match TcpStream::connect_timeout(&self.addrs[i], CONNECT_TIMEOUT) {
                Ok(s) => {
                    self.down_until.lock().unwrap_or_else(|e| e.into_inner())[i] = None;
                    return Ok(s);
                }
                Err(e) => {
                    self.down_until.lock().unwrap_or_else(|e| e.into_inner())[i] =
                        Some(Instant::now() + DOWN_FOR);
                    last = e;
                }
            }
        }
        Err(last)
    }
}

/// Accepts for ever; each connection gets two threads copying one way each.
pub fn serve(listener: TcpListener, targets: Arc<Targets>) {
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let targets = targets.clone();
        std::thread::spawn(move || {
            let upstream = match targets.connect() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("forward: connecting to {:?}: {e}", targets.addrs);
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                return;
            };
            let back = std::thread::spawn(move || pipe(u2, c2));
            pipe(client, upstream);
            let _ = back.join();
        });
    }
}

/// Copies `from` to `to` until `from` ends, then ends `to`'s writing half so the other side
/// sees the end too.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_flow_both_ways_and_ends_are_passed_on() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            got.reverse();
            s.write_all(&got).unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        std::thread::spawn(move || serve(front, Targets::new(vec![target])));
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"abc").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, "cba");
    }

    /// Each accepted connection answers with the listener's name.
    fn named_server(name: &'static str) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let _ = s.write_all(name.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn connections_alternate_and_skip_a_dead_target() {
        let (a, b) = (named_server("a"), named_server("b"));
        // A port nothing listens on: refused at once.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let targets = Targets::new(vec![a, dead, b]);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut s = targets.connect().unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            seen.push(got);
        }
        assert_eq!(seen, ["a", "b", "b", "a"]);
        // The dead one is marked down and no longer tried first.
        assert!(targets.down_until.lock().unwrap()[1].is_some());
    }
}
