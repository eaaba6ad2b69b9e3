//! The same bundle under runc (Debian's runc 1.1.5 at /usr/bin/runc, the reference) and under
//! `nanokube runtime`, comparing what the container sees: its working directory, terminal,
//! environment, hooks, mounts, devices and the words of its failures. Each runtime gets its
//! own copy of the image (rootfs/out/rootfs, see rootfs/build.sh) as a plain root directory,
//! its own state root and its own cgroup; `World`'s Drop deletes what was made.
//!
//! Run: `cargo test --test runc_parity` as root.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_nanokube");
const RUNC: &str = "/usr/bin/runc";

fn image() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/rootfs");
    assert!(
        p.join("bin/probe").exists(),
        "run rootfs/build.sh first ({} has no probe)",
        p.display()
    );
    p
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Runc,
    Ours,
}

const BOTH: [Rt; 2] = [Rt::Runc, Rt::Ours];

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Runc => "runc",
            Rt::Ours => "ours",
        }
    }
}

/// What a runtime command left: exit code, stdout, stderr.
#[derive(Debug, Clone)]
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn of(out: std::process::Output) -> Outcome {
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The `msg` of each of runc's logrus lines (`time=... level=error msg="..."`), unquoted, with
/// its level.
fn runc_messages(stderr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        let Some(level) = line
            .split_once("level=")
            .map(|(_, r)| r.split(' ').next().unwrap_or("").to_string())
        else {
            continue;
        };
        let Some((_, rest)) = line.split_once("msg=\"") else {
            continue;
        };
        let mut msg = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => msg.push('\n'),
                    Some(o) => msg.push(o),
                    None => break,
                },
                c => msg.push(c),
            }
        }
        out.push((level, msg));
    }
    out
}

/// Our message, without the "nanokube: " prefix, must be how runc's last error ends (runc
/// puts its own context in front: "runc run failed: unable to start container process: ").
fn assert_same_error(runc: &Outcome, ours: &Outcome) {
    let theirs = runc_messages(&runc.stderr);
    let (_, last) = theirs
        .iter()
        .rev()
        .find(|(l, _)| l == "error")
        .unwrap_or_else(|| panic!("runc logged no error: {}", runc.stderr));
    let mine = ours
        .stderr
        .trim()
        .strip_prefix("nanokube: ")
        .unwrap_or_else(|| panic!("not our error: {:?}", ours.stderr));
    assert!(last.ends_with(mine), "runc said {last:?}, we said {mine:?}");
}

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "p{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Docker's default capability set.
const CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// One test's world: a temp dir holding a bundle per runtime and case, both state roots, the
/// containers made (deleted on drop) and any host mounts the test made (unmounted on drop).
struct World {
    dir: tempfile::TempDir,
    made: Vec<(Rt, String)>,
    host_mounts: Vec<PathBuf>,
}

impl World {
    fn new() -> World {
        assert!(nix::unistd::geteuid().is_root(), "parity tests need root");
        let v = Command::new(RUNC)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{RUNC}: {e} (scripts/deps.sh installs runc)"));
        assert!(v.status.success());
        World {
            dir: tempfile::Builder::new()
                .prefix("nk-parity-")
                .tempdir()
                .unwrap(),
            made: Vec::new(),
            host_mounts: Vec::new(),
        }
    }

    fn cmd(&self, rt: Rt) -> Command {
        let state = self.dir.path().join(format!("state-{}", rt.name()));
        let mut c = match rt {
            Rt::Runc => Command::new(RUNC),
            Rt::Ours => {
                let mut c = Command::new(BIN);
                c.arg("runtime");
                c
            }
        };
        c.arg("--root").arg(state).stdin(Stdio::null());
        c
    }

