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
use nanokube::runtime::{events, template, update, CreateOptions, Runtime, Status};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_nanokube");
// Debian's package installs it here (/usr/bin/runc is a usrmerge link the VM lacks).
const RUNC: &str = "/usr/sbin/runc";

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

/// `delete --force` of a paused container kills it without a resume first (runc's delete.bats
/// "runc delete --force [paused container]"): a task frozen by the v1 freezer keeps a SIGKILL
/// pending until thawed, so the kill must thaw too.
#[test]
fn delete_force_of_a_paused_container_kills_it() {
    let mut env = Env::new();
    let id = unique("pausedel");
    let (_tick, cgroup) = ticking(&mut env, "pausedel", &id);
    let rt = env.rt();
    let pid = rt.state(&id).unwrap().pid;
    rt.pause(&id).unwrap();
    rt.delete(&id, true).unwrap();
    // Gone, or a zombie waiting for this test (the init's parent) to reap it.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
    assert!(
        matches!(state, None | Some(Some('Z'))),
        "the init survived: {stat}"
    );
    assert!(Cgroup::open(&cgroup).is_err(), "the cgroup was left behind");
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

// ---- update --------------------------------------------------------------------------------

/// The content of `file` in whichever of the cgroup's directories has it.
fn cg_read(cgroup: &str, file: &str) -> String {
    let cg = Cgroup::open(cgroup).unwrap();
    for dir in cg.dirs() {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            return text.trim().to_string();
        }
    }
    panic!("no {file} in {:?}", cg.dirs());
}

/// Whether the host's block I/O scheduler takes weights (BFQ, or CFQ on old kernels): without
/// one there is no weight file, and a weight is refused, as runc refuses it.
fn io_weight_supported(cgroup: &str) -> bool {
    [
        "io.weight",
        "io.bfq.weight",
        "blkio.weight",
        "blkio.bfq.weight",
    ]
    .iter()
    .any(|f| cg_has(cgroup, f))
}

/// A weight update on a host without weights: a clear error naming the spec field.
fn assert_weight_refused(err: String) {
    assert!(err.contains("linux.resources.blockIO.weight"), "{err}");
}

fn cg_has(cgroup: &str, file: &str) -> bool {
    Cgroup::open(cgroup)
        .unwrap()
        .dirs()
        .iter()
        .any(|d| d.join(file).exists())
}

fn flags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn saved_resources(env: &Env, id: &str) -> Value {
    let text = std::fs::read(env.root.join(id).join("config.json")).unwrap();
    let spec: Value = serde_json::from_slice(&text).unwrap();
    spec["linux"]["resources"].clone()
}

/// The weight file the block I/O weight lands in, and the value `weight` becomes there.
fn io_weight_file(cgroup: &str, weight: u16) -> (&'static str, String) {
    match cgroups::detect() {
        Hierarchy::Legacy if cg_has(cgroup, "blkio.weight") => ("blkio.weight", weight.to_string()),
        Hierarchy::Legacy => ("blkio.bfq.weight", weight.to_string()),
        Hierarchy::Unified if cg_has(cgroup, "io.bfq.weight") => {
            ("io.bfq.weight", format!("default {weight}"))
        }
        Hierarchy::Unified => (
            "io.weight",
            format!("default {}", cgroups::blkio_to_io_weight(weight)),
        ),
    }
}

