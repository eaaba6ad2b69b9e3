//! nanokube as the runc binary of Debian's containerd 1.6 (issue 8, "Proof with the real
//! clients"): containerd-shim-runc-v2 drives `nanokube runtime` through a link named
//! `nanokube-runc` for detached and interactive `ctr run`, `ctr task exec` with and without a
//! tty, pause/resume, kill, metrics and a resource update (the Tasks.Update call CRI makes; ctr
//! 1.6 has no command for it). Every step runs first with Debian's runc as the control, then
//! with nanokube, and the results are checked in the container's output, exit codes, task
//! status and cgroup files.
//!
//! containerd runs on its own config, socket, root and state under a temp dir, in a private
//! mount namespace with a tmpfs on /run: the 1.6 shim puts its sockets under the hard-coded
//! /run/containerd/s, which so stays off the host. Containers get no network (a new network
//! namespace holding only lo).
//!
//! Run: `cargo test --test containerd` as root, after rootfs/build.sh (the image archive) and
//! scripts/deps.sh (containerd).

mod clients_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clients_support::*;
use serde_json::{json, Value};

const IMAGE: &str = "nanokube/busybox:latest";

fn archive() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/nanokube-busybox.oci.tar");
    assert!(
        p.exists(),
        "{} is missing: run rootfs/build.sh first",
        p.display()
    );
    p
}

/// A containerd of the test's own, and the containers it made: dropping it removes every
/// task, container and snapshot, stops containerd and its shims and removes the cgroups, also
/// when a step failed.
struct Containerd {
    dir: tempfile::TempDir,
    ns: String,
    sock: PathBuf,
    child: Option<Child>,
}

impl Containerd {
    fn start() -> Containerd {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the containerd test needs root"
        );
        let containerd = need("containerd");
        need("containerd-shim-runc-v2");
        need("ctr");
        need("unshare");
        let dir = tempfile::Builder::new()
            .prefix("nk-containerd-")
            .tempdir()
            .unwrap();
        let t = dir.path();
        for d in ["root", "state", "tmp", "opt", "fifo", "logs"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        let sock = t.join("containerd.sock");
        // Only what ctr needs: CRI, tracing and the snapshotters this machine lacks stay off
        // (they would only log errors or want their own dirs).
        let config = format!(
            r#"version = 2
root = "{t}/root"
state = "{t}/state"
temp = "{t}/tmp"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{t}/containerd.sock"
[ttrpc]
  address = "{t}/containerd.sock.ttrpc"
[debug]
  address = "{t}/debug.sock"
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "{t}/opt"
"#,
            t = t.display()
        );
        std::fs::write(t.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(t.join("containerd.log")).unwrap();
        // unshare execs sh, which execs containerd: the child's pid is containerd's.
        let child = Command::new(need("unshare"))
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount -t tmpfs -o mode=0755 nk-run /run && mkdir -p /run/containerd && \
                 exec \"$0\" --config \"$1\"",
            )
            .arg(&containerd)
            .arg(t.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting containerd");
        let mut c = Containerd {
            // One of its own per test (they run at once): its cgroup parent is /<ns>, whose
            // processes a Drop kills.
            ns: format!("nktest-{}-{}", std::process::id(), next_instance()),
            sock,
            dir,
            child: Some(child),
        };
        let start = Instant::now();
        loop {
            if let Some(st) = c.child.as_mut().unwrap().try_wait().unwrap() {
                c.child = None;
                panic!("containerd exited ({st}) at start:\n{}", c.log_tail());
            }
            if c.sock.exists() && run(c.ctr(&["version"])).status.success() {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "containerd did not answer on {}:\n{}",
                c.sock.display(),
                c.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn log_tail(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(25);
        format!(
            "--- containerd.log (last lines):\n{}",
            lines[from..].join("\n")
        )
    }

    fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(&self.sock)
            .arg("--namespace")
            .arg(&self.ns)
            .args(args);
        cmd
    }

    fn fifo_dir(&self) -> String {
        // ctr makes the fifos itself; its default /run/containerd/fifo is not the one that
        // containerd's namespace sees.
        self.dir.path().join("fifo").display().to_string()
    }

    /// Runs ctr, which must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = run(self.ctr(args));
        assert!(
            out.status.success(),
            "ctr {}: {}\n{}",
            args.join(" "),
            show(&out),
            self.log_tail()
        );
        text(&out.stdout)
    }

    fn status(&self, id: &str) -> String {
        let out = self.ok(&["task", "ls"]);
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(2).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("task {id} is not listed:\n{out}"))
    }

    fn task_pid(&self, id: &str) -> i32 {
        let out = self.ok(&["task", "ls"]);
        out.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| f.first() == Some(&id))
            .and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
            .unwrap_or_else(|| panic!("task {id} has no pid:\n{out}"))
    }

