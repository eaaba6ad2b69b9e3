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
            // One of its own per test (they run at once): a Drop kills what is in it.
            cgroup_parent: format!("/nktest-podman-{}-{}", std::process::id(), next_instance()),
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

/// An image of the test's own, committed from IMAGE with content in directories that
/// `--tmpfs` and `--read-only` cover: with `tmpcopyup` the new tmpfs must start with it.
const SEEDED: &str = "localhost/nanokube/seeded:latest";

/// What SEEDED adds to IMAGE: owners, modes (set-uid, a 0700 directory whose mode the tmpfs
/// over it must keep), links, nested directories. No fifo, device node or directory with a
/// mode umask would cut: runc's copy fails on the first two and cuts the third (a 1777
/// directory below the tmpfs comes out 1755), so they cannot be checked against it.
const SEED_SCRIPT: &str = "set -e; mkdir -p /srv/data/sub /run/seeded /var/tmp
echo one > /srv/data/file; chmod 640 /srv/data/file; chown 65534:65534 /srv/data/file
echo two > /srv/data/sub/deep; chown 65534:0 /srv/data/sub; chmod 750 /srv/data/sub
ln -s file /srv/data/link; ln -s /etc/passwd /srv/data/abs-link
cp /bin/busybox /srv/data/suid; chmod 4755 /srv/data/suid; chmod 700 /srv
echo seed-tmp > /tmp/seed; echo seed-run > /run/seeded/file; echo seed-var > /var/tmp/seed";

/// Lists what SEED_SCRIPT made, with owners and modes, and prints the files' contents.
const LISTING: &str =
    "find /srv /tmp /var/tmp /run/seeded -exec stat -c '%n %a %u:%g %F' {} + | sort; \
    cat /srv/data/file /srv/data/link /srv/data/sub/deep /tmp/seed /run/seeded/file /var/tmp/seed";

/// Commits SEEDED (with runc: the runtime plays no part in `commit`); returns what LISTING
/// shows in a container of it without any tmpfs, the picture every tmpfs case must match.
fn seed_image(p: &Podman, rt: &Runtime) -> String {
    let common = [
        "--network",
        "none",
        "--cgroup-parent",
        p.cgroup_parent.as_str(),
    ];
    let mut args = vec!["run", "--name", "seed"];
    args.extend(common);
    args.extend([IMAGE, "sh", "-c", SEED_SCRIPT]);
    p.ok(rt, &args);
    p.ok(rt, &["commit", "--quiet", "--pause=false", "seed", SEEDED]);
    p.ok(rt, &["rm", "seed"]);
    let mut args = vec!["run", "--rm"];
    args.extend(common);
    args.extend([SEEDED, "sh", "-c", LISTING]);
    let base = p.ok(rt, &args);
    for line in [
        "/srv 700 0:0 directory\n",
        "/srv/data/file 640 65534:65534 regular file\n",
        "/srv/data/link 777 0:0 symbolic link\n",
        "/srv/data/sub 750 65534:0 directory\n",
        "/srv/data/suid 4755 0:0 regular file\n",
        "/tmp 1777 0:0 directory\n",
        "/tmp/seed 644 0:0 regular file\n",
        "\none\none\ntwo\nseed-tmp\nseed-run\nseed-var\n",
    ] {
        assert!(base.contains(line), "{SEEDED} lacks {line:?}:\n{base}");
    }
    base
}