    /// A bundle for `rt`: a copy of the image, changed by `setup` (given the rootfs dir),
    /// and a spec changed by `edit`.
    fn bundle(
        &self,
        name: &str,
        rt: Rt,
        edit: &dyn Fn(&mut Value),
        setup: &dyn Fn(&Path),
    ) -> PathBuf {
        let b = self.dir.path().join(format!("{name}-{}", rt.name()));
        std::fs::create_dir_all(&b).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(image())
            .arg(b.join("rootfs"))
            .status()
            .unwrap();
        assert!(copied.success());
        setup(&b.join("rootfs"));
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": false},
            "hostname": "parity",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": ["probe", "report"],
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
            ],
            "linux": {
                "cgroupsPath": format!("/nanokube-test/parity-{}-{name}-{}", std::process::id(), rt.name()),
                "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
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

    /// `run` in the foreground, from the bundle dir.
    fn run(&mut self, rt: Rt, bundle: &Path, name: &str) -> Outcome {
        let id = unique(name);
        self.made.push((rt, id.clone()));
        let out = self
            .cmd(rt)
            .args(["run", "--bundle", bundle.to_str().unwrap(), &id])
            .current_dir(bundle)
            .output()
            .unwrap();
        Outcome::of(out)
    }

    /// The same case under both runtimes: (runc's outcome, ours).
    fn both(
        &mut self,
        name: &str,
        edit: &dyn Fn(&mut Value),
        setup: &dyn Fn(&Path),
    ) -> (Outcome, Outcome) {
        let [runc, ours] = BOTH.map(|rt| {
            let b = self.bundle(name, rt, edit, setup);
            self.run(rt, &b, name)
        });
        (runc, ours)
    }

    /// Listens on a console socket and returns its path and a thread that receives the pty
    /// master and reads the terminal until it closes.
    fn console(&self, name: &str) -> (PathBuf, std::thread::JoinHandle<String>) {
        let sock = self.dir.path().join(format!("{}.sock", unique(name)));
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let reader = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let mut fds = Vec::new();
            nanokube::runtime::sync::recv_fds(conn.as_raw_fd(), &mut buf, &mut fds).unwrap();
            let master: OwnedFd = fds.pop().expect("a pty master");
            let mut file = std::fs::File::from(master);
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut text); // EIO once it closes
            text
        });
        (sock, reader)
    }

    /// `create --console-socket` then `start`: what the container wrote on its terminal.
    fn run_on_terminal(&mut self, rt: Rt, bundle: &Path, name: &str) -> String {
        let id = unique(name);
        self.made.push((rt, id.clone()));
        let (sock, reader) = self.console(name);
        let created = self
            .cmd(rt)
            .args(["create", "--bundle", bundle.to_str().unwrap()])
            .arg("--console-socket")
            .arg(&sock)
            .arg(&id)
            .current_dir(bundle)
            .output()
            .unwrap();
        assert!(
            created.status.success(),
            "{rt:?} create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let started = self.cmd(rt).args(["start", &id]).output().unwrap();
        assert!(started.status.success(), "{rt:?} start");
        reader.join().unwrap()
    }

    /// A tmpfs mounted on the host at `dir` (created), unmounted when the world ends.
    fn host_tmpfs(&mut self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        self.host_mounts.push(dir.to_path_buf());
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for (rt, id) in std::mem::take(&mut self.made) {
            let _ = self.cmd(rt).args(["delete", "--force", &id]).output();
        }
        for m in self.host_mounts.iter().rev() {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn no_setup(_: &Path) {}

fn sh(script: &str) -> impl Fn(&mut Value) + '_ {
    move |s: &mut Value| s["process"]["args"] = json!(["sh", "-c", script])
}

// ---- 1. the working directory is entered before privileges are dropped ----

/// A WORKDIR only root may enter (0700, root's) works for uid 1000, as with runc; a missing
/// one is created (0755).
#[test]
fn a_workdir_only_root_can_enter_works_for_a_non_root_user() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        s["process"]["cwd"] = json!("/secret");
        sh("pwd; id -u; ls >/dev/null 2>&1; echo ls=$?")(s);
    };
    let setup = |root: &Path| {
        let d = root.join("secret");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    };
    let (runc, ours) = w.both("cwd", &edit, &setup);
    assert_eq!(runc.code, 0, "{runc:?}");
    assert_eq!(runc.stdout, "/secret\n1000\nls=1\n");
    assert_eq!(
        (ours.code, &ours.stdout),
        (runc.code, &runc.stdout),
        "{ours:?}"
    );

    let edit = |s: &mut Value| {
        s["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        s["process"]["cwd"] = json!("/no/such");
        sh("pwd; stat -c '%a %u' .")(s);
    };
    let (runc, ours) = w.both("cwd-missing", &edit, &no_setup);
    assert_eq!(runc.stdout, "/no/such\n755 0\n", "{runc:?}");
    assert_eq!(
        (ours.code, &ours.stdout),
        (runc.code, &runc.stdout),
        "{ours:?}"
    );
}

// ---- 2. the terminal belongs to the container's user ----

/// With process.terminal and uid 1000, the pty (and /dev/console, the same inode) is owned by
/// uid 1000; its group stays devpts' gid= (5) and its mode devpts' mode= (620), as with runc.
/// The same for a process exec'd with a tty.
#[test]
fn the_terminal_belongs_to_the_container_user() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        s["process"]["terminal"] = json!(true);
        s["process"]["user"] = json!({"uid": 1000, "gid": 1001});
        sh("stat -L -c '%u %g %a' /proc/self/fd/0 /dev/console")(s);
    };
    let mut seen = Vec::new();
    for rt in BOTH {
        let b = w.bundle("tty", rt, &edit, &no_setup);
        seen.push(w.run_on_terminal(rt, &b, "tty").replace("\r\n", "\n"));
    }
    assert_eq!(seen[0], "1000 5 620\n1000 5 620\n", "runc");
    assert_eq!(seen[1], seen[0], "ours");

    // exec -t --user 1000:1001 in a running container, and in one with a user namespace
    // (uid 1000 there is host uid 101000).
    exec_tty_owner(&mut w, &|s| sh("sleep 60")(s));
    exec_tty_owner(&mut w, &|s| {
        sh("sleep 60")(s);
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        s["linux"]["uidMappings"] = map.clone();
        s["linux"]["gidMappings"] = map;
        s["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
    });
}

