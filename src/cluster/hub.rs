//! The hub of a cluster of several servers: the process that lives in the hub's network
//! namespace (where the nodes' bridge is) and gives the servers what they share, as k3s's
//! HA setup with an external datastore has it:
//!
//! - an etcd on the hub's address, the servers' `--datastore-endpoint`, restarted when it
//!   dies (its data stays in `<cluster>/hub/etcd`);
//! - the API balancer: the host's loopback port and `<hub>:6443` (k3s's "fixed registration
//!   address", where agents join) forward round-robin to the servers that answer, so the
//!   cluster stays reachable while any server is.
//!
//! It holds no namespace but the hub's network namespace, and sits in the cluster's cgroup,
//! so `cluster delete` stops it with the nodes.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sched::{setns, CloneFlags};
use std::os::fd::AsFd;

use super::{cgroups, forward, layout, Error};

#[derive(Debug, Args)]
pub struct HubArgs {
    #[arg(long)]
    pub clusters_dir: PathBuf,
    #[arg(long)]
    pub cluster: String,
    /// The host's loopback port for the API (0: any free one, written to `hub/api-port`).
    #[arg(long, default_value_t = 0)]
    pub api_port: u16,
    /// The etcd binary.
    #[arg(long, default_value = "etcd")]
    pub etcd: PathBuf,
}

/// The etcd command line for the hub at `ip`, keeping its data in `dir`.
pub fn etcd_args(name: &str, ip: std::net::Ipv4Addr, dir: &std::path::Path) -> Vec<String> {
    let client = format!("http://{ip}:{}", layout::ETCD_PORT);
    // Peers never come: the one member listens for them on the hub's loopback only.
    let peer = "http://127.0.0.1:2380".to_string();
    vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        dir.join("etcd").to_string_lossy().into_owned(),
        "--listen-client-urls".into(),
        format!("{client},http://127.0.0.1:{}", layout::ETCD_PORT),
        "--advertise-client-urls".into(),
        client,
        "--listen-peer-urls".into(),
        peer.clone(),
        "--initial-advertise-peer-urls".into(),
        peer.clone(),
        "--initial-cluster".into(),
        format!("{name}={peer}"),
        "--listen-metrics-urls".into(),
        "http://127.0.0.1:2381".into(),
    ]
}

/// The hub's nftables table: etcd's client port open to the servers (and the hub itself)
/// alone.
pub fn datastore_filter(c: &layout::Cluster) -> String {
    let servers: Vec<String> = c.servers().map(|n| n.ip.to_string()).collect();
    format!(
        "table inet nanokube-hub\ndelete table inet nanokube-hub\ntable inet nanokube-hub {{\n  chain input {{\n    type filter hook input priority filter; policy accept;\n    tcp dport {} ip saddr != {{ 127.0.0.1, {} }} drop\n  }}\n}}\n",
        layout::ETCD_PORT,
        servers.join(", ")
    )
}

pub fn run(args: HubArgs) -> Result<i32, Error> {
    let c = layout::Cluster::load(&args.clusters_dir, &args.cluster)
        .map_err(|e| Error::io(format!("reading cluster {:?}", args.cluster), e))?;
    let dir = c.hub_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("hub directory", e))?;
    // The host's listener is made before leaving the host's network namespace.
    let host = TcpListener::bind(("127.0.0.1", args.api_port))
        .map_err(|e| Error::io(format!("listening on 127.0.0.1:{}", args.api_port), e))?;
    let port = host
        .local_addr()
        .map_err(|e| Error::io("api port", e))?
        .port();
    cgroups::create(&c.hub_cgroup()).map_err(|e| Error::io("hub cgroup", e))?;
    cgroups::enter(&c.hub_cgroup(), std::process::id()).map_err(|e| Error::io("hub cgroup", e))?;
    let netns = std::fs::File::open(
        std::path::Path::new(crate::network::netns::NAMED_DIR).join(c.hub_netns()),
    )
    .map_err(|e| Error::io("opening the hub's network namespace", e))?;
    setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| Error::sys("setns(net)", e))?;
    // etcd answers the servers only: pods reach the hub's address through their node (an
    // agent's pods come masqueraded as the agent), and the datastore has no authentication.
    crate::network::masquerade::nft(&datastore_filter(&c)).map_err(Error::Network)?;
    let targets = forward::Targets::new(
        c.servers()
            .map(|n| SocketAddr::from((n.ip, layout::API_PORT)))
            .collect(),
    );
    let inside = TcpListener::bind((c.hub_ip(), layout::API_PORT)).map_err(|e| {
        Error::io(
            format!("listening on {}:{}", c.hub_ip(), layout::API_PORT),
            e,
        )
    })?;
    for l in [host, inside] {
        let t = targets.clone();
        std::thread::spawn(move || forward::serve(l, t));
    }
    std::fs::write(dir.join("api-port"), port.to_string())
        .map_err(|e| Error::io("writing api-port", e))?;
    let log = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("etcd.log"))
            .map_err(|e| Error::io("etcd.log", e))
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let out = log()?;
        let status = Command::new(&args.etcd)
            .args(etcd_args(&c.name, c.hub_ip(), &dir))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| Error::io("etcd.log", e))?)
            .stderr(out)
            .status();
        match status {
            Ok(s) => eprintln!("hub: etcd ended: {s}"),
            Err(e) => eprintln!("hub: starting {}: {e}", args.etcd.display()),
        }
        backoff = if started.elapsed() >= Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            (backoff * 2).min(Duration::from_secs(30))
        };
        std::thread::sleep(backoff);
    }
}
