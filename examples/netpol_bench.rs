//! NetworkPolicy against the kernel, inside network namespaces of its own (see
//! scripts/bench-netpol.sh): `N P ROUNDS` times applying one more policy with N present over P
//! local pods (one whole-table transaction, as the agent does); `load`, `serve` and `connect`
//! measure first-packet latency through a router namespace holding N policies.

use nanokube::network::netpol::model::{Peer, Policy, Port, Protocol, Rule};
use nanokube::network::netpol::{sync, Model};
use nanokube::network::proxy::Backend;
use std::net::Ipv4Addr;
use std::time::Instant;

fn add(m: &mut Model, i: u32, pods: u32) {
    let key = format!("ns{}/p{i}", i % 10);
    let peers = (0..20)
        .map(|k| Peer::Pod(Ipv4Addr::from(0x0a2a_0000 + (i * 7 + k) % 60000 + 2)))
        .collect();
    m.policies.insert(
        key.clone(),
        Policy {
            key: key.clone(),
            ingress: vec![Rule {
                peers: Some(peers),
                ports: vec![Port::Range {
                    protocol: Protocol::Tcp,
                    port: 80,
                    end: 90,
                }],
            }],
            egress: vec![],
        },
    );
    let pod = Ipv4Addr::from(0x0a2a_0000 + (i % pods) + 2);
    m.pods.entry(pod).or_default().ingress.insert(key);
}

/// N policies as `add` makes them, plus one isolating `server` for ingress that lets
/// `client` reach its port `port`: what the latency run loads into the router's table.
fn with_server(n: u32, server: Ipv4Addr, client: Ipv4Addr, port: u16) -> Model {
    let mut m = Model::default();
    for i in 0..n {
        add(&mut m, i, 200);
    }
    let key = "bench/server".to_string();
    m.policies.insert(
        key.clone(),
        Policy {
            key: key.clone(),
            ingress: vec![Rule {
                peers: Some(vec![Peer::Pod(client)]),
                ports: vec![Port::Range {
                    protocol: Protocol::Tcp,
                    port,
                    end: port,
                }],
            }],
            egress: vec![],
        },
    );
    m.pods.entry(server).or_default().ingress.insert(key);
    m
}

/// Accepts and closes connections for ever.
fn serve(addr: &str) {
    let l = std::net::TcpListener::bind(addr).expect("bind");
    for c in l.incoming() {
        drop(c);
    }
}

/// `n` TCP connects to `addr`, each a new connection whose first packet meets the policy;
/// prints p50 and p99 in microseconds.
fn connect(addr: &str, n: usize) {
    let addr: std::net::SocketAddr = addr.parse().expect("address");
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let s = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
            .expect("connect (a policy dropped it?)");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        drop(s);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    println!(
        "RESULT connects={n} p50_us={:.1} p99_us={:.1}",
        at(0.5),
        at(0.99)
    );
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match raw.first().map(String::as_str) {
        // load N SERVER CLIENT PORT: the table with N policies and the server's (0: none).
        Some("load") => {
            let n: u32 = raw[1].parse().expect("a number");
            if n == 0 {
                nanokube::network::netpol::remove().expect("remove");
                return;
            }
            let m = with_server(
                n,
                raw[2].parse().expect("server address"),
                raw[3].parse().expect("client address"),
                raw[4].parse().expect("port"),
            );
            let bytes = sync(&m, Backend::Nftables, true).expect("sync");
            println!("loaded {} policies ({bytes} bytes)", m.policies.len());
            return;
        }
        Some("serve") => return serve(&raw[1]),
        Some("connect") => return connect(&raw[1], raw[2].parse().expect("a number")),
        _ => {}
    }
    let args: Vec<u32> = raw.iter().map(|a| a.parse().expect("numbers")).collect();
    let (n, pods, rounds) = (args[0], args[1], args[2]);
    let mut m = Model::default();
    for i in 0..n {
        add(&mut m, i, pods);
    }
    let t = Instant::now();
    let bytes = sync(&m, Backend::Nftables, true).expect("cold sync");
    println!(
        "cold sync of {n} policies: {:?} ({bytes} bytes)",
        t.elapsed()
    );
    let mut total = 0.0;
    for r in 0..rounds {
        let mut m2 = m.clone();
        add(&mut m2, n + r, pods);
        let t = Instant::now();
        sync(&m2, Backend::Nftables, false).expect("sync");
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        println!("one more policy: {ms:.1} ms");
        total += ms;
    }
    println!("RESULT add_ms={:.1}", total / rounds as f64);
}
