//! `nanokube cluster`: local clusters whose nodes live in namespaces of their own, driven as a
//! user drives them (the CLI, then the real kubectl through the kubeconfig it writes), and
//! checked to leave nothing on the host when deleted.

mod node_support;

use node_support::{image_tarball, NANOKUBE};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A cluster's test bench: its own clusters directory and kubeconfig file.
struct Bench {
    dir: tempfile::TempDir,
    name: String,
}

impl Bench {
    fn new(tag: &str) -> Bench {
        Bench {
            dir: tempfile::Builder::new().prefix("nk-cl-").tempdir().unwrap(),
            name: format!("{tag}{}", std::process::id()),
        }
    }
    fn clusters_dir(&self) -> PathBuf {
        self.dir.path().join("clusters")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
    fn cli(&self, args: &[&str]) -> Output {
        Command::new(NANOKUBE)
            .arg("cluster")
            .args(args)
            .env("NANOKUBE_CLUSTERS_DIR", self.clusters_dir())
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "nanokube cluster {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// A refused command: exit 1 and one line on stderr, which is returned.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?} should fail: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err
    }
    fn create(&self, extra: &[&str]) -> String {
        let image = image_tarball();
        // Memory-only eviction: the disk thresholds depend on how full the test machine is.
        let mut args = vec![
            "create",
            "--name",
            &self.name,
            "--server-arg=--eviction-hard=memory.available<100Mi",
            "--agent-arg=--eviction-hard=memory.available<100Mi",
            "--image",
        ];
        let image = image.to_str().unwrap();
        args.push(image);
        args.extend_from_slice(extra);
        self.ok(&args)
    }
    fn node(&self, role: &str, i: u32) -> String {
        format!("{}-{role}-{i}", self.name)
    }
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(node_support::KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .unwrap()
    }
    fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Runs `sh -c script` on a node through `cluster exec`.
    fn on(&self, node: &str, script: &str) -> String {
        self.ok(&["exec", "--name", &self.name, node, "--", "sh", "-c", script])
    }
    /// `web-a` on `agent` and `web-s` on `server`, each serving "hello from <its name>" on
    /// 8080 (labelled app=<name>), once both are Ready.
    fn web_pods(&self, agent: &str, server: &str) {
        for (pod, node) in [("web-a", agent), ("web-s", server)] {
            self.k(&[
                "run",
                pod,
                "--image",
                "nanokube/busybox",
                "--labels",
                &format!("app={pod}"),
                "--overrides",
                &format!("{{\"spec\":{{\"nodeName\":\"{node}\"}}}}"),
                "--command",
                "--",
                "sh",
                "-c",
                "echo hello from $(hostname) > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
            ]);
        }
        self.k(&[
            "wait",
            "--for=condition=Ready",
            "pod/web-a",
            "pod/web-s",
            "--timeout=90s",
        ]);
    }

    fn cluster_dir(&self) -> PathBuf {
        self.clusters_dir().join(&self.name)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        // NK_KEEP_CLUSTER=1 keeps a failed test's cluster (and its directory) to look at.
        if std::env::var_os("NK_KEEP_CLUSTER").is_some() {
            eprintln!("kept {}", self.dir.path().display());
            let _ = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
        } else if self.cluster_dir().exists() {
            let _ = self.cli(&["delete", "--name", &self.name]);
        }
    }
}

fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a deleted cluster must not leave: a network namespace, a cgroup, a process or a mount
/// naming it, its files.
fn assert_no_trace(b: &Bench) {
    let netns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == &format!("nkc-{}", b.name) || n.starts_with(&format!("nkc-{}.", b.name)))
        .collect();
    assert!(netns.is_empty(), "network namespaces left: {netns:?}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in info.lines() {
        let point = line.split(' ').nth(4).unwrap_or("");
        if point.starts_with("/sys/fs/cgroup") {
            let dir = Path::new(point).join("nanokube-clusters").join(&b.name);
            assert!(!dir.exists(), "cgroup left: {}", dir.display());
        }
        assert!(
            !line.contains(b.dir.path().to_str().unwrap()),
            "mount left: {line}"
        );
    }
    let dir = b.dir.path().to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        assert!(!cmdline.contains(&dir), "process left: {cmdline}");
    }
    assert!(!b.cluster_dir().exists(), "the cluster's directory is left");
}

