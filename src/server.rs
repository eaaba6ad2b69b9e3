//! `nanokube server`: the control plane. Owned by the API server work (issue 4).

use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Directory holding all of the server's state.
    #[arg(long, default_value = "/var/lib/nanokube")]
    pub data_dir: PathBuf,
    /// Where to write the admin kubeconfig (mode 0600) at every start.
    #[arg(long, default_value = "/etc/nanokube/nanokube.yaml")]
    pub write_kubeconfig: PathBuf,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Shared secret for nodes joining the cluster.
    #[arg(long, env = "NANOKUBE_TOKEN")]
    pub token: Option<String>,
    /// Store: empty for the embedded SQLite database, or an etcd endpoint.
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// Run the control plane alone, without a local agent.
    #[arg(long)]
    pub disable_agent: bool,
}

pub fn run(_args: ServerArgs) -> anyhow::Result<i32> {
    anyhow::bail!("the server is not implemented yet")
}
