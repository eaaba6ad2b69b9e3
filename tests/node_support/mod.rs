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

impl Netns {
    /// An empty namespace holding a bridge `br0`: the "switch" the nodes of a multi-node
    /// cluster are cabled to. It has no address and no route, so nothing leaves it.
    pub fn hub() -> Netns {
        let name = format!(
            "nk-h{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &name, "link", "set", "br0", "up"]);
        Netns { name }
    }

    /// A node's namespace cabled to `hub`'s bridge, holding `address`/24 and a default route
    /// into the hub (where it ends: no other way out exists).
    pub fn on_hub(hub: &Netns, address: &str) -> Netns {
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("nk-t{}-{seq}", std::process::id());
        let port = format!("p{seq}");
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &name, "link", "add", "nk0", "type", "veth", "peer", "name", &port, "netns",
            &hub.name,
        ]);
        ip(&["-n", &hub.name, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &name,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "nk0",
        ]);
        ip(&["-n", &name, "link", "set", "nk0", "up"]);
        ip(&["-n", &name, "route", "add", "default", "dev", "nk0"]);
        Netns { name }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Node-pressure eviction on memory only, unless a test sets its own thresholds: the disk
/// thresholds (nodefs.available<10%, imagefs.available<15%) depend on how full the machine
/// running the tests is, and would evict pods of unrelated tests on a crowded CI disk.
fn quiet_eviction(args: &[String]) -> Vec<&'static str> {
    if args.iter().any(|a| a.starts_with("--eviction-hard")) {
        vec![]
    } else {
        vec!["--eviction-hard", "memory.available<100Mi"]
    }
}

/// A cluster: server plus its agent (node `node1`), and for multi-node clusters more nodes
/// (`node2`, ...), each an agent in a namespace of its own joined with the server's token.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub ns: Netns,
    child: Option<Child>,
    /// The server's address: loopback for one node, node1's address when others join.
    bind: &'static str,
    pub agents: Vec<Agent>,
    /// The bridge the nodes are cabled to (multi-node only); dropped after them.
    hub: Option<Netns>,
    /// More flags for `nanokube server` (e.g. shorter controller periods).
    server_args: Vec<String>,
}

/// A joined node: `nanokube agent --server --token` in its own namespace.
pub struct Agent {
    pub name: String,
    pub ip: String,
    pub ns: Netns,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
    /// Runs `program args` inside this node's network namespace.
    pub fn in_node(&self, program: &str, args: &[&str]) -> Output {
        self.ns
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A one-node cluster whose server (and so its agent) gets `flags` too.
    pub fn start_with(flags: &[&str]) -> Cluster {
        Cluster::start_bound("127.0.0.1", flags)
    }

    /// A one-node cluster whose server listens on the node's address, so that pods reach it
    /// through the `kubernetes` Service.
    pub fn start_reachable() -> Cluster {
        Cluster::start_bound(NODE_IP, &[])
    }

    fn start_bound(bind: &'static str, flags: &[&str]) -> Cluster {
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
            bind,
            agents: Vec::new(),
            hub: None,
            server_args: flags.iter().map(|f| f.to_string()).collect(),
        };
        c.spawn();
        c.wait_ready("node1");
        c
    }

    /// A cluster of `nodes` (two or more) nodes: node1 runs the server and its agent, node2...
    /// join it.
    /// Node k has the address 10.99.0.(k+1), all on one bridge in a namespace of their own.
    pub fn start_nodes(nodes: usize) -> Cluster {
        Cluster::start_nodes_with(nodes, &[])
    }

