//! Helpers shared by tests/containerd.rs and tests/podman.rs, which drive nanokube through the real
//! clients of a runc binary (and, as the control, runc itself): the runtimes under test, commands
//! with a deadline, a pty standing in for the caller's terminal, and cgroup files.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_nanokube");

/// How long one client command may take before the test calls it hung.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// 0, 1, 2, ...: tells apart the clients' instances of tests that run at the same time in one
/// process (their cgroup parents and namespaces).
pub fn next_instance() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A runtime the client is told to use as its runc.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// Short name used in container names and messages.
    pub label: &'static str,
    pub path: PathBuf,
    /// Where it keeps container state when its caller passes no --root.
    pub default_root: PathBuf,
}

impl Runtime {
    /// nanokube through a link named `nanokube-runc` in `dir`: the name makes the binary act as
    /// `nanokube runtime`, as an installed link would.
    pub fn nanokube(dir: &Path) -> Runtime {
        std::fs::create_dir_all(dir).unwrap();
        let link = dir.join("nanokube-runc");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(BIN, &link).unwrap();
        Runtime {
            label: "nk",
            path: link,
            default_root: PathBuf::from("/run/nanokube/runtime"),
        }
    }

    /// Debian's runc, the control: every step must behave the same under it.
    pub fn runc() -> Runtime {
        let path = ["/usr/bin/runc", "/usr/sbin/runc"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("runc is not installed: run scripts/deps.sh");
        Runtime {
            label: "runc",
            path,
            default_root: PathBuf::from("/run/runc"),
        }
    }
}

/// The path of a program the test needs, or a failure naming the package script.
pub fn need(program: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]) {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} is not installed: run scripts/deps.sh");
}

