//! rtnetlink requests over a synchronous socket: the few operations pod networking needs (links,
//! addresses, routes), each a request answered by an ACK or an errno. A socket belongs to the
//! network namespace it was opened in, so [`Netlink::in_namespace`] opens one from a thread that
//! entered the pod's namespace and uses it from anywhere afterwards.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::Error;

/// One rtnetlink socket and the sequence numbers of its requests.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Netlink(fd {})", self.socket.as_raw_fd())
    }
}

/// A link as the kernel reports it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub kind: Option<String>,
    pub master: Option<u32>,
    pub mac: Option<[u8; 6]>,
    pub mtu: Option<u32>,
    /// A VXLAN link's VNI, local address and UDP port.
    pub vxlan: Option<VxlanParams>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VxlanParams {
    pub vni: Option<u32>,
    pub local: Option<Ipv4Addr>,
    pub port: Option<u16>,
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn open() -> Result<Netlink, Error> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(Error::io("netlink socket"))?;
        socket.bind_auto().map_err(Error::io("netlink bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(Error::io("netlink connect"))?;
        Ok(Netlink { socket, seq: 1 })
    }

    /// A socket in the network namespace `ns` (an open /proc/<pid>/ns/net). The calling thread
    /// never changes namespace: a helper thread enters it, opens the socket and ends.
    pub fn in_namespace(ns: BorrowedFd<'_>) -> Result<Netlink, Error> {
        let fd = ns.try_clone_to_owned().map_err(Error::io("dup netns"))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::io("setns")(e.into()))?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Netlink("netns thread panicked".into())))
        })
    }

    fn send(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(Error::io("netlink send"))?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (bytes, _) = self
                .socket
                .recv_from_full()
                .map_err(Error::io("netlink recv"))?;
            let mut offset = 0;
            while offset < bytes.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes[offset..])
                    .map_err(|e| Error::Netlink(format!("bad reply: {e}")))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if reply.header.sequence_number != header.sequence_number {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => {
                                Err(Error::Errno(nix::errno::Errno::from_raw(-code.get())))
                            }
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump {
                            // A get answers with the object, then (asked for) nothing more.
                            if flags & NLM_F_ACK == 0 {
                                return Ok(out);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The link named `name`, if it exists.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, Error> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.send(RouteNetlinkMessage::GetLink(m), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(link_of)),
            Err(Error::Errno(nix::errno::Errno::ENODEV)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link in the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let replies = self.send(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(replies.into_iter().filter_map(link_of).collect())
    }

    /// Creates a bridge (EEXIST if a link of that name exists).
    pub fn add_bridge(&mut self, name: &str) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.send(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Creates a veth pair: `host` here, `peer` moved at once into the namespace `peer_ns`.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_ns: BorrowedFd<'_>,
    ) -> Result<(), Error> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_string()));
        p.attributes
            .push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(host.to_string()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.send(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Sets a link up, and its master when given.
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(master) = master {
            m.attributes.push(LinkAttribute::Controller(master));
        }
        self.send(RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
        Ok(())
    }

    /// Turns on hairpin mode of a bridge port: a frame may leave by the port it came in on.
    /// A pod reaching itself through a Service needs it: with bridge netfilter on, the DNAT back
    /// to the pod happens while the frame is being bridged, and the bridge would drop it.
    pub fn set_hairpin(&mut self, index: u32) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        // Port options are changed through NEWLINK on the existing link (as `ip link set
        // ... type bridge_slave` does); SETLINK ignores them.
        self.send(RouteNetlinkMessage::NewLink(m), NLM_F_ACK)?;
        Ok(())
    }

    /// Deletes a link (a veth's peer goes with it). A link already gone is not an error.
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        match self.send(RouteNetlinkMessage::DelLink(m), NLM_F_ACK) {
            Ok(_) | Err(Error::Errno(nix::errno::Errno::ENODEV)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/prefix` to a link; an address already there is not an error.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        self.add_labelled_address(index, addr, prefix, None)
    }

    /// [`Netlink::add_address`] with an address label (`<link>:<tag>`, at most 15 bytes), which
    /// marks whose the address is so it can be found and removed again.
    pub fn add_labelled_address(
        &mut self,
        index: u32,
        addr: Ipv4Addr,
        prefix: u8,
        label: Option<&str>,
    ) -> Result<(), Error> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        if let Some(label) = label {
            m.attributes
                .push(AddressAttribute::Label(label.to_string()));
        }
        if prefix < 31 {
            let bcast = u32::from(addr) | (u32::MAX >> prefix);
            m.attributes.push(AddressAttribute::Broadcast(bcast.into()));
        }
        match self.send(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) | Err(Error::Errno(nix::errno::Errno::EEXIST)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds (or replaces) a route to `dst/prefix` through `gateway` or directly on `oif`.
    pub fn replace_route(
        &mut self,
        dst: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
        oif: Option<u32>,
    ) -> Result<(), Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        m.header.kind = RouteType::Unicast;
        if prefix > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        }
        if let Some(gw) = gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        if let Some(oif) = oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        self.send(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Deletes the main-table route to `dst/prefix` (a route already gone is not an error).
    pub fn delete_route(&mut self, dst: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.scope = RouteScope::NoWhere;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        match self.send(RouteNetlinkMessage::DelRoute(m), NLM_F_ACK) {
            Ok(_) | Err(Error::Errno(nix::errno::Errno::ESRCH)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The IPv4 addresses on a link, with their prefix lengths.
    pub fn addresses(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>, Error> {
        Ok(self
            .labelled_addresses(index)?
            .into_iter()
            .map(|(ip, prefix, _)| (ip, prefix))
            .collect())
    }

    /// The IPv4 addresses on a link, with their prefix lengths and labels.
    pub fn labelled_addresses(
        &mut self,
        index: u32,
    ) -> Result<Vec<(Ipv4Addr, u8, Option<String>)>, Error> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let replies = self.send(RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let label = a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Label(l) => Some(l.clone()),
                        _ => None,
                    });
                    a.attributes.iter().find_map(|at| match at {
                        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => {
                            Some((*ip, a.header.prefix_len, label.clone()))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Removes `addr/prefix` from a link (an address already gone is not an error).
    pub fn delete_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        match self.send(RouteNetlinkMessage::DelAddress(m), NLM_F_ACK) {
            Ok(_) | Err(Error::Errno(nix::errno::Errno::EADDRNOTAVAIL)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl Netlink {
    /// Creates a VXLAN device (flannel's `flannel.1`): VNI `vni`, sending from `local` on UDP
    /// `port`, without learning (the agent writes every forwarding entry itself).
    pub fn add_vxlan(
        &mut self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        port: u16,
        mtu: u32,
    ) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_string()));
        m.attributes.push(LinkAttribute::Mtu(mtu));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Vxlan),
            LinkInfo::Data(InfoData::Vxlan(vec![
                InfoVxlan::Id(vni),
                InfoVxlan::Local(local),
                InfoVxlan::Port(port),
                InfoVxlan::Learning(false),
            ])),
        ]));
        self.send(
            RouteNetlinkMessage::NewLink(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Sets a link's MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<(), Error> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.send(RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
        Ok(())
    }

    fn neighbour(family: AddressFamily, index: u32) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.family = family;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m
    }

    /// A permanent ARP entry on link `index`: `ip` is at `mac`.
    pub fn replace_neighbour(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<(), Error> {
        let mut m = Self::neighbour(AddressFamily::Inet, index);
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        self.send(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    pub fn delete_neighbour(&mut self, index: u32, ip: Ipv4Addr) -> Result<(), Error> {
        let mut m = Self::neighbour(AddressFamily::Inet, index);
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        match self.send(RouteNetlinkMessage::DelNeighbour(m), NLM_F_ACK) {
            Ok(_) | Err(Error::Errno(nix::errno::Errno::ENOENT)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A permanent forwarding entry of VXLAN link `index` (`bridge fdb ... self`): frames for
    /// `mac` go to the tunnel endpoint `dst`.
    pub fn replace_fdb(&mut self, index: u32, mac: [u8; 6], dst: Ipv4Addr) -> Result<(), Error> {
        let mut m = Self::neighbour(AddressFamily::Bridge, index);
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        self.send(
            RouteNetlinkMessage::NewNeighbour(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    pub fn delete_fdb(&mut self, index: u32, mac: [u8; 6], dst: Ipv4Addr) -> Result<(), Error> {
        let mut m = Self::neighbour(AddressFamily::Bridge, index);
        m.header.flags = NeighbourFlags::Own;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)));
        match self.send(RouteNetlinkMessage::DelNeighbour(m), NLM_F_ACK) {
            Ok(_) | Err(Error::Errno(nix::errno::Errno::ENOENT)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Adds (or replaces) a route to `dst/prefix` via `gateway` on `oif`, taking the gateway
    /// as directly reachable there though no address of the link covers it (`onlink`: the
    /// VXLAN routes' gateways are the other nodes' VTEP addresses).
    pub fn replace_onlink_route(
        &mut self,
        dst: Ipv4Addr,
        prefix: u8,
        gateway: Ipv4Addr,
        oif: u32,
    ) -> Result<(), Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = prefix;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Boot;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.header.flags = RouteFlags::Onlink;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(oif));
        self.send(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }
}

fn link_of(msg: RouteNetlinkMessage) -> Option<Link> {
    let RouteNetlinkMessage::NewLink(m) = msg else {
        return None;
    };
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        up: m.header.flags.contains(LinkFlags::Up),
        kind: None,
        master: None,
        mac: None,
        mtu: None,
        vxlan: None,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = a.try_into().ok(),
            LinkAttribute::Mtu(m) => link.mtu = Some(m),
            LinkAttribute::Controller(i) => link.master = Some(i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => link.kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Vxlan(attrs)) => {
                            let mut p = VxlanParams::default();
                            for a in attrs {
                                match a {
                                    InfoVxlan::Id(v) => p.vni = Some(v),
                                    InfoVxlan::Local(l) => p.local = Some(l),
                                    InfoVxlan::Port(port) => p.port = Some(port),
                                    _ => {}
                                }
                            }
                            link.vxlan = Some(p);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}
