//! NetworkPolicy sync layer alone against the kernel (run inside a network namespace of its
//! own, see scripts/bench-netpol.sh): N policies over P local pods, then the time to apply one
//! more policy with N present (one whole-table transaction, as the agent does).

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

fn main() {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
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