#[test]
fn a_two_node_cluster_runs_pods_across_its_nodes_survives_an_agent_kill_and_leaves_nothing() {
    let b = Bench::new("two");
    let out = b.create(&["--nodes", "2"]);
    let (server, agent) = (b.node("server", 0), b.node("agent", 0));
    assert!(out.contains("is ready: 2 node(s)"), "{out}");
    // The user's kubeconfig now has the cluster, current, through the host's loopback.
    assert_eq!(
        b.k(&["config", "current-context"]).trim(),
        format!("nanokube-{}", b.name)
    );
    let url = b.k(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let nodes: Value = serde_json::from_str(&b.k(&["get", "nodes", "-o", "json"])).unwrap();
    let mut names: Vec<&str> = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [agent.as_str(), server.as_str()]);

    // Each node is a machine of its own: hostname, pid 1, network, cgroup root.
    let seen = b.on(&agent, "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /sys/class/net/eth0/address; ip -4 -o addr show eth0; cat /proc/self/cgroup");
    let mut lines = seen.lines();
    assert_eq!(lines.next(), Some(agent.as_str()));
    assert!(lines.next().unwrap().contains("cluster init"), "{seen}");
    lines.next();
    assert!(lines.next().unwrap().contains("10.99.0.3/24"), "{seen}");
    assert!(
        lines.all(|l| l.ends_with(":/init")),
        "the node's processes sit in /init of its own cgroup namespace: {seen}"
    );
    assert_ne!(
        b.on(&server, "cat /etc/machine-id"),
        b.on(&agent, "cat /etc/machine-id"),
        "machine ids differ"
    );

    // A pod on each node; the server's pod reaches the agent's by pod IP and by Service.
    b.web_pods(&agent, &server);
    b.k(&[
        "expose",
        "pod",
        "web-a",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    let ip = b.k(&["get", "pod", "web-a", "-o", "jsonpath={.status.podIP}"]);
    let got = b.k(&[
        "exec",
        "web-s",
        "--",
        "wget",
        "-qO-",
        &format!("http://{ip}:8080/"),
    ]);
    assert_eq!(got.trim(), "hello from web-a");
    let got = eventually("web-a through its Service from the other node", 30, || {
        let out = b.kubectl(&["exec", "web-s", "--", "wget", "-qO-", "http://web-a/"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(got.trim(), "hello from web-a");

    // kill -9 of the agent: the node's init starts it again, the pod never stopped.
    let before = b.on(&agent, "pgrep -f '[n]anokube agent'");
    b.on(&agent, "pkill -9 -f '[n]anokube agent'");
    let init_log = b.cluster_dir().join(&agent).join("init.log");
    eventually("the agent started again", 30, || {
        let log = std::fs::read_to_string(&init_log).unwrap_or_default();
        (log.matches("started Some(\"agent\")").count() >= 2).then_some(())
    });
    let after = b.on(&agent, "pgrep -f '[n]anokube agent'");
    assert_ne!(before, after, "a new agent process");
    let pod: Value = serde_json::from_str(&b.k(&["get", "pod", "web-a", "-o", "json"])).unwrap();
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    eventually("exec through the restarted agent", 30, || {
        let out = b.kubectl(&["exec", "web-a", "--", "cat", "/tmp/index.html"]);
        out.status.success().then_some(())
    });

    let listed = b.ok(&["list"]);
    assert!(listed.contains(&b.name), "{listed}");
    assert!(b
        .ok(&["delete", "--name", &b.name])
        .contains("deleted cluster"));
    assert_no_trace(&b);
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(b.kubeconfig()).unwrap()).unwrap();
    assert_eq!(
        kc["contexts"].as_sequence().map(Vec::len),
        Some(0),
        "{kc:?}"
    );
    assert_eq!(kc["current-context"], "");
}

#[test]
fn bad_requests_are_refused_and_a_one_node_cluster_has_its_own_kubeconfig() {
    let b = Bench::new("one");
    let err = b.refused(&["create", "--name", "Bad_Name"]);
    assert!(err.contains("invalid cluster name \"Bad_Name\""), "{err}");
    let err = b.refused(&["create", "--name", &b.name, "--nodes", "0"]);
    assert!(
        err.contains("--nodes 0 must be at least --servers 1"),
        "{err}"
    );
    // Several servers need etcd for their shared datastore.
    let out = Command::new(NANOKUBE)
        .args([
            "cluster",
            "create",
            "--name",
            &b.name,
            "--servers",
            "2",
            "--nodes",
            "3",
        ])
        .env("NANOKUBE_CLUSTERS_DIR", b.clusters_dir())
        .env("KUBECONFIG", b.kubeconfig())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "--servers 2: several servers share an etcd datastore, and no etcd is on PATH"
        ),
        "{err}"
    );
    let err = b.refused(&["create", "--name", &b.name, "--image", "/nonexistent.tar"]);
    assert!(
        err.contains("--image /nonexistent.tar: not a file"),
        "{err}"
    );
    let err = b.refused(&["create", "--name", &b.name, "--subnet", "10.99.0.0/31"]);
    assert!(err.contains("invalid --subnet"), "{err}");
    assert!(!b.cluster_dir().exists(), "a refused create leaves nothing");

    let out = b.create(&[]);
    assert!(out.contains("is ready: 1 node(s)"), "{out}");
    let err = b.refused(&["create", "--name", &b.name]);
    assert!(err.contains("already exists"), "{err}");
    let err = b.refused(&["exec", "--name", &b.name, "nope", "--", "true"]);
    assert!(err.contains("node \"nope\" is not in cluster"), "{err}");
    // `cluster kubeconfig` prints a file kubectl can use on its own.
    let own = b.dir.path().join("own-kubeconfig");
    std::fs::write(&own, b.ok(&["kubeconfig", "--name", &b.name])).unwrap();
    let out = Command::new(node_support::KUBECTL)
        .args([
            "--kubeconfig",
            own.to_str().unwrap(),
            "get",
            "node",
            &b.node("server", 0),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A command's exit status comes back from the node.
    let out = b.cli(&[
        "exec",
        "--name",
        &b.name,
        &b.node("server", 0),
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));

    b.ok(&["delete", "--name", &b.name]);
    assert_no_trace(&b);
    let err = b.refused(&["delete", "--name", &b.name]);
    assert!(err.contains(&format!("no cluster \"{}\"", b.name)), "{err}");
}

#[test]
fn with_the_vxlan_backend_pods_on_two_nodes_talk_through_udp_8472_only() {
    let b = Bench::new("vx");
    b.create(&[
        "--nodes",
        "2",
        "--server-arg=--flannel-backend=vxlan",
        "--agent-arg=--flannel-backend=vxlan",
    ]);
    let (server, agent) = (b.node("server", 0), b.node("agent", 0));
    // The agent's node counts the overlay's datagrams and drops any pod packet that arrives
    // on its link unencapsulated (which is how host-gw would deliver it).
    b.on(
        &agent,
        "nft add table ip nkvx && \
         nft add chain ip nkvx pre '{ type filter hook prerouting priority -300; }' && \
         nft add rule ip nkvx pre iifname eth0 udp dport 8472 counter && \
         nft add rule ip nkvx pre iifname eth0 ip saddr 10.42.0.0/16 counter drop",
    );
    b.web_pods(&agent, &server);
    let ip = b.k(&["get", "pod", "web-a", "-o", "jsonpath={.status.podIP}"]);
    let got = b.k(&[
        "exec",
        "web-s",
        "--",
        "wget",
        "-qO-",
        &format!("http://{ip}:8080/"),
    ]);
    assert_eq!(got.trim(), "hello from web-a");
    let counters = b.on(&agent, "nft list chain ip nkvx pre");
    let packets = |needle: &str| -> u64 {
        let line = counters
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no rule with {needle}: {counters}"));
        let after = line.split("packets ").nth(1).expect("a counter");
        after.split(' ').next().unwrap().parse().unwrap()
    };
    assert!(
        packets("dport 8472") > 0,
        "the overlay carried it: {counters}"
    );
    assert_eq!(
        packets("saddr 10.42.0.0/16"),
        0,
        "nothing came unencapsulated: {counters}"
    );

    // What flannel would have written: the VTEP with the pod range's first address, a route
    // onlink through it, the peer's MAC in the ARP and forwarding tables, pods at MTU 1450.
    let node: Value = serde_json::from_str(&b.k(&["get", "node", &agent, "-o", "json"])).unwrap();
    let ann = &node["metadata"]["annotations"];
    assert_eq!(ann["flannel.alpha.coreos.com/backend-type"], "vxlan");
    assert_eq!(ann["flannel.alpha.coreos.com/public-ip"], "10.99.0.3");
    let data: Value = serde_json::from_str(
        ann["flannel.alpha.coreos.com/backend-data"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let mac = data["VtepMAC"].as_str().unwrap().to_string();
    assert_eq!(data["VNI"], 1);
    let agent_cidr = node["spec"]["podCIDR"].as_str().unwrap().to_string();
    let vtep = agent_cidr.trim_end_matches("/24");
    let seen = b.on(
        &server,
        "ip -d link show flannel.1; ip route show; ip neigh show dev flannel.1; bridge fdb show dev flannel.1",
    );
    assert!(
        seen.contains("vxlan id 1 local 10.99.0.2") && seen.contains("dstport 8472"),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("{agent_cidr} via {vtep} dev flannel.1 onlink")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("{vtep} lladdr {mac} PERMANENT")),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("{mac} dst 10.99.0.3 self permanent")),
        "{seen}"
    );
    let mtu = b.k(&["exec", "web-s", "--", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu.trim(), "1450");
    b.ok(&["delete", "--name", &b.name]);
    assert_no_trace(&b);
}

/// The addresses `default/kubernetes` names, sorted.
fn apiserver_endpoints(b: &Bench) -> Vec<String> {
    let out = b.kubectl(&[
        "get",
        "endpoints",
        "kubernetes",
        "-o",
        "jsonpath={.subsets[*].addresses[*].ip}",
    ]);
    let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    ips.sort();
    ips
}

fn lease_holder(b: &Bench, name: &str) -> String {
    b.k(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ])
}

#[test]
fn three_servers_share_one_datastore_and_the_cluster_outlives_the_first() {
    let b = Bench::new("ha");
    let out = b.create(&[
        "--servers",
        "3",
        "--nodes",
        "4",
        "--server-arg=--node-monitor-grace-period=20s",
    ]);
    assert!(out.contains("is ready: 4 node(s)"), "{out}");
    let (s0, s1, s2) = (
        b.node("server", 0),
        b.node("server", 1),
        b.node("server", 2),
    );
    // One cluster, not three: the same CA and service account key on every server, taken
    // from the datastore, and every server in the kubernetes service.
    let dir = b.cluster_dir();
    for file in ["tls/ca.crt", "tls/ca.key", "tls/service.key", "admin-token"] {
        let first = std::fs::read(dir.join(&s0).join("data/server").join(file)).unwrap();
        for other in [&s1, &s2] {
            let theirs = std::fs::read(dir.join(other).join("data/server").join(file)).unwrap();
            assert!(first == theirs, "{file} differs on {other}");
        }
    }
    eventually("three servers in default/kubernetes", 30, || {
        (apiserver_endpoints(&b) == ["10.99.0.2", "10.99.0.3", "10.99.0.4"]).then_some(())
    });
    // The datastore answers the servers alone: an agent (and so its pods) cannot reach it.
    let probe = |node: &str| {
        b.cli(&[
            "exec",
            "--name",
            &b.name,
            node,
            "--",
            "timeout",
            "3",
            "bash",
            "-c",
            "echo > /dev/tcp/10.99.0.1/2379",
        ])
        .status
        .success()
    };
    assert!(probe(&s1), "a server cannot reach etcd");
    assert!(!probe(&b.node("agent", 0)), "an agent reached etcd");
    let leases = b.k(&[
        "get",
        "leases",
        "-n",
        "kube-system",
        "-l",
        "apiserver.kubernetes.io/identity=kube-apiserver",
        "-o",
        "name",
    ]);
    assert_eq!(leases.lines().count(), 3, "{leases}");
    // A Secret written through the balancer reads back through each server on its own node
    // (their kubeconfig names the server of that node): the encryption keys are shared.
    b.k(&[
        "create",
        "secret",
        "generic",
        "shared",
        "--from-literal=word=hello",
    ]);
    for server in [&s0, &s1, &s2] {
        let kubeconfig = dir.join(server).join("kubeconfig.yaml");
        let got = b.on(
            server,
            &format!(
                "{} --kubeconfig {} get secret shared -o jsonpath={{.data.word}}",
                node_support::KUBECTL,
                kubeconfig.display()
            ),
        );
        assert_eq!(got.trim(), "aGVsbG8=", "through {server}");
    }
    let leader = lease_holder(&b, "kube-controller-manager");
    assert!(
        leader.starts_with(&s0),
        "the first server leads at first: {leader}"
    );

    // The first server's node dies with everything on it.
    let pid = std::fs::read_to_string(dir.join(&s0).join("init.pid")).unwrap();
    let kill = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(kill.success());
    // The API stays reachable through the balancer; another server takes each leader Lease,
    // and the dead one drops out of the kubernetes service.
    for lease in [
        "kube-controller-manager",
        "kube-scheduler",
        "nanokube-servicelb",
    ] {
        eventually(&format!("another server holds {lease}"), 60, || {
            let h = lease_holder(&b, lease);
            (h.starts_with(&s1) || h.starts_with(&s2)).then_some(())
        });
    }
    eventually("the dead server out of default/kubernetes", 60, || {
        (apiserver_endpoints(&b) == ["10.99.0.3", "10.99.0.4"]).then_some(())
    });
    // The new leader's node lifecycle controller finds the node gone...
    eventually("the dead server's node NotReady", 90, || {
        let status = b.k(&[
            "get",
            "node",
            &s0,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        (status.trim() == "Unknown").then_some(())
    });
    // ...and its controllers and scheduler run new work on the nodes that are left,
    // the agent among them (it joined through the balancer, which moved it on).
    b.k(&[
        "create",
        "deployment",
        "after",
        "--image",
        "nanokube/busybox",
        "--replicas",
        "3",
        "--",
        "sleep",
        "3600",
    ]);
    b.k(&["rollout", "status", "deployment/after", "--timeout=120s"]);
    let nodes = b.k(&[
        "get",
        "pods",
        "-l",
        "app=after",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    assert_eq!(nodes.split_whitespace().count(), 3, "{nodes}");
    assert!(!nodes.contains(&s0), "a pod went to the dead node: {nodes}");
    let agent = b.k(&[
        "get",
        "node",
        &b.node("agent", 0),
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    assert_eq!(agent.trim(), "True", "the agent lost its server");

    b.ok(&["delete", "--name", &b.name]);
    assert_no_trace(&b);
}

/// The CSRs as (name, signer, requester, condition column).
fn csrs(b: &Bench) -> Vec<(String, String, String, String)> {
    let list: Value = serde_json::from_str(&b.k(&["get", "csr", "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let conds: Vec<&str> = c["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["type"].as_str())
                .collect();
            let issued = c["status"]["certificate"]
                .as_str()
                .is_some_and(|s| !s.is_empty());
            (
                c["metadata"]["name"].as_str().unwrap_or("").to_string(),
                c["spec"]["signerName"].as_str().unwrap_or("").to_string(),
                c["spec"]["username"].as_str().unwrap_or("").to_string(),
                format!("{}{}", conds.join(","), if issued { ",Issued" } else { "" }),
            )
        })
        .collect()
}

/// A PEM certificate request for `cn` in `orgs`, and its key.
fn user_request(cn: &str, orgs: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    for o in orgs {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    (
        p.serialize_request(&key).unwrap().pem().unwrap(),
        key.serialize_pem(),
    )
}

fn apply_json(b: &Bench, obj: &Value) {
    let path = b.dir.path().join("obj.json");
    std::fs::write(&path, obj.to_string()).unwrap();
    b.k(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn nodes_get_their_certificates_through_csrs_and_renew_them() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let b = Bench::new("csr");
    b.create(&[
        "--nodes",
        "2",
        "--server-arg=--cluster-signing-duration=40s",
    ]);
    let agent = b.node("agent", 0);
    let me = format!("system:node:{agent}");
    // The agent joined as the bootstrap user with a request for its client certificate,
    // then asked for its serving certificate as the node; both were approved and signed.
    let first = csrs(&b);
    let client = first
        .iter()
        .find(|c| c.1 == "kubernetes.io/kube-apiserver-client-kubelet")
        .unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(client.2, "system:bootstrap:nanokube", "{first:?}");
    assert_eq!(client.3, "Approved,Issued", "{first:?}");
    let serving = first
        .iter()
        .find(|c| c.1 == "kubernetes.io/kubelet-serving")
        .unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(serving.2, me, "{first:?}");
    assert_eq!(serving.3, "Approved,Issued", "{first:?}");
    let approved: Value =
        serde_json::from_str(&b.k(&["get", "csr", &client.0, "-o", "json"])).unwrap();
    assert_eq!(
        approved["status"]["conditions"][0]["message"],
        "Auto approving kubelet client certificate after SubjectAccessReview."
    );
    // The key the certificate binds was made on the node: the saved credentials hold it,
    // and it is the one the issued certificate's request was signed with.
    let creds: Value = serde_json::from_slice(
        &std::fs::read(
            b.cluster_dir()
                .join(&agent)
                .join("data/agent/node-credentials.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let issued = String::from_utf8(
        b64.decode(approved["status"]["certificate"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(creds["clientCert"].as_str().unwrap(), issued);

    // A pod on the agent, reached through the kubelet's port (its serving certificate).
    b.k(&[
        "run",
        "p",
        "--image",
        "nanokube/busybox",
        "--overrides",
        &format!("{{\"spec\":{{\"nodeName\":\"{agent}\"}}}}"),
        "--",
        "sleep",
        "3600",
    ]);
    b.k(&["wait", "--for=condition=Ready", "pod/p", "--timeout=60s"]);
    let container = b.k(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
    ]);
    // At 80% of the 40 s the node renews both, as itself, and starts again on them.
    eventually("a renewal as the node itself", 60, || {
        let now = csrs(&b);
        now.iter()
            .any(|c| {
                c.1 == "kubernetes.io/kube-apiserver-client-kubelet"
                    && c.2 == me
                    && c.3 == "Approved,Issued"
            })
            .then_some(now)
    });
    eventually("the renewed credentials in use", 60, || {
        let creds: Value = serde_json::from_slice(
            &std::fs::read(
                b.cluster_dir()
                    .join(&agent)
                    .join("data/agent/node-credentials.json"),
            )
            .ok()?,
        )
        .ok()?;
        (creds["clientCert"].as_str()? != issued).then_some(())
    });
    eventually("exec through the renewed serving certificate", 60, || {
        let out = b.kubectl(&["exec", "p", "--", "echo", "still-here"]);
        (String::from_utf8_lossy(&out.stdout).trim() == "still-here").then_some(())
    });
    let after = b.k(&[
        "get",
        "pod",
        "p",
        "-o",
        "jsonpath={.status.containerStatuses[0].containerID}",
    ]);
    assert_eq!(
        container, after,
        "the pod kept its container across the agent's restart"
    );
    let approved_self = csrs(&b)
        .into_iter()
        .find(|c| c.1 == "kubernetes.io/kube-apiserver-client-kubelet" && c.2 == me)
        .unwrap();
    let obj: Value =
        serde_json::from_str(&b.k(&["get", "csr", &approved_self.0, "-o", "json"])).unwrap();
    assert_eq!(
        obj["status"]["conditions"][0]["message"],
        "Auto approving self kubelet client certificate after SubjectAccessReview."
    );

    // A person's certificate waits for a person: approved with kubectl, it works.
    let (pem, key) = user_request("alice", &["devs"]);
    apply_json(
        &b,
        &serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "alice"},
            "spec": {"request": b64.encode(&pem), "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"], "expirationSeconds": 3600,
                "username": "mallory", "groups": ["system:masters"]},
        }),
    );
    std::thread::sleep(Duration::from_secs(2));
    let pending: Value =
        serde_json::from_str(&b.k(&["get", "csr", "alice", "-o", "json"])).unwrap();
    assert!(pending["status"]["conditions"].is_null(), "{pending}");
    // Who asked is the server's to say, not the request's.
    assert_eq!(pending["spec"]["username"], "system:admin");
    let (pem2, _) = user_request("bob", &["devs"]);
    apply_json(
        &b,
        &serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "bob"},
            "spec": {"request": b64.encode(&pem2), "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"]},
        }),
    );
    // The API server's own group is never signed for, and a request never changes.
    let (root, _) = user_request("root", &["system:masters"]);
    let path = b.dir.path().join("root.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": "root"},
            "spec": {"request": b64.encode(&root), "signerName": "kubernetes.io/kube-apiserver-client",
                "usages": ["client auth"]},
        })
        .to_string(),
    )
    .unwrap();
    let out = b.kubectl(&["create", "-f", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a system:masters request was accepted"
    );
    assert!(
        err.contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{err}"
    );
    let out = b.kubectl(&[
        "patch",
        "csr",
        "alice",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"groups":["system:bootstrappers"]}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec: Forbidden: field is immutable"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.k(&["certificate", "approve", "alice"]);
    b.k(&["certificate", "deny", "bob"]);
    let cert = eventually("alice's certificate", 30, || {
        let c = b.k(&[
            "get",
            "csr",
            "alice",
            "-o",
            "jsonpath={.status.certificate}",
        ]);
        (!c.is_empty()).then_some(c)
    });
    let table = b.k(&["get", "csr", "alice", "bob", "--no-headers"]);
    assert!(table.contains("Approved,Issued"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("bob") && l.contains("Denied") && !l.contains("Issued")),
        "{table}"
    );
    let dir = b.dir.path();
    std::fs::write(dir.join("alice.crt"), b64.decode(cert.trim()).unwrap()).unwrap();
    std::fs::write(dir.join("alice.key"), key).unwrap();
    // A kubeconfig of alice's own: the cluster's address and CA, her certificate.
    let server = b.k(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let ca = b.k(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ]);
    std::fs::write(dir.join("ca.crt"), b64.decode(ca.trim()).unwrap()).unwrap();
    let whoami = Command::new(node_support::KUBECTL)
        .arg("--kubeconfig=/dev/null")
        .args(["--server", server.trim()])
        .arg(format!(
            "--certificate-authority={}",
            dir.join("ca.crt").display()
        ))
        .arg(format!(
            "--client-certificate={}",
            dir.join("alice.crt").display()
        ))
        .arg(format!("--client-key={}", dir.join("alice.key").display()))
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&whoami.stdout),
        "alice",
        "{}",
        String::from_utf8_lossy(&whoami.stderr)
    );
    b.ok(&["delete", "--name", &b.name]);
    assert_no_trace(&b);
}
