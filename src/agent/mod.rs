//! The node agent: the kubelet, the node-local cluster DNS (and, with the services issue, the
//! proxy). `nanokube agent`
//! joins a server; `nanokube server` runs one for its own node unless `--disable-agent`. The
//! flags follow k3s so scripts written for it keep working.

pub mod dns;
pub mod join;
pub mod kubelet;
pub mod netpol;
pub mod proxy;
pub mod proxy_health;

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Node name; defaults to the hostname.
    #[arg(long)]
    pub node_name: Option<String>,
    /// IP address to advertise for the node (default: the address of the default route's
    /// interface, else 127.0.0.1).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Labels to add at registration, key=value (repeatable).
    #[arg(long = "node-label")]
    pub node_labels: Vec<String>,
    /// Taints to register with, key=value:Effect (repeatable).
    #[arg(long = "node-taint")]
    pub node_taints: Vec<String>,
    /// Most pods the node runs.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The cluster DNS server written into pods' resolv.conf.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: String,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Let the node's DNS server forward names outside the cluster to the resolvers of the
    /// host's /etc/resolv.conf (off: they are refused).
    #[arg(long)]
    pub cluster_dns_forward: bool,
    /// Do not serve cluster DNS on this node (--cluster-dns then names a DNS server of your own).
    #[arg(long)]
    pub disable_cluster_dns: bool,
    /// Where container logs go, as /var/log/pods on a kubelet.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_logs_dir: PathBuf,
    /// The container runtime's state directory.
    #[arg(long, default_value = "/run/nanokube/runtime")]
    pub runtime_root: PathBuf,
    /// The bridge that pods attach to (cni0, as with k3s's flannel).
    #[arg(long, default_value = "cni0")]
    pub bridge_name: String,
    /// Rotate a container's log at this size in bytes (the kubelet's containerLogMaxSize).
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    pub container_log_max_size: u64,
    /// Log files kept per container (containerLogMaxFiles).
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: usize,
    /// The cluster's pod range (the server gives each node a /24 of it); traffic from pods to
    /// outside it leaves with the node's address.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,
    /// The kubelet's HTTPS port (logs, exec, port-forward for the API server).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// How the service proxy programs the kernel (kube-proxy's --proxy-mode).
    #[arg(long, value_enum, default_value = "nftables")]
    pub proxy_mode: crate::network::proxy::Backend,
    /// Image GC starts when the image filesystem is this full (percent; 100 turns it off), as
    /// the kubelet's imageGCHighThresholdPercent.
    #[arg(long, default_value_t = 85, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_high_threshold: u8,
    /// ... and removes unused images, least recently used first, until it is this full.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub image_gc_low_threshold: u8,
    /// An image used or imported more recently than this is never removed by image GC (the
    /// kubelet's imageMinimumGCAge).
    #[arg(long, default_value = "2m", value_parser = crate::server::go_duration)]
    pub minimum_image_ttl_duration: std::time::Duration,
    /// How often image GC looks (the kubelet's is 5 minutes; tests shorten it).
    #[arg(long, default_value = "5m", value_parser = crate::server::go_duration, hide = true)]
    pub image_gc_period: std::time::Duration,
    /// Node-pressure eviction's hard thresholds (signal<quantity or signal<percent%, comma
    /// separated; empty turns eviction off), as the kubelet's --eviction-hard.
    #[arg(long, default_value = kubelet::eviction::DEFAULT_HARD)]
    pub eviction_hard: String,
    /// Soft thresholds, as the kubelet's --eviction-soft: crossed for their grace period
    /// (--eviction-soft-grace-period), they evict gracefully. None by default.
    #[arg(long, default_value = "")]
    pub eviction_soft: String,
    /// How long each soft threshold must hold before it evicts (signal=duration, comma
    /// separated, e.g. memory.available=1m30s).
    #[arg(long, default_value = "")]
    pub eviction_soft_grace_period: String,
    /// The longest grace period a pod evicted by a soft threshold gets (seconds; its own
    /// terminationGracePeriodSeconds when shorter; 0: its own).
    #[arg(long, default_value_t = 0)]
    pub eviction_max_pod_grace_period: i64,
    /// How often the thresholds are checked (the kubelet's is 10 s; tests shorten it).
    #[arg(long, default_value = "10s", value_parser = crate::server::go_duration, hide = true)]
    pub eviction_monitoring_interval: std::time::Duration,
    /// Network pods through the CNI plugins of this config directory (the first
    /// .conflist/.conf/.json in name order) instead of the built-in bridge; the plugins then
    /// also connect nodes, and --flannel-backend is not used.
    #[arg(long)]
    pub cni_conf_dir: Option<PathBuf>,
    /// Where the CNI plugins are (comma-separated directories).
    #[arg(long, value_delimiter = ',', default_value = "/opt/cni/bin")]
    pub cni_bin_dir: Vec<PathBuf>,
    /// How pods reach other nodes' pods (k3s's flag; every node of a cluster must agree).
    #[arg(long, value_enum, default_value = "host-gw")]
    pub flannel_backend: crate::network::routes::Backend,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "NANOKUBE_URL")]
    pub server: Option<String>,
    /// Shared secret used to join the cluster.
    #[arg(long, env = "NANOKUBE_TOKEN")]
    pub token: Option<String>,
    /// A kubeconfig with the node's credentials (instead of --server/--token).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Directory holding all of the agent's state.
    #[arg(long, default_value = "/var/lib/nanokube")]
    pub data_dir: PathBuf,
    /// The cluster's Service range (the server's --service-cidr).
    #[arg(long, default_value = "10.43.0.0/16")]
    pub service_cidr: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid --node-label {0:?}: want key=value")]
    Label(String),
    #[error("{0}")]
    Taint(String),
    #[error("invalid --cluster-cidr {0:?}")]
    Cidr(String),
    #[error("invalid --service-cidr {0:?}")]
    ServiceCidr(String),
    #[error("the agent needs --kubeconfig, or --server with --token")]
    NoServer,
    #[error("invalid --cluster-dns {0:?}: want an IPv4 address")]
    ClusterDns(String),
    #[error("{0}")]
    Eviction(String),
    #[error("--image-gc-low-threshold {low} must not exceed --image-gc-high-threshold {high}")]
    ImageGc { low: u8, high: u8 },
}

