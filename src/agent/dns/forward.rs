//! Names outside the cluster, when `--cluster-dns-forward` asks for it: the query goes as it
//! came to the node's own resolvers (from the host's resolv.conf, as the kubelet's "Default" DNS
//! policy uses them), over UDP and again over TCP when the answer was truncated. Answers are
//! kept for their TTL (at most [`MAX_CACHE_TTL`]) in a small cache, so a pod's burst of
//! identical lookups costs one upstream round trip.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire;

/// How long an upstream gets to answer before the next is tried.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Answers are kept at most this long, whatever their TTL says.
pub const MAX_CACHE_TTL: u32 = 30;
/// Entries the cache holds; past it, the expired ones go, then the oldest.
pub const CACHE_ENTRIES: usize = 4096;

/// The nameservers of a resolv.conf text, without loopback ones: a stub such as
/// systemd-resolved's 127.0.0.53 means nothing inside a pod's network namespace, and this
/// server answering itself would loop.
pub fn upstreams(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.parse::<IpAddr>().ok())
        })
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The node's upstream resolvers: /etc/resolv.conf, or, when it names only a local stub,
/// systemd-resolved's list of the real ones (as the kubelet does).
pub fn node_upstreams() -> Vec<SocketAddr> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let direct = upstreams(&read("/etc/resolv.conf"));
    if !direct.is_empty() {
        return direct;
    }
    upstreams(&read("/run/systemd/resolve/resolv.conf"))
}

type Key = (String, RecordType, DNSClass);

struct Entry {
    reply: Message,
    stored: Instant,
    expires: Instant,
}

/// Forwarded answers by question.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").finish_non_exhaustive()
    }
}

/// How long `reply` may be reused: the smallest TTL of its answers, or for a negative answer
/// its SOA's (RFC 2308); nothing for failures.
fn cache_ttl(reply: &Message) -> Option<u32> {
    match reply.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        _ => return None,
    }
    if reply.metadata.truncation {
        return None;
    }
    let ttl = if reply.answers.is_empty() {
        reply.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        })?
    } else {
        reply.answers.iter().map(|r| r.ttl).min()?
    };
    (ttl > 0).then_some(ttl.min(MAX_CACHE_TTL))
}

impl Cache {
    /// A kept answer to `req`, with `req`'s id and its question as the client spelled it.
    pub fn get(&self, req: &Message, now: Instant) -> Option<Message> {
        let key = wire::question(req)?;
        let entries = self.entries.lock().expect("dns cache lock");
        let e = entries.get(&key).filter(|e| e.expires > now)?;
        let mut m = e.reply.clone();
        m.metadata.id = req.metadata.id;
        m.queries = req.queries.clone();
        // The time it spent here is taken off, so no client keeps it past its TTL.
        let age = now.duration_since(e.stored).as_secs() as u32;
        for r in m.answers.iter_mut().chain(m.authorities.iter_mut()) {
            r.decrement_ttl(age);
        }
        Some(m)
    }

    /// Keeps `reply` to `req` if it may be cached.
    pub fn put(&self, req: &Message, reply: &Message, now: Instant) {
        let (Some(key), Some(ttl)) = (wire::question(req), cache_ttl(reply)) else {
            return;
        };
        let mut entries = self.entries.lock().expect("dns cache lock");
        if entries.len() >= CACHE_ENTRIES {
            entries.retain(|_, e| e.expires > now);
        }
        if entries.len() >= CACHE_ENTRIES {
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.stored)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            Entry {
                reply: reply.clone(),
                stored: now,
                expires: now + Duration::from_secs(ttl.into()),
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.lock().expect("dns cache lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The upstream resolvers and the cache of their answers.
#[derive(Debug)]
pub struct Forwarder {
    pub upstreams: Vec<SocketAddr>,
    pub cache: Cache,
}

/// Errors of one upstream exchange.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("{0}: no answer in {UPSTREAM_TIMEOUT:?}")]
    Timeout(SocketAddr),
    #[error("{0}: a reply that does not decode or does not match the query")]
    BadReply(SocketAddr),
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Cache::default(),
        }
    }

    /// The answer to `req` (raw bytes `raw`): from the cache, else from the first upstream that
    /// answers; SERVFAIL when none does.
    pub async fn resolve(&self, req: &Message, raw: &[u8]) -> Message {
        if let Some(m) = self.cache.get(req, Instant::now()) {
            return m;
        }
        for &up in &self.upstreams {
            match exchange(up, req, raw).await {
                Ok(reply) => {
                    self.cache.put(req, &reply, Instant::now());
                    return reply;
                }
                Err(e) => tracing::debug!(error = %e, "DNS upstream"),
            }
        }
        let mut m = Message::error_msg(
            req.metadata.id,
            req.metadata.op_code,
            ResponseCode::ServFail,
        );
        m.metadata.recursion_desired = req.metadata.recursion_desired;
        m.metadata.recursion_available = true;
        m.add_queries(req.queries.iter().cloned());
        m
    }
}

/// One query to one upstream: UDP, then TCP if the UDP answer was truncated.
async fn exchange(up: SocketAddr, req: &Message, raw: &[u8]) -> Result<Message, Error> {
    let io = |e| Error::Io(up, e);
    let bind: SocketAddr = if up.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect(up).await.map_err(io)?;
    sock.send(raw).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    let reply = loop {
        let n = tokio::time::timeout(UPSTREAM_TIMEOUT, sock.recv(&mut buf))
            .await
            .map_err(|_| Error::Timeout(up))?
            .map_err(io)?;
        // A stray datagram with another id is not the answer; keep waiting for it.
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == req.metadata.id && m.queries == req.queries => break m,
            _ => continue,
        }
    };
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    tokio::time::timeout(UPSTREAM_TIMEOUT, exchange_tcp(up, req, raw))
        .await
        .map_err(|_| Error::Timeout(up))?
}

