//! The service proxy's kernel side (synchronous; knows nothing of API types): a [`Model`] of
//! service ports and their endpoints goes into the `ip nanokube-proxy` nftables table. The first
//! sync replaces the table whole in one transaction; every later one sends only the difference
//! from what was last applied. UDP conntrack entries towards removed endpoints are deleted
//! afterwards through ctnetlink. The async side, watching Services and EndpointSlices, is
//! src/agent/proxy.rs; docs/services.md walks a packet through the table.

pub mod conntrack;
pub mod iptables;
pub mod model;
pub mod nft;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub use model::{Endpoint, Model, Params, Protocol, ServicePort};

/// Errors of the proxy's sync layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("ctnetlink: {0}")]
    Errno(nix::errno::Errno),
    #[error("ctnetlink: {0}")]
    Conntrack(String),
    #[error("{0}")]
    Iptables(String),
}

/// Which kernel interface programs the services (kube-proxy's --proxy-mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// One nftables table with verdict maps; changes sent as deltas.
    #[default]
    Nftables,
    /// iptables-restore, chains rewritten whole each sync, for hosts without nftables.
    Iptables,
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// The table was replaced whole (first sync, changed parameters, or a failed delta).
    pub full: bool,
    /// Size of the nft transaction in bytes (0: nothing changed).
    pub bytes: usize,
    /// UDP conntrack entries deleted.
    pub flushed: usize,
}

/// The table as this process last wrote it.
#[derive(Debug, Default)]
pub struct Proxy {
    backend: Backend,
    applied: Option<(Params, Model)>,
    /// The nft table's shared maps and sets as the applied model claims them.
    shared: nft::Shared,
}

impl Proxy {
    pub fn new() -> Proxy {
        Proxy::default()
    }

    pub fn with_backend(backend: Backend) -> Proxy {
        Proxy {
            backend,
            applied: None,
            shared: nft::Shared::default(),
        }
    }

    /// Makes the table hold exactly `model`.
    pub fn sync(&mut self, params: Params, model: Model) -> Result<Synced, Error> {
        let mut done = Synced::default();
        let previous = self.applied.take();
        if previous.is_none() {
            // A cold start: whatever the other backend left (an earlier run with the other
            // --proxy-mode) would translate packets before ours does.
            let _ = match self.backend {
                Backend::Nftables => iptables::remove(),
                Backend::Iptables => remove(),
            };
        }
        if self.backend == Backend::Iptables {
            if previous.as_ref() != Some(&(params, model.clone())) {
                done.bytes = iptables::sync(&params, &model)?;
                done.full = true;
            }
            self.flush_stale(previous.as_ref().map(|(_, m)| m), &model, &mut done);
            self.applied = Some((params, model));
            return Ok(done);
        }
        let delta = match &previous {
            Some((p, m)) if *p == params => Some(nft::delta(&params, m, &model, &mut self.shared)),
            _ => None,
        };
        match delta {
            Some(text) if text.is_empty() => {}
            Some(text) => {
                done.bytes = text.len();
                if let Err(e) = crate::network::masquerade::nft(&text) {
                    // The kernel's table is not what we think (someone edited it): start over.
                    tracing::warn!(error = %e, "nft delta refused; replacing the table");
                    done.bytes = self.replace(&params, &model)?;
                    done.full = true;
                }
            }
            None => {
                done.bytes = self.replace(&params, &model)?;
                done.full = true;
            }
        }
        self.flush_stale(previous.as_ref().map(|(_, m)| m), &model, &mut done);
        self.applied = Some((params, model));
        Ok(done)
    }

    /// Writes the whole table for `model`; the size of the transaction.
    fn replace(&mut self, params: &Params, model: &Model) -> Result<usize, Error> {
        self.shared = nft::Shared::of(model);
        let text = nft::full_with(params, model, &self.shared);
        crate::network::masquerade::nft(&text)?;
        Ok(text.len())
    }

    fn flush_stale(&self, old: Option<&Model>, model: &Model, done: &mut Synced) {
        if let Some(old) = old {
            let stale = stale_udp(old, model);
            if !stale.is_empty() {
                // The table is right either way; a failure here only leaves old flows alive
                // until their timeout.
                match conntrack::delete_where(|f| stale.iter().any(|s| s.matches(f))) {
                    Ok(n) => done.flushed = n,
                    Err(e) => tracing::warn!(error = %e, "flushing UDP conntrack entries"),
                }
            }
        }
    }
}

/// A UDP endpoint that left a service port: flows the port's addresses DNATed to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Stale {
    addresses: Vec<Ipv4Addr>,
    port: u16,
    node_port: Option<u16>,
    endpoint: Ipv4Addr,
    endpoint_port: u16,
}

impl Stale {
    fn matches(&self, f: &conntrack::Flow) -> bool {
        let to_service =
            f.orig.dst.is_some_and(|d| self.addresses.contains(&d)) && f.orig.dport == self.port;
        let to_node_port = self.node_port.is_some_and(|np| f.orig.dport == np);
        f.orig.proto == conntrack::IPPROTO_UDP
            && f.reply.src == Some(self.endpoint)
            && f.reply.sport == self.endpoint_port
            && (to_service || to_node_port)
    }
}

fn stale_udp(old: &Model, new: &Model) -> BTreeSet<Stale> {
    let mut out = BTreeSet::new();
    for (key, p) in &old.services {
        if p.protocol != Protocol::Udp {
            continue;
        }
        let kept: BTreeSet<(Ipv4Addr, u16)> = new
            .services
            .get(key)
            .map(|n| n.usable(false).iter().map(|e| (e.ip, e.port)).collect())
            .unwrap_or_default();
        for e in p.usable(false) {
            if !kept.contains(&(e.ip, e.port)) {
                let mut addresses = vec![p.cluster_ip];
                addresses.extend(&p.external_ips);
                out.insert(Stale {
                    addresses,
                    port: p.port,
                    node_port: p.node_port,
                    endpoint: e.ip,
                    endpoint_port: e.port,
                });
            }
        }
    }
    out
}

/// Removes the table (nothing if it is not there).
pub fn remove() -> Result<(), Error> {
    Ok(crate::network::masquerade::nft(&nft::remove_text())?)
}

/// Removes the iptables backend's chains (nothing if there are none).
pub fn remove_iptables() -> Result<(), Error> {
    iptables::remove()
}
