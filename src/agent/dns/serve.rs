//! The sockets: UDP and TCP port 53 on the node's DNS address. Each query is answered from the
//! current index snapshot (taken under a lock held for a pointer copy); only forwarded ones
//! wait on the network, in tasks of their own, so they never hold up the cluster's names.

use hickory_proto::op::{Message, MessageType, ResponseCode};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::forward::Forwarder;
use super::records::Index;
use super::wire::{self, Reply, Transport};

/// A TCP client that sends nothing for this long is dropped (RFC 7766 suggests seconds).
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// The index the server answers from; None until the first full listing.
pub type Shared = Arc<RwLock<Option<Arc<Index>>>>;

/// What the sockets share.
#[derive(Debug)]
pub struct Server {
    pub index: Shared,
    /// None: names outside the cluster are refused.
    pub forwarder: Option<Forwarder>,
}

impl Server {
    /// The reply to `req` from the current snapshot of the index.
    fn respond(&self, req: &Message) -> Reply {
        let index = self.index.read().expect("dns index lock").clone();
        wire::respond(index.as_deref(), req, self.forwarder.is_some())
    }

    /// The reply `respond` asked to forward.
    async fn forward(&self, req: &Message, raw: &[u8]) -> Message {
        match &self.forwarder {
            Some(f) => f.resolve(req, raw).await,
            // `respond` forwards only when there is a forwarder.
            None => {
                Message::error_msg(req.metadata.id, req.metadata.op_code, ResponseCode::Refused)
            }
        }
    }

    /// The encoded reply to raw query bytes over `transport`; None for something not worth an
    /// answer (a reply, or a message too short to have an id).
    pub async fn answer(&self, raw: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let req = match Message::from_vec(raw) {
            Ok(m) if m.metadata.message_type == MessageType::Query => m,
            Ok(_) => return None,
            Err(_) => return wire::format_error(raw),
        };
        let reply = match self.respond(&req) {
            Reply::Message(m) => m,
            Reply::Forward => self.forward(&req, raw).await,
        };
        wire::encode(&reply, transport, wire::udp_limit(&req))
    }
}

/// Answers UDP queries on `sock` until the process ends.
pub async fn udp(server: Arc<Server>, sock: UdpSocket) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "DNS udp receive");
                continue;
            }
        };
        let raw = &buf[..n];
        let req = match Message::from_vec(raw) {
            Ok(m) if m.metadata.message_type == MessageType::Query => m,
            Ok(_) => continue,
            Err(_) => {
                if let Some(out) = wire::format_error(raw) {
                    let _ = sock.send_to(&out, from).await;
                }
                continue;
            }
        };
        let limit = wire::udp_limit(&req);
        match server.respond(&req) {
            // The cluster's own names are answered inline: no task per query on the hot path.
            Reply::Message(m) => {
                if let Some(out) = wire::encode(&m, Transport::Udp, limit) {
                    let _ = sock.send_to(&out, from).await;
                }
            }
            Reply::Forward => {
                let (server, sock, raw) = (server.clone(), sock.clone(), raw.to_vec());
                tokio::spawn(async move {
                    let m = server.forward(&req, &raw).await;
                    if let Some(out) = wire::encode(&m, Transport::Udp, limit) {
                        let _ = sock.send_to(&out, from).await;
                    }
                });
            }
        }
    }
}

/// Accepts TCP clients on `listener` until the process ends.
pub async fn tcp(server: Arc<Server>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(tcp_client(server.clone(), stream, peer));
            }
            Err(e) => {
                tracing::debug!(error = %e, "DNS tcp accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One TCP client: length-prefixed queries, answered in order, until it closes or idles.
async fn tcp_client(server: Arc<Server>, mut stream: TcpStream, peer: SocketAddr) {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(n)) => n,
            _ => return,
        };
        let mut raw = vec![0u8; len.into()];
        if !matches!(
            tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut raw)).await,
            Ok(Ok(_))
        ) {
            return;
        }
        let Some(out) = server.answer(&raw, Transport::Tcp).await else {
            continue;
        };
        let Ok(n) = u16::try_from(out.len()) else {
            tracing::debug!(%peer, "DNS answer over 64 KiB dropped");
            return;
        };
        let mut framed = n.to_be_bytes().to_vec();
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}
