//! nanokube as podman's OCI runtime (issue 8, "Proof with the real clients"): Debian's podman 4.3
//! and conmon drive `nanokube runtime` through a link named `nanokube-runc` for `run` (foreground,
//! detached and with a tty), `exec` with and without `-it`, `pause`, `unpause`, `stop` and `rm`.
//! Every step runs first with runc as the control, then with nanokube, and the results are
//! checked in the container's output, exit codes, podman's view of its state, the freezer, and
//! what is left afterwards.
//!
//! podman runs on its own storage (--root, --runroot), tmp dir, config files (CONTAINERS_CONF and
//! friends, so the machine's are not read), file locks, a file events logger, the cgroupfs
//! manager under a cgroup parent of the test's own. The runtime keeps its state in its default
//! --root (podman 4.3 drops `--runtime-flag root=...` from the `delete` of its cleanup, which
//! would leave every container's state behind, with runc too).
//! Containers get no network (--network none).
//!
//! Run: `cargo test --test podman` as root, after rootfs/build.sh (the image archive) and
//! scripts/deps.sh (podman, conmon).

mod clients_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clients_support::*;

const IMAGE: &str = "localhost/nanokube/busybox:latest";

fn archive() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/nanokube-busybox.oci.tar");
    assert!(
        p.exists(),
        "{} is missing: run rootfs/build.sh first",
        p.display()
    );
    p
}

/// podman's private storage, config and cgroup parent; dropping it removes every container and
/// image, unmounts what podman left mounted there, and removes the cgroups, also when a step
/// failed.
struct Podman {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    runtimes: Vec<Runtime>,
    /// Every container made, for the runtime's own `delete --force` after a failed step.
    made: std::cell::RefCell<Vec<(Runtime, String)>>,
}

impl Podman {
    fn new() -> Podman {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the podman test needs root"
        );
        need("podman");
        need("conmon");
        let dir = tempfile::Builder::new()
            .prefix("nk-podman-")
            .tempdir()
            .unwrap();
        let t = dir.path();
        for d in ["root", "runroot", "tmp", "vol", "net", "hooks"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        let t_ = t.display();
        std::fs::write(
            t.join("containers.conf"),
            format!(
                r#"[containers]
# podman's default would be its own hard limits (1048576 files), which this sandbox's root
# cannot grant: runc then fails to set them as well.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{t_}/events.log"
lock_type = "file"
tmp_dir = "{t_}/tmp"
volume_path = "{t_}/vol"
hooks_dir = ["{t_}/hooks"]
[network]
network_config_dir = "{t_}/net"
"#
            ),
        )
        .unwrap();
        std::fs::write(
            t.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{t_}/root\"\nrunroot = \"{t_}/runroot\"\n"
            ),
        )
        .unwrap();
        std::fs::write(
            t.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        Podman {
            cgroup_parent: format!("/nktest-podman-{}", std::process::id()),
            dir,
            runtimes: Vec::new(),
            made: Default::default(),
        }
    }

    fn podman(&self, rt: &Runtime, args: &[&str]) -> Command {
        let t = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", t.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", t.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", t.join("registries.conf"))
            .arg("--root")
            .arg(t.join("root"))
            .arg("--runroot")
            .arg(t.join("runroot"))
            .arg("--tmpdir")
            .arg(t.join("tmp"))
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .arg("--runtime")
            .arg(&rt.path)
            .args(args);
        cmd
    }

    /// Runs podman, which must succeed; returns its stdout.
    fn ok(&self, rt: &Runtime, args: &[&str]) -> String {
        let out = run(self.podman(rt, args));
        assert!(
            out.status.success(),
            "[{}] podman {}: {}",
            rt.label,
            args.join(" "),
            show(&out)
        );
        text(&out.stdout)
    }