    fn wait_status(&self, id: &str, want: &str) {
        let start = Instant::now();
        loop {
            let last = self.status(id);
            if last == want {
                return;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "task {id} stayed {last}, expected {want}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn cgroups_path(&self, id: &str) -> String {
        let info: Value = serde_json::from_str(&self.ok(&["container", "info", id])).unwrap();
        info["Spec"]["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or_else(|| panic!("container {id} has no cgroupsPath: {info}"))
            .to_string()
    }

    /// The runtime's state dir for `id`, as containerd's mount namespace sees it.
    fn runtime_state(&self, id: &str) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/run/containerd/runc/{}/{id}",
            self.pid(),
            self.ns
        ))
    }

    fn metrics(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["task", "metrics", "--format", "json", id]))
            .unwrap_or_else(|e| panic!("ctr task metrics {id}: not JSON: {e}"))
    }

    /// Tasks.Update over containerd's gRPC socket, as the CRI plugin sends it: the resources
    /// travel as a google.protobuf.Any holding the OCI LinuxResources JSON. The request is
    /// encoded by hand (three length-delimited fields), so no generated code is needed.
    fn update(&self, id: &str, resources: &Value) -> Result<(), String> {
        let mut any = Vec::new();
        pb_bytes(
            &mut any,
            1,
            b"types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
        );
        pb_bytes(&mut any, 2, resources.to_string().as_bytes());
        let mut req = Vec::new();
        pb_bytes(&mut req, 1, id.as_bytes());
        pb_bytes(&mut req, 2, &any);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(grpc_call(
            &self.sock,
            &self.ns,
            "/containerd.services.tasks.v1.Tasks/Update",
            req,
        ))
        .map(|_| ())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // First every process in our cgroups, thawed so that SIGKILL lands (ctr's kill of a
        // paused task would wait for the thaw); then containerd's records of them.
        let parent = format!("/{}", self.ns);
        for dir in cgroup_dirs(&parent) {
            kill_cgroup_tree(&dir);
        }
        if self.child.is_some() {
            let ids = run_quietly(self.ctr(&["container", "ls", "-q"]))
                .map(|o| text(&o.stdout))
                .unwrap_or_default();
            for id in ids.split_whitespace() {
                run_quietly(self.ctr(&["task", "delete", "--force", id]));
                run_quietly(self.ctr(&["container", "delete", id]));
            }
            run_quietly(self.ctr(&["image", "rm", IMAGE]));
        }
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if start.elapsed() > Duration::from_secs(10) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Shims that outlived containerd: each names our socket on its command line.
        let sock = self.sock.display().to_string();
        for pid in pids_with_cmdline(&sock) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for dir in cgroup_dirs(&parent) {
            kill_cgroup_tree(&dir);
        }
        std::thread::sleep(Duration::from_millis(200));
        let left = remove_cgroup_tree(&parent);
        if !left.is_empty() {
            eprintln!("containerd test: cgroups left behind: {left:?}");
        }
    }
}

fn pb_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field (wire type 2).
fn pb_bytes(out: &mut Vec<u8>, field: u64, data: &[u8]) {
    pb_varint(out, field << 3 | 2);
    pb_varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// One unary gRPC call over HTTP/2 on a unix socket; returns the response message.
async fn grpc_call(sock: &Path, ns: &str, method: &str, msg: Vec<u8>) -> Result<Vec<u8>, String> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| format!("connect {}: {e}", sock.display()))?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    tokio::spawn(conn);
    // gRPC's frame: a compression flag byte, then the message length (big endian).
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("http://containerd{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("containerd-namespace", ns)
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .map_err(|_| format!("{method}: no answer in {DEADLINE:?}"))?
        .map_err(|e| format!("{method}: {e}"))?;
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| format!("{method}: reading the answer: {e}"))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    // A failure may come as headers only (no message, no trailers).
    let field = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.to_string())
    };
    match field("grpc-status").as_deref() {
        Some("0") => Ok(data.get(5..).unwrap_or_default().to_vec()),
        status => Err(format!(
            "{method}: HTTP {} grpc-status {:?}: {}",
            parts.status,
            status,
            field("grpc-message").unwrap_or_default()
        )),
    }
}