/// Runs `cmd` with stdin from /dev/null and its output captured; kills it and fails when it
/// outlives `DEADLINE`.
pub fn run(cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    match run_for(cmd, DEADLINE) {
        Ok(out) => out,
        Err(out) => panic!(
            "{what}: still running after {DEADLINE:?}\n--- stdout:\n{}\n--- stderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        ),
    }
}

/// For cleanup (a Drop guard must not panic): runs `cmd` for at most 20 s, and says on stderr
/// when it failed or hung.
pub fn run_quietly(cmd: Command) -> Option<Output> {
    let what = format!("{cmd:?}");
    match run_for(cmd, Duration::from_secs(20)) {
        Ok(out) => Some(out),
        Err(_) => {
            eprintln!("cleanup: {what} hung and was killed");
            None
        }
    }
}

/// Runs `cmd` with its output captured; `Err` with what it wrote when it outlived `limit`
/// (it is killed then).
fn run_for(mut cmd: Command, limit: Duration) -> Result<Output, Output> {
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let out = drain(&mut child);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let (stdout, stderr) = out.join().unwrap();
            return Ok(Output {
                status,
                stdout,
                stderr,
            });
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let status = child.wait().unwrap();
            // A process it started may still hold the pipes: what it wrote is then not waited for.
            let killed = Instant::now();
            while !out.is_finished() && killed.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (stdout, stderr) = if out.is_finished() {
                out.join().unwrap()
            } else {
                (Vec::new(), b"(output not collected)".to_vec())
            };
            return Err(Output {
                status,
                stdout,
                stderr,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn drain(child: &mut Child) -> std::thread::JoinHandle<(Vec<u8>, Vec<u8>)> {
    let mut o = child.stdout.take().unwrap();
    let mut e = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let err = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = e.read_to_end(&mut v);
            v
        });
        let mut v = Vec::new();
        let _ = o.read_to_end(&mut v);
        (v, err.join().unwrap())
    })
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client running with a new pty as its stdin, stdout, stderr and controlling terminal, as
/// from an interactive shell: what it writes is collected, and the test types into it.
pub struct OnPty {
    what: String,
    child: Child,
    master: std::fs::File,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl OnPty {
    pub fn spawn(mut cmd: Command) -> OnPty {
        let what = format!("{cmd:?}");
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec: a new session, then the
        // pty (already on fd 0) becomes its controlling terminal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
        // The Command holds copies of the slave: once they are gone the master reads EIO when
        // the client and everything it started have closed the terminal.
        drop(cmd);
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut r = master.try_clone().unwrap();
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        OnPty {
            what,
            child,
            master,
            out,
            reader: Some(reader),
        }
    }

    pub fn output(&self) -> String {
        text(&self.out.lock().unwrap())
    }

    /// Waits until the terminal has shown `marker`.
    pub fn expect(&mut self, marker: &str) {
        let start = Instant::now();
        while !self.output().contains(marker) {
            if start.elapsed() > DEADLINE || self.child.try_wait().unwrap().is_some() {
                // Whatever was still on its way.
                std::thread::sleep(Duration::from_millis(200));
                let _ = self.child.kill();
                panic!(
                    "{}: {marker:?} never showed on the terminal; it showed:\n{}",
                    self.what,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn send(&mut self, input: &[u8]) {
        self.master.write_all(input).unwrap();
    }

    /// Waits for the client to exit; returns its exit code and everything the terminal showed.
    pub fn finish(mut self) -> (i32, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{}: still running after {DEADLINE:?}; the terminal showed:\n{}",
                    self.what,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader ends at EIO, once nothing holds the slave any more; a container process that
        // kept it would hang here, so it gets a bounded wait only.
        let reader = self.reader.take().unwrap();
        let start = Instant::now();
        while !reader.is_finished() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        (status.code().unwrap_or(-1), self.output())
    }
}

pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The directory of cgroup `path` (as in a spec's cgroupsPath) for `controller`'s hierarchy.
pub fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(rel)
    } else {
        Path::new("/sys/fs/cgroup").join(controller).join(rel)
    }
}

pub fn cgroup_file(controller: &str, path: &str, file: &str) -> String {
    let p = cgroup_dir(controller, path).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Every hierarchy's directory for `path` (one on v2).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    if cgroup_v2() {
        return vec![Path::new("/sys/fs/cgroup").join(rel)];
    }
    let mut dirs = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = e.path();
        // v1 hierarchies are directories; the combined names (cpu,cpuacct) are links to them.
        if p.is_dir() && !e.file_type().unwrap().is_symlink() {
            dirs.push(p.join(rel));
        }
    }
    dirs
}

/// Removes the cgroup `path` and whatever is below it, deepest first (rmdir only: a cgroup
/// that still has processes stays and is reported).
pub fn remove_cgroup_tree(path: &str) -> Vec<String> {
    let mut left = Vec::new();
    for dir in cgroup_dirs(path) {
        if dir.exists() {
            rmdir_tree(&dir, &mut left);
        }
    }
    left
}

fn rmdir_tree(dir: &Path, left: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path(), left);
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        left.push(format!("{}: {e}", dir.display()));
    }
}

/// Kills every process in the cgroup `dir` and below, thawing it so that they can die.
pub fn kill_cgroup_tree(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            kill_cgroup_tree(&p);
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = std::fs::write(dir.join("freezer.state"), "THAWED");
    let _ = std::fs::write(dir.join("cgroup.freeze"), "0");
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = text(&c).replace('\0', " ");
            if c.contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// This host's device nodes below a subdirectory of /dev (/dev/cpu/0/cpuid, /dev/net/tun,
/// /dev/dri/card0), and those subdirectories: `--privileged` hands the container every host
/// device, these included, and the runtime must make their parents (it once refused them).
/// Each line as busybox's `stat -c '%n %a %F %t:%T'` shows it (major:minor in hex); the
/// directories as runc makes them (0755). The walk skips what the clients' host-device lists
/// skip (pts, shm, mqueue, fd and the hidden lxc/udev dirs). Fails when there is none: the
/// case would prove nothing.
pub fn host_nested_devices() -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fn walk(dir: &Path, depth: u32, found: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ft) = e.file_type() else { continue };
            let p = e.path();
            if ft.is_dir() {
                let skipped = ["pts", "shm", "mqueue", "fd", ".lxc", ".lxd-mounts", ".udev"];
                if !(depth == 0 && skipped.contains(&name.as_str())) {
                    let before = found.len();
                    walk(&p, depth + 1, found);
                    if found.len() > before {
                        found.push(format!("{} 755 directory 0:0", p.display()));
                    }
                }
            } else if depth > 0 && (ft.is_char_device() || ft.is_block_device()) {
                let Ok(md) = e.metadata() else { continue };
                let dev = md.rdev();
                let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
                let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
                let kind = if ft.is_char_device() {
                    "character special file"
                } else {
                    "block special file"
                };
                found.push(format!(
                    "{} {:o} {kind} {major:x}:{minor:x}",
                    p.display(),
                    md.mode() & 0o7777
                ));
            }
        }
    }
    let mut found = Vec::new();
    walk(Path::new("/dev"), 0, &mut found);
    found.sort();
    assert!(
        !found.is_empty(),
        "this host has no device node below a subdirectory of /dev (such as /dev/net/tun or \
         /dev/cpu/0/cpuid: modprobe tun or cpuid), so --privileged cannot be checked for them"
    );
    found
}

/// A shell command that prints, sorted, each path in `lines` (as `host_nested_devices` gives
/// them) the way that function does, or `<path> absent`.
pub fn stat_script(lines: &[String]) -> String {
    let paths: Vec<&str> = lines.iter().map(|l| l.split(' ').next().unwrap()).collect();
    format!(
        "for p in {}; do if [ -e $p ]; then stat -c '%n %a %F %t:%T' $p; else echo \"$p absent\"; fi; done | sort",
        paths.join(" ")
    )
}