/// The node's name: the flag, else the hostname (lowercased, as the kubelet does).
pub fn node_name(args: &NodeArgs) -> String {
    args.node_name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_lowercase())
            .unwrap_or_else(|_| "localhost".into())
    })
}

/// The address of the interface holding the default route, if any (from /proc/net/route).
fn default_ip() -> Option<String> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let ifname = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_string())
    })?;
    let mut nl = crate::network::netlink::Netlink::open().ok()?;
    let link = nl.link(&ifname).ok()??;
    nl.addresses(link.index)
        .ok()?
        .first()
        .map(|(ip, _)| ip.to_string())
}

/// The kubelet's configuration from the node flags.
pub fn kubelet_config(
    data_dir: &std::path::Path,
    args: &NodeArgs,
) -> Result<kubelet::Config, Error> {
    let mut labels = std::collections::BTreeMap::new();
    for l in &args.node_labels {
        let (k, v) = l.split_once('=').ok_or_else(|| Error::Label(l.clone()))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let taints = args
        .node_taints
        .iter()
        .map(|t| kubelet::node::parse_taint(t).map_err(Error::Taint))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(kubelet::Config {
        node_name: node_name(args),
        node_ip: args
            .node_ip
            .clone()
            .or_else(default_ip)
            .unwrap_or_else(|| "127.0.0.1".into()),
        data_dir: data_dir.to_path_buf(),
        max_pods: args.max_pods,
        labels,
        taints,
        cluster_dns: args.cluster_dns.clone(),
        cluster_domain: args.cluster_domain.clone(),
        pod_logs_dir: args.pod_logs_dir.clone(),
        runtime_root: args.runtime_root.clone(),
        bridge_name: args.bridge_name.clone(),
        log_max_size: args.container_log_max_size,
        log_max_files: args.container_log_max_files,
        serving: None,
        kubelet_port: args.kubelet_port,
        cluster_cidr: args
            .cluster_cidr
            .parse()
            .map_err(|_| Error::Cidr(args.cluster_cidr.clone()))?,
        service_cidr: "10.43.0.0/16".parse().expect("a valid CIDR"),
        proxy_mode: args.proxy_mode,
        flannel_backend: args.flannel_backend,
        image_gc: {
            let (high, low) = (args.image_gc_high_threshold, args.image_gc_low_threshold);
            if low > high {
                return Err(Error::ImageGc { low, high });
            }
            kubelet::ImageGc {
                high,
                low,
                period: args.image_gc_period,
                min_age: args.minimum_image_ttl_duration,
            }
        },
        eviction_hard: kubelet::eviction::parse(&args.eviction_hard).map_err(Error::Eviction)?,
        eviction_soft: kubelet::eviction::parse_soft(
            &args.eviction_soft,
            &args.eviction_soft_grace_period,
        )
        .map_err(Error::Eviction)?,
        eviction_max_pod_grace: args.eviction_max_pod_grace_period.max(0) as u64,
        eviction_interval: args.eviction_monitoring_interval,
        pressure: Default::default(),
        cni: args
            .cni_conf_dir
            .clone()
            .map(|dir| (dir, args.cni_bin_dir.clone())),
    })
}

/// The node's DNS server's configuration from the node flags (None: not served here).
pub fn dns_config(args: &NodeArgs) -> Result<Option<dns::Config>, Error> {
    if args.disable_cluster_dns {
        return Ok(None);
    }
    Ok(Some(dns::Config {
        address: args
            .cluster_dns
            .parse()
            .map_err(|_| Error::ClusterDns(args.cluster_dns.clone()))?,
        domain: args.cluster_domain.clone(),
        forward: args.cluster_dns_forward,
    }))
}

/// Runs what an agent runs on its node: the kubelet and, beside it, the node's DNS server (a
/// DNS failure is logged; the pods keep running).
pub async fn run_node(
    kubelet: kubelet::Config,
    dns: Option<dns::Config>,
    client: kube::Client,
) -> anyhow::Result<()> {
    if let Some(dns) = dns {
        let c = client.clone();
        tokio::spawn(async move {
            if let Err(e) = dns::run(dns, c).await {
                tracing::error!(error = %e, "cluster DNS stopped: pods on this node cannot resolve names");
            }
        });
    }
    kubelet::run(kubelet, client).await
}

/// A kube client from kubeconfig text.
pub async fn client_from_kubeconfig(yaml: &str) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

pub fn run(args: AgentArgs) -> anyhow::Result<i32> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mut cfg = kubelet_config(&args.data_dir, &args.node)?;
    cfg.service_cidr = args
        .service_cidr
        .parse()
        .map_err(|_| Error::ServiceCidr(args.service_cidr.clone()))?;
    let dns = dns_config(&args.node)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("nanokube-agent")
        .build()?;
    rt.block_on(async move {
        let (node_name, node_ip) = (cfg.node_name.clone(), cfg.node_ip.clone());
        let (kubeconfig, renew_at) = match (&args.kubeconfig, &args.server, &args.token) {
            (Some(k), _, _) => (std::fs::read_to_string(k)?, None),
            (None, Some(server), Some(token)) => {
                let c = join::credentials(server, token, &node_name, &node_ip, &args.data_dir).await?;
                cfg.serving = Some(crate::apiserver::tls::mutual_server_config(&c.ca, &c.serving_cert, &c.serving_key)?);
                let kc = crate::apiserver::identity::kubeconfig(server, &c.ca, &c.client_cert, &c.client_key);
                (kc, join::renewal_due(&c))
            }
            _ => return Err(Error::NoServer.into()),
        };
        let client = client_from_kubeconfig(&kubeconfig).await?;
        let kubelet = tokio::spawn(run_node(cfg, dns, client));
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let renewal = async {
            let (Some(at), Some(server), Some(token)) = (renew_at, &args.server, &args.token) else {
                return std::future::pending().await;
            };
            // Never at once: credentials just issued that are already due would otherwise
            // be renewed in a loop.
            let wait = at
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
                .max(std::time::Duration::from_secs(10));
            tokio::time::sleep(wait).await;
            // A server that cannot sign now is asked again in a minute, the old
            // certificates serving meanwhile.
            loop {
                match join::credentials(server, token, &node_name, &node_ip, &args.data_dir).await {
                    Ok(_) => return,
                    Err(e) => tracing::warn!(error = %e, "renewing the node's certificates"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            }
        };
        tokio::select! {
            r = kubelet => r??,
            _ = term.recv() => tracing::info!("SIGTERM: stopping the agent (pods keep running)"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping the agent (pods keep running)"),
            _ = renewal => {
                // Every client and the kubelet's port hold the old certificates: the agent
                // starts again on the new ones, as the same process (pods keep running).
                tracing::info!("node certificates renewed: starting again with them");
                use std::os::unix::process::CommandExt;
                let e = std::process::Command::new("/proc/self/exe")
                    .args(std::env::args_os().skip(1))
                    .exec();
                return Err(anyhow::anyhow!("starting again after the renewal: {e}"));
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

#[derive(Debug, Args)]
pub struct KillallArgs {
    /// The agent's data directory.
    #[arg(long, default_value = "/var/lib/nanokube")]
    pub data_dir: PathBuf,
    /// The pods' bridge, removed last.
    #[arg(long, default_value = "cni0")]
    pub bridge_name: String,
}

/// `nanokube killall` (k3s-killall.sh): stops every pod of this node and removes their
/// containers, network, mounts and cgroups, then the bridge and the address records. The
/// images and the cluster's data stay.
pub fn killall(args: KillallArgs) -> anyhow::Result<i32> {
    let pods = args.data_dir.join("agent/pods");
    let mut n = 0;
    for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        let uid = e.file_name().to_string_lossy().into_owned();
        kubelet::pods::teardown(&uid, &e.path(), None, &args.data_dir);
        n += 1;
    }
    // One more try for attachments whose DEL failed before; what still fails stays listed.
    let pending = kubelet::pods::cni_pending(&args.data_dir);
    let left = crate::network::cni::retry_pending(&pending);
    if left > 0 {
        eprintln!(
            "nanokube killall: CNI DEL still fails for {left} pod(s); their attachments are kept in {}",
            pending.display()
        );
    }
    let mut nl = crate::network::netlink::Netlink::open()?;
    if let Some(l) = nl.link(&args.bridge_name)? {
        nl.delete_link(l.index)?;
    }
    crate::network::local_dns::remove()?;
    let _ = std::fs::remove_dir_all(args.data_dir.join("agent/ipam"));
    let _ = crate::network::masquerade::remove();
    let _ = crate::network::hostports::remove();
    let _ = crate::network::proxy::remove();
    let _ = crate::network::netpol::remove();
    let _ = crate::network::proxy::remove_iptables();
    let _ = crate::network::vxlan::remove();
    eprintln!(
        "stopped {n} pods; removed bridge {}, the DNS address and the pod address records",
        args.bridge_name
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        node: NodeArgs,
    }

    fn node(args: &[&str]) -> NodeArgs {
        Flags::parse_from(std::iter::once("agent").chain(args.iter().copied())).node
    }

    #[test]
    fn dns_flags() {
        let dns = dns_config(&node(&[])).unwrap().unwrap();
        assert_eq!(dns.address.to_string(), "10.43.0.10");
        assert_eq!(dns.domain, "cluster.local");
        assert!(!dns.forward, "forwarding is off unless asked for");
        let dns = dns_config(&node(&[
            "--cluster-dns-forward",
            "--cluster-domain",
            "k.test",
        ]))
        .unwrap()
        .unwrap();
        assert!(dns.forward);
        assert_eq!(dns.domain, "k.test");
        assert!(dns_config(&node(&["--disable-cluster-dns"]))
            .unwrap()
            .is_none());
        assert_eq!(
            dns_config(&node(&["--cluster-dns", "fd00::a"]))
                .unwrap_err()
                .to_string(),
            r#"invalid --cluster-dns "fd00::a": want an IPv4 address"#
        );
    }
}