#[test]
fn update_flags_reach_the_cgroup_and_the_saved_config() {
    let mut env = Env::new();
    let (b, cgroup) = env.bundle("update", &["sleep", "1000"], |s| {
        s["linux"]["resources"] = json!({"memory": {"limit": 200 << 20}, "cpu": {"shares": 1024}});
    });
    let id = unique("update");
    env.start(&b, &id);
    let rt = env.rt();
    let weights = io_weight_supported(&cgroup);
    let mut wanted = vec![
        ("memory", "100M"),
        ("cpu-share", "512"),
        ("cpu-quota", "20000"),
        ("pids-limit", "20"),
        ("cpuset-cpus", "0"),
    ];
    if weights {
        wanted.push(("blkio-weight", "300"));
    } else {
        let err = update::update(&rt, &id, &flags(&[("blkio-weight", "300")]), None);
        assert_weight_refused(err.unwrap_err().to_string());
    }
    update::update(&rt, &id, &flags(&wanted), None).unwrap();
    let unified = cgroups::detect() == Hierarchy::Unified;
    if unified {
        assert_eq!(cg_read(&cgroup, "memory.max"), (100u64 << 20).to_string());
        assert_eq!(
            cg_read(&cgroup, "cpu.weight"),
            cgroups::shares_to_weight(512).to_string()
        );
        assert_eq!(cg_read(&cgroup, "cpu.max"), "20000 100000");
    } else {
        assert_eq!(
            cg_read(&cgroup, "memory.limit_in_bytes"),
            (100u64 << 20).to_string()
        );
        assert_eq!(cg_read(&cgroup, "cpu.shares"), "512");
        assert_eq!(cg_read(&cgroup, "cpu.cfs_quota_us"), "20000");
    }
    assert_eq!(cg_read(&cgroup, "pids.max"), "20");
    assert_eq!(cg_read(&cgroup, "cpuset.cpus"), "0");
    if weights {
        let (file, value) = io_weight_file(&cgroup, 300);
        assert_eq!(cg_read(&cgroup, file), value);
    }
    let saved = saved_resources(&env, &id);
    assert_eq!(saved["memory"]["limit"], 100 << 20);
    assert_eq!(saved["cpu"]["shares"], 512);
    assert_eq!(saved["cpu"]["quota"], 20000);
    assert_eq!(saved["pids"]["limit"], 20);
    if weights {
        assert_eq!(saved["blockIO"]["weight"], 300);
    }
    // Untouched by the update, still in the saved config and still enforced.
    assert_eq!(saved["devices"], Value::Null);

    // A later update of one half of cpu.max keeps the other; unlimited values.
    update::update(
        &rt,
        &id,
        &flags(&[
            ("cpu-period", "50000"),
            ("memory", "-1"),
            ("pids-limit", "-1"),
        ]),
        None,
    )
    .unwrap();
    if unified {
        assert_eq!(cg_read(&cgroup, "cpu.max"), "20000 50000");
        assert_eq!(cg_read(&cgroup, "memory.max"), "max");
    } else {
        assert_eq!(cg_read(&cgroup, "cpu.cfs_quota_us"), "20000");
        assert_eq!(cg_read(&cgroup, "cpu.cfs_period_us"), "50000");
        let limit: u64 = cg_read(&cgroup, "memory.limit_in_bytes").parse().unwrap();
        assert!(limit >= 1 << 62, "memory not unlimited: {limit}");
    }
    assert_eq!(cg_read(&cgroup, "pids.max"), "max");
    let saved = saved_resources(&env, &id);
    assert_eq!(saved["cpu"]["quota"], 20000);
    assert_eq!(saved["cpu"]["period"], 50000);
    assert_eq!(saved["memory"]["limit"], -1);

    // Bad values: runc's words, and nothing changes.
    let err = update::update(&rt, &id, &flags(&[("memory", "lots")]), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid value for memory: invalid size: 'lots'"),
        "{err}"
    );
    let err = update::update(&rt, &id, &flags(&[("l3-cache-schema", "L3:0=f")]), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Intel RDT/CAT: l3 cache schema is not enabled"),
        "{err}"
    );
    assert_eq!(saved_resources(&env, &id), saved);
}