/// The freezer's word for the cgroup: FROZEN or THAWED.
fn freezer(path: &str) -> String {
    if cgroup_v2() {
        match cgroup_file("", path, "cgroup.freeze").as_str() {
            "1" => "FROZEN".into(),
            _ => "THAWED".into(),
        }
    } else {
        cgroup_file("freezer", path, "freezer.state")
    }
}

fn memory_limit_file() -> &'static str {
    if cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    }
}

/// The memory limit and pids limit `ctr task metrics` reports (the shim reads the cgroup).
fn metrics_limits(m: &Value) -> (Option<u64>, Option<u64>) {
    let mem = m["memory"]["usage"]["limit"]
        .as_u64()
        .or_else(|| m["memory"]["usage_limit"].as_u64());
    (mem, m["pids"]["limit"].as_u64())
}

/// Every step, under one runtime. Container names carry the runtime's label.
fn steps(c: &Containerd, rt: &Runtime) {
    let l = rt.label;
    let bin = rt.path.to_str().unwrap();
    let fifo = c.fifo_dir();
    let mut made = Vec::new();

    // Detached run, its output in a log file.
    let id = format!("{l}-detached");
    let log = c.dir.path().join("logs").join(format!("{id}.log"));
    let log_uri = format!("file://{}", log.display());
    c.ok(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo,
        "--log-uri",
        &log_uri,
        "--runc-binary",
        bin,
        IMAGE,
        &id,
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo started $(cat /proc/1/comm); sleep 300 & wait",
    ]);
    made.push(id.clone());
    wait_until(
        &format!("[{l}] {id} writes 'started' to {}", log.display()),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("started")
        },
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        "started sh",
        "[{l}]"
    );
    assert_eq!(c.status(&id), "RUNNING", "[{l}]");
    let cg = c.cgroups_path(&id);
    let pid = c.task_pid(&id);
    let procs = cgroup_file("pids", &cg, "cgroup.procs");
    assert!(
        procs.split_whitespace().any(|p| p == pid.to_string()),
        "[{l}] task pid {pid} is not in cgroup {cg}: {procs:?}"
    );
    assert!(
        c.runtime_state(&id).exists(),
        "[{l}] the shim's --root has no state for {id}"
    );

    // Exec without a tty: joins the container (its pid 1 and its network namespace, which has
    // only lo), and its exit code comes back.
    let out = run(c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "plain",
        &id,
        "sh",
        "-c",
        "echo exec-out pid1=$(cat /proc/1/comm); echo exec-err >&2; \
         tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; exit 3",
    ]));
    assert_eq!(out.status.code(), Some(3), "[{l}] exec: {}", show(&out));
    assert_eq!(
        text(&out.stdout),
        "exec-out pid1=sh\nlo\n",
        "[{l}] exec: {}",
        show(&out)
    );
    assert_eq!(
        text(&out.stderr),
        "exec-err\n",
        "[{l}] exec: {}",
        show(&out)
    );

    // Exec with a tty: the caller's terminal (a pty here) is relayed both ways.
    let mut cmd = c.ctr(&[
        "task",
        "exec",
        "-t",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "tty",
        &id,
        "sh",
        "-c",
        "echo prompt; read line; test -t 0 && test -t 1 && echo \"exec-tty $line $(tty)\"; exit 4",
    ]);
    cmd.env("TERM", "dumb");
    let mut t = OnPty::spawn(cmd);
    t.expect("prompt");
    t.send(b"hello\r");
    let (code, shown) = t.finish();
    assert_eq!(
        code, 4,
        "[{l}] exec -t exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains("exec-tty hello /dev/pts/"),
        "[{l}] exec -t: the terminal showed:\n{shown}"
    );

    // Pause and resume: the task status and the freezer agree, and the task runs on after.
    c.ok(&["task", "pause", &id]);
    c.wait_status(&id, "PAUSED");
    assert_eq!(freezer(&cg), "FROZEN", "[{l}] paused {id}, cgroup {cg}");
    c.ok(&["task", "resume", &id]);
    c.wait_status(&id, "RUNNING");
    assert_eq!(freezer(&cg), "THAWED", "[{l}] resumed {id}, cgroup {cg}");
    let out = run(c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "after",
        &id,
        "echo",
        "alive",
    ]));
    assert_eq!(
        text(&out.stdout),
        "alive\n",
        "[{l}] exec after resume: {}",
        show(&out)
    );

    // Metrics: read by the shim from the task's cgroup (sh and its sleep).
    let m = c.metrics(&id);
    assert_eq!(m["pids"]["current"].as_u64(), Some(2), "[{l}] metrics: {m}");

    // Resource update, then the cgroup files and the metrics show the new limits.
    let mem = 64u64 << 20;
    c.update(
        &id,
        &json!({"memory": {"limit": mem}, "pids": {"limit": 32}, "cpu": {"shares": 512}}),
    )
    .unwrap_or_else(|e| panic!("[{l}] Tasks.Update {id}: {e}\n{}", c.log_tail()));
    assert_eq!(
        cgroup_file("memory", &cg, memory_limit_file()),
        mem.to_string(),
        "[{l}] memory limit after update"
    );
    assert_eq!(
        cgroup_file("pids", &cg, "pids.max"),
        "32",
        "[{l}] pids.max after update"
    );
    if cgroup_v2() {
        // runc's conversion of shares 2..262144 to weight 1..10000.
        let weight = 1 + ((512 - 2) * 9999) / 262142;
        assert_eq!(
            cgroup_file("cpu", &cg, "cpu.weight"),
            weight.to_string(),
            "[{l}]"
        );
    } else {
        assert_eq!(
            cgroup_file("cpu", &cg, "cpu.shares"),
            "512",
            "[{l}] cpu.shares after update"
        );
    }
    let m = c.metrics(&id);
    assert_eq!(
        metrics_limits(&m),
        (Some(mem), Some(32)),
        "[{l}] metrics after update: {m}"
    );
    // An update the kernel refuses (a CFS quota under its 1 ms minimum) comes back as an
    // error and leaves the limits set before.
    let err = c
        .update(&id, &json!({"cpu": {"quota": 500, "period": 100000}}))
        .expect_err("a 500 us CPU quota was accepted");
    // The shim quotes the runtime's last --log error: it names the file the kernel refused.
    let file = if cgroup_v2() {
        "cpu.max"
    } else {
        "cpu.cfs_quota_us"
    };
    assert!(
        err.contains(bin) && err.contains(file),
        "[{l}] the refused update's error should name {bin} and {file}: {err}"
    );
    assert_eq!(
        cgroup_file("memory", &cg, memory_limit_file()),
        mem.to_string(),
        "[{l}] a refused update changed the memory limit: {err}"
    );
    assert_eq!(
        c.status(&id),
        "RUNNING",
        "[{l}] after a refused update: {err}"
    );

    // kill (SIGTERM by default): the trap runs and the exit code reaches containerd.
    c.ok(&["task", "kill", &id]);
    c.wait_status(&id, "STOPPED");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("got-term"), "[{l}] {id} log:\n{logged}");
    let out = run(c.ctr(&["task", "delete", &id]));
    assert!(out.status.success(), "[{l}] task delete: {}", show(&out));
    assert!(
        text(&out.stderr).contains("exit code 7"),
        "[{l}] task delete should report exit code 7: {}",
        show(&out)
    );
    c.ok(&["container", "delete", &id]);

    // A process that ignores SIGTERM (pid 1 without a handler) and SIGKILL.
    let idk = format!("{l}-killed");
    c.ok(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &idk,
        "sleep",
        "300",
    ]);
    made.push(idk.clone());
    c.wait_status(&idk, "RUNNING");
    c.ok(&["task", "kill", "-s", "SIGKILL", &idk]);
    c.wait_status(&idk, "STOPPED");
    let out = run(c.ctr(&["task", "delete", &idk]));
    assert!(
        text(&out.stderr).contains("exit code 137"),
        "[{l}] {}",
        show(&out)
    );
    c.ok(&["container", "delete", &idk]);

    // Interactive run with a tty: input typed on the caller's terminal reaches the
    // container, whose exit code is ctr's.
    let idt = format!("{l}-tty");
    let mut cmd = c.ctr(&[
        "run",
        "--rm",
        "-t",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &idt,
        "sh",
        "-c",
        "echo prompt; read line; test -t 0 && echo \"run-tty $line $(tty)\"; exit 6",
    ]);
    cmd.env("TERM", "dumb");
    made.push(idt.clone());
    let mut t = OnPty::spawn(cmd);
    t.expect("prompt");
    t.send(b"hello\r");
    let (code, shown) = t.finish();
    assert_eq!(
        code,
        6,
        "[{l}] run -t exit code; the terminal showed:\n{shown}\n{}",
        c.log_tail()
    );
    assert!(
        shown.contains("run-tty hello /dev/pts/0"),
        "[{l}] run -t: the terminal showed:\n{shown}"
    );

    // Interactive run without a tty: stdin, stdout, stderr as pipes.
    let idf = format!("{l}-fg");
    let mut cmd = c.ctr(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &idf,
        "sh",
        "-c",
        "read line; echo \"fg-out $line\"; echo fg-err >&2; test -t 0 || echo no-tty; exit 5",
    ]);
    made.push(idf.clone());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped\n").unwrap();
    }
    let out = wait_output(child);
    assert_eq!(
        out.status.code(),
        Some(5),
        "[{l}] run (no tty): {}\n{}",
        show(&out),
        c.log_tail()
    );
    assert_eq!(
        text(&out.stdout),
        "fg-out piped\nno-tty\n",
        "[{l}] run (no tty): {}",
        show(&out)
    );
    assert_eq!(
        text(&out.stderr),
        "fg-err\n",
        "[{l}] run (no tty): {}",
        show(&out)
    );

    // Nothing of these containers is left: no task, container, snapshot, runtime state or
    // cgroup.
    let tasks = c.ok(&["task", "ls", "-q"]);
    let containers = c.ok(&["container", "ls", "-q"]);
    let snapshots = c.ok(&["snapshot", "ls"]);
    for id in &made {
        for (what, list) in [
            ("task", &tasks),
            ("container", &containers),
            ("snapshot", &snapshots),
        ] {
            assert!(
                !list.split_whitespace().any(|w| w == id),
                "[{l}] {what} {id} left behind:\n{list}"
            );
        }
        assert!(
            !c.runtime_state(id).exists(),
            "[{l}] runtime state of {id} left behind"
        );
        let cg = format!("/{}/{id}", c.ns);
        for d in cgroup_dirs(&cg) {
            assert!(!d.exists(), "[{l}] cgroup {} left behind", d.display());
        }
    }
}

