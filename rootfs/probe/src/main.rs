//! probe: run inside a container by nanokube's tests to report what the container looks like
//! from within. Static (std, libc, and rustls for `api`), so it runs in any root filesystem. The commands and
//! their output formats are a contract with the tests (see docs/rootfs-and-probe.md).

mod api;
mod cgroup;
mod errno;
mod json;
mod mountinfo;
mod report;
mod syscalls;

use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: probe report | alloc MIB | forkbomb N | spin SECONDS | write PATH [DATA] \
| read PATH | syscall NAME | open-exe PID | sleep SECONDS | exit CODE | kill-self SIGNUM | cwd \
| cat PATH | wait-signal | api PATH [BODY]";

fn main() {
    // Die quietly when the reader goes away, like any Unix filter, rather than panic in println.
    // SAFETY: restoring a default signal disposition before anything else runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let args: Vec<String> = std::env::args().collect();
    let cmd = args.get(1).map(String::as_str).unwrap_or("");
    let arg = args.get(2).map(String::as_str);
    let code = match (cmd, arg) {
        ("report", _) => report::run(),
        ("alloc", Some(n)) => alloc(parse(n)),
        ("forkbomb", Some(n)) => forkbomb(parse(n)),
        ("spin", Some(s)) => spin(parse(s)),
        ("write", Some(p)) => write(p, args.get(3).map(String::as_str).unwrap_or("")),
        ("read", Some(p)) => read(p),
        ("syscall", Some(name)) => match syscalls::attempt(name) {
            Some(outcome) => {
                println!("{outcome}");
                0
            }
            None => {
                eprintln!(
                    "probe: unknown syscall {name}; known: {}",
                    syscalls::NAMES.join(" ")
                );
                2
            }
        },
        ("open-exe", Some(pid)) => open_exe(pid),
        ("sleep", Some(s)) => {
            std::thread::sleep(Duration::from_secs_f64(parse(s)));
            0
        }
        ("exit", Some(c)) => parse(c),
        ("kill-self", Some(s)) => kill_self(parse(s)),
        ("cwd", _) => cwd(),
        ("cat", Some(p)) => cat(p),
        ("wait-signal", _) => wait_signal(),
        ("api", Some(p)) => api::call(p, args.get(3).map(String::as_str)),
        _ => {
            eprintln!("{USAGE}");
            2
        }
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn parse<T: std::str::FromStr>(s: &str) -> T {
    s.parse().unwrap_or_else(|_| {
        eprintln!("probe: bad number {s:?}");
        std::process::exit(2)
    })
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| {
        eprintln!("probe: NUL in argument");
        std::process::exit(2)
    })
}

/// Allocates and touches every page, so the memory is charged to the cgroup.
fn alloc(mib: usize) -> i32 {
    let mut chunks: Vec<Vec<u8>> = Vec::with_capacity(mib);
    for _ in 0..mib {
        // Non-zero fill writes every page; zeroed memory could stay unbacked.
        chunks.push(vec![0x5a; 1 << 20]);
    }
    std::hint::black_box(&chunks);
    println!("allocated {mib}");
    0
}

fn forkbomb(n: usize) -> i32 {
    let mut children = Vec::new();
    let mut err = None;
    for _ in 0..n {
        // SAFETY: the probe is single-threaded; the child only calls async-signal-safe
        // functions (prctl, pause, _exit) and never returns into Rust code.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above; the child dies with the probe or when killed.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                loop {
                    libc::pause();
                }
            }
        }
        if pid < 0 {
            err = Some(errno::last());
            break;
        }
        children.push(pid);
    }
    let e = err.map(errno::name).unwrap_or_else(|| "none".to_string());
    println!("forked {} errno {}", children.len(), e);
    for &pid in &children {
        // SAFETY: signalling our own children.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in &children {
        let mut st = 0;
        // SAFETY: reaping our own children with a valid status pointer.
        unsafe { libc::waitpid(pid, &mut st, 0) };
    }
    0
}

fn cpu_ms() -> u64 {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    ms(ru.ru_utime) + ms(ru.ru_stime)
}

fn spin(seconds: f64) -> i32 {
    let start = Instant::now();
    let until = Duration::from_secs_f64(seconds);
    let mut x: u64 = 1;
    while start.elapsed() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    println!(
        "cpu_ms {} wall_ms {}",
        cpu_ms(),
        start.elapsed().as_millis()
    );
    0
}

/// Opens PATH for writing (creating it if missing, never truncating) and writes DATA, which
/// defaults to nothing so that a successful probe of a kernel file has no effect.
fn write(path: &str, data: &str) -> i32 {
    let p = cstr(path);
    // SAFETY: valid C string.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        println!("{}", errno::outcome(-1));
        return 0;
    }
    // SAFETY: `data` is valid for its length; `fd` is ours.
    let r = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let out = errno::outcome(r as i64);
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    println!("{out}");
    0
}

fn read(path: &str) -> i32 {
    match std::fs::read(path) {
        Ok(_) => println!("ok"),
        Err(e) => println!("errno {}", errno::name(e.raw_os_error().unwrap_or(0))),
    }
    0
}

/// CVE-2019-5736: a container must not be able to open the runtime's binary for writing.
fn open_exe(pid: &str) -> i32 {
    let p = cstr(&format!("/proc/{pid}/exe"));
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    println!("{}", errno::outcome(fd as i64));
    if fd >= 0 {
        // SAFETY: closing our own fd.
        unsafe { libc::close(fd) };
    }
    0
}

/// Dies by SIGNUM. As a namespace's pid 1 the kernel drops signals the process sends itself
/// without a handler, so then the probe says so and exits 1.
fn kill_self(sig: i32) -> i32 {
    // SAFETY: resetting the disposition and signalling ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::kill(libc::getpid(), sig);
    }
    std::thread::sleep(Duration::from_millis(100));
    println!("survived signal {sig}");
    1
}

fn cwd() -> i32 {
    match std::env::current_dir() {
        Ok(p) => {
            let s = p.to_string_lossy();
            let place = if s.starts_with("(unreachable)") || !s.starts_with('/') {
                "outside"
            } else {
                "inside"
            };
            println!("{s} {place}");
        }
        Err(e) => println!(
            "errno {} outside",
            errno::name(e.raw_os_error().unwrap_or(0))
        ),
    }
    0
}

fn cat(path: &str) -> i32 {
    match std::fs::read(path) {
        Ok(b) => {
            let _ = std::io::stdout().write_all(&b);
            0
        }
        Err(e) => {
            println!("errno {}", errno::name(e.raw_os_error().unwrap_or(0)));
            1
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {}

/// A well-behaved long-running container process: prints "ready", then exits 0 on the first
/// SIGTERM, SIGINT or SIGHUP, printing "signal N" (works as pid 1, unlike `sleep`).
fn wait_signal() -> i32 {
    // SAFETY: an empty sigset is filled by sigemptyset/sigaddset before use; blocking the
    // signals first means none is lost between the print and sigwait.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
            libc::signal(s, on_signal as *const () as libc::sighandler_t);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        println!("signal {sig}");
    }
    0
}
