//! The top-level command line. Subcommand arguments are defined next to the code that uses them.

use clap::{Parser, Subcommand};

/// nanokube: a small, fast Kubernetes in one binary.
#[derive(Debug, Parser)]
#[command(name = "nanokube", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    // Server and Agent are boxed: their many flags would make every variant as large.
    /// Run the control plane (API server, store, scheduler, controllers) and, unless
    /// --disable-agent, an agent for this node.
    Server(Box<crate::server::ServerArgs>),
    /// Run a node agent (kubelet and proxy) that joins a server.
    Agent(Box<crate::agent::AgentArgs>),
    /// A runc-compatible OCI container runtime over nanokube's runtime code.
    #[command(disable_help_flag = true)]
    Runtime(RuntimeRaw),
    /// The per-pod monitor that is the parent of a pod's containers (started by the agent).
    #[command(hide = true)]
    Shim(crate::shim::ShimArgs),
    /// Stop every pod of this node and remove their network, mounts and cgroups.
    Killall(crate::agent::KillallArgs),
    /// Manage the node's image store: import, pull, list, remove.
    Image(crate::image::cli::ImageArgs),
    /// Local multi-node clusters on this host: create, delete, list, kubeconfig, exec.
    Cluster(crate::cluster::ClusterArgs),
    /// Secrets encryption at rest: status, rotate-keys (through the running server).
    SecretsEncrypt(crate::apiserver::secrets_encrypt::CliArgs),
}

/// `nanokube runtime`'s arguments, parsed by its own parser (src/runtime/args.rs).
#[derive(Debug, clap::Args)]
pub struct RuntimeRaw {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}
