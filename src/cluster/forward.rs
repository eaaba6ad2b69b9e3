//! The host's way into a node: a TCP forwarder from a listener on the host's loopback to an
//! address inside the node's network namespace (what kind's and k3d's published API port is).
//! The listener was made in the host's namespace and connections to the target are made in the
//! caller's, so one process bridges the two.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};

/// Accepts for ever; each connection gets two threads copying one way each.
pub fn serve(listener: TcpListener, target: SocketAddr) {
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        std::thread::spawn(move || {
            let upstream = match TcpStream::connect(target) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("forward: connecting to {target}: {e}");
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
        std::thread::spawn(move || serve(front, target));
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"abc").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = String::new();
        c.read_to_string(&mut back).unwrap();
        assert_eq!(back, "cba");
    }
}
