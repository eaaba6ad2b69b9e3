//! The proxy's sync layer alone against the kernel (run inside a network namespace of its own,
//! see scripts/bench-services.sh): cold sync of N services with E endpoints each, then the
//! time to program one more service with N present, and to remove it again.

use nanokube::network::proxy::{Endpoint, Model, Params, Protocol, Proxy, ServicePort};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

fn port(i: u32, endpoints: u32) -> ServicePort {
    let vip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 0, 0)) + 1 + i);
    ServicePort {
        key: format!("bench/s{i}:http/tcp"),
        cluster_ip: vip,
        protocol: Protocol::Tcp,
        port: 80,
        node_port: None,
        external_ips: vec![],
        source_ranges: vec![],
        firewalled: vec![],
        affinity_seconds: None,
        external_local: false,
        internal_local: false,
        endpoints: (0..endpoints)
            .map(|e| Endpoint {
                ip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 0)) + 2 + i * endpoints + e),
                port: 8080,
                ready: true,
                serving: true,
                terminating: false,
                local: false,
            })
            .collect(),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let endpoints: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let params = Params {
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        service_cidr: "10.43.0.0/16".parse().unwrap(),
    };
    let mut model = Model::default();
    for i in 0..services {
        model.insert(port(i, endpoints));
    }
    let mut proxy = Proxy::new();
    let t = Instant::now();
    let done = proxy.sync(params, model.clone()).expect("cold sync");
    let cold = t.elapsed();
    assert!(done.full);
    println!(
        "cold sync: {services} services x {endpoints} endpoints in {:.0} ms ({} KB of nft input)",
        cold.as_secs_f64() * 1e3,
        done.bytes / 1024
    );
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let mut more = model.clone();
        more.insert(port(services + r as u32, endpoints));
        let t = Instant::now();
        let d = proxy.sync(params, more).expect("add one");
        adds.push(t.elapsed());
        assert!(!d.full);
        let t = Instant::now();
        proxy.sync(params, model.clone()).expect("remove it");
        removes.push(t.elapsed());
    }
    println!(
        "one service added with {services} present: median {:.1} ms, removed: {:.1} ms ({rounds} rounds)",
        median(adds.clone()).as_secs_f64() * 1e3,
        median(removes).as_secs_f64() * 1e3
    );
    println!(
        "RESULT add_ms={:.1} cold_ms={:.0}",
        median(adds).as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3
    );
}
