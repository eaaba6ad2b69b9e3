//! The timing driver of scripts/bench-runtime.sh: runs one OCI bundle under several runc-compatible
//! runtimes, alternating them iteration by iteration so that machine noise hits all alike, and
//! reports the median and p95 wall time of `RUNTIME --root R run --bundle B ID` (create, start,
//! wait, delete in one foreground command) and the peak RSS of any process in that command's tree.
//!
//! Built by the script with plain `rustc` (std only, static) so that it also runs in the VM.
//!
//! usage: bench_runtime ITERATIONS BUNDLE WORKDIR NAME=COMMAND [NAME=COMMAND...]
//! COMMAND is the runtime's binary with any leading arguments, space-separated (e.g.
//! "nanokube=/usr/bin/nanokube runtime"). Ratios are given against the first runtime named.

use std::process::{Command, Stdio};
use std::time::Instant;

/// struct rusage on x86_64 Linux: two timevals, then fourteen longs.
#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

struct Runtime {
    name: String,
    /// The binary and its leading arguments.
    command: Vec<String>,
    root: String,
    times_ms: Vec<f64>,
    peak_rss_kib: i64,
}

/// Runs one container to completion; returns (wall ms, peak RSS KiB of the tree).
fn run_once(rt: &Runtime, bundle: &str, id: &str) -> (f64, i64) {
    let start = Instant::now();
    let child = Command::new(&rt.command[0])
        .args(&rt.command[1..])
        .args(["--root", &rt.root, "run", "--bundle", bundle, id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| die(&format!("{}: cannot start {}: {e}", rt.name, rt.command[0])));
    let mut status = 0;
    let mut ru = Rusage::default();
    // SAFETY: the child is ours and not yet reaped; status and rusage point to live locals.
    let r = unsafe { wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if r < 0 || status != 0 {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        die(&format!(
            "{} run {id} failed (wait status {status}): {}",
            rt.name,
            err.trim()
        ));
    }
    (ms, ru.maxrss)
}

fn die(msg: &str) -> ! {
    eprintln!("bench_runtime: {msg}");
    std::process::exit(1)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank: the smallest value with at least p of the samples at or below it.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        die("usage: bench_runtime ITERATIONS BUNDLE WORKDIR NAME=COMMAND [NAME=COMMAND...]");
    }
    let iterations: usize = args[0]
        .parse()
        .unwrap_or_else(|_| die("ITERATIONS must be a number"));
    let (bundle, workdir) = (&args[1], &args[2]);
    let mut runtimes: Vec<Runtime> = args[3..]
        .iter()
        .map(|a| {
            let (name, command) = a
                .split_once('=')
                .unwrap_or_else(|| die("expected NAME=COMMAND"));
            let command: Vec<String> = command.split_whitespace().map(str::to_string).collect();
            if command.is_empty() {
                die("empty COMMAND");
            }
            Runtime {
                name: name.to_string(),
                command,
                root: format!("{workdir}/{name}-root"),
                times_ms: Vec::with_capacity(iterations),
                peak_rss_kib: 0,
            }
        })
        .collect();
    let pid = std::process::id();
    let warmup = 5.min(iterations);
    for i in 0..warmup + iterations {
        // Rotate who goes first so neither always runs on a just-warmed cache.
        let n = runtimes.len();
        for k in 0..n {
            let rt = &mut runtimes[(i + k) % n];
            let id = format!("bench-{}-{pid}-{i}", rt.name);
            let (ms, rss) = run_once(rt, bundle, &id);
            if i >= warmup {
                rt.times_ms.push(ms);
                rt.peak_rss_kib = rt.peak_rss_kib.max(rss);
            }
        }
    }
    println!(
        "{:<10} {:>6} {:>11} {:>9} {:>14}",
        "runtime", "runs", "median_ms", "p95_ms", "peak_rss_kib"
    );
    let mut medians = Vec::new();
    for rt in &mut runtimes {
        rt.times_ms.sort_by(|a, b| a.total_cmp(b));
        let (med, p95) = (
            percentile(&rt.times_ms, 0.5),
            percentile(&rt.times_ms, 0.95),
        );
        medians.push(med);
        println!(
            "{:<10} {:>6} {:>11.2} {:>9.2} {:>14}",
            rt.name,
            rt.times_ms.len(),
            med,
            p95,
            rt.peak_rss_kib
        );
    }
    for (rt, med) in runtimes.iter().zip(&medians).skip(1) {
        println!(
            "ratio {}/{} (median): {:.2}",
            runtimes[0].name,
            rt.name,
            medians[0] / med
        );
    }
}