fn wait_output(mut child: Child) -> Output {
    use std::io::Read;
    let mut o = child.stdout.take().unwrap();
    let mut e = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = e.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("ctr run: still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = Vec::new();
    let _ = o.read_to_end(&mut stdout);
    Output {
        status,
        stdout,
        stderr: err.join().unwrap(),
    }
}

/// Results that must come out the same under runc and nanokube, by name.
type Seen = Vec<(&'static str, String)>;

/// `ctr task exec` of a program that cannot start, with and without a tty and --detach: ctr
/// quotes the runtime's `exec failed: ...` (from its --log) and fails; the shim forgets the
/// exec (its id can be used again) and the task runs on with nothing left of the attempts.
fn exec_failures(c: &Containerd, rt: &Runtime) -> Seen {
    let l = rt.label;
    let bin = rt.path.to_str().unwrap();
    let fifo = c.fifo_dir();
    let id = format!("{l}-execfail");
    c.ok(&[
        "run",
        "-d",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &id,
        "sleep",
        "300",
    ]);
    c.wait_status(&id, "RUNNING");
    let not_found = "exec failed: unable to start container process: exec: \"nosuch\": \
                     executable file not found in $PATH";
    let denied = "exec failed: unable to start container process: exec: \"/etc/passwd\": \
                  permission denied";
    // ctr forgets a failed exec unless it was --detach (then its id stays taken, as with runc).
    for (exec_id, flags, program, says) in [
        ("failing", vec![], "nosuch", not_found),
        ("failing", vec![], "/etc/passwd", denied),
        ("failing-detached", vec!["--detach"], "nosuch", not_found),
    ] {
        let mut args = vec!["task", "exec", "--fifo-dir", &fifo, "--exec-id", exec_id];
        args.extend(flags);
        args.extend([id.as_str(), program]);
        let out = run(c.ctr(&args));
        let what = args.join(" ");
        assert_eq!(
            out.status.code(),
            Some(1),
            "[{l}] ctr {what}: {}",
            show(&out)
        );
        assert_eq!(
            text(&out.stderr),
            format!("ctr: OCI runtime exec failed: {says}: unknown\n"),
            "[{l}] ctr {what}: {}",
            show(&out)
        );
    }
    // With a tty: ctr needs its caller's terminal (a pty here).
    let mut cmd = c.ctr(&[
        "task",
        "exec",
        "-t",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "failing-tty",
        &id,
        "nosuch",
    ]);
    cmd.env("TERM", "dumb");
    let (code, shown) = OnPty::spawn(cmd).finish();
    assert_eq!(
        code, 1,
        "[{l}] exec -t nosuch; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(&format!(
            "ctr: OCI runtime exec failed: {not_found}: unknown"
        )),
        "[{l}] exec -t nosuch: the terminal showed:\n{shown}"
    );
    let out = run(c.ctr(&[
        "task",
        "exec",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "failing",
        &id,
        "ps",
        "-o",
        "comm",
    ]));
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(0), "COMMAND\nsleep\nps\n".to_string()),
        "[{l}] the exec id of the failed execs again: {}",
        show(&out)
    );
    assert_eq!(c.status(&id), "RUNNING", "[{l}]");
    let ps = c.ok(&["task", "ps", &id]);
    let seen = vec![("task ps lines", ps.lines().count().to_string())];
    c.ok(&["task", "kill", "-s", "SIGKILL", &id]);
    c.wait_status(&id, "STOPPED");
    c.ok(&["task", "delete", &id]);
    c.ok(&["container", "delete", &id]);
    seen
}