fn exec_tty_owner(w: &mut World, edit: &dyn Fn(&mut Value)) {
    let mut seen = Vec::new();
    for rt in BOTH {
        let b = w.bundle("exectty", rt, edit, &no_setup);
        let id = unique("exectty");
        w.made.push((rt, id.clone()));
        let out = w
            .cmd(rt)
            .args(["run", "--detach", "--bundle", b.to_str().unwrap(), &id])
            .current_dir(&b)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success(), "{rt:?} run --detach");
        let (sock, reader) = w.console("exectty");
        let exec = w
            .cmd(rt)
            .args([
                "exec",
                "--detach",
                "--tty",
                "--user",
                "1000:1001",
                "--console-socket",
            ])
            .arg(&sock)
            .args([&id, "stat", "-L", "-c", "%u %g %a", "/proc/self/fd/0"])
            .output()
            .unwrap();
        assert!(
            exec.status.success(),
            "{rt:?} exec: {}",
            String::from_utf8_lossy(&exec.stderr)
        );
        seen.push(reader.join().unwrap().replace("\r\n", "\n"));
    }
    assert_eq!(seen[0], "1000 5 620\n", "runc");
    assert_eq!(seen[1], seen[0], "ours");
}

// ---- 3. environment ----

/// A name listed twice keeps its first place and its last value; an unset or empty HOME comes
/// from the container's /etc/passwd for the process's uid, "/" for a uid it lacks.
#[test]
fn environment_duplicates_collapse_and_home_comes_from_passwd() {
    let mut w = World::new();
    let env_of = |o: &Outcome| -> Value {
        let r: Value =
            serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("bad report {e}: {o:?}"));
        r["env"].clone()
    };
    for (name, uid, env, want) in [
        (
            "dups",
            0,
            json!([
                "PATH=/bin",
                "A=1",
                "B=2",
                "A=3",
                "C=x=y",
                "HOME=/h1",
                "HOME=/h2"
            ]),
            json!(["PATH=/bin", "A=3", "B=2", "C=x=y", "HOME=/h2"]),
        ),
        (
            "root",
            0,
            json!(["PATH=/bin"]),
            json!(["PATH=/bin", "HOME=/root"]),
        ),
        (
            "nobody",
            65534,
            json!(["PATH=/bin"]),
            json!(["PATH=/bin", "HOME=/nonexistent"]),
        ),
        (
            "nopasswd",
            1000,
            json!(["PATH=/bin"]),
            json!(["PATH=/bin", "HOME=/"]),
        ),
        (
            "emptyhome",
            0,
            json!(["HOME=/x", "PATH=/bin", "HOME="]),
            json!(["HOME=/root", "PATH=/bin"]),
        ),
    ] {
        let edit = |s: &mut Value| {
            s["process"]["env"] = env.clone();
            s["process"]["user"] = json!({"uid": uid, "gid": uid});
        };
        let (runc, ours) = w.both(name, &edit, &no_setup);
        assert_eq!(env_of(&runc), want, "runc, {name}");
        assert_eq!(env_of(&ours), want, "ours, {name}");
    }
    // An empty name is refused by both.
    let (runc, ours) = w.both(
        "emptyname",
        &|s: &mut Value| s["process"]["env"] = json!(["PATH=/bin", "=foo"]),
        &no_setup,
    );
    assert_ne!(runc.code, 0);
    assert_ne!(ours.code, 0);
    assert_eq!(
        ours.stderr.trim(),
        "nanokube: config.json: process.env[1]: the variable's name must not be empty"
    );
}

