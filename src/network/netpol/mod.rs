//! NetworkPolicy enforcement on a node (synchronous; knows nothing of API types). The agent
//! (src/agent/netpol.rs) translates policies, pods and namespaces into a [`Model`]: which local
//! pod addresses each policy isolates, and every rule with its peers already resolved to
//! addresses and its named ports already resolved per pod. [`nft::full`] renders it as the
//! `ip nanokube-netpol` table, replaced whole in one `nft -f -` transaction per change.

pub mod model;
pub mod nft;

pub use model::{Model, Peer, Policy, Port, Rule};

/// Errors of policy enforcement.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] crate::network::Error),
}

/// Makes the table hold exactly `model` (one atomic transaction).
pub fn sync(model: &Model) -> Result<usize, Error> {
    let text = nft::full(model);
    crate::network::masquerade::nft(&text)?;
    Ok(text.len())
}

/// Removes the table (nothing if it is not there).
pub fn remove() -> Result<(), Error> {
    Ok(crate::network::masquerade::nft(&nft::remove_text())?)
}
