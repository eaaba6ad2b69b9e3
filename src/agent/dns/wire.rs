//! From a DNS message to the index and back: decodes a question (hickory-proto does the wire
//! format), asks [`records::Index`], and builds the reply with the right code, the SOA of
//! negative answers, and truncation to what the client can take over UDP. No sockets here.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::records::{self, Answer, Data, Index, TTL};

/// The largest UDP reply this server sends, whatever the client's EDNS says: the DNS flag day
/// 2020 size, which avoids IP fragmentation.
pub const MAX_UDP: usize = 1232;

/// What to do with a query.
#[derive(Debug)]
pub enum Reply {
    /// Send this message.
    Message(Message),
    /// The name is not the cluster's: ask the upstream resolvers.
    Forward,
}

/// Where an answer goes: UDP replies are cut to the client's size, TCP ones are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The reply skeleton for `req`: its id, opcode, question and RD flag; EDNS if it used EDNS.
fn reply_to(req: &Message, code: ResponseCode) -> Message {
    let mut m = Message::new(req.metadata.id, MessageType::Response, req.metadata.op_code);
    m.metadata.recursion_desired = req.metadata.recursion_desired;
    m.metadata.response_code = code;
    m.add_queries(req.queries.iter().cloned());
    if req.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP as u16);
        m.set_edns(e);
    }
    m
}

/// The answer to a message that did not decode: FORMERR with its id, if it had one.
pub fn format_error(raw: &[u8]) -> Option<Vec<u8>> {
    let id = u16::from_be_bytes([*raw.first()?, *raw.get(1)?]);
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.response_code = ResponseCode::FormErr;
    m.to_vec().ok()
}

/// Answers `req` from `index` (None: the cluster's objects are not listed yet, SERVFAIL so the
/// client retries). `forwarding` says whether names outside the cluster may go upstream.
pub fn respond(index: Option<&Index>, req: &Message, forwarding: bool) -> Reply {
    if req.metadata.message_type != MessageType::Query {
        return Reply::Message(reply_to(req, ResponseCode::FormErr));
    }
    if req.metadata.op_code != OpCode::Query {
        return Reply::Message(reply_to(req, ResponseCode::NotImp));
    }
    // Every resolver in use asks one question per message; RFC 9619 makes it the rule.
    let [q] = req.queries.as_slice() else {
        return Reply::Message(reply_to(req, ResponseCode::FormErr));
    };
    if q.query_class != DNSClass::IN && q.query_class != DNSClass::ANY {
        return Reply::Message(reply_to(req, ResponseCode::Refused));
    }
    let Some(index) = index else {
        return Reply::Message(reply_to(req, ResponseCode::ServFail));
    };
    let mut m = reply_to(req, ResponseCode::NoError);
    m.metadata.recursion_available = forwarding;
    let asked = q.name.to_ascii();
    match index.lookup(&asked, q.query_type) {
        Answer::NotOurs if forwarding => return Reply::Forward,
        Answer::NotOurs => m.metadata.response_code = ResponseCode::Refused,
        Answer::Records {
            answers,
            additionals,
        } => {
            m.metadata.authoritative = true;
            let owner = asked.trim_end_matches('.').to_ascii_lowercase();
            for r in &answers {
                // The first owner is the question's name, echoed as the client spelled it.
                let name = if r.name == owner {
                    Some(q.name.clone())
                } else {
                    name(&r.name)
                };
                if let Some(rec) = name.and_then(|n| record(index, n, &r.data)) {
                    m.add_answer(rec);
                }
            }
            for r in &additionals {
                if let Some(rec) = name(&r.name).and_then(|n| record(index, n, &r.data)) {
                    m.add_additional(rec);
                }
            }
        }
        Answer::NoData(soa) => {
            m.metadata.authoritative = true;
            m.add_authority(soa_record(&soa));
        }
        Answer::NxDomain(soa) => {
            m.metadata.authoritative = true;
            m.metadata.response_code = ResponseCode::NXDomain;
            m.add_authority(soa_record(&soa));
        }
    }
    Reply::Message(m)
}

fn name(s: &str) -> Option<Name> {
    let mut n = Name::from_ascii(s).ok()?;
    n.set_fqdn(true);
    Some(n)
}

fn record(index: &Index, owner: Name, data: &Data) -> Option<Record> {
    let rdata = match data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Cname(t) => RData::CNAME(CNAME(name(t)?)),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
        Data::Ptr(t) => RData::PTR(PTR(name(t)?)),
        Data::Txt(t) => RData::TXT(TXT::new(vec![t.clone()])),
        Data::Ns(t) => RData::NS(NS(name(t)?)),
        Data::Soa => return Some(soa_record(&index.soa(&owner.to_ascii()))),
    };
    Some(Record::from_rdata(owner, TTL, rdata))
}

fn soa_record(soa: &records::Soa) -> Record {
    let n = |s: &str| name(s).unwrap_or_else(Name::root);
    Record::from_rdata(
        n(&soa.zone),
        TTL,
        RData::SOA(SOA::new(
            n(&soa.mname),
            n(&soa.rname),
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum,
        )),
    )
}

/// The most a UDP reply to `req` may hold: 512 without EDNS, else the client's size up to
/// [`MAX_UDP`].
pub fn udp_limit(req: &Message) -> usize {
    (req.max_payload() as usize).clamp(512, MAX_UDP)
}

/// Encodes `m`; over UDP, a reply larger than `limit` goes without its records and with TC set,
/// so the client asks again over TCP.
pub fn encode(m: &Message, transport: Transport, limit: usize) -> Option<Vec<u8>> {
    let bytes = m.to_vec().ok()?;
    if transport == Transport::Tcp || bytes.len() <= limit {
        return Some(bytes);
    }
    m.truncate().to_vec().ok()
}

