//! Root integration tests for the runc-compatible command line (src/runtime/args.rs, cli.rs):
//! the commands and flags runc's callers use, checked on real containers from
//! rootfs/out/rootfs (run rootfs/build.sh first). Each test has its own state root and bundles.
//!
//! Run: `cargo test --test runtime_cli` as root.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_nanokube");

fn image() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/rootfs");
    assert!(
        p.join("bin/probe").exists(),
        "run rootfs/build.sh first ({} has no probe)",
        p.display()
    );
    p
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "c{}-{name}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's state root and bundles; deletes its containers on drop.
struct Env {
    dir: tempfile::TempDir,
    root: PathBuf,
    ids: Vec<String>,
}

impl Env {
    fn new() -> Env {
        assert!(nix::unistd::geteuid().is_root(), "runtime tests need root");
        let dir = tempfile::Builder::new()
            .prefix("nk-cli-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("state");
        Env {
            root,
            dir,
            ids: Vec::new(),
        }
    }

    /// A bundle over the shared image (overlay annotation, private upper dir) running `args`.
    fn bundle(&mut self, name: &str, args: &[&str], edit: impl FnOnce(&mut Value)) -> PathBuf {
        let b = self.dir.path().join(name);
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(b.join(d)).unwrap();
        }
        let overlay = json!({"lower": [image()], "upper": b.join("upper"), "work": b.join("work")});
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "hostname": "cli",
            "annotations": {"io.nanokube.rootfs.overlay": overlay.to_string()},
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
                "noNewPrivileges": true
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}
            ],
            "linux": {
                "cgroupsPath": format!("/nanokube-test/{}-{name}", std::process::id()),
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
            }
        });
        edit(&mut spec);
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        b
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("runtime").arg("--root").arg(&self.root).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `run -d` with stdio to /dev/null (a pipe would stay open with the container).
    fn run_detached(&mut self, bundle: &Path, id: &str, extra: &[&str]) {
        self.ids.push(id.to_string());
        let mut args = vec!["run", "-d", "-b", bundle.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(id);
        let st = self
            .cmd(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "run -d {id} failed");
    }

    fn state(&self, id: &str) -> Value {
        let out = self.cli(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.cli(&["delete", "--force", id]);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn help_version_and_usage_errors_look_like_runc_s() {
    let env = Env::new();
    let out = env.cli(&["-h"]);
    let help = text(&out.stdout);
    assert!(out.status.success());
    let lines: Vec<&str> = help.lines().collect();
    assert_eq!(lines[0], "NAME:", "{help}");
    assert!(
        lines[1].contains(" - Open Container Initiative runtime"),
        "{help}"
    );
    for c in [
        "exec", "pause", "resume", "update", "events", "spec", "features",
    ] {
        assert!(help.contains(&format!("\n   {c} ")), "{c}: {help}");
    }
    let exec = text(&env.cli(&["exec", "-h"]).stdout);
    assert!(
        exec.lines().nth(1).unwrap().contains("runtime exec - "),
        "{exec}"
    );
    assert!(exec.contains("--process value, -p value") && exec.contains("--detach, -d"));

    // Through a link named runc the binary is the runtime and says so as runc does.
    let link = env.dir.path().join("runc");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let out = Command::new(&link).arg("-v").output().unwrap();
    let v = text(&out.stdout);
    let lines: Vec<&str> = v.lines().collect();
    assert!(lines[0].starts_with("runc version 0."), "{v}");
    assert!(
        lines[1].starts_with("commit:") && lines[2].starts_with("spec: 1."),
        "{v}"
    );
    let out = Command::new(&link).args(["list", "-h"]).output().unwrap();
    assert!(text(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .contains("runc list"));
    let out = Command::new(&link).args(["foo", "-h"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("No help topic for 'foo'"));

    let out = env.cli(&["create"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("\"create\" requires exactly 1 argument(s)"));
    let out = env.cli(&["checkpoint", "--image-path", "/tmp/x", "c"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("checkpoint is not supported"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn log_file_gets_runc_s_json_and_text_lines() {
    let mut env = Env::new();
    let log = env.dir.path().join("log.json");
    let out = env.cli(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The bare message still reaches stderr; the log holds one JSON line per entry.
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    let entry: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(entry["level"], "error");
    assert!(
        entry["msg"].as_str().unwrap().contains("does not exist"),
        "{entry}"
    );
    assert!(entry["time"].as_str().unwrap().contains('T'));

    let log = env.dir.path().join("log.txt");
    let out = env.cli(&["--debug", "--log", log.to_str().unwrap(), "list"]);
    assert!(out.status.success());
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(
        lines.starts_with("time=\"") && lines.contains(" level=debug msg="),
        "{lines}"
    );
    // --debug tells the container's setup step by step, under runc's names for the steps:
    // on stderr without --log, in the log (and not on stderr) with it.
    let b = env.bundle("debug", &["true"], |_| {});
    let steps = [
        "nsexec container setup",
        "child process in init()",
        "init: closing the pipe to signal completion",
    ];
    let out = env.cli(&[
        "--debug",
        "run",
        "-b",
        b.to_str().unwrap(),
        &unique("debug"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for step in steps {
        assert!(
            text(&out.stderr).contains(step),
            "{step}: {}",
            text(&out.stderr)
        );
    }
    let id = unique("debugexec");
    let b = env.bundle("debugexec", &["probe", "sleep", "60"], |_| {});
    env.run_detached(&b, &id, &[]);
    let log = env.dir.path().join("exec.log");
    let out = env.cli(&[
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "exec",
        &id,
        "true",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("level=debug"));
    let lines = std::fs::read_to_string(&log).unwrap();
    for step in [
        "nsexec container setup",
        "child process in init()",
        "setns_init: about to exec",
    ] {
        assert!(lines.contains(step), "{step}: {lines}");
    }

    // A warning (an unknown capability) is a log line with --log, and not on stderr.
    let mut env = env;
    let b = env.bundle("warn", &["true"], |s| {
        s["process"]["capabilities"]["bounding"] = json!(["CAP_KILL", "CAP_BOGUS"]);
    });
    let id = unique("warn");
    env.ids.push(id.clone());
    let log = env.dir.path().join("warn.json");
    let out = env.cli(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "-b",
        b.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");
    let lines = std::fs::read_to_string(&log).unwrap();
    let entry: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(entry["level"], "warning");
    assert_eq!(
        entry["msg"],
        "ignoring unknown or unavailable capabilities: [CAP_BOGUS]"
    );
}

#[test]
fn exec_as_containerd_sends_it_process_file_detach_pid_file() {
    let mut env = Env::new();
    let b = env.bundle("exec", &["probe", "sleep", "30"], |_| {});
    let id = unique("exec");
    env.run_detached(&b, &id, &[]);
    // The detached process is handed to its caller's subreaper, as under containerd's shim.
    // SAFETY: prctl with integer arguments; this test binary's process reaps what it runs.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [44]},
        "args": ["sh", "-c", "id > /tmp/id; exit 7"],
        "env": ["PATH=/bin:/usr/bin"],
        "cwd": "/tmp",
        "capabilities": {"bounding": ["CAP_KILL"]}
    });
    let pf = env.dir.path().join("process.json");
    std::fs::write(&pf, process.to_string()).unwrap();
    let pid_file = env.dir.path().join("exec.pid");
    let out = env.cli(&[
        "exec",
        "--process",
        pf.to_str().unwrap(),
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let mut status = 0;
    // SAFETY: waiting for a process reparented to us; status is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "the exec'd process was not handed to the subreaper");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7);
    let id_out = env.cli(&["exec", &id, "cat", "/tmp/id"]);
    assert_eq!(
        text(&id_out.stdout).trim(),
        "uid=1000 gid=1000 groups=44",
        "{}",
        text(&id_out.stderr)
    );

    // A process file without user or cwd (Go reads them as zero): root, in "/".
    std::fs::write(&pf, json!({"args": ["sh", "-c", "id -u; pwd"]}).to_string()).unwrap();
    let out = env.cli(&["exec", "--process", pf.to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0\n/\n");
}

#[test]
fn exec_flags_user_groups_caps_env_and_kill_zero() {
    let mut env = Env::new();
    let b = env.bundle("flags", &["probe", "sleep", "30"], |s| {
        s["process"]["user"] = json!({"uid": 0, "gid": 5});
    });
    let id = unique("flags");
    env.run_detached(&b, &id, &[]);
    // --user UID keeps the spec's gid (as runc); -g adds groups; -e appends.
    let out = env.cli(&[
        "exec",
        "-u",
        "1000",
        "-g",
        "20",
        "--additional-gids=21",
        "-e",
        "A=1",
        "-e",
        "A=2",
        &id,
        "sh",
        "-c",
        "echo $(id -u) $(id -g) $(id -G) $A",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        "1000 5 5 20 21 2",
        "{}",
        text(&out.stderr)
    );
    // --cap adds to bounding, effective, permitted and ambient; the kernel keeps an ambient
    // capability only when it is inheritable too, which exec --cap does not add (runc alike,
    // since CVE-2022-29162), so ambient stays empty.
    let out = env.cli(&["exec", "--cap", "CAP_NET_ADMIN", &id, "probe", "report"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let net_admin = 1u64 << 12;
    let kill = 1u64 << 5;
    for set in ["bounding", "effective", "permitted"] {
        let hex = report["caps"][set].as_str().unwrap_or_default();
        let mask = u64::from_str_radix(hex, 16).unwrap();
        assert!(mask & net_admin != 0 && mask & kill != 0, "{set} = {hex}");
    }
    let bad = env.cli(&["exec", "--cap", "CAP_NOPE", &id, "true"]);
    assert!(text(&bad.stderr).contains("unknown capability"));
    let bad = env.cli(&["exec", "-g", "-3", &id, "true"]);
    assert!(text(&bad.stderr).contains("additional-gids must be a positive number -3"));

    // Signal 0 checks liveness only.
    assert!(env.cli(&["kill", &id, "0"]).status.success());
    assert_eq!(env.state(&id)["status"], "running");
    assert!(env.cli(&["kill", &id, "KILL"]).status.success());
    wait_until("stopped", || env.state(&id)["status"] == "stopped");
    let out = env.cli(&["kill", &id, "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("container not running"));
    // With --all, a stopped container's empty cgroup takes any signal (runc's kill.bats).
    for sig in ["0", "KILL"] {
        let out = env.cli(&["kill", "-a", &id, sig]);
        assert!(out.status.success(), "kill -a {sig}: {}", text(&out.stderr));
    }
    // delete --force of what is gone is not an error, as runc.
    assert!(env.cli(&["delete", &id]).status.success());
    assert!(env.cli(&["delete", "--force", &id]).status.success());
    assert!(!env.cli(&["delete", &id]).status.success());
}

#[test]
fn list_has_the_owner_and_ps_takes_ps_arguments() {
    let mut env = Env::new();
    let b = env.bundle("ps", &["probe", "sleep", "30"], |_| {});
    let id = unique("ps");
    env.run_detached(&b, &id, &[]);
    let out = env.cli(&["list", "--format", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["owner"], "root");
    // Field order as runc's (its list.bats matches the text).
    let keys = text(&out.stdout);
    let at = |k: &str| keys.find(&format!("\"{k}\":")).unwrap();
    let order = [
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{keys}");
    let table = text(&env.cli(&["list"]).stdout);
    assert!(
        table.lines().nth(1).unwrap().trim_end().ends_with("root"),
        "{table}"
    );

    let pid = env.state(&id)["pid"].as_i64().unwrap();
    let out = env.cli(&["ps", &id, "-e", "-x"]);
    let ps = text(&out.stdout);
    let mut lines = ps.lines();
    let header = lines.next().unwrap();
    assert!(header.contains("PID") && header.contains("STAT"), "{ps}");
    let pids: Vec<i64> = lines
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pids, vec![pid], "{ps}");
    let out = env.cli(&["ps", "-f", "json", &id]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([pid])
    );
}

#[test]
fn run_keep_no_pivot_keyring_and_preserved_fds() {
    let mut env = Env::new();
    // --keep leaves the stopped container for a later delete.
    let b = env.bundle("keep", &["probe", "exit", "3"], |_| {});
    let id = unique("keep");
    env.ids.push(id.clone());
    let out = env.cli(&["run", "--keep", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(env.state(&id)["status"], "stopped");
    assert!(env.cli(&["delete", &id]).status.success());

    // --no-pivot: the rootfs is moved onto / and chrooted into; the container still sees
    // only its own files.
    let b = env.bundle(
        "nopivot",
        &[
            "sh",
            "-c",
            "test -x /bin/probe && test ! -e /work && echo in",
        ],
        |_| {},
    );
    let id = unique("nopivot");
    env.ids.push(id.clone());
    let out = env.cli(&["run", "--no-pivot", "-b", b.to_str().unwrap(), &id]);
    assert_eq!(text(&out.stdout).trim(), "in", "{}", text(&out.stderr));

    // A new session keyring named after the container, unless --no-new-keyring.
    let keys = || std::fs::read_to_string("/proc/keys").unwrap_or_default();
    let b = env.bundle("keyring", &["probe", "sleep", "30"], |_| {});
    let id = unique("keyring");
    env.run_detached(&b, &id, &[]);
    assert!(
        keys().contains(&format!("_ses.{id}")),
        "no _ses.{id} in /proc/keys"
    );
    let id2 = unique("nokeyring");
    env.run_detached(&b, &id2, &["--no-new-keyring"]);
    assert!(!keys().contains(&format!("_ses.{id2}")));

    // --preserve-fds 1: the caller's fd 3 is the container's fd 3.
    let b = env.bundle("fds", &["sh", "-c", "echo through-fd-3 >&3"], |_| {});
    let id = unique("fds");
    env.ids.push(id.clone());
    let (r, w) = nix::unistd::pipe().unwrap();
    let w_raw = w.as_raw_fd();
    let mut cmd = env.cmd(&["run", "--preserve-fds", "1", "-b", b.to_str().unwrap(), &id]);
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(w_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(w);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got.trim(), "through-fd-3");

    // A socket-activated caller ($LISTEN_FDS=1): fd 3 goes on, with LISTEN_FDS and LISTEN_PID=1
    // (the container's process is pid 1 in its namespace), as runc passes them.
    let b = env.bundle(
        "listen",
        &["sh", "-c", "echo \"$LISTEN_FDS $LISTEN_PID\" >&3"],
        |_| {},
    );
    let id = unique("listen");
    env.ids.push(id.clone());
    let (r, w) = nix::unistd::pipe().unwrap();
    let w_raw = w.as_raw_fd();
    let mut cmd = env.cmd(&["run", "-b", b.to_str().unwrap(), &id]);
    cmd.env("LISTEN_FDS", "1");
    // SAFETY: only dup2 between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(w_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(w);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut got = String::new();
    std::fs::File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got.trim(), "1 1");
}

/// Runs `args` with a new pty as its stdin, stdout and stderr, writes `input`, and returns
/// what came out on the terminal and the exit code.
fn on_a_pty(mut cmd: Command, input: &[u8]) -> (String, i32) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: setsid and TIOCSCTTY between fork and exec: the child gets the pty as its
    // controlling terminal, as a shell's child has.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    // The Command holds copies of the slave: they must go, or the master never sees EIO.
    drop(cmd);
    drop(slave);
    let master: OwnedFd = pty.master;
    let mut m = std::fs::File::from(master);
    m.write_all(input).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match m.read(&mut buf) {
            Ok(0) | Err(_) => break, // EIO once every slave is closed
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let code = child.wait().unwrap().code().unwrap_or(-1);
    (text(&out), code)
}

#[test]
fn foreground_run_and_exec_tty_use_the_caller_s_terminal() {
    let mut env = Env::new();
    let b = env.bundle(
        "tty",
        &[
            "sh",
            "-c",
            "read line; test -t 0 && echo \"tty-ok $line $(tty)\"; exit 4",
        ],
        |s| s["process"]["terminal"] = json!(true),
    );
    let id = unique("tty");
    env.ids.push(id.clone());
    let cmd = env.cmd(&["run", "-b", b.to_str().unwrap(), &id]);
    let (out, code) = on_a_pty(cmd, b"hello\r");
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("tty-ok hello /dev/pts/0"), "{out}");

    // create/run -d with a terminal and no console socket is refused (nobody would hold it).
    let id2 = unique("ttyd");
    let out = env.cli(&["run", "-d", "-b", b.to_str().unwrap(), &id2]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--console-socket"),
        "{}",
        text(&out.stderr)
    );

    let b = env.bundle("ttyexec", &["probe", "sleep", "30"], |_| {});
    let id = unique("ttyexec");
    env.run_detached(&b, &id, &[]);
    let cmd = env.cmd(&[
        "exec",
        "-t",
        &id,
        "sh",
        "-c",
        "test -t 1 && echo exec-tty-ok; exit 5",
    ]);
    let (out, code) = on_a_pty(cmd, b"");
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("exec-tty-ok"), "{out}");
    // Without -t nothing gets a terminal.
    let out = env.cli(&["exec", &id, "sh", "-c", "test -t 1 || echo no-tty"]);
    assert_eq!(text(&out.stdout).trim(), "no-tty");
}

/// A second container in the cgroup of a running one starts, with runc's warning.
#[test]
fn a_shared_cgroup_is_allowed_with_a_warning() {
    let mut env = Env::new();
    let path = format!("/nanokube-test/{}-shared", std::process::id());
    let edit = |s: &mut Value| s["linux"]["cgroupsPath"] = json!(path);
    let first = env.bundle("shared1", &["sleep", "30"], edit);
    let second = env.bundle("shared2", &["true"], edit);
    let id = unique("shared1");
    env.run_detached(&first, &id, &[]);
    let id2 = unique("shared2");
    env.ids.push(id2.clone());
    // The created init keeps its stdio until start: a file, not a pipe output() would wait on.
    let err_file = env.dir.path().join("shared2.err");
    let status = env
        .cmd(&["create", "-b", second.to_str().unwrap(), &id2])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .status()
        .unwrap();
    let stderr = std::fs::read_to_string(&err_file).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("container's cgroup is not empty: 1 process(es) found"),
        "{stderr}"
    );
}
