//! Root integration tests for the runtime's operations beyond the lifecycle: `spec`
//! (template.rs, compared byte for byte with /usr/bin/runc), pause/resume (freeze.rs), update
//! (update.rs), events (events.rs), features, a frozen cgroup at create, and systemd cgroup
//! paths. Real containers from rootfs/out/rootfs (run rootfs/build.sh first); each test has its
//! own state root, bundle, ids and cgroups, removed again even when it fails.
//!
//! Run: `cargo test --test runtime_ops` as root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nanokube::runtime::cgroups::{self, Cgroup, Hierarchy};
use nanokube::runtime::{template, CreateOptions, Runtime, Status};
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

fn unique(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "o{}-{}-{}",
        std::process::id(),
        name,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's world: state root, bundles, and the containers and cgroups it made.
struct Env {
    dir: tempfile::TempDir,
    root: PathBuf,
    ids: Vec<String>,
    cgroups: Vec<String>,
}

impl Env {
    fn new() -> Env {
        assert!(nix::unistd::geteuid().is_root(), "runtime tests need root");
        let dir = tempfile::Builder::new()
            .prefix("nk-ops-")
            .tempdir()
            .unwrap();
        let root = dir.path().join("state");
        Env {
            root,
            dir,
            ids: Vec::new(),
            cgroups: Vec::new(),
        }
    }

    fn rt(&self) -> Runtime {
        let mut rt = Runtime::new(&self.root);
        rt.binary = Some(BIN.into());
        rt
    }

    /// A bundle whose rootfs is an overlay of the shared image with a private upper dir
    /// (`bundle/upper` shows what the container wrote); returns (bundle, cgroupsPath).
    fn bundle(
        &mut self,
        name: &str,
        args: &[&str],
        edit: impl FnOnce(&mut Value),
    ) -> (PathBuf, String) {
        let b = self.dir.path().join(name);
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(b.join(d)).unwrap();
        }
        let cgroup = format!("/nanokube-test/{}", unique(name));
        self.cgroups.push(cgroup.clone());
        let overlay = json!({"lower": [image()], "upper": b.join("upper"), "work": b.join("work")});
        let mut spec = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": false},
            "annotations": {"io.nanokube.rootfs.overlay": overlay.to_string()},
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "noNewPrivileges": true
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}
            ],
            "linux": {
                "cgroupsPath": cgroup,
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
            }
        });
        edit(&mut spec);
        std::fs::write(
            b.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap(),
        )
        .unwrap();
        (b, cgroup)
    }

    /// Creates and starts `id` from `bundle` through the library, stdio to /dev/null.
    fn start(&mut self, bundle: &Path, id: &str) {
        self.ids.push(id.to_string());
        let rt = self.rt();
        rt.create(
            id,
            CreateOptions {
                bundle: bundle.to_path_buf(),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
        rt.start(id).unwrap_or_else(|e| panic!("start {id}: {e}"));
    }

    fn status(&self, id: &str) -> Status {
        self.rt().state(id).unwrap().status
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let rt = self.rt();
        for id in &self.ids {
            // A paused container is thawed first, or its processes could not die on v1.
            let _ = rt.resume(id);
            let _ = rt.delete(id, true);
        }
        for path in &self.cgroups {
            if let Ok(cg) = Cgroup::open(path) {
                let _ = cg.thaw();
                let _ = cg.kill_all(libc::SIGKILL);
                let _ = cg.destroy();
            }
        }
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

// ---- spec ---------------------------------------------------------------------------------

fn runc_spec(dir: &Path, args: &[&str], uid: Option<u32>) -> Vec<u8> {
    let mut cmd = Command::new(RUNC);
    cmd.arg("spec").args(args).current_dir(dir);
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(uid);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "runc spec: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dir.join("config.json")).unwrap()
}

#[test]
fn spec_is_byte_for_byte_runc_spec() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("runc");
    for d in [&ours, &theirs] {
        std::fs::create_dir(d).unwrap();
    }
    template::write(&ours, false).unwrap();
    let expected = runc_spec(&theirs, &[], None);
    let got = std::fs::read(ours.join("config.json")).unwrap();
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(expected).unwrap()
    );

    // Refused like runc, with its words, and the file is left as it was.
    let err = template::write(&ours, true).unwrap_err();
    assert_eq!(err.to_string(), "File config.json exists. Remove it first");
    let out = Command::new(RUNC)
        .args(["spec", "--bundle"])
        .arg(&ours)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains(&err.to_string()));
}