// ---- 4. hooks ----

/// A hook gets exactly its `env`; a failing hook's stdout and stderr are both in the error.
#[test]
fn hooks_get_their_env_and_a_failure_shows_their_output() {
    let mut w = World::new();
    let envs = w.dir.path().join("hook-env");
    std::fs::create_dir(&envs).unwrap();
    let mut recorded = Vec::new();
    for rt in BOTH {
        let out = envs.join(rt.name());
        let hook = json!({"path": "/bin/sh", "args": ["sh", "-c", "env | sort > \"$OUT\""],
            "env": [format!("OUT={}", out.display()), "HOOK_A=1", "HOOK_B=two words"]});
        let b = w.bundle(
            "hookenv",
            rt,
            &|s| {
                s["hooks"] = json!({"createRuntime": [hook.clone()]});
                s["process"]["args"] = json!(["true"]);
            },
            &no_setup,
        );
        let o = w.run(rt, &b, "hookenv");
        assert_eq!(o.code, 0, "{rt:?}: {o:?}");
        // OUT names each runtime's own file, and the shell's PWD is the runtime's cwd (each
        // runs from its own bundle): leave those two out.
        let text = std::fs::read_to_string(&out).unwrap();
        let kept: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with("OUT=") && !l.starts_with("PWD="))
            .map(String::from)
            .collect();
        recorded.push(kept);
    }
    assert!(
        recorded[0].iter().any(|l| l == "HOOK_B=two words"),
        "{:?}",
        recorded[0]
    );
    assert!(
        recorded[0].iter().any(|l| l == "HOOK_A=1"),
        "{:?}",
        recorded[0]
    );
    assert_eq!(recorded[1], recorded[0]);

    let failing = json!({"path": "/bin/sh",
        "args": ["sh", "-c", "echo out-$WORD; echo err-$WORD >&2; exit 3"], "env": ["WORD=gpu"]});
    let (runc, ours) = w.both(
        "hookfail",
        &|s| {
            s["hooks"] = json!({"createRuntime": [failing.clone()]});
            s["process"]["args"] = json!(["true"]);
        },
        &no_setup,
    );
    let theirs = runc_messages(&runc.stderr);
    let last = &theirs.last().expect("runc's error").1;
    assert!(
        last.contains("exit status 3") && last.contains("out-gpu") && last.contains("err-gpu"),
        "{last}"
    );
    assert_eq!(ours.code, runc.code);
    assert_eq!(
        ours.stderr.trim(),
        "nanokube: createRuntime: error running hook /bin/sh: exit status 3: out-gpu\nerr-gpu"
    );
}

// ---- 5. recursive mount attributes ----

