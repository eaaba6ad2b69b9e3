//! NetworkPolicy enforcement on a node (synchronous; knows nothing of API types). The agent
//! (src/agent/netpol.rs) translates policies, pods and namespaces into a [`Model`]: which local
//! pod addresses each policy isolates, and every rule with its peers already resolved to
//! addresses and its named ports already resolved per pod. [`nft::full`] renders it as the
//! `ip nanokube-netpol` table, replaced whole in one `nft -f -` transaction per change; with
//! `--proxy-mode iptables`, [`iptables`] renders it as `NKNP-` chains through one
//! `iptables-restore` transaction.

pub mod iptables;
pub mod model;
pub mod nft;

use crate::network::proxy::Backend;

pub use model::{Model, Peer, Policy, Port, Rule};

/// Errors of policy enforcement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] crate::network::Error),
}

/// Makes the backend's rules hold exactly `model` (one atomic transaction); on the first
/// sync of a run (`cold`), also removes what the other backend left.
pub fn sync(model: &Model, backend: Backend, cold: bool) -> Result<usize, Error> {
    match backend {
        Backend::Nftables => {
            if cold {
                let _ = iptables::remove();
            }
            let text = nft::full(model);
            crate::network::masquerade::nft(&text)?;
            Ok(text.len())
        }
        Backend::Iptables => {
            if cold {
                let _ = remove_nft();
            }
            iptables::sync(model)
        }
    }
}

fn remove_nft() -> Result<(), Error> {
    Ok(crate::network::masquerade::nft(&nft::remove_text())?)
}

/// Removes the table and the chains (nothing if they are not there).
pub fn remove() -> Result<(), Error> {
    let nft = remove_nft();
    // A host without iptables has no chains of ours either.
    if which("iptables-save") {
        iptables::remove()?;
    }
    nft
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
