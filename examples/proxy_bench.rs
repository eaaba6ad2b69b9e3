//! The proxy against the kernel (run inside a network namespace of its own, see
//! scripts/bench-services.sh). `proxy_bench [N] [E] [ROUNDS]`: cold sync of N services with E
//! endpoints each, then the time to program one more service with N present, and to remove it
//! again. `proxy_bench latency BACKEND SERVER_NETNS CONNECTIONS`: connect() times through one
//! cluster IP with 100 and then 10k services present, to a listener this program runs in the
//! server namespace (the script wires the two with a veth pair).

use nanokube::network::proxy::{Backend, Endpoint, Model, Params, Protocol, Proxy, ServicePort};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
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

fn params() -> Params {
    Params {
        cluster_cidr: "10.42.0.0/16".parse().unwrap(),
        service_cidr: "10.43.0.0/16".parse().unwrap(),
    }
}

/// The address the latency probe's listener has in the server namespace.
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 42, 255, 2);

/// The probed service: its key sorts after every `bench/s<i>` one, so the iptables backend's
/// walk over service rules reaches it last (its worst case; nft looks it up in a map).
fn probe() -> ServicePort {
    let mut p = port(0, 1);
    p.key = "zz/probe:http/tcp".into();
    p.cluster_ip = Ipv4Addr::new(10, 43, 255, 254);
    p.endpoints[0].ip = SERVER;
    p
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// connect() times to the probe's cluster IP: each new connection's first packet goes
/// through the proxy's NAT rules.
fn connects(n: usize) -> Vec<Duration> {
    let vip = SocketAddr::from((probe().cluster_ip, 80));
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            TcpStream::connect_timeout(&vip, Duration::from_secs(2))
                .expect("connect through the cluster IP");
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

fn latency(backend: Backend, server_netns: &str, n: usize) {
    let ns = std::fs::File::open(server_netns).expect("the server's network namespace");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = TcpListener::bind((SERVER, 8080)).expect("listen in the server namespace");
        tx.send(()).unwrap();
        for s in l.incoming() {
            drop(s);
        }
    });
    rx.recv().unwrap();
    let mut proxy = Proxy::with_backend(backend);
    let name = format!("{backend:?}").to_lowercase();
    let mut p99 = Vec::new();
    for services in [100u32, 10_000] {
        let mut model = Model::default();
        for i in 0..services - 1 {
            // One endpoint each: the number of services is what the lookup sees.
            model.insert(port(i, 1));
        }
        model.insert(probe());
        proxy.sync(params(), model).expect("sync");
        connects(n / 10); // warm-up
        let v = connects(n);
        println!(
            "{name}: {services} services: connect p50 {:.0} us, p99 {:.0} us ({n} connections)",
            percentile(&v, 0.5).as_secs_f64() * 1e6,
            percentile(&v, 0.99).as_secs_f64() * 1e6
        );
        p99.push(percentile(&v, 0.99));
    }
    println!(
        "RESULT {name}_p99_ratio={:.2}",
        p99[1].as_secs_f64() / p99[0].as_secs_f64()
    );
    let _ = match backend {
        Backend::Nftables => nanokube::network::proxy::remove(),
        Backend::Iptables => nanokube::network::proxy::remove_iptables(),
    };
}

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("latency") {
        args.next();
        let backend = match args.next().as_deref() {
            Some("iptables") => Backend::Iptables,
            _ => Backend::Nftables,
        };
        let netns = args.next().expect("the server's network namespace path");
        let n = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
        return latency(backend, &netns, n);
    }
    let services: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let endpoints: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let params = params();
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