/// `ctr run --privileged`: every host device, those below subdirectories of /dev
/// (/dev/cpu/0/cpuid, /dev/net/tun) too, with their parents; without it, none of them.
fn privileged(c: &Containerd, rt: &Runtime, devices: &[String]) -> Seen {
    let l = rt.label;
    let bin = rt.path.to_str().unwrap();
    let fifo = c.fifo_dir();
    // /dev/ptmx stays runc's link to the container's devpts instance even though the host's
    // ptmx (5:2) is among the devices --privileged lists.
    let script = format!(
        "{}; echo \"/dev/ptmx -> $(readlink /dev/ptmx)\"; grep CapEff /proc/self/status",
        stat_script(devices)
    );
    let id = format!("{l}-privileged");
    let out = run(c.ctr(&[
        "run",
        "--rm",
        "--privileged",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &id,
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "[{l}] run --privileged: {}\n{}",
        show(&out),
        c.log_tail()
    );
    let shown = text(&out.stdout);
    let (devs, caps) = shown
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("[{l}] run --privileged: {}", show(&out)));
    assert_eq!(
        devs,
        format!("{}\n/dev/ptmx -> pts/ptmx", devices.join("\n")),
        "[{l}] run --privileged: the host's devices below /dev/*/ and the ptmx link (expected) vs the container's"
    );
    let id = format!("{l}-unprivileged");
    let out = run(c.ctr(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &id,
        "sh",
        "-c",
        &script,
    ]));
    assert_eq!(out.status.code(), Some(0), "[{l}] run: {}", show(&out));
    for line in text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("/dev/") && !l.starts_with("/dev/ptmx "))
    {
        assert!(
            line.ends_with(" absent"),
            "[{l}] an unprivileged container has {line}"
        );
    }
    vec![("privileged CapEff", caps.to_string())]
}

