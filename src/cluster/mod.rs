//! `nanokube cluster`: clusters of several nodes on one host, what kind and k3d are for Docker
//! users. Each node is a process tree in network, mount, pid, cgroup, uts and ipc namespaces of
//! its own, running `nanokube server` or `nanokube agent` as a host would; the nodes are cabled
//! to one bridge in a namespace of its own, which has no route anywhere, so nothing a cluster
//! sends can leave it. The host reaches the API server through a forwarded port on its
//! loopback, written into the user's kubeconfig.
//!
//! With several servers, the hub also runs their shared etcd and balances the API port over
//! them ([`hub`]), as k3s's HA setup with an external datastore and a fixed registration
//! address.
//!
//! [`layout`] decides names and addresses, [`node`] is each node's boot and init, [`cgroups`]
//! the node cgroups on the host, [`forward`] the API port, [`kubeconfig`] the user's file.

pub mod cgroups;
pub mod forward;
pub mod hub;
pub mod kubeconfig;
pub mod layout;
pub mod node;

use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::network::netlink::Netlink;
use crate::network::netns;
use layout::{Cluster, Role};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: ClusterCommand,
}

#[derive(Debug, Args)]
pub struct Place {
    /// Where clusters keep their state, one directory each.
    #[arg(
        long,
        env = "NANOKUBE_CLUSTERS_DIR",
        default_value = "/var/lib/nanokube/clusters"
    )]
    pub clusters_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster and wait until its nodes are Ready.
    Create(CreateArgs),
    /// Delete a cluster: its processes, pods, cgroups, namespaces, files and kubeconfig entry.
    Delete(NameArgs),
    /// List the clusters of this host.
    List(Place),
    /// Print a cluster's admin kubeconfig.
    Kubeconfig(NameArgs),
    /// Run a command on a node, inside all its namespaces (default: a shell).
    Exec(ExecArgs),
    #[command(hide = true)]
    Boot(node::BootArgs),
    #[command(hide = true)]
    Init(node::InitArgs),
    #[command(hide = true)]
    Hub(hub::HubArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The cluster's name; its nodes are <name>-server-0, <name>-agent-0, ...
    #[arg(long, default_value = "nanokube")]
    pub name: String,
    /// How many nodes, servers included.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// How many of the nodes are servers.
    #[arg(long, default_value_t = 1)]
    pub servers: usize,
    /// The nodes' network (inside the cluster's own namespaces; it never meets the host's).
    #[arg(long, default_value = "10.99.0.0/24")]
    pub subnet: String,
    /// The port on the host's 127.0.0.1 that reaches the API server (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub api_port: u16,
    /// An image tarball (OCI or docker-archive) every node imports at start (repeatable).
    #[arg(long = "image")]
    pub images: Vec<PathBuf>,
    /// The kubeconfig to merge the cluster's context into (default: $KUBECONFIG, else
    /// ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// A flag for every server's `nanokube server` (repeatable), as k3d's --k3s-arg.
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    pub server_args: Vec<String>,
    /// A flag for every agent's `nanokube agent` (repeatable).
    #[arg(long = "agent-arg", allow_hyphen_values = true)]
    pub agent_args: Vec<String>,
    /// How long to wait for every node to be Ready.
    #[arg(long, default_value = "180s", value_parser = crate::server::go_duration)]
    pub wait: Duration,
    /// Keep the nodes of a cluster that failed to come up, to look at them (as kind's
    /// --retain); `cluster delete` removes them.
    #[arg(long)]
    pub retain: bool,
    #[command(flatten)]
    pub place: Place,
}

#[derive(Debug, Args)]
pub struct NameArgs {
    #[arg(long, default_value = "nanokube")]
    pub name: String,
    #[command(flatten)]
    pub place: Place,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[arg(long, default_value = "nanokube")]
    pub name: String,
    /// The node, e.g. nanokube-agent-0.
    pub node: String,
    /// The command and its arguments (after --).
    #[arg(last = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub place: Place,
}