/// `rro` on an rbind makes the bind and every mount under it read-only (mount_setattr with
/// AT_RECURSIVE; runc 1.1.5 knows it too); `rnoexec` likewise reaches the submount.
#[test]
fn rro_makes_a_whole_bind_tree_read_only() {
    let mut w = World::new();
    let src = w.dir.path().join("rro-src");
    w.host_tmpfs(&src);
    w.host_tmpfs(&src.join("sub"));
    let script = "for f in /mnt/a /mnt/sub/b; do probe write $f x; done; \
        grep ' /mnt' /proc/self/mountinfo | cut -d' ' -f5,6";
    for opts in [
        json!(["rbind", "rro"]),
        json!(["rbind", "rnoexec"]),
        json!(["rbind", "rrw", "rro", "rrw"]),
    ] {
        let edit = |s: &mut Value| {
            s["mounts"].as_array_mut().unwrap().push(
                json!({"destination": "/mnt", "type": "bind", "source": src, "options": opts}),
            );
            sh(script)(s);
        };
        let (runc, ours) = w.both("rro", &edit, &no_setup);
        assert_eq!(runc.code, 0, "{runc:?}");
        assert_eq!(ours.stdout, runc.stdout, "{opts}");
        // runc gathers what to set and what to clear, and the kernel clears first: with
        // both "rro" and "rrw", read-only wins.
        let want = if opts.as_array().unwrap().contains(&json!("rro")) {
            "errno EROFS\nerrno EROFS\n/mnt ro,relatime\n/mnt/sub ro,relatime\n"
        } else {
            "ok\nok\n/mnt rw,noexec,relatime\n/mnt/sub rw,noexec,relatime\n"
        };
        assert_eq!(ours.stdout, want, "{opts}");
    }
}

// ---- 6. capabilities ----

/// An unknown capability name is a warning with runc's words, and the container runs with
/// the known ones.
#[test]
fn an_unknown_capability_is_a_warning() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        let c = &mut s["process"]["capabilities"];
        c["bounding"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_BOGUS"));
        c["effective"].as_array_mut().unwrap().push(json!("bogus"));
        c["permitted"]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_BOGUS"));
    };
    let (runc, ours) = w.both("caps", &edit, &no_setup);
    assert_eq!(runc.code, 0, "{runc:?}");
    assert_eq!(ours.code, 0, "{ours:?}");
    let warning = runc_messages(&runc.stderr)
        .into_iter()
        .find(|(l, _)| l == "warning")
        .expect("runc warns")
        .1;
    assert_eq!(
        warning,
        "ignoring unknown or unavailable capabilities: [CAP_BOGUS bogus]"
    );
    assert_eq!(ours.stderr.trim(), format!("nanokube: warning: {warning}"));
    let caps = |o: &Outcome| serde_json::from_str::<Value>(&o.stdout).unwrap()["caps"].clone();
    assert_eq!(caps(&ours), caps(&runc));
}

// ---- 7. tmpfs mode ----

/// A tmpfs over an existing directory takes its mode (not its owner); a new one is 1777.
/// One deliberate difference: runc 1.1.5 overrides an explicit `mode=` with the directory's
/// mode too (0750 dir + mode=0711 gives 750 there, fixed in later runc); we keep `mode=`.
#[test]
fn a_tmpfs_takes_the_mode_of_its_mount_point() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        let m = s["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
        m.push(json!({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs"}));
        m.push(json!({"destination": "/given", "type": "tmpfs", "source": "tmpfs", "options": ["mode=0711"]}));
        sh("stat -c '%n %a %u %g' /data /fresh /given")(s);
    };
    let setup = |root: &Path| {
        for d in ["data", "given"] {
            let d = root.join(d);
            std::fs::create_dir(&d).unwrap();
            std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o750))
                .unwrap();
            std::os::unix::fs::chown(&d, Some(12), Some(34)).unwrap();
        }
    };
    let (runc, ours) = w.both("tmpfsmode", &edit, &setup);
    let lines = |o: &Outcome| o.stdout.lines().map(String::from).collect::<Vec<_>>();
    let (theirs, mine) = (lines(&runc), lines(&ours));
    assert_eq!(
        theirs[..2],
        ["/data 750 0 0", "/fresh 1777 0 0"],
        "{runc:?}"
    );
    assert_eq!(mine[..2], theirs[..2], "{ours:?}");
    assert_eq!(mine[2], "/given 711 0 0");
}

// ---- 8. read-only /dev ----