/// What the image holds in the directories the tmpfs cases cover, with owners and modes.
const LISTING: &str = "find /etc /bin /usr /root /tmp -exec stat -c '%n %a %u:%g %F' {} + | sort; \
    cat /etc/passwd /etc/group";

/// tmpfs mounts with `tmpcopyup` (as podman's --tmpfs asks; ctr passes --mount options on
/// as they are): each starts with what the image had there, owners and modes kept (/root is
/// 0700), and takes writes; the shell that runs the check is the copy's /bin/sh. Then a
/// read-only root with such a tmpfs on /tmp: /tmp takes writes, / does not.
fn copyup(c: &Containerd, rt: &Runtime) -> Seen {
    let l = rt.label;
    let bin = rt.path.to_str().unwrap();
    let fifo = c.fifo_dir();
    let id = format!("{l}-listing");
    let base = c.ok(&[
        "run",
        "--rm",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        IMAGE,
        &id,
        "sh",
        "-c",
        LISTING,
    ]);
    for line in [
        "/bin/busybox 755 0:0 regular file\n",
        "/bin/sh 777 0:0 symbolic link\n",
        "/etc/passwd 644 0:0 regular file\n",
        "/root 700 0:0 directory\n",
        "/usr/sbin 755 0:0 directory\n",
        "\nroot:x:0:0:root:/root:/bin/sh\n",
    ] {
        assert!(base.contains(line), "[{l}] {IMAGE} lacks {line:?}:\n{base}");
    }

    let mounts: Vec<String> = ["/etc", "/bin", "/usr", "/root"]
        .iter()
        .map(|d| format!("type=tmpfs,src=tmpfs,dst={d},options=rw:nosuid:tmpcopyup"))
        .collect();
    let script = format!(
        "awk '$2 ~ /^\\/(etc|bin|usr|root)$/ {{print $2, $3}}' /proc/mounts | sort; {LISTING}; \
         echo new > /etc/new && cat /etc/new; touch /bin/new /usr/new /root/new && echo writable"
    );
    let id = format!("{l}-tmpfs");
    let mut args = vec!["run", "--rm", "--fifo-dir", &fifo, "--runc-binary", bin];
    for m in &mounts {
        args.extend(["--mount", m.as_str()]);
    }
    args.extend([IMAGE, &id, "sh", "-c", &script]);
    let out = run(c.ctr(&args));
    assert_eq!(
        out.status.code(),
        Some(0),
        "[{l}] run with tmpcopyup mounts: {}\n{}",
        show(&out),
        c.log_tail()
    );
    assert_eq!(
        text(&out.stdout),
        format!("/bin tmpfs\n/etc tmpfs\n/root tmpfs\n/usr tmpfs\n{base}new\nwritable\n"),
        "[{l}] run with tmpcopyup mounts: {}",
        show(&out)
    );

    let id = format!("{l}-readonly");
    let script =
        "awk '$2==\"/tmp\"{print $2, $3} $2==\"/\"{split($4, o, \",\"); print \"/\", o[1]}' \
                  /proc/mounts; stat -c '%a' /tmp; echo w > /tmp/new && cat /tmp/new; \
                  touch /new 2>&1; echo done";
    let out = run(c.ctr(&[
        "run",
        "--rm",
        "--read-only",
        "--fifo-dir",
        &fifo,
        "--runc-binary",
        bin,
        "--mount",
        "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev:tmpcopyup",
        IMAGE,
        &id,
        "sh",
        "-c",
        script,
    ]));
    assert_eq!(
        out.status.code(),
        Some(0),
        "[{l}] run --read-only: {}",
        show(&out)
    );
    assert_eq!(
        text(&out.stdout),
        "/ ro\n/tmp tmpfs\n1777\nw\ntouch: /new: Read-only file system\ndone\n",
        "[{l}] run --read-only with a tmpfs /tmp: {}",
        show(&out)
    );
    vec![("image listing", base)]
}

