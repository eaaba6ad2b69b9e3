//! Conntrack entries through ctnetlink (no `conntrack` tool needed on the node): a dump of the
//! IPv4 table and the deletion of chosen entries. UDP has no connection end, so an entry keeps
//! sending a client's datagrams to an endpoint that is gone until the entry times out; the
//! proxy deletes such entries when it removes the endpoint, as kube-proxy does.
//!
//! The messages are small and fixed, so they are laid out here by hand: a netlink header, the
//! netfilter header (`nfgenmsg`), and nested attributes (linux/netfilter/nfnetlink_conntrack.h).

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::net::Ipv4Addr;

use super::Error;

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const AF_INET: u8 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

pub const IPPROTO_UDP: u8 = 17;

/// One direction of a tracked flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tuple {
    pub src: Option<Ipv4Addr>,
    pub dst: Option<Ipv4Addr>,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// A conntrack entry: what the client sent to (`orig`) and what the reply comes from (`reply`,
/// the endpoint once DNAT has happened).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    pub orig: Tuple,
    pub reply: Tuple,
}

struct Conn {
    socket: Socket,
    seq: u32,
}

impl Conn {
    fn open() -> Result<Conn, Error> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(Error::io("ctnetlink socket"))?;
        socket.bind_auto().map_err(Error::io("ctnetlink bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(Error::io("ctnetlink connect"))?;
        Ok(Conn { socket, seq: 1 })
    }

    /// Sends one message; calls `each` with the attribute bytes of every reply message until
    /// the kernel's ACK or end of dump.
    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        attrs: &[u8],
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), Error> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut msg = Vec::with_capacity(20 + attrs.len());
        let len = (16 + 4 + attrs.len()) as u32;
        msg.extend_from_slice(&len.to_ne_bytes());
        msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&[AF_INET, 0, 0, 0]);
        msg.extend_from_slice(attrs);
        self.socket
            .send(&msg, 0)
            .map_err(Error::io("ctnetlink send"))?;
        loop {
            let (bytes, _) = self
                .socket
                .recv_from_full()
                .map_err(Error::io("ctnetlink recv"))?;
            let mut off = 0;
            while off + 16 <= bytes.len() {
                let len = u32::from_ne_bytes(bytes[off..off + 4].try_into().expect("4")) as usize;
                let ty = u16::from_ne_bytes(bytes[off + 4..off + 6].try_into().expect("2"));
                let rseq = u32::from_ne_bytes(bytes[off + 8..off + 12].try_into().expect("4"));
                if len < 16 || off + len > bytes.len() {
                    return Err(Error::Conntrack("truncated reply".into()));
                }
                let body = &bytes[off + 16..off + len];
                off += (len + 3) & !3;
                if rseq != seq {
                    continue;
                }
                match ty {
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().expect("4")))
                            .unwrap_or(0);
                        return if code == 0 {
                            Ok(())
                        } else {
                            Err(Error::Errno(nix::errno::Errno::from_raw(-code)))
                        };
                    }
                    _ => {
                        if body.len() >= 4 {
                            each(&body[4..]);
                        }
                    }
                }
            }
        }
    }
}

/// (type, payload) of each attribute in `buf`.
fn attributes(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((ty, &buf[4..len]));
        buf = &buf[((len + 3) & !3).min(buf.len())..];
    }
    out
}

fn parse_tuple(buf: &[u8]) -> Tuple {
    let mut t = Tuple::default();
    for (ty, v) in attributes(buf) {
        match ty {
            CTA_TUPLE_IP => {
                for (ty, v) in attributes(v) {
                    let ip = <[u8; 4]>::try_from(v).ok().map(Ipv4Addr::from);
                    match ty {
                        CTA_IP_V4_SRC => t.src = ip,
                        CTA_IP_V4_DST => t.dst = ip,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (ty, v) in attributes(v) {
                    let port = <[u8; 2]>::try_from(v).ok().map(u16::from_be_bytes);
                    match ty {
                        CTA_PROTO_NUM => t.proto = v.first().copied().unwrap_or(0),
                        CTA_PROTO_SRC_PORT => t.sport = port.unwrap_or(0),
                        CTA_PROTO_DST_PORT => t.dport = port.unwrap_or(0),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    t
}

fn attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn encode_tuple(t: &Tuple) -> Vec<u8> {
    let mut ip = Vec::new();
    attr(
        &mut ip,
        CTA_IP_V4_SRC,
        &t.src.unwrap_or(Ipv4Addr::UNSPECIFIED).octets(),
    );
    attr(
        &mut ip,
        CTA_IP_V4_DST,
        &t.dst.unwrap_or(Ipv4Addr::UNSPECIFIED).octets(),
    );
    let mut proto = Vec::new();
    attr(&mut proto, CTA_PROTO_NUM, &[t.proto]);
    attr(&mut proto, CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes());
    attr(&mut proto, CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
    let mut tuple = Vec::new();
    attr(&mut tuple, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    attr(&mut tuple, CTA_TUPLE_PROTO | NLA_F_NESTED, &proto);
    let mut out = Vec::new();
    attr(&mut out, CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple);
    out
}

/// Every IPv4 entry of the caller's network namespace.
pub fn list() -> Result<Vec<Flow>, Error> {
    let mut conn = Conn::open()?;
    let mut flows = Vec::new();
    conn.request(IPCTNL_MSG_CT_GET, NLM_F_DUMP, &[], |body| {
        let mut f = Flow::default();
        for (ty, v) in attributes(body) {
            match ty {
                CTA_TUPLE_ORIG => f.orig = parse_tuple(v),
                CTA_TUPLE_REPLY => f.reply = parse_tuple(v),
                _ => {}
            }
        }
        flows.push(f);
    })?;
    Ok(flows)
}

/// Deletes every entry `doomed` picks; returns how many went. An entry that ended meanwhile
/// is not an error.
pub fn delete_where(doomed: impl Fn(&Flow) -> bool) -> Result<usize, Error> {
    let flows: Vec<Flow> = list()?.into_iter().filter(|f| doomed(f)).collect();
    let mut conn = Conn::open()?;
    let mut n = 0;
    for f in &flows {
        match conn.request(
            IPCTNL_MSG_CT_DELETE,
            NLM_F_ACK,
            &encode_tuple(&f.orig),
            |_| {},
        ) {
            Ok(()) => n += 1,
            Err(Error::Errno(nix::errno::Errno::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tuple_reads_back_as_written() {
        let t = Tuple {
            src: Some(Ipv4Addr::new(10, 42, 0, 7)),
            dst: Some(Ipv4Addr::new(10, 43, 0, 5)),
            proto: IPPROTO_UDP,
            sport: 40000,
            dport: 53,
        };
        let enc = encode_tuple(&t);
        let outer = attributes(&enc);
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, CTA_TUPLE_ORIG);
        assert_eq!(parse_tuple(outer[0].1), t);
    }
}
