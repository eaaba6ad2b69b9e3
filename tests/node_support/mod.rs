//! Shared by the tests/kubelet*.rs files: a one-node cluster (`nanokube server` with its local
//! agent) inside a network namespace of the test's own, so pods, the bridge and every address
//! stay off the host's network. kubectl runs inside the namespace too. Everything is removed on
//! drop (`nanokube killall`, then the namespace and the directories).

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";
pub const NANOKUBE: &str = env!("CARGO_BIN_EXE_nanokube");
pub const NODE_IP: &str = "10.99.0.2";
pub const IMAGE: &str = "nanokube/busybox";

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn image_tarball() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("rootfs/out/nanokube-busybox.oci.tar");
    assert!(
        p.exists(),
        "{} is missing: run ./rootfs/build.sh",
        p.display()
    );
    p
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with a link that holds the node's address and default route; the link's
/// peer is in the same namespace, so nothing sent there reaches the host.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        let name = format!(
            "nk-t{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &name, "link", "add", "nk0", "type", "veth", "peer", "name", "nk1",
        ]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{NODE_IP}/24"),
            "dev",
            "nk0",
        ]);
        ip(&["-n", &name, "link", "set", "nk0", "up"]);
        ip(&["-n", &name, "link", "set", "nk1", "up"]);
        ip(&["-n", &name, "route", "add", "default", "dev", "nk0"]);
        Netns { name }
    }

    /// A command that runs inside the namespace (nsenter keeps the host's /sys, unlike
    /// `ip netns exec`, so cgroups stay visible).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A one-node cluster: server plus its agent, node name `node1`.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ns: Netns,
    child: Option<Child>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("nk-node-")
            .tempdir()
            .expect("temp dir");
        let images = dir.path().join("data/agent/images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::copy(image_tarball(), images.join("busybox.oci.tar")).unwrap();
        let mut c = Cluster {
            dir,
            ns: Netns::new(),
            child: None,
        };
        c.spawn();
        c.wait_for("node Ready", Duration::from_secs(60), |c| {
            c.json(&["get", "node", "node1"]).is_some_and(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.path().join("pod-logs")
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.kubeconfig());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = self
            .ns
            .command(NANOKUBE)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(["--bind-address", "127.0.0.1", "--https-listen-port", "0"])
            .args(["--node-name", "node1", "--node-ip", NODE_IP])
            .arg("--pod-logs-dir")
            .arg(self.logs_dir())
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .env("RUST_LOG", "info,nanokube::agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nanokube server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.kubeconfig().exists() {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("server exited early ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9 of the server and its agent: the pods' shims must not notice.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none());
        self.spawn();
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.ns
            .command(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The object as JSON, or None if kubectl fails (e.g. not found).
    pub fn json(&self, args: &[&str]) -> Option<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
    }

    pub fn apply(&self, yaml: &str) {
        let mut child = self
            .ns
            .command(KUBECTL)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn pod(&self, name: &str) -> Value {
        self.json(&["get", "pod", name])
            .unwrap_or_else(|| panic!("pod {name} not found"))
    }

    /// Polls `cond` until it holds; panics with the server log after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if Instant::now() > deadline {
                let tail: String = self
                    .log()
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("timed out waiting for {what}\n--- server log tail ---\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the pod's phase is `phase` and returns the pod.
    pub fn wait_phase(&self, name: &str, phase: &str) -> Value {
        let mut last = Value::Null;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(p) = self.json(&["get", "pod", name]) {
                if p["status"]["phase"] == phase {
                    return p;
                }
                last = p;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for pod {name} {phase}; its status: {:#}",
                last["status"]
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `program args` inside the node's network namespace (e.g. wget to a pod).
    pub fn in_node(&self, program: &str, args: &[&str]) -> Output {
        self.ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Pids of this cluster's shims.
    pub fn shim_pids(&self) -> Vec<i32> {
        let dir = self.data_dir().join("agent/pods");
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("shim.pid")).ok())
            .filter_map(|p| p.trim().parse().ok())
            .filter(|p: &i32| Path::new(&format!("/proc/{p}")).exists())
            .collect()
    }

    /// Mounts under this cluster's directory still present.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The whole log of a failed test, for whoever reads the failure.
            let keep = std::env::temp_dir().join(format!("{}-server.log", self.ns.name));
            let _ = std::fs::copy(self.dir.path().join("server.log"), &keep);
            eprintln!("server log kept at {}", keep.display());
        }
        self.kill9();
        let _ = self
            .ns
            .command(NANOKUBE)
            .arg("killall")
            .arg("--data-dir")
            .arg(self.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        for m in self.mounts().into_iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
