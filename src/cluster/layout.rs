//! What a local cluster is made of, decided before anything is created: its nodes, their
//! addresses, and the names of its directories, network namespaces and cgroups. Kept in
//! `cluster.json` so that `delete`, `list` and `exec` find every piece again, even of a
//! cluster whose creation failed half-way.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::network::Cidr;

/// The API server's port inside a server node (the server's default).
pub const API_PORT: u16 = 6443;
/// etcd's client port in the hub of a cluster of several servers.
pub const ETCD_PORT: u16 = 2379;

/// Longest cluster name: node names (`<name>-server-0`) stay well inside a DNS label.
const MAX_NAME: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    /// As node names and `cluster create`'s summary spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub role: Role,
    pub ip: Ipv4Addr,
    /// The node's link in the hub's bridge (the hub side of its veth pair).
    pub port: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    /// The cluster's own directory (`<clusters-dir>/<name>`).
    pub dir: PathBuf,
    pub subnet: String,
    pub nodes: Vec<Node>,
    /// The kubeconfig file the cluster's context was merged into.
    pub kubeconfig: PathBuf,
    /// The nanokube binary the nodes run.
    pub exe: PathBuf,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid cluster name {0:?}: want lowercase letters, digits and '-', starting with a letter, at most {MAX_NAME} characters")]
    Name(String),
    #[error("--nodes {nodes} must be at least --servers {servers}, and --servers at least 1")]
    Count { nodes: usize, servers: usize },
    #[error("invalid --subnet {0:?}: want an IPv4 network such as 10.99.0.0/24")]
    Subnet(String),
    #[error("--subnet {subnet} has room for {room} nodes, not {nodes}")]
    SubnetFull {
        subnet: String,
        room: usize,
        nodes: usize,
    },
}

/// Checks a cluster name: it becomes part of node names, namespace and cgroup names.
pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Name(name.to_string()))
    }
}

impl Cluster {
    /// Plans `nodes` nodes, the first `servers` of them servers, named as k3d names them
    /// (`<name>-server-0`, `<name>-agent-0`) and numbered from .2 of `subnet` (.1 is left for a
    /// gateway the hub does not have).
    pub fn plan(
        name: &str,
        clusters_dir: &Path,
        nodes: usize,
        servers: usize,
        subnet: &str,
        kubeconfig: PathBuf,
        exe: PathBuf,
    ) -> Result<Cluster, Error> {
        check_name(name)?;
        if servers == 0 || nodes < servers {
            return Err(Error::Count { nodes, servers });
        }
        let cidr: Cidr = subnet
            .parse()
            .map_err(|_| Error::Subnet(subnet.to_string()))?;
        if cidr.prefix > 30 {
            return Err(Error::Subnet(subnet.to_string()));
        }
        let (first, last) = cidr.hosts();
        let room = (u32::from(last) - u32::from(first)) as usize;
        if nodes > room {
            return Err(Error::SubnetFull {
                subnet: cidr.to_string(),
                room,
                nodes,
            });
        }
        let nodes = (0..nodes)
            .map(|i| {
                let (role, n) = if i < servers {
                    (Role::Server, i)
                } else {
                    (Role::Agent, i - servers)
                };
                Node {
                    name: format!("{name}-{}-{n}", role.name()),
                    role,
                    ip: Ipv4Addr::from(u32::from(first) + 1 + i as u32),
                    port: format!("n{i}"),
                }
            })
            .collect();
        Ok(Cluster {
            name: name.to_string(),
            dir: clusters_dir.join(name),
            subnet: cidr.to_string(),
            nodes,
            kubeconfig,
            exe,
        })
    }

    pub fn prefix(&self) -> u8 {
        self.subnet.parse::<Cidr>().map(|c| c.prefix).unwrap_or(24)
    }

    /// The network namespace holding the bridge every node is cabled to.
    pub fn hub_netns(&self) -> String {
        format!("nkc-{}", self.name)
    }

    /// A node's network namespace. The dot cannot be in a cluster name, so no node's namespace
    /// is another cluster's hub (`a-1`'s hub against node 1 of `a`).
    pub fn node_netns(&self, node: &Node) -> String {
        format!("nkc-{}.{}", self.name, node_index(node))
    }