    fn inspect(&self, rt: &Runtime, name: &str, format: &str) -> String {
        self.ok(rt, &["inspect", "--format", format, name])
            .trim()
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // First every process in our cgroups, thawed so that SIGKILL lands; then podman's
        // records of them and the runtimes' state.
        for dir in cgroup_dirs(&self.cgroup_parent) {
            kill_cgroup_tree(&dir);
        }
        for rt in &self.runtimes {
            run_quietly(self.podman(rt, &["rm", "--all", "--force", "--time", "0"]));
        }
        if let Some(rt) = self.runtimes.first() {
            run_quietly(self.podman(rt, &["rmi", "--all", "--force"]));
        }
        for (rt, id) in self.made.borrow().iter() {
            let mut cmd = Command::new(&rt.path);
            cmd.args(["delete", "--force", id]);
            run_quietly(cmd);
        }
        // conmon of a failed step: it names our storage on its command line.
        let t = self.dir.path().display().to_string();
        for pid in pids_with_cmdline(&t) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for dir in cgroup_dirs(&self.cgroup_parent) {
            kill_cgroup_tree(&dir);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        // Mounts podman made under the temp dir (its storage home, a container's root or shm),
        // deepest first.
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(|s| s.to_string()))
            .filter(|m| m.starts_with(&t))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let left = remove_cgroup_tree(&self.cgroup_parent);
        if !left.is_empty() {
            eprintln!("podman test: cgroups left behind: {left:?}");
        }
    }
}

/// The freezer's state of process `pid`'s cgroup: FROZEN or THAWED.
fn freezer_of(pid: &str) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            let wanted = if cgroup_v2() {
                ctrl.is_empty()
            } else {
                ctrl == "freezer"
            };
            wanted.then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("process {pid} has no freezer cgroup:\n{cg}"));
    if cgroup_v2() {
        match cgroup_file("", &path, "cgroup.freeze").as_str() {
            "1" => "FROZEN".into(),
            _ => "THAWED".into(),
        }
    } else {
        cgroup_file("freezer", &path, "freezer.state")
    }
}

fn expect_code(rt: &Runtime, what: &str, out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "[{}] {what}: {}",
        rt.label,
        show(out)
    );
}

