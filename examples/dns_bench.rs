//! Load generator for scripts/bench-dns.sh: A queries for the names of a file, round-robin, from
//! N threads each with its own UDP socket and one query in flight (closed loop), for a number of
//! seconds. Prints queries/s, p50 and p99 latency, and the answers that were not a NOERROR with
//! records (or never came within a second).
//!
//! Usage: dns_bench <server ip:port> <names file> <threads> <seconds>

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: dns_bench <server ip:port> <names file> <threads> <seconds>");
        std::process::exit(2);
    }
    let server: SocketAddr = args[1].parse().expect("server address");
    let names: Vec<String> = std::fs::read_to_string(&args[2])
        .expect("names file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    let threads: usize = args[3].parse().expect("threads");
    let seconds: u64 = args[4].parse().expect("seconds");
    // Encoded once; only the id changes per query.
    let queries: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let mut m = Message::query();
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(
                Name::from_ascii(format!("{n}.")).expect("name"),
                RecordType::A,
            ));
            m.to_vec().expect("encode")
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let results: Vec<(Vec<u32>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let queries = &queries;
                s.spawn(move || {
                    let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
                    sock.connect(server).expect("connect");
                    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                    let mut latencies = Vec::new();
                    let mut errors = 0u64;
                    let mut buf = [0u8; 4096];
                    let mut i = t;
                    let mut id: u16 = (t as u16).wrapping_mul(7919);
                    while Instant::now() < until {
                        let mut q = queries[i % queries.len()].clone();
                        i += threads;
                        id = id.wrapping_add(1);
                        q[..2].copy_from_slice(&id.to_be_bytes());
                        let t0 = Instant::now();
                        if sock.send(&q).is_err() {
                            errors += 1;
                            continue;
                        }
                        loop {
                            match sock.recv(&mut buf) {
                                Ok(n) if n >= 12 && buf[..2] == id.to_be_bytes() => {
                                    let rcode = buf[3] & 0x0f;
                                    let answers = u16::from_be_bytes([buf[6], buf[7]]);
                                    if rcode != 0 || answers == 0 {
                                        errors += 1;
                                    }
                                    latencies.push(t0.elapsed().as_micros() as u32);
                                    break;
                                }
                                // A late answer to an earlier, timed-out query.
                                Ok(_) => continue,
                                Err(_) => {
                                    errors += 1;
                                    break;
                                }
                            }
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors: u64 = results.iter().map(|r| r.1).sum();
    let mut all: Vec<u32> = results.into_iter().flat_map(|r| r.0).collect();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "qps={:.0} p50_us={} p99_us={} answers={} errors={}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.len(),
        errors
    );
}