    /// start_nodes, with more flags for the server.
    pub fn start_nodes_with(nodes: usize, server_args: &[&str]) -> Cluster {
        assert!(nodes >= 2, "a multi-node cluster");
        let dir = tempfile::Builder::new()
            .prefix("nk-node-")
            .tempdir()
            .expect("temp dir");
        let images = dir.path().join("data/agent/images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::copy(image_tarball(), images.join("busybox.oci.tar")).unwrap();
        let hub = Netns::hub();
        let mut c = Cluster {
            dir,
            ns: Netns::on_hub(&hub, NODE_IP),
            child: None,
            bind: NODE_IP,
            agents: Vec::new(),
            hub: Some(hub),
            server_args: server_args.iter().map(|a| a.to_string()).collect(),
        };
        c.spawn();
        c.wait_ready("node1");
        for k in 2..=nodes {
            c.join(&format!("node{k}"), &format!("10.99.0.{}", k + 1));
        }
        for k in 2..=nodes {
            c.wait_ready(&format!("node{k}"));
        }
        c
    }

    /// Starts one more node, `name` at `address`, joined with the server's token.
    fn join(&mut self, name: &str, address: &str) {
        let hub = self.hub.as_ref().expect("a multi-node cluster");
        let dir = self.dir.path().join(name);
        let images = dir.join("data/agent/images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::copy(image_tarball(), images.join("busybox.oci.tar")).unwrap();
        let mut agent = Agent {
            name: name.to_string(),
            ip: address.to_string(),
            ns: Netns::on_hub(hub, address),
            dir,
            child: None,
        };
        self.spawn_agent(&mut agent);
        self.agents.push(agent);
    }

    fn spawn_agent(&self, agent: &mut Agent) {
        let token = std::fs::read_to_string(self.data_dir().join("server/node-token"))
            .expect("the server's node token");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(agent.dir.join("agent.log"))
            .unwrap();
        let child = agent
            .ns
            .command(NANOKUBE)
            .args(["agent", "--server", &self.server_url(), "--token"])
            .arg(token.trim())
            .args(["--node-name", &agent.name, "--node-ip", &agent.ip])
            .args(quiet_eviction(&[]))
            .arg("--data-dir")
            .arg(agent.data_dir())
            .arg("--pod-logs-dir")
            .arg(agent.dir.join("pod-logs"))
            .arg("--runtime-root")
            .arg(agent.dir.join("run"))
            .env("RUST_LOG", "info,nanokube::agent=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nanokube agent");
        agent.child = Some(child);
    }

    /// The joined node called `name`.
    pub fn agent(&self, name: &str) -> &Agent {
        self.agents
            .iter()
            .find(|a| a.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// kill -9 of a joined node's agent alone (its pods' shims and containers live on).
    pub fn kill9_agent(&mut self, name: &str) {
        let a = self.agents.iter_mut().find(|a| a.name == name).unwrap();
        if let Some(mut c) = a.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The whole node dies: its agent, then every shim and container (`nanokube killall`).
    pub fn kill_node(&mut self, name: &str) {
        self.kill9_agent(name);
        let a = self.agent(name);
        let _ =
            a.ns.command(NANOKUBE)
                .arg("killall")
                .arg("--data-dir")
                .arg(a.data_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
    }

    /// Starts a joined node's agent again after kill9_agent or kill_node.
    pub fn start_agent_again(&mut self, name: &str) {
        let i = self.agents.iter().position(|a| a.name == name).unwrap();
        let mut a = self.agents.remove(i);
        assert!(a.child.is_none());
        self.spawn_agent(&mut a);
        self.agents.insert(i, a);
    }

    /// The API server's URL, as the kubeconfig names it.
    pub fn server_url(&self) -> String {
        let kc = std::fs::read_to_string(self.kubeconfig()).expect("kubeconfig");
        kc.lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("a server line in the kubeconfig")
            .trim()
            .to_string()
    }

    /// Waits until the node reports Ready=True.
    pub fn wait_ready(&self, node: &str) {
        self.wait_for(&format!("{node} Ready"), Duration::from_secs(60), |c| {
            c.json(&["get", "node", node]).is_some_and(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        });
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
            .args(["--bind-address", self.bind, "--https-listen-port", "0"])
            .args(["--node-name", "node1", "--node-ip", NODE_IP])
            .arg("--pod-logs-dir")
            .arg(self.logs_dir())
            .arg("--runtime-root")
            .arg(self.runtime_root())
            .args(&self.server_args)
            .args(quiet_eviction(&self.server_args))
            .env(
                "RUST_LOG",
                // NK_SERVER_LOG raises the server's log level when chasing a failure.
                std::env::var("NK_SERVER_LOG")
                    .unwrap_or_else(|_| "info,nanokube::agent=debug".into()),
            )
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

    /// `binary` (a kubectl) inside the node's namespace, pointed at this cluster, with this
    /// cluster's own discovery cache: kubectl keys the cache by host and port only, and every
    /// test cluster's server listens on the same node address with kernel-chosen ports.
    pub fn kubectl_command(&self, binary: &str) -> Command {
        let mut c = self.ns.command(binary);
        c.env("KUBECACHEDIR", self.kubecache())
            .arg("--kubeconfig")
            .arg(self.kubeconfig());
        c
    }

    pub fn kubecache(&self) -> PathBuf {
        self.dir.path().join("kubecache")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_command(KUBECTL)
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
            .kubectl_command(KUBECTL)
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
            for a in &self.agents {
                let keep = std::env::temp_dir().join(format!("{}-agent.log", a.ns.name));
                let _ = std::fs::copy(a.dir.join("agent.log"), &keep);
                eprintln!("{} agent log kept at {}", a.name, keep.display());
            }
        }
        for name in self
            .agents
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()
        {
            self.kill_node(&name);
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