/// Every step, under one runtime. Container names carry the runtime's label.
fn steps(p: &Podman, rt: &Runtime) {
    let l = rt.label;
    let parent = p.cgroup_parent.as_str();
    let common = ["--network", "none", "--cgroup-parent", parent];

    // Foreground run: output and exit code come back; the only interface is lo.
    let fg = format!("{l}-fg");
    let mut args = vec!["run", "--name", &fg];
    args.extend(common);
    args.extend([
        IMAGE,
        "sh",
        "-c",
        "echo hello; echo oops >&2; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; exit 7",
    ]);
    let out = run(p.podman(rt, &args));
    expect_code(rt, "run", &out, 7);
    assert_eq!(
        text(&out.stdout),
        "hello\nlo\n",
        "[{l}] run: {}",
        show(&out)
    );
    assert!(
        text(&out.stderr).contains("oops"),
        "[{l}] run: {}",
        show(&out)
    );
    assert_eq!(
        p.inspect(rt, &fg, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 7",
        "[{l}]"
    );

    // Detached run.
    let d = format!("{l}-d");
    let mut args = vec!["run", "-d", "--name", &d];
    args.extend(common);
    args.extend([
        IMAGE,
        "sh",
        "-c",
        "trap 'echo got-term; exit 9' TERM; echo started; sleep 300 & wait",
    ]);
    let id = p.ok(rt, &args).trim().to_string();
    wait_until(&format!("[{l}] {d} logs 'started'"), || {
        text(&run(p.podman(rt, &["logs", &d])).stdout).contains("started")
    });
    assert_eq!(p.inspect(rt, &d, "{{.State.Status}}"), "running", "[{l}]");
    p.made.borrow_mut().push((rt.clone(), id.clone()));
    let state = rt.default_root.join(&id);
    assert!(
        state.exists(),
        "[{l}] the runtime's --root has no {}",
        state.display()
    );
    let pid = p.inspect(rt, &d, "{{.State.Pid}}");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&format!("{parent}/libpod-{id}")),
        "[{l}] {d} (pid {pid}) is not in its cgroup under {parent}:\n{cg}"
    );

    // exec without a tty: the container's pid 1 and network, its exit code.
    let out = run(p.podman(
        rt,
        &[
            "exec",
            &d,
            "sh",
            "-c",
            "echo exec-out pid1=$(cat /proc/1/comm); test -t 1 || echo no-tty; exit 3",
        ],
    ));
    expect_code(rt, "exec", &out, 3);
    assert_eq!(
        text(&out.stdout),
        "exec-out pid1=sh\nno-tty\n",
        "[{l}] exec: {}",
        show(&out)
    );

    // exec -it through the caller's terminal (a pty).
    let mut cmd = p.podman(
        rt,
        &[
            "exec",
            "-it",
            &d,
            "sh",
            "-c",
            "echo prompt; read line; test -t 0 && test -t 1 && echo \"exec-tty $line $(tty)\"; exit 4",
        ],
    );
    cmd.env("TERM", "dumb");
    let mut t = OnPty::spawn(cmd);
    t.expect("prompt");
    t.send(b"hello\r");
    let (code, shown) = t.finish();
    assert_eq!(
        code, 4,
        "[{l}] exec -it exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains("exec-tty hello /dev/pts/"),
        "[{l}] exec -it: the terminal showed:\n{shown}"
    );

    // pause and unpause: podman's status and the freezer agree; the container runs on after.
    p.ok(rt, &["pause", &d]);
    assert_eq!(p.inspect(rt, &d, "{{.State.Status}}"), "paused", "[{l}]");
    assert_eq!(freezer_of(&pid), "FROZEN", "[{l}] paused {d}");
    p.ok(rt, &["unpause", &d]);
    assert_eq!(p.inspect(rt, &d, "{{.State.Status}}"), "running", "[{l}]");
    assert_eq!(freezer_of(&pid), "THAWED", "[{l}] unpaused {d}");
    let out = p.ok(rt, &["exec", &d, "echo", "alive"]);
    assert_eq!(out, "alive\n", "[{l}] exec after unpause");

    // stop: SIGTERM reaches the trap, whose exit code podman records.
    p.ok(rt, &["stop", "--time", "20", &d]);
    assert_eq!(
        p.inspect(rt, &d, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 9",
        "[{l}]"
    );
    let logs = p.ok(rt, &["logs", &d]);
    assert!(logs.contains("got-term"), "[{l}] {d} logs:\n{logs}");

    // An interactive run with a tty.
    let tty = format!("{l}-tty");
    let mut args = vec!["run", "-it", "--rm", "--name", &tty];
    args.extend(common);
    args.extend([
        IMAGE,
        "sh",
        "-c",
        "echo prompt; read line; test -t 0 && echo \"run-tty $line $(tty)\"; exit 6",
    ]);
    let mut cmd = p.podman(rt, &args);
    cmd.env("TERM", "dumb");
    let mut t = OnPty::spawn(cmd);
    t.expect("prompt");
    t.send(b"hello\r");
    let (code, shown) = t.finish();
    assert_eq!(
        code, 6,
        "[{l}] run -it exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains("run-tty hello /dev/pts/0"),
        "[{l}] run -it: the terminal showed:\n{shown}"
    );

    // rm: the containers, their runtime state and their cgroups are gone.
    p.ok(rt, &["rm", &fg, &d]);
    let all = p.ok(rt, &["ps", "--all", "--format", "{{.Names}}"]);
    for name in [&fg, &d, &tty] {
        assert!(
            !all.lines().any(|n| n == name.as_str()),
            "[{l}] {name} left behind:\n{all}"
        );
    }
    let state = rt.default_root.join(&id);
    assert!(!state.exists(), "[{l}] {} left behind", state.display());
    for dir in cgroup_dirs(&format!("{parent}/libpod-{id}")) {
        assert!(!dir.exists(), "[{l}] cgroup {} left behind", dir.display());
    }
}

#[test]
fn podman_runs_containers_through_nanokube_as_its_runtime() {
    let mut p = Podman::new();
    let runc = Runtime::runc();
    let nk = Runtime::nanokube(&p.dir.path().join("bin"));
    p.runtimes = vec![runc.clone(), nk.clone()];
    let out = p.ok(&runc, &["load", "--input", archive().to_str().unwrap()]);
    let images = p.ok(&runc, &["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.lines().any(|i| i == IMAGE),
        "loading the archive gave no {IMAGE}: load said {out}; images:\n{images}"
    );
    // runc first: a step that fails under it is a fault of the test, not of nanokube.
    steps(&p, &runc);
    steps(&p, &nk);
}
