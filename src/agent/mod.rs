//! The node agent: kubelet and service proxy. Not built yet; the flags follow k3s so scripts written
//! for it keep working once it lands.

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "NANOKUBE_URL")]
    pub server: Option<String>,
    /// Shared secret used to join the cluster.
    #[arg(long, env = "NANOKUBE_TOKEN")]
    pub token: Option<String>,
    /// Directory holding all of the agent's state.
    #[arg(long, default_value = "/var/lib/nanokube")]
    pub data_dir: PathBuf,
    /// Node name; defaults to the hostname.
    #[arg(long)]
    pub node_name: Option<String>,
    /// IP address to advertise for the node.
    #[arg(long)]
    pub node_ip: Option<String>,
}

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent (kubelet and proxy) is not implemented yet.
    #[error("the agent is not implemented yet")]
    NotImplemented,
}

pub fn run(_args: AgentArgs) -> anyhow::Result<i32> {
    Err(Error::NotImplemented.into())
}