    /// The cgroup (relative to each hierarchy's root) every process of the cluster lives in.
    pub fn cgroup(&self) -> PathBuf {
        Path::new("nanokube-clusters").join(&self.name)
    }

    /// A node's cgroup: the root of its cgroup namespace.
    pub fn node_cgroup(&self, node: &Node) -> PathBuf {
        self.cgroup().join(&node.name)
    }

    pub fn node_dir(&self, node: &Node) -> PathBuf {
        self.dir.join(&node.name)
    }

    /// The cluster's admin kubeconfig, pointing at the host's forwarded API port.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// The context (and cluster and user) name in the user's kubeconfig, as kind's `kind-<name>`.
    pub fn context(&self) -> String {
        format!("nanokube-{}", self.name)
    }

    /// Several servers: they share an etcd datastore in the hub, and the hub balances the
    /// API port over them.
    pub fn is_ha(&self) -> bool {
        self.servers().count() > 1
    }

    /// The hub's own address on the nodes' network (the subnet's first host; nodes start at
    /// the second): where a cluster of several servers keeps its datastore and balancer.
    pub fn hub_ip(&self) -> Ipv4Addr {
        self.subnet
            .parse::<Cidr>()
            .map_or(Ipv4Addr::new(10, 99, 0, 1), |c| c.hosts().0)
    }

    /// The hub's directory (etcd's data, its log).
    pub fn hub_dir(&self) -> PathBuf {
        self.dir.join("hub")
    }

    pub fn hub_cgroup(&self) -> PathBuf {
        self.cgroup().join("hub")
    }

    /// Where the host's API port is written: by the hub with several servers, else by the
    /// server's boot process.
    pub fn api_port_file(&self) -> PathBuf {
        if self.is_ha() {
            self.hub_dir().join("api-port")
        } else {
            self.node_dir(&self.nodes[0]).join("api-port")
        }
    }

    /// The address agents join at: the hub's balancer with several servers, else the server.
    pub fn join_address(&self) -> Ipv4Addr {
        if self.is_ha() {
            self.hub_ip()
        } else {
            self.nodes[0].ip
        }
    }