/// A spec's /dev tmpfs with "ro": the devices and links are all there, /dev/null still takes
/// writes, and /dev itself refuses new files.
#[test]
fn a_read_only_dev_works() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        s["mounts"][1]["options"]
            .as_array_mut()
            .unwrap()
            .push(json!("ro"));
        sh(
            "ls /dev | tr '\\n' ' '; echo; probe write /dev/new x; probe write /dev/null x; \
            grep ' /dev ' /proc/self/mountinfo | cut -d' ' -f5,6",
        )(s);
    };
    let (runc, ours) = w.both("devro", &edit, &no_setup);
    assert_eq!(runc.code, 0, "{runc:?}");
    assert!(
        runc.stdout.contains("errno EROFS\nok\n/dev ro,nosuid"),
        "{runc:?}"
    );
    assert_eq!(
        (ours.code, &ours.stdout),
        (runc.code, &runc.stdout),
        "{ours:?}"
    );
}

// ---- 9. mount destinations ----

/// Destinations resolve as runc resolves them: an absolute image symlink leads inside the
/// root (never to the host path it names), a relative link from its real directory, ".."
/// clamps at the root, and a relative destination counts from the root with runc's warning.
#[test]
fn mount_destinations_resolve_inside_the_root_as_runc_does() {
    let mut w = World::new();
    let host_side = w.dir.path().join("host-side");
    let mountpoints =
        "cut -d' ' -f5 /proc/self/mountinfo | grep -v '^/dev\\|^/proc\\|^/sys' | sort";
    let edit = |s: &mut Value| {
        let m = s["mounts"].as_array_mut().unwrap();
        for d in [
            "/abslink/sub",
            "tmp",
            "/a/../../../b",
            "/rel/x",
            "/usr/l2/y",
        ] {
            m.push(json!({"destination": d, "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
        }
        sh(mountpoints)(s);
    };
    let setup = |root: &Path| {
        std::os::unix::fs::symlink(&host_side, root.join("abslink")).unwrap();
        std::os::unix::fs::symlink("../var", root.join("rel")).unwrap();
        // usr/l2 -> ../etc, reached through usr: lands on /etc.
        std::os::unix::fs::symlink("../etc", root.join("usr/l2")).unwrap();
    };
    let (runc, ours) = w.both("dest", &edit, &setup);
    assert_eq!(runc.code, 0, "{runc:?}");
    let inside = format!("{}/sub", host_side.display());
    let mut want: Vec<&str> = vec!["/", "/b", "/etc/y", &inside, "/tmp", "/var/x"];
    want.sort();
    assert_eq!(runc.stdout.lines().collect::<Vec<_>>(), want, "runc");
    assert_eq!(ours.stdout, runc.stdout, "{ours:?}");
    assert!(!host_side.exists(), "a mount went to the host");
    let relative = "mount destination tmp is not absolute. Support for non-absolute mount \
        destinations will be removed in a future release.";
    assert!(
        runc_messages(&runc.stderr)
            .iter()
            .any(|(_, m)| m == relative),
        "{runc:?}"
    );
    assert_eq!(ours.stderr.trim(), format!("nanokube: warning: {relative}"));
}

/// A destination that reaches /proc only through an image symlink is refused like a plain
/// one (CVE-2019-16884 hardening). A deliberate difference: runc 1.1.5 lets a tmpfs land
/// anywhere under /proc (here over /proc/sys, either way); we refuse every mount there.
#[test]
fn a_destination_through_a_symlink_into_proc_is_refused() {
    let mut w = World::new();
    let setup = |root: &Path| std::os::unix::fs::symlink("/proc", root.join("p")).unwrap();
    for (name, dest, says) in [
        (
            "procl",
            "/p/sys",
            "nanokube: mount /p/sys: resolves into /proc; mounts over or under /proc are refused",
        ),
        (
            "procd",
            "/proc/sys",
            "nanokube: config.json: mounts[6].destination: mounts over or under /proc are refused",
        ),
    ] {
        let edit = |s: &mut Value| {
            s["mounts"]
                .as_array_mut()
                .unwrap()
                .push(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs"}));
            s["process"]["args"] = json!(["true"]);
        };
        let (_, ours) = w.both(name, &edit, &setup);
        assert_eq!((ours.code, ours.stderr.trim()), (1, says), "{ours:?}");
    }
}

// ---- 10. exec failures ----

/// A program that cannot run says why, in runc's words: at create for what lookup finds
/// (missing, not on PATH, not executable), on the container's stderr after start when execve
/// itself fails (a script whose interpreter is missing), exit status 1 each time.
#[test]
fn an_exec_failure_says_why_as_runc_does() {
    let mut w = World::new();
    let setup = |root: &Path| {
        std::fs::write(root.join("run.sh"), "#!/bin/bash\necho hi\n").unwrap();
        std::fs::set_permissions(
            root.join("run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    };
    for (name, arg0, ours_says) in [
        (
            "missing",
            "/nothere.sh",
            r#"exec: "/nothere.sh": stat /nothere.sh: no such file or directory"#,
        ),
        (
            "nopath",
            "nosuch",
            r#"exec: "nosuch": executable file not found in $PATH"#,
        ),
        (
            "noexec",
            "/etc/passwd",
            r#"exec: "/etc/passwd": permission denied"#,
        ),
        ("dir", "/etc", r#"exec: "/etc": permission denied"#),
    ] {
        let edit = |s: &mut Value| s["process"]["args"] = json!([arg0]);
        let (runc, ours) = w.both(name, &edit, &setup);
        assert_eq!((runc.code, ours.code), (1, 1), "{runc:?} {ours:?}");
        assert_same_error(&runc, &ours);
        assert_eq!(ours.stderr.trim(), format!("nanokube: {ours_says}"));
    }
    // /bin/bash is not in the image: execve fails after start.
    let (runc, ours) = w.both(
        "interp",
        &|s: &mut Value| s["process"]["args"] = json!(["/run.sh"]),
        &setup,
    );
    assert_eq!(runc.code, 1, "{runc:?}");
    assert_eq!(runc.stderr, "exec /run.sh: no such file or directory\n");
    assert_eq!(
        (ours.code, &ours.stderr),
        (runc.code, &runc.stderr),
        "{ours:?}"
    );
}

// ---- 11. exec of a program that cannot start ----

/// `exec` of a missing program fails in `exec` itself, with runc's words and status 255, in
/// the foreground and with --detach (what containerd's shim and conmon send), and the error
/// is in the --log file as JSON, where containerd reads it.
#[test]
fn an_exec_that_cannot_start_fails_exec_itself() {
    let mut w = World::new();
    let mut results = Vec::new();
    for rt in BOTH {
        let b = w.bundle(
            "execfail",
            rt,
            &|s| s["process"]["args"] = json!(["sleep", "1000"]),
            &no_setup,
        );
        let id = unique("execfail");
        w.made.push((rt, id.clone()));
        // The container inherits these: a pipe would keep output() waiting for it.
        let status = w
            .cmd(rt)
            .args(["run", "--detach", "--bundle", b.to_str().unwrap(), &id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{rt:?} run -d");
        let mut outcomes = Vec::new();
        for args in [
            &["exec", &id, "nosuch"][..],
            &["exec", "--detach", &id, "nosuch"],
            &["exec", "--detach", &id, "/etc/passwd"],
        ] {
            outcomes.push(Outcome::of(w.cmd(rt).args(args).output().unwrap()));
        }
        let log = w.dir.path().join(format!("execfail-{}.log", rt.name()));
        let logged = w
            .cmd(rt)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "exec", "--detach", &id, "/nothere"])
            .output()
            .unwrap();
        assert_eq!(logged.status.code(), Some(255), "{rt:?}");
        let line: Value = serde_json::from_str(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(line["level"], "error");
        results.push((outcomes, line["msg"].as_str().unwrap().to_string()));
    }
    let (ours, our_log) = results.pop().unwrap();
    let (runc, runc_log) = results.pop().unwrap();
    for (theirs, mine) in runc.iter().zip(&ours) {
        assert_eq!(theirs.code, 255, "{theirs:?}");
        assert_eq!(mine.code, 255, "{mine:?}");
        assert_same_error(theirs, mine);
    }
    assert!(
        ours[0]
            .stderr
            .contains(r#"exec: "nosuch": executable file not found in $PATH"#),
        "{:?}",
        ours[0]
    );
    assert!(
        runc_log.ends_with(&our_log),
        "runc logged {runc_log:?}, we {our_log:?}"
    );
}

// ---- 12. devices in subdirectories of /dev ----

/// linux.devices below a subdirectory of /dev (as --privileged brings, /dev/cpu/0/cpuid) are
/// made with their directories, as runc makes them.
#[test]
fn devices_in_subdirectories_of_dev_are_made() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        s["linux"]["devices"] = json!([
            {"path": "/dev/sub/dir/nullish", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 0, "gid": 0},
            {"path": "/dev/top", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666, "uid": 0, "gid": 0}
        ]);
        sh("stat -c '%n %F %t,%T %a' /dev/sub /dev/sub/dir /dev/sub/dir/nullish /dev/top && echo x > /dev/sub/dir/nullish && echo written")(s);
    };
    let (runc, ours) = w.both("subdev", &edit, &no_setup);
    assert_eq!(runc.code, 0, "{runc:?}");
    assert!(
        runc.stdout
            .contains("/dev/sub/dir/nullish character special file 1,3 640"),
        "{runc:?}"
    );
    assert_eq!(
        (ours.code, &ours.stdout),
        (runc.code, &runc.stdout),
        "{ours:?}"
    );
    let bad = |s: &mut Value| {
        s["linux"]["devices"] =
            json!([{"path": "/dev/../etc/evil", "type": "c", "major": 1, "minor": 3}]);
    };
    let b = w.bundle("baddev", Rt::Ours, &bad, &no_setup);
    let out = w.run(Rt::Ours, &b, "baddev");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("/dev/../etc/evil must be a path under /dev"),
        "{out:?}"
    );
}

// ---- 13. tmpcopyup ----

/// A tmpfs with `tmpcopyup` starts with a copy of the directory it covers (files, a nested
/// directory, a link, owners and modes), as podman's --tmpfs and --read-only ask; writes go
/// to the tmpfs, never to the image.
#[test]
fn tmpcopyup_copies_the_covered_directory() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        s["mounts"].as_array_mut().unwrap().push(
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup", "size=1m"]}),
        );
        sh("cd /data && find . | sort | while read f; do stat -c '%n %F %a %u %g %s' \"$f\"; done; \
            readlink link; cat sub/file; echo new > added; grep ' /data ' /proc/self/mountinfo | cut -d' ' -f9")(s);
    };
    let setup = |root: &Path| {
        let d = root.join("data");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/file"), "hello\n").unwrap();
        std::fs::set_permissions(
            d.join("sub/file"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::chown(d.join("sub/file"), Some(12), Some(34)).unwrap();
        std::fs::set_permissions(
            d.join("sub"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/file", d.join("link")).unwrap();
    };
    let (runc, ours) = w.both("copyup", &edit, &setup);
    assert_eq!(runc.code, 0, "{runc:?}");
    assert!(
        runc.stdout
            .contains("./sub/file regular file 640 12 34 6\n"),
        "{runc:?}"
    );
    assert!(
        runc.stdout.ends_with("sub/file\nhello\ntmpfs\n"),
        "{runc:?}"
    );
    assert_eq!(
        (ours.code, &ours.stdout),
        (runc.code, &runc.stdout),
        "{ours:?}"
    );
    let image_copy = w.dir.path().join("copyup-ours/rootfs/data");
    assert!(
        !image_copy.join("added").exists(),
        "the write reached the image"
    );
}

// ---- 14. --no-pivot hides the host's procfs ----

/// Without pivot_root the host's /proc stays in the container's mount namespace; unless it is
/// hidden, a user namespace inside may mount a fresh, unmasked procfs and write
/// /proc/sysrq-trigger. Both runtimes must refuse the mount (runc's no_pivot.bats).
#[test]
fn no_pivot_does_not_expose_a_bare_proc() {
    let mut w = World::new();
    let edit = |s: &mut Value| {
        s["process"]["args"] = json!([
            "unshare",
            "-mrpf",
            "sh",
            "-c",
            "mount -t proc none /proc && echo h > /proc/sysrq-trigger"
        ]);
        for set in ["bounding", "permitted"] {
            s["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SETFCAP"));
        }
    };
    let mut seen = Vec::new();
    for rt in BOTH {
        let b = w.bundle("nopivot", rt, &edit, &no_setup);
        let id = unique("nopivot");
        w.made.push((rt, id.clone()));
        let out = w
            .cmd(rt)
            .args(["run", "--no-pivot", "--bundle", b.to_str().unwrap(), &id])
            .current_dir(&b)
            .output()
            .unwrap();
        seen.push(Outcome::of(out));
    }
    for o in &seen {
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains("mount: permission denied"), "{o:?}");
    }
}