#[test]
fn spec_rootless_is_byte_for_byte_runc_spec_rootless() {
    let dir = tempfile::tempdir().unwrap();
    // As root (the mapping is uid 0) through `write`.
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("runc");
    for d in [&ours, &theirs] {
        std::fs::create_dir(d).unwrap();
    }
    template::write(&ours, true).unwrap();
    let expected = runc_spec(&theirs, &["--rootless"], None);
    assert_eq!(
        String::from_utf8(std::fs::read(ours.join("config.json")).unwrap()).unwrap(),
        String::from_utf8(expected).unwrap()
    );
    // As an unprivileged user, whose ids go into the maps.
    let nobody = dir.path().join("nobody");
    std::fs::create_dir(&nobody).unwrap();
    nix::unistd::chown(&nobody, Some(65534.into()), Some(65534.into())).unwrap();
    let expected = runc_spec(&nobody, &["--rootless"], Some(65534));
    let got = template::text_for(Some((65534, 65534)));
    assert!(String::from_utf8_lossy(&got).contains("\"hostID\": 65534"));
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

// ---- pause / resume -----------------------------------------------------------------------

/// A container that appends a line to /tick every 20 ms; returns the host path of that file.
fn ticking(env: &mut Env, name: &str, id: &str) -> (PathBuf, String) {
    let (b, cgroup) = env.bundle(
        name,
        &[
            "sh",
            "-c",
            "while true; do echo x >> /tick; usleep 20000; done",
        ],
        |_| {},
    );
    env.start(&b, id);
    let tick = b.join("upper/tick");
    wait_for("the first tick", || tick.exists());
    (tick, cgroup)
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn pause_freezes_every_process_and_resume_thaws_them() {
    let mut env = Env::new();
    let id = unique("pause");
    let (tick, cgroup) = ticking(&mut env, "pause", &id);
    let rt = env.rt();
    rt.pause(&id).unwrap();
    assert_eq!(env.status(&id), Status::Paused);
    assert_eq!(rt.list().unwrap()[0].status.to_string(), "paused");
    assert!(Cgroup::open(&cgroup).unwrap().is_frozen().unwrap());
    // Frozen: nothing more is written while we wait.
    let before = size(&tick);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        size(&tick),
        before,
        "the container kept running while paused"
    );
    // Its state as the kernel sees it, per hierarchy.
    match cgroups::detect() {
        Hierarchy::Unified => {
            let dir = Cgroup::open(&cgroup).unwrap().dirs()[0].clone();
            let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
            assert!(events.contains("frozen 1"), "{events}");
        }
        Hierarchy::Legacy => {
            let dir = Cgroup::open(&cgroup)
                .unwrap()
                .dirs()
                .into_iter()
                .find(|d| d.join("freezer.state").exists())
                .unwrap();
            let state = std::fs::read_to_string(dir.join("freezer.state")).unwrap();
            assert_eq!(state.trim(), "FROZEN");
        }
    }

    rt.resume(&id).unwrap();
    assert_eq!(env.status(&id), Status::Running);
    let thawed = size(&tick);
    wait_for("a tick after resume", || size(&tick) > thawed);
}

#[test]
fn pause_and_resume_refuse_the_wrong_status_with_runcs_words() {
    let mut env = Env::new();
    let (b, _) = env.bundle("status", &["sleep", "1000"], |_| {});
    let id = unique("status");
    env.ids.push(id.clone());
    let rt = env.rt();
    rt.create(
        &id,
        CreateOptions {
            bundle: b,
            ..Default::default()
        },
    )
    .unwrap();
    // Created, not started: neither paused nor pausable.
    let err = rt.pause(&id).unwrap_err().to_string();
    assert!(err.contains("container not running"), "{err}");
    let err = rt.resume(&id).unwrap_err().to_string();
    assert!(err.contains("container not paused"), "{err}");
    rt.start(&id).unwrap();
    let err = rt.resume(&id).unwrap_err().to_string();
    assert!(err.contains("container not paused"), "{err}");
    rt.pause(&id).unwrap();
    let err = rt.pause(&id).unwrap_err().to_string();
    assert!(err.contains("container not running"), "{err}");
    rt.resume(&id).unwrap();
    assert_eq!(env.status(&id), Status::Running);
    // Stopped.
    rt.kill(&id, libc::SIGKILL, false).unwrap();
    wait_for("the container to stop", || {
        env.status(&id) == Status::Stopped
    });
    let err = rt.pause(&id).unwrap_err().to_string();
    assert!(err.contains("container not running"), "{err}");
    // Unknown.
    assert!(rt.pause("no-such-container").is_err());
}

// ---- a frozen cgroup at create --------------------------------------------------------------

#[test]
fn create_in_a_frozen_cgroup_fails_at_once() {
    let mut env = Env::new();
    let (b, cgroup) = env.bundle("frozen", &["true"], |_| {});
    let cg = Cgroup::create(&cgroup, None).unwrap();
    cg.freeze().unwrap();
    let id = unique("frozen");
    env.ids.push(id.clone());
    let err = env
        .rt()
        .create(
            &id,
            CreateOptions {
                bundle: b.clone(),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("container's cgroup unexpectedly frozen"),
        "{err}"
    );
    // Nothing of the container stays behind, and the cgroup we made is untouched and frozen.
    assert!(env.rt().state(&id).is_err());
    assert!(cg.is_frozen().unwrap());
    assert!(cg.pids().unwrap().is_empty());

    // Thawed, the same bundle starts.
    cg.thaw().unwrap();
    env.start(&b, &id);

    // A new cgroup under a frozen parent would freeze its init just the same.
    let parent = format!("/nanokube-test/{}", unique("frozen-parent"));
    env.cgroups.push(parent.clone());
    let parent_cg = Cgroup::create(&parent, None).unwrap();
    let sibling = format!("{parent}/sibling");
    env.cgroups.insert(0, sibling.clone());
    let sibling_cg = Cgroup::create(&sibling, None).unwrap();
    parent_cg.freeze().unwrap();
    let child = format!("{parent}/child");
    env.cgroups.insert(0, child.clone());
    let err = Cgroup::create(&child, None).unwrap_err();
    assert!(matches!(err, cgroups::Error::Frozen(_)), "{err}");
    assert!(
        Cgroup::open(&child).is_err(),
        "the refused child cgroup was left behind"
    );
    // Frozen only through its parent does not make a cgroup "paused" (as runc decides).
    assert!(!sibling_cg.is_frozen().unwrap());
    parent_cg.thaw().unwrap();
}