    pub fn servers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.role == Role::Server)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The command line (after the binary) a node's init runs and restarts: `server` on the
    /// servers, `agent` joined to the first server on the others; the join token comes through
    /// the environment.
    pub fn node_command(&self, node: &Node, extra: &[String]) -> Vec<String> {
        let dir = self.node_dir(node);
        let path = |p: &str| dir.join(p).to_string_lossy().into_owned();
        let mut args: Vec<String> = match node.role {
            Role::Server => vec![
                "server".into(),
                "--write-kubeconfig".into(),
                path("kubeconfig.yaml"),
            ],
            Role::Agent => vec![
                "agent".into(),
                "--server".into(),
                format!("https://{}:{API_PORT}", self.join_address()),
            ],
        };
        if node.role == Role::Server && self.is_ha() {
            let hub = self.hub_ip();
            args.extend([
                "--datastore-endpoint".into(),
                format!("http://{hub}:{ETCD_PORT}"),
                "--tls-san".into(),
                hub.to_string(),
            ]);
        }
        args.extend([
            "--data-dir".into(),
            path("data"),
            "--node-name".into(),
            node.name.clone(),
            "--node-ip".into(),
            node.ip.to_string(),
            "--pod-logs-dir".into(),
            path("pod-logs"),
            "--runtime-root".into(),
            path("run"),
        ]);
        args.extend(extra.iter().cloned());
        args
    }

    pub fn save(&self) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(self.dir.join("cluster.json"), json)
    }

    pub fn load(clusters_dir: &Path, name: &str) -> std::io::Result<Cluster> {
        let text = std::fs::read(clusters_dir.join(name).join("cluster.json"))?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }

    /// Every cluster recorded under `clusters_dir`, by name.
    pub fn all(clusters_dir: &Path) -> Vec<Cluster> {
        let mut out: Vec<Cluster> = std::fs::read_dir(clusters_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Cluster::load(clusters_dir, &e.file_name().to_string_lossy()).ok())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

/// The node's position, from its hub port name (`n3` -> 3): short, so that namespace names
/// stay readable in `ip netns list`.
fn node_index(node: &Node) -> &str {
    node.port.trim_start_matches('n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(nodes: usize, servers: usize, subnet: &str) -> Result<Cluster, Error> {
        Cluster::plan(
            "demo",
            Path::new("/c"),
            nodes,
            servers,
            subnet,
            "/k".into(),
            "/nk".into(),
        )
    }

    #[test]
    fn names_and_addresses() {
        let c = plan(3, 1, "10.99.0.0/24").unwrap();
        let names: Vec<_> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["demo-server-0", "demo-agent-0", "demo-agent-1"]);
        let ips: Vec<_> = c.nodes.iter().map(|n| n.ip.to_string()).collect();
        assert_eq!(ips, ["10.99.0.2", "10.99.0.3", "10.99.0.4"]);
        assert_eq!(c.node_netns(&c.nodes[2]), "nkc-demo.2");
        assert_eq!(c.hub_netns(), "nkc-demo");
        assert_eq!(
            c.node_cgroup(&c.nodes[1]),
            Path::new("nanokube-clusters/demo/demo-agent-0")
        );
        assert_eq!(c.dir, Path::new("/c/demo"));
        assert_eq!(c.context(), "nanokube-demo");
        assert_eq!(c.prefix(), 24);
    }

    #[test]
    fn agents_join_the_first_server() {
        let c = plan(2, 1, "10.99.0.0/24").unwrap();
        let server = c.node_command(&c.nodes[0], &[]);
        assert_eq!(server[0], "server");
        assert!(server.contains(&"/c/demo/demo-server-0/data".to_string()));
        let agent = c.node_command(&c.nodes[1], &["--node-label".into(), "a=b".into()]);
        assert_eq!(agent[..3], ["agent", "--server", "https://10.99.0.2:6443"]);
        assert_eq!(agent[agent.len() - 2..], ["--node-label", "a=b"]);
    }

    #[test]
    fn several_servers_share_the_hubs_datastore_and_balancer() {
        let c = plan(4, 3, "10.99.0.0/24").unwrap();
        assert!(c.is_ha());
        assert_eq!(c.hub_ip().to_string(), "10.99.0.1");
        let names: Vec<_> = c.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "demo-server-0",
                "demo-server-1",
                "demo-server-2",
                "demo-agent-0"
            ]
        );
        let server = c.node_command(&c.nodes[2], &[]);
        let at = server
            .iter()
            .position(|a| a == "--datastore-endpoint")
            .unwrap();
        assert_eq!(server[at + 1], "http://10.99.0.1:2379");
        assert!(server.windows(2).any(|w| w == ["--tls-san", "10.99.0.1"]));
        let agent = c.node_command(&c.nodes[3], &[]);
        assert_eq!(agent[..3], ["agent", "--server", "https://10.99.0.1:6443"]);
        assert_eq!(c.api_port_file(), Path::new("/c/demo/hub/api-port"));
        // One server keeps its own store and its own port file.
        let one = plan(2, 1, "10.99.0.0/24").unwrap();
        assert!(!one
            .node_command(&one.nodes[0], &[])
            .contains(&"--datastore-endpoint".to_string()));
        assert_eq!(
            one.api_port_file(),
            Path::new("/c/demo/demo-server-0/api-port")
        );
    }

    #[test]
    fn bad_plans_say_why() {
        for bad in ["", "Demo", "9lives", "a_b", "demo-", &"x".repeat(33)] {
            assert_eq!(check_name(bad), Err(Error::Name(bad.to_string())));
        }
        check_name("k-3").unwrap();
        assert_eq!(
            plan(0, 1, "10.99.0.0/24"),
            Err(Error::Count {
                nodes: 0,
                servers: 1
            })
        );
        assert_eq!(
            plan(1, 0, "10.99.0.0/24"),
            Err(Error::Count {
                nodes: 1,
                servers: 0
            })
        );
        assert_eq!(
            plan(1, 1, "10.99.0/24"),
            Err(Error::Subnet("10.99.0/24".into()))
        );
        assert_eq!(
            plan(5, 1, "10.99.0.0/29").unwrap().nodes[4].ip.to_string(),
            "10.99.0.6"
        );
        assert_eq!(
            plan(6, 1, "10.99.0.0/29"),
            Err(Error::SubnetFull {
                subnet: "10.99.0.0/29".into(),
                room: 5,
                nodes: 6
            })
        );
    }
}