async fn exchange_tcp(up: SocketAddr, req: &Message, raw: &[u8]) -> Result<Message, Error> {
    let io = |e| Error::Io(up, e);
    let mut s = tokio::net::TcpStream::connect(up).await.map_err(io)?;
    let len = u16::try_from(raw.len()).map_err(|_| Error::BadReply(up))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(raw);
    s.write_all(&out).await.map_err(io)?;
    let n = s.read_u16().await.map_err(io)?;
    let mut buf = vec![0u8; n.into()];
    s.read_exact(&mut buf).await.map_err(io)?;
    match Message::from_vec(&buf) {
        Ok(m) if m.metadata.id == req.metadata.id => Ok(m),
        _ => Err(Error::BadReply(up)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn upstreams_skip_loopback_stubs() {
        let text = "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver ::1\nnameserver 2001:db8::1\nsearch example.org\noptions edns0\nnameserver bogus\n";
        assert_eq!(
            upstreams(text),
            [
                "192.0.2.1:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::1]:53".parse().unwrap()
            ]
        );
        assert!(upstreams("nameserver 127.0.0.1\n").is_empty());
    }

    fn query(name: &str) -> Message {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m
    }

    fn answer(req: &Message, ttl: u32) -> Message {
        let mut m = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        m.add_queries(req.queries.iter().cloned());
        m.add_answer(Record::from_rdata(
            req.queries[0].name.clone(),
            ttl,
            RData::A(A("192.0.2.7".parse().unwrap())),
        ));
        m
    }

    #[test]
    fn the_cache_keeps_answers_for_their_ttl_and_rewrites_id_and_ttl() {
        let cache = Cache::default();
        let t0 = Instant::now();
        let req = query("example.com.");
        cache.put(&req, &answer(&req, 20), t0);
        let again = query("EXAMPLE.com.");
        let hit = cache.get(&again, t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(hit.metadata.id, again.metadata.id);
        assert_eq!(hit.queries, again.queries);
        assert_eq!(hit.answers[0].ttl, 17);
        assert!(cache.get(&again, t0 + Duration::from_secs(21)).is_none());
        // Long TTLs are cut.
        cache.put(&req, &answer(&req, 3600), t0);
        assert!(cache.get(&req, t0 + Duration::from_secs(31)).is_none());
    }

    #[test]
    fn negative_answers_are_kept_for_the_soa_minimum_and_failures_not_at_all() {
        let cache = Cache::default();
        let t0 = Instant::now();
        let req = query("nope.example.com.");
        let mut nx = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
        nx.metadata.response_code = ResponseCode::NXDomain;
        nx.add_queries(req.queries.iter().cloned());
        let root = Name::from_ascii("example.com.").unwrap();
        nx.add_authority(Record::from_rdata(
            root.clone(),
            300,
            RData::SOA(SOA::new(root.clone(), root, 1, 1, 1, 1, 10)),
        ));
        cache.put(&req, &nx, t0);
        assert!(cache.get(&req, t0 + Duration::from_secs(9)).is_some());
        assert!(cache.get(&req, t0 + Duration::from_secs(11)).is_none());

        let other = query("fail.example.com.");
        let fail = Message::error_msg(
            other.metadata.id,
            other.metadata.op_code,
            ResponseCode::ServFail,
        );
        cache.put(&other, &fail, t0);
        assert!(cache.get(&other, t0).is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = Cache::default();
        let t0 = Instant::now();
        for i in 0..CACHE_ENTRIES + 10 {
            let req = query(&format!("n{i}.example.com."));
            cache.put(
                &req,
                &answer(&req, 30),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(cache.len(), CACHE_ENTRIES);
        assert!(cache.get(&query("n0.example.com."), t0).is_none());
    }

    /// A resolver on loopback that answers every A query with 192.0.2.7 and counts them.
    async fn fake_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                let req = Message::from_vec(&buf[..n]).unwrap();
                let reply = answer(&req, 30).to_vec().unwrap();
                sock.send_to(&reply, from).await.unwrap();
            }
        });
        (addr, count)
    }

    #[tokio::test]
    async fn forwards_to_the_first_live_upstream_and_caches() {
        let (up, count) = fake_upstream().await;
        // A loopback port nobody listens on: refused at once, then the live one answers.
        let dead = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap()
        };
        let f = Forwarder::new(vec![dead, up]);
        let req = query("example.com.");
        let reply = f.resolve(&req, &req.to_vec().unwrap()).await;
        assert_eq!(reply.metadata.id, req.metadata.id);
        assert_eq!(
            &reply.answers[0].data,
            &RData::A(A("192.0.2.7".parse().unwrap()))
        );
        let again = query("example.com.");
        let cached = f.resolve(&again, &again.to_vec().unwrap()).await;
        assert_eq!(cached.metadata.id, again.metadata.id);
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "the second answer came from the cache"
        );
    }

    #[tokio::test]
    async fn servfail_when_no_upstream_answers() {
        let f = Forwarder::new(vec![]);
        let req = query("example.com.");
        let reply = f.resolve(&req, &req.to_vec().unwrap()).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(reply.queries, req.queries);
    }
}