#[test]
fn containerd_runs_containers_through_nanokube_as_its_runc() {
    let c = Containerd::start();
    let out = c.ok(&["image", "import", archive().to_str().unwrap()]);
    let images = c.ok(&["image", "ls", "-q"]);
    assert!(
        images.lines().any(|i| i == IMAGE),
        "importing the archive gave no {IMAGE}: import said {out}; images:\n{images}"
    );
    // runc first: a step that fails under it is a fault of the test, not of nanokube.
    steps(&c, &Runtime::runc());
    steps(&c, &Runtime::nanokube(&c.dir.path().join("bin")));
}

/// The cases of three gaps nanokube had (all fine under runc): `exec` of a program that cannot
/// start, `--privileged` with devices below subdirectories of /dev, and `tmpcopyup` mounts.
#[test]
fn containerd_exec_failures_privileged_and_tmpfs_copies_as_under_runc() {
    let c = Containerd::start();
    c.ok(&["image", "import", archive().to_str().unwrap()]);
    let devices = host_nested_devices();
    let mut seen = Vec::new();
    for rt in [
        Runtime::runc(),
        Runtime::nanokube(&c.dir.path().join("bin")),
    ] {
        let mut s = exec_failures(&c, &rt);
        s.extend(privileged(&c, &rt, &devices));
        s.extend(copyup(&c, &rt));
        seen.push(s);
    }
    assert_eq!(seen[1], seen[0], "nanokube (left) vs runc (right)");
}