/// Errors of `nanokube cluster`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Layout(#[from] layout::Error),
    #[error("cluster {0:?} already exists (nanokube cluster delete --name {0})")]
    Exists(String),
    #[error("no cluster {0:?} in {1}")]
    NotFound(String, String),
    #[error("node {0:?} is not in cluster {1:?}")]
    NoNode(String, String),
    #[error("node {0} is not running")]
    NotRunning(String),
    #[error("--image {0}: not a file")]
    Image(String),
    #[error("--servers {0}: several servers share an etcd datastore, and no etcd is on PATH (apt-get install etcd-server)")]
    NoEtcd(usize),
    #[error("node {node}: {reason}; its log {log} ends:\n{tail}")]
    Start {
        node: String,
        reason: String,
        log: String,
        tail: String,
    },
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("processes of cluster {0} still running after SIGKILL: {1:?}")]
    Leftover(String, Vec<u32>),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: nix::errno::Errno,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
    pub(crate) fn sys(what: impl Into<String>, source: nix::errno::Errno) -> Error {
        Error::Sys {
            what: what.into(),
            source,
        }
    }
}

pub fn run(args: ClusterArgs) -> anyhow::Result<i32> {
    Ok(match args.command {
        ClusterCommand::Create(a) => create(a)?,
        ClusterCommand::Delete(a) => delete(a)?,
        ClusterCommand::List(p) => list(p)?,
        ClusterCommand::Kubeconfig(a) => {
            let c = find(&a.place, &a.name)?;
            let text = std::fs::read_to_string(c.admin_kubeconfig())
                .map_err(|e| Error::io("reading the admin kubeconfig", e))?;
            print!("{text}");
            0
        }
        ClusterCommand::Exec(a) => exec(a)?,
        ClusterCommand::Boot(a) => node::boot(a)?,
        ClusterCommand::Init(a) => node::init(a)?,
        ClusterCommand::Hub(a) => hub::run(a)?,
    })
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

fn find(place: &Place, name: &str) -> Result<Cluster, Error> {
    let dir = absolute(&place.clusters_dir);
    Cluster::load(&dir, name).map_err(|_| Error::NotFound(name.into(), dir.display().to_string()))
}

pub fn create(a: CreateArgs) -> Result<i32, Error> {
    let etcd = if a.servers > 1 {
        Some(find_in_path("etcd").ok_or(Error::NoEtcd(a.servers))?)
    } else {
        None
    };
    let clusters_dir = absolute(&a.place.clusters_dir);
    let exe = std::env::current_exe().map_err(|e| Error::io("finding nanokube's binary", e))?;
    let kubeconfig = absolute(
        &a.kubeconfig
            .clone()
            .unwrap_or_else(kubeconfig::default_path),
    );
    let cluster = Cluster::plan(
        &a.name,
        &clusters_dir,
        a.nodes,
        a.servers,
        &a.subnet,
        kubeconfig,
        exe,
    )?;
    for image in &a.images {
        if !image.is_file() {
            return Err(Error::Image(image.display().to_string()));
        }
    }
    if cluster.dir.exists() {
        return Err(Error::Exists(cluster.name.clone()));
    }
    std::fs::create_dir_all(&cluster.dir)
        .map_err(|e| Error::io(format!("creating {}", cluster.dir.display()), e))?;
    cluster
        .save()
        .map_err(|e| Error::io("writing cluster.json", e))?;
    match build(&cluster, &a, etcd.as_deref()) {
        Ok(port) => {
            println!(
                "cluster {} is ready: {} node(s), API https://127.0.0.1:{port}, kubectl context {} in {}",
                cluster.name,
                cluster.nodes.len(),
                cluster.context(),
                cluster.kubeconfig.display()
            );
            for n in &cluster.nodes {
                println!("  {:<24} {:<7} {}", n.name, n.role.name(), n.ip);
            }
            Ok(0)
        }
        Err(e) if a.retain => Err(e),
        Err(e) => {
            // Nothing of a failed cluster stays behind (its logs are in the error).
            if let Err(t) = teardown(&cluster) {
                eprintln!("nanokube: cleaning up cluster {}: {t}", cluster.name);
            }
            Err(e)
        }
    }
}

/// Wires the network, starts the nodes and waits for them; returns the host's API port.
fn build(c: &Cluster, a: &CreateArgs, etcd: Option<&Path>) -> Result<u16, Error> {
    wire(c)?;
    for n in &c.nodes {
        let images = c.node_dir(n).join("data/agent/images");
        std::fs::create_dir_all(&images).map_err(|e| Error::io("node directory", e))?;
        for image in &a.images {
            let name = image.file_name().unwrap_or_default();
            let to = images.join(name);
            if std::fs::hard_link(image, &to).is_err() {
                std::fs::copy(image, &to)
                    .map_err(|e| Error::io(format!("copying {}", image.display()), e))?;
            }
        }
    }
    let deadline = Instant::now() + a.wait;
    let server = &c.nodes[0];
    let mut children = Vec::new();
    // Several servers join through one secret, made here, and the hub's datastore.
    let cluster_token = c.is_ha().then(crate::apiserver::auth::random_token);
    if let Some(etcd) = etcd {
        children.push(("hub".to_string(), start_hub(c, a.api_port, etcd)?));
    }
    let own_port = (!c.is_ha()).then_some(a.api_port);
    children.push((
        server.name.clone(),
        start_node(
            c,
            server,
            own_port,
            &a.server_args,
            cluster_token.as_deref(),
        )?,
    ));
    let port = wait_for(c, server, &mut children, deadline, "its API port", || {
        std::fs::read_to_string(c.api_port_file())
            .ok()
            .and_then(|p| p.trim().parse::<u16>().ok())
    })?;
    let server_dir = c.node_dir(server);
    let server_kubeconfig = wait_for(c, server, &mut children, deadline, "its kubeconfig", || {
        std::fs::read_to_string(server_dir.join("kubeconfig.yaml")).ok()
    })?;
    // The other servers start once the first has stored the cluster's CA and keys, which
    // they take from the datastore.
    for n in c.servers().skip(1) {
        let child = start_node(c, n, None, &a.server_args, cluster_token.as_deref())?;
        children.push((n.name.clone(), child));
    }
    let token = std::fs::read_to_string(server_dir.join("data/server/node-token"))
        .map_err(|e| Error::io("reading the server's node-token", e))?;
    for n in c.nodes.iter().filter(|n| n.role == Role::Agent) {
        let child = start_node(c, n, None, &a.agent_args, Some(token.trim()))?;
        children.push((n.name.clone(), child));
    }
    let entry = kubeconfig::renamed(
        &server_kubeconfig,
        &c.context(),
        &format!("https://127.0.0.1:{port}"),
    )
    .map_err(Error::Kubeconfig)?;
    let text = serde_yaml::to_string(&entry).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    crate::apiserver::tls::write_private(&c.admin_kubeconfig(), text.as_bytes())
        .map_err(|e| Error::io("writing the admin kubeconfig", e))?;
    kubeconfig::merge(&c.kubeconfig, &entry).map_err(Error::Kubeconfig)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio", e))?;
    let client = rt
        .block_on(crate::agent::client_from_kubeconfig(&text))
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    wait_for(
        c,
        server,
        &mut children,
        deadline,
        "the nodes to be Ready",
        || rt.block_on(all_ready(&client, &names)).then_some(()),
    )?;
    Ok(port)
}

async fn all_ready(client: &kube::Client, names: &[String]) -> bool {
    let api: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let Ok(list) = api.list(&Default::default()).await else {
        return false;
    };
    names.iter().all(|name| {
        list.items.iter().any(|n| {
            n.metadata.name.as_deref() == Some(name)
                && n.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
}

/// Polls `probe` until it gives a value, a node's boot process ends, or the deadline passes.
fn wait_for<T>(
    c: &Cluster,
    node: &layout::Node,
    children: &mut [(String, Child)],
    deadline: Instant,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, Error> {
    loop {
        if let Some(v) = probe() {
            return Ok(v);
        }
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                if c.node(name).is_none() {
                    return Err(hub_error(c, format!("stopped ({status})")));
                }
                let n = c.node(name).unwrap_or(node);
                return Err(start_error(c, n, format!("stopped ({status})")));
            }
        }
        if Instant::now() >= deadline {
            return Err(start_error(
                c,
                node,
                format!("timed out waiting for {what}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn hub_error(c: &Cluster, reason: String) -> Error {
    let log = c.hub_dir().join("hub.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    Error::Start {
        node: "hub".into(),
        reason,
        log: log.display().to_string(),
        tail: tail(&text),
    }
}

fn start_error(c: &Cluster, node: &layout::Node, reason: String) -> Error {
    let log = c.node_dir(node).join("nanokube.log");
    let text = std::fs::read_to_string(&log)
        .or_else(|_| std::fs::read_to_string(c.node_dir(node).join("init.log")))
        .unwrap_or_default();
    Error::Start {
        node: node.name.clone(),
        reason,
        log: log.display().to_string(),
        tail: tail(&text),
    }
}

/// The hub with its bridge, and each node's namespace with its veth, address and default
/// route (into the hub, where it ends).
fn wire(c: &Cluster) -> Result<(), Error> {
    let hub_path = netns::create_named(&c.hub_netns())?;
    let hub_ns = std::fs::File::open(&hub_path).map_err(|e| Error::io("hub namespace", e))?;
    let mut hub = Netlink::in_namespace(hub_ns.as_fd())?;
    hub.add_bridge("br0")?;
    let bridge = hub
        .link("br0")?
        .ok_or_else(|| crate::network::Error::Netlink("br0 vanished".into()))?;
    hub.set_up(bridge.index, None)?;
    if c.is_ha() {
        // The hub's etcd and balancer listen on the nodes' network, and etcd on loopback.
        hub.add_address(bridge.index, c.hub_ip(), c.prefix())?;
        if let Some(lo) = hub.link("lo")? {
            hub.set_up(lo.index, None)?;
        }
    }
    for n in &c.nodes {
        let path = netns::create_named(&c.node_netns(n))?;
        let ns = std::fs::File::open(&path).map_err(|e| Error::io("node namespace", e))?;
        hub.add_veth(&n.port, "eth0", ns.as_fd())?;
        let port = hub
            .link(&n.port)?
            .ok_or_else(|| crate::network::Error::Netlink(format!("{} vanished", n.port)))?;
        hub.set_up(port.index, Some(bridge.index))?;
        let mut nl = Netlink::in_namespace(ns.as_fd())?;
        for name in ["lo", "eth0"] {
            let link = nl
                .link(name)?
                .ok_or_else(|| crate::network::Error::Netlink(format!("{name} missing")))?;
            nl.set_up(link.index, None)?;
            if name == "eth0" {
                nl.add_address(link.index, n.ip, c.prefix())?;
                nl.replace_route(std::net::Ipv4Addr::UNSPECIFIED, 0, None, Some(link.index))?;
            }
        }
    }
    Ok(())
}

/// Starts the hub of a cluster of several servers, detached like the nodes.
fn start_hub(c: &Cluster, api_port: u16, etcd: &Path) -> Result<Child, Error> {
    let dir = c.hub_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("hub directory", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("hub.log"))
        .map_err(|e| Error::io("hub.log", e))?;
    Command::new(&c.exe)
        .args(["cluster", "hub", "--clusters-dir"])
        .arg(c.dir.parent().unwrap_or(Path::new("/")))
        .args([
            "--cluster",
            &c.name,
            "--api-port",
            &api_port.to_string(),
            "--etcd",
        ])
        .arg(etcd)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| Error::io("hub.log", e))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io("starting the cluster's hub", e))
}

/// `name` in one of $PATH's directories, as an executable file.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Starts a node's boot process, detached from the caller (it outlives `create`).
fn start_node(
    c: &Cluster,
    n: &layout::Node,
    api_port: Option<u16>,
    extra: &[String],
    token: Option<&str>,
) -> Result<Child, Error> {
    let dir = c.node_dir(n);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("node directory", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("init.log"))
        .map_err(|e| Error::io("init.log", e))?;
    let mut cmd = Command::new(&c.exe);
    cmd.args(["cluster", "boot", "--clusters-dir"])
        .arg(c.dir.parent().unwrap_or(Path::new("/")))
        .args(["--cluster", &c.name, "--node", &n.name]);
    if let Some(p) = api_port {
        cmd.args(["--api-port", &p.to_string()]);
    }
    cmd.arg("--").args(c.node_command(n, extra));
    // The join token goes through the environment, out of `ps`; a token or server of the
    // caller's own environment must not leak into a node.
    cmd.env_remove("NANOKUBE_TOKEN").env_remove("NANOKUBE_URL");
    if let Some(t) = token {
        cmd.env("NANOKUBE_TOKEN", t);
    }
    cmd.current_dir("/")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| Error::io("init.log", e))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::io(format!("starting node {}", n.name), e))
}

pub fn delete(a: NameArgs) -> Result<i32, Error> {
    let c = find(&a.place, &a.name)?;
    teardown(&c)?;
    println!("deleted cluster {}", c.name);
    Ok(0)
}

/// Removes every trace of `c`, in the order that lets each step succeed: processes (all of
/// them, found through the cluster's cgroup; the pods' mounts die with the nodes' mount
/// namespaces), cgroups, network namespaces (their links, addresses and nftables tables go
/// with them), the kubeconfig entry, the files.
fn teardown(c: &Cluster) -> Result<(), Error> {
    let rel = c.cgroup();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids = cgroups::pids(&rel);
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Error::Leftover(c.name.clone(), pids.into_iter().collect()));
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // An emptied cgroup may refuse rmdir for a moment while the kernel lets go of it.
    let mut tries = 0;
    while let Err(e) = cgroups::remove(&rel) {
        tries += 1;
        if tries > 100 {
            return Err(Error::io("removing the cluster's cgroups", e));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cgroups::remove_if_empty(Path::new("nanokube-clusters"));
    for n in &c.nodes {
        netns::delete_named(&c.node_netns(n))?;
    }
    netns::delete_named(&c.hub_netns())?;
    kubeconfig::remove(&c.kubeconfig, &c.context()).map_err(Error::Kubeconfig)?;
    std::fs::remove_dir_all(&c.dir)
        .map_err(|e| Error::io(format!("removing {}", c.dir.display()), e))?;
    if let Some(parent) = c.dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
    Ok(())
}

/// The host pid of a node's init, if it runs.
fn init_pid(c: &Cluster, n: &layout::Node) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(c.node_dir(n).join("init.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // A recycled pid would be some other process: it must be in the node's cgroup.
    cgroups::pids(&c.node_cgroup(n))
        .contains(&pid)
        .then_some(pid)
}

fn list(p: Place) -> Result<i32, Error> {
    let dir = absolute(&p.clusters_dir);
    println!(
        "{:<20} {:<8} {:<8} {:<24} KUBECONFIG",
        "NAME", "SERVERS", "AGENTS", "API"
    );
    for c in Cluster::all(&dir) {
        let up = c.nodes.iter().filter(|n| init_pid(&c, n).is_some()).count();
        let servers = c.servers().count();
        let port = std::fs::read_to_string(c.api_port_file()).unwrap_or_default();
        println!(
            "{:<20} {:<8} {:<8} {:<24} {}",
            c.name,
            format!("{servers}"),
            format!("{}", c.nodes.len() - servers),
            format!("https://127.0.0.1:{}", port.trim()),
            c.kubeconfig.display()
        );
        if up < c.nodes.len() {
            println!("  ({} of {} nodes running)", up, c.nodes.len());
        }
    }
    Ok(0)
}

/// Runs a command inside a node: in its cgroup, then its cgroup, ipc, uts, network, pid and
/// mount namespaces (mount last: the others are opened through the host's /proc). The
/// command is this process's child, so it is in the node's pid namespace.
fn exec(a: ExecArgs) -> Result<i32, Error> {
    use nix::sched::{setns, CloneFlags};
    let c = find(&a.place, &a.name)?;
    let n = c
        .node(&a.node)
        .ok_or_else(|| Error::NoNode(a.node.clone(), c.name.clone()))?;
    let pid = init_pid(&c, n).ok_or_else(|| Error::NotRunning(n.name.clone()))?;
    let kinds = [
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut handles = Vec::new();
    for (name, flag) in kinds {
        let f = std::fs::File::open(format!("/proc/{pid}/ns/{name}"))
            .map_err(|e| Error::io(format!("opening node {}'s {name} namespace", n.name), e))?;
        handles.push((name, flag, f));
    }
    cgroups::enter(&c.node_cgroup(n).join("init"), std::process::id())
        .map_err(|e| Error::io("joining the node's cgroup", e))?;
    for (name, flag, f) in &handles {
        setns(f.as_fd(), *flag).map_err(|e| Error::sys(format!("setns({name})"), e))?;
    }
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir /", e))?;
    let command = if a.command.is_empty() {
        vec![std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into())]
    } else {
        a.command.clone()
    };
    let status = Command::new(&command[0])
        .args(&command[1..])
        .status()
        .map_err(|e| Error::io(format!("running {}", command[0]), e))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