#[test]
fn update_from_containerd_json_ignores_flags_and_merges() {
    let mut env = Env::new();
    let (b, cgroup) = env.bundle("update-json", &["sleep", "1000"], |s| {
        s["linux"]["resources"] = json!({"memory": {"limit": 300 << 20, "reservation": 1 << 20}});
    });
    let id = unique("update-json");
    env.start(&b, &id);
    // The document containerd-shim-runc-v2 writes to `runc update --resources -`.
    let mut json = json!({
        "memory": {"limit": 64 << 20, "swap": 128 << 20},
        "cpu": {"shares": 256, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 30},
    });
    let weights = io_weight_supported(&cgroup);
    if weights {
        json["blockIO"] = json!({"weight": 200});
    } else {
        let only = serde_json::to_vec(&json!({"blockIO": {"weight": 200}})).unwrap();
        let err = update::update(&env.rt(), &id, &[], Some(&only));
        assert_weight_refused(err.unwrap_err().to_string());
    }
    let text = serde_json::to_vec(&json).unwrap();
    update::update(&env.rt(), &id, &flags(&[("memory", "10M")]), Some(&text)).unwrap();
    let unified = cgroups::detect() == Hierarchy::Unified;
    if unified {
        assert_eq!(cg_read(&cgroup, "memory.max"), (64u64 << 20).to_string());
        if cg_has(&cgroup, "memory.swap.max") {
            assert_eq!(
                cg_read(&cgroup, "memory.swap.max"),
                (64u64 << 20).to_string()
            );
        }
        assert_eq!(cg_read(&cgroup, "cpu.max"), "50000 100000");
        assert_eq!(
            cg_read(&cgroup, "cpu.weight"),
            cgroups::shares_to_weight(256).to_string()
        );
        assert_eq!(cg_read(&cgroup, "cpuset.mems"), "0");
    } else {
        assert_eq!(
            cg_read(&cgroup, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        if cg_has(&cgroup, "memory.memsw.limit_in_bytes") {
            assert_eq!(
                cg_read(&cgroup, "memory.memsw.limit_in_bytes"),
                (128u64 << 20).to_string()
            );
        }
        assert_eq!(cg_read(&cgroup, "cpu.shares"), "256");
        assert_eq!(cg_read(&cgroup, "cpu.cfs_quota_us"), "50000");
    }
    assert_eq!(cg_read(&cgroup, "pids.max"), "30");
    if weights {
        let (file, value) = io_weight_file(&cgroup, 200);
        assert_eq!(cg_read(&cgroup, file), value);
    }
    let saved = saved_resources(&env, &id);
    assert_eq!(saved["memory"]["limit"], 64 << 20);
    assert_eq!(
        saved["memory"]["reservation"],
        1 << 20,
        "a value the update did not name"
    );
    assert_eq!(saved["cpu"]["shares"], 256);

    // A swap below the memory limit cannot be applied: refused, and the limit is as before.
    let bad =
        serde_json::to_vec(&json!({"memory": {"limit": 100 << 20, "swap": 50 << 20}})).unwrap();
    assert!(update::update(&env.rt(), &id, &[], Some(&bad)).is_err());
    let limit_file = if unified {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(cg_read(&cgroup, limit_file), (64u64 << 20).to_string());
    assert_eq!(saved_resources(&env, &id), saved);

    // A stopped container is refused as runc refuses it.
    env.rt().kill(&id, libc::SIGKILL, false).unwrap();
    wait_for("the container to stop", || {
        env.status(&id) == Status::Stopped
    });
    let err = update::update(&env.rt(), &id, &flags(&[("memory", "1G")]), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("container not running"), "{err}");
}

// ---- systemd cgroup paths -----------------------------------------------------------------

#[test]
fn a_systemd_cgroups_path_never_becomes_a_directory() {
    let mut env = Env::new();
    let id = unique("systemd");
    let path = format!("system.slice:nanokube-test:{id}");
    let (b, _) = env.bundle("systemd", &["true"], |s| {
        s["linux"]["cgroupsPath"] = json!(path);
    });
    env.ids.push(id.clone());
    let err = env
        .rt()
        .create(
            &id,
            CreateOptions {
                bundle: b,
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs --systemd-cgroup"), "{err}");
    assert!(env.rt().state(&id).is_err());
    let err = cgroups::resolve_cgroup_path(&path, true)
        .unwrap_err()
        .to_string();
    if Path::new("/run/systemd/system").is_dir() {
        assert!(err.contains("not supported by nanokube"), "{err}");
    } else {
        assert_eq!(
            err,
            "systemd not running on this host, cannot use systemd cgroups manager"
        );
    }
    // In no hierarchy, under any name.
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = entry.path().join(&path);
        assert!(!dir.exists(), "{} was created", dir.display());
    }
}

// ---- events --------------------------------------------------------------------------------

/// The object keys of `v` down to `depth` levels, as "a.b" paths.
fn key_paths(v: &Value, prefix: &str, depth: usize, out: &mut Vec<String>) {
    if depth == 0 {
        return;
    }
    if let Some(map) = v.as_object() {
        for (k, child) in map {
            let path = format!("{prefix}{k}");
            key_paths(child, &format!("{path}."), depth - 1, out);
            out.push(path);
        }
    }
    out.sort();
}

#[test]
fn events_stats_is_one_line_in_runcs_shape() {
    let mut env = Env::new();
    let (b, _) = env.bundle("events", &["sleep", "1000"], |s| {
        s["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 50}});
    });
    let id = unique("events");
    env.start(&b, &id);
    let mut out = Vec::new();
    events::run(&env.rt(), &id, true, Duration::from_secs(5), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.ends_with('\n'));
    let ours: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(ours["type"], "stats");
    assert_eq!(ours["id"], id);
    let data = &ours["data"];
    assert_eq!(data["memory"]["usage"]["limit"], 64 << 20);
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert_eq!(data["pids"]["current"], 1);
    assert_eq!(data["pids"]["limit"], 50);
    assert!(data["memory"]["raw"]
        .as_object()
        .is_some_and(|r| !r.is_empty()));

    // The same command of runc on a runc container of the same image: the same keys.
    let runc_root = env.dir.path().join("runc-state");
    let runc_bundle = env.dir.path().join("runc-bundle");
    std::fs::create_dir(&runc_bundle).unwrap();
    let mut spec: Value = serde_json::from_slice(&template::text(false)).unwrap();
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sleep", "1000"]);
    // runc refuses a rootfs path through a symlink.
    spec["root"]["path"] = json!(std::fs::canonicalize(image()).unwrap());
    let runc_cgroup = format!("/nanokube-test/{}", unique("events-runc"));
    env.cgroups.push(runc_cgroup.clone());
    spec["linux"]["cgroupsPath"] = json!(runc_cgroup);
    spec["linux"]["resources"]["memory"] = json!({"limit": 64 << 20});
    spec["linux"]["resources"]["pids"] = json!({"limit": 50});
    std::fs::write(runc_bundle.join("config.json"), spec.to_string()).unwrap();
    // Output to files: a detached container keeps its stdio, so a pipe would never close.
    let runc = |args: &[&str]| {
        let out = env.dir.path().join("runc.out");
        let err = env.dir.path().join("runc.err");
        let status = Command::new(RUNC)
            .arg("--root")
            .arg(&runc_root)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        let text = |p| std::fs::read_to_string(p).unwrap_or_default();
        (status.success(), text(&out), text(&err))
    };
    let runc_id = unique("events-runc");
    let started = runc(&["run", "-d", "-b", runc_bundle.to_str().unwrap(), &runc_id]);
    let theirs = runc(&["events", "--stats", &runc_id]);
    let _ = runc(&["delete", "-f", &runc_id]);
    assert!(started.0, "runc run: {}", started.2);
    assert!(theirs.0, "runc events: {}", theirs.2);
    let theirs: Value = serde_json::from_str(&theirs.1).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    key_paths(&ours, "", 3, &mut a);
    key_paths(&theirs, "", 3, &mut b);
    // memory.raw lists what the kernel has, and both read the same kernel.
    assert_eq!(a, b, "ours: {ours}\nrunc: {theirs}");
}

/// A `Write` the test thread can read while `events::run` writes from another.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

#[test]
fn events_stream_stats_and_an_oom_kill_until_the_container_stops() {
    let mut env = Env::new();
    // The allocation beyond the limit starts once the stream is watching; the OOM killer
    // takes the probe (the biggest process) and the shell lives on.
    let (b, _) = env.bundle(
        "events-oom",
        &["sh", "-c", "sleep 1; probe alloc 256; sleep 1000"],
        |s| {
            s["linux"]["resources"] = json!({"memory": {"limit": 32 << 20, "swap": 32 << 20}});
        },
    );
    let id = unique("events-oom");
    env.start(&b, &id);
    let out = Shared::default();
    let stream = {
        let (rt, id, mut out) = (env.rt(), id.clone(), out.clone());
        std::thread::spawn(move || {
            events::run(&rt, &id, false, Duration::from_millis(200), &mut out)
        })
    };
    wait_for("an oom event", || {
        out.lines().iter().any(|l| l["type"] == "oom")
    });
    wait_for("stats after the oom", || {
        let lines = out.lines();
        let oom = lines.iter().position(|l| l["type"] == "oom").unwrap();
        lines[oom..].iter().any(|l| l["type"] == "stats")
    });
    assert!(
        !stream.is_finished(),
        "the stream ended while the container ran"
    );
    env.rt().kill(&id, libc::SIGKILL, false).unwrap();
    stream.join().unwrap().unwrap();
    let lines = out.lines();
    let ooms = lines.iter().filter(|l| l["type"] == "oom").count();
    assert_eq!(ooms, 1, "{lines:?}");
    for l in &lines {
        assert_eq!(l["id"], id);
        match l["type"].as_str().unwrap() {
            "stats" => assert_eq!(l["data"]["memory"]["usage"]["limit"], 32 << 20),
            "oom" => assert!(l.get("data").is_none(), "{l}"),
            other => panic!("unexpected event type {other}"),
        }
    }
    // A stopped container has no events, as with runc.
    let err = events::run(
        &env.rt(),
        &id,
        true,
        Duration::from_secs(1),
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not running"), "{err}");
}