/// The question of `req` as the forwarder's cache keys it.
pub fn question(req: &Message) -> Option<(String, RecordType, DNSClass)> {
    let q = req.queries.first()?;
    Some((
        q.name.to_ascii().to_ascii_lowercase(),
        q.query_type,
        q.query_class,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    fn index() -> Index {
        let web: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80}]}
        }))
        .unwrap();
        let big: Service = serde_json::from_value(json!({
            "metadata": {"name": "big", "namespace": "default"},
            "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        let endpoints: Vec<_> = (1..=100)
            .map(|i| json!({"addresses": [format!("10.42.1.{i}")]}))
            .collect();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "big-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "big"}},
            "addressType": "IPv4",
            "endpoints": endpoints
        }))
        .unwrap();
        Index::build(
            "cluster.local",
            "10.43.0.10".parse().unwrap(),
            1,
            &[&web, &big],
            &[&slice],
            &[],
        )
    }

    fn query(name: &str, t: RecordType) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        m
    }

    fn reply(req: &Message, forwarding: bool) -> Message {
        match respond(Some(&index()), req, forwarding) {
            Reply::Message(m) => {
                // Through the wire and back, as the client sees it.
                Message::from_vec(&encode(&m, Transport::Tcp, 0).unwrap()).unwrap()
            }
            Reply::Forward => panic!("forwarded"),
        }
    }

    #[test]
    fn an_answer_is_authoritative_echoes_the_question_and_has_ttl_5() {
        let req = query("Web.Default.svc.cluster.local.", RecordType::A);
        let m = reply(&req, false);
        assert_eq!(m.metadata.id, req.metadata.id);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert!(!m.metadata.recursion_available);
        assert_eq!(m.queries, req.queries);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(
            m.answers[0].name.to_ascii(),
            "Web.Default.svc.cluster.local."
        );
        assert_eq!(m.answers[0].ttl, 5);
        assert_eq!(
            &m.answers[0].data,
            &RData::A(A("10.43.0.20".parse().unwrap()))
        );
    }

    #[test]
    fn nxdomain_and_nodata_carry_the_soa() {
        let m = reply(
            &query("nope.default.svc.cluster.local.", RecordType::A),
            false,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.answers.is_empty());
        let RData::SOA(soa) = &m.authorities[0].data else {
            panic!("{m:?}")
        };
        assert_eq!(m.authorities[0].name.to_ascii(), "cluster.local.");
        assert_eq!(soa.minimum, 5);
        assert_eq!(soa.mname.to_ascii(), "ns.dns.cluster.local.");

        let m = reply(
            &query("web.default.svc.cluster.local.", RecordType::AAAA),
            false,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn srv_answers_carry_the_target_address() {
        let m = reply(
            &query("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
            false,
        );
        let RData::SRV(srv) = &m.answers[0].data else {
            panic!()
        };
        assert_eq!(
            (srv.port, srv.target.to_ascii().as_str()),
            (80, "web.default.svc.cluster.local.")
        );
        assert_eq!(
            m.additionals[0].name.to_ascii(),
            "web.default.svc.cluster.local."
        );
    }

    #[test]
    fn soa_query_of_the_apex() {
        let m = reply(&query("cluster.local.", RecordType::SOA), false);
        assert_eq!(m.answers[0].record_type(), RecordType::SOA);
        assert!(m.authorities.is_empty());
    }

    #[test]
    fn outside_names_are_refused_or_forwarded() {
        let req = query("example.com.", RecordType::A);
        let m = reply(&req, false);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(matches!(
            respond(Some(&index()), &req, true),
            Reply::Forward
        ));
    }

    #[test]
    fn before_the_first_listing_the_answer_is_servfail() {
        let Reply::Message(m) = respond(
            None,
            &query("web.default.svc.cluster.local.", RecordType::A),
            false,
        ) else {
            panic!()
        };
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn bad_questions() {
        let mut two = query("a.cluster.local.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("b.cluster.local.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            reply(&two, false).metadata.response_code,
            ResponseCode::FormErr
        );
        let mut chaos = query("version.bind.", RecordType::TXT);
        chaos.queries[0].query_class = DNSClass::CH;
        assert_eq!(
            reply(&chaos, false).metadata.response_code,
            ResponseCode::Refused
        );
        let mut update = query("cluster.local.", RecordType::SOA);
        update.metadata.op_code = OpCode::Update;
        assert_eq!(
            reply(&update, false).metadata.response_code,
            ResponseCode::NotImp
        );
        let Some(bytes) = format_error(&[0x12, 0x34, 0xff]) else {
            panic!()
        };
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (0x1234, ResponseCode::FormErr)
        );
        assert!(format_error(&[1]).is_none());
    }

    #[test]
    fn a_large_udp_answer_is_truncated_and_whole_over_tcp() {
        let req = query("big.default.svc.cluster.local.", RecordType::A);
        let Reply::Message(m) = respond(Some(&index()), &req, false) else {
            panic!()
        };
        let udp = Message::from_vec(&encode(&m, Transport::Udp, udp_limit(&req)).unwrap()).unwrap();
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.queries, req.queries);
        let tcp = Message::from_vec(&encode(&m, Transport::Tcp, udp_limit(&req)).unwrap()).unwrap();
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 100);
    }

    #[test]
    fn edns_raises_the_udp_limit_up_to_1232() {
        let mut req = query("big.default.svc.cluster.local.", RecordType::A);
        assert_eq!(udp_limit(&req), 512);
        let mut e = Edns::new();
        e.set_max_payload(4096);
        req.set_edns(e);
        assert_eq!(udp_limit(&req), 1232);
        let m = reply(&req, false);
        assert!(m.edns.is_some());
    }
}