/// Results that must come out the same under runc and nanokube, by name.
type Seen = Vec<(&'static str, String)>;

/// `exec` of a program that cannot start: podman's 127 (not found) and 126 (not executable),
/// and 125 with --detach, read from the runtime's `exec failed: ...` (exit 255); the container
/// runs on with nothing left of the attempts.
fn exec_failures(p: &Podman, rt: &Runtime) -> Seen {
    let l = rt.label;
    let x = format!("{l}-execfail");
    let mut args = vec!["run", "-d", "--name", &x];
    args.extend([
        "--network",
        "none",
        "--cgroup-parent",
        p.cgroup_parent.as_str(),
    ]);
    args.extend([IMAGE, "sleep", "300"]);
    let id = p.ok(rt, &args).trim().to_string();
    p.made.borrow_mut().push((rt.clone(), id));
    let runtime = rt.path.display().to_string();
    let not_found = "exec failed: unable to start container process: exec: \"nosuch\": \
                     executable file not found in $PATH";
    for (args, code, says) in [
        (vec!["exec", &x, "nosuch"], 127, not_found.to_string()),
        (
            vec!["exec", &x, "/etc/passwd"],
            126,
            "exec failed: unable to start container process: exec: \"/etc/passwd\": \
             permission denied"
                .to_string(),
        ),
        (
            vec!["exec", "--detach", &x, "nosuch"],
            125,
            not_found.to_string(),
        ),
    ] {
        let out = run(p.podman(rt, &args));
        let what = args.join(" ");
        expect_code(rt, &what, &out, code);
        let err = text(&out.stderr);
        assert!(
            err.starts_with(&format!("Error: {runtime}: ")) && err.contains(&says),
            "[{l}] podman {what}: stderr should be the runtime's {says:?}: {}",
            show(&out)
        );
        assert_eq!(text(&out.stdout), "", "[{l}] podman {what}");
    }
    // With a tty (the caller's, a pty): the same status, the reason shown on the terminal.
    let mut cmd = p.podman(rt, &["exec", "-it", &x, "nosuch"]);
    cmd.env("TERM", "dumb");
    let (code, shown) = OnPty::spawn(cmd).finish();
    assert_eq!(
        code, 127,
        "[{l}] exec -it nosuch; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(not_found),
        "[{l}] exec -it nosuch: the terminal showed:\n{shown}"
    );
    assert_eq!(p.inspect(rt, &x, "{{.State.Status}}"), "running", "[{l}]");
    let ps = p.ok(rt, &["exec", &x, "ps", "-o", "comm"]);
    assert_eq!(
        ps, "COMMAND\nsleep\nps\n",
        "[{l}] processes left in {x} by the failed execs"
    );
    let seen = vec![("exec sessions", p.inspect(rt, &x, "{{len .ExecIDs}}"))];
    p.ok(rt, &["rm", "--force", "--time", "0", &x]);
    seen
}

/// `run --privileged`: every host device, those below subdirectories of /dev (/dev/cpu/0/cpuid,
/// /dev/net/tun) too, with their parents; without it, none of them.
fn privileged(p: &Podman, rt: &Runtime, devices: &[String]) -> Seen {
    let l = rt.label;
    let common = [
        "--network",
        "none",
        "--cgroup-parent",
        p.cgroup_parent.as_str(),
    ];
    // /dev/ptmx stays runc's link to the container's devpts instance even though the host's
    // ptmx (5:2) is among the devices --privileged lists.
    let script = format!(
        "{}; echo \"/dev/ptmx -> $(readlink /dev/ptmx)\"; grep CapEff /proc/self/status",
        stat_script(devices)
    );
    let mut args = vec!["run", "--rm", "--privileged"];
    args.extend(common);
    args.extend([IMAGE, "sh", "-c", &script]);
    let out = run(p.podman(rt, &args));
    expect_code(rt, "run --privileged", &out, 0);
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
    let mut args = vec!["run", "--rm"];
    args.extend(common);
    args.extend([IMAGE, "sh", "-c", &script]);
    let out = run(p.podman(rt, &args));
    expect_code(rt, "run (not privileged)", &out, 0);
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

/// `--tmpfs DIR` and `--read-only` (a tmpfs on /tmp, /var/tmp and /run) come with
/// `tmpcopyup`: each new tmpfs holds what the image had there (`base`, as LISTING shows it),
/// owners and modes kept, and takes writes; with --read-only the rest of the root does not.
fn copyup(p: &Podman, rt: &Runtime, base: &str) -> Seen {
    let l = rt.label;
    let common = [
        "--network",
        "none",
        "--cgroup-parent",
        p.cgroup_parent.as_str(),
    ];
    let image_bin =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/rootfs/bin"))
            .unwrap()
            .count();

    // Without a tmpfs: the same picture under either runtime.
    let mut args = vec!["run", "--rm"];
    args.extend(common);
    args.extend([SEEDED, "sh", "-c", LISTING]);
    assert_eq!(p.ok(rt, &args), base, "[{l}] {SEEDED} without a tmpfs");

    // --tmpfs over /srv, and over /bin: the shell that runs this is the copy's.
    let script = format!(
        "awk '$2==\"/srv\"||$2==\"/bin\"{{print $2, $3}}' /proc/mounts | sort; \
         ls /bin | wc -l; readlink /bin/sh; {LISTING}; \
         echo new > /srv/data/new && cat /srv/data/new; touch /bin/new && echo bin-writable"
    );
    let mut args = vec!["run", "--rm", "--tmpfs", "/srv", "--tmpfs", "/bin"];
    args.extend(common);
    args.extend([SEEDED, "sh", "-c", &script]);
    let out = run(p.podman(rt, &args));
    expect_code(rt, "run --tmpfs /srv --tmpfs /bin", &out, 0);
    assert_eq!(
        text(&out.stdout),
        format!("/bin tmpfs\n/srv tmpfs\n{image_bin}\nbusybox\n{base}new\nbin-writable\n"),
        "[{l}] run --tmpfs /srv --tmpfs /bin: {}",
        show(&out)
    );

    // --read-only: /tmp, /var/tmp and /run are tmpfs copies; / and /srv refuse writes.
    let script = format!(
        "awk '$2==\"/tmp\"||$2==\"/var/tmp\"||$2==\"/run\"{{print $2, $3}}' /proc/mounts | sort; \
         awk '$2==\"/\"{{split($4, o, \",\"); print \"/\", o[1]}}' /proc/mounts; {LISTING}; \
         for d in /tmp /var/tmp /run; do echo w > $d/new && cat $d/new; done; \
         touch /new 2>&1; touch /srv/new 2>&1; echo done"
    );
    let mut args = vec!["run", "--rm", "--read-only"];
    args.extend(common);
    args.extend([SEEDED, "sh", "-c", &script]);
    let out = run(p.podman(rt, &args));
    expect_code(rt, "run --read-only", &out, 0);
    assert_eq!(
        text(&out.stdout),
        format!(
            "/run tmpfs\n/tmp tmpfs\n/var/tmp tmpfs\n/ ro\n{base}w\nw\nw\n\
             touch: /new: Read-only file system\ntouch: /srv/new: Read-only file system\ndone\n"
        ),
        "[{l}] run --read-only: {}",
        show(&out)
    );
    Vec::new()
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

/// The cases of three gaps nanokube had (all fine under runc): `exec` of a program that cannot
/// start, `--privileged` with devices below subdirectories of /dev, and `tmpcopyup` (`--tmpfs`,
/// `--read-only`).
#[test]
fn podman_exec_failures_privileged_and_tmpfs_copies_as_under_runc() {
    let mut p = Podman::new();
    let runc = Runtime::runc();
    let nk = Runtime::nanokube(&p.dir.path().join("bin"));
    p.runtimes = vec![runc.clone(), nk.clone()];
    p.ok(&runc, &["load", "--input", archive().to_str().unwrap()]);
    let base = seed_image(&p, &runc);
    let devices = host_nested_devices();
    let mut seen = Vec::new();
    for rt in [&runc, &nk] {
        let mut s = exec_failures(&p, rt);
        s.extend(privileged(&p, rt, &devices));
        s.extend(copyup(&p, rt, &base));
        seen.push(s);
    }
    assert_eq!(seen[1], seen[0], "nanokube (left) vs runc (right)");
}
