//! Cluster DNS, served by every agent on its own node (as NodeLocal DNSCache does, but
//! authoritative itself): the `--cluster-dns` address is a local address of the node
//! ([`crate::network::local_dns`]) and this server answers UDP and TCP port 53 there, so a pod's
//! lookup never leaves its node. The names come from reflectors on Services, EndpointSlices and
//! Pods under the node's identity, rebuilt into one [`records::Index`] after every change.
//! docs/dns.md explains the choice and the names.

pub mod forward;
pub mod records;
pub mod serve;
pub mod wire;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The DNS port.
pub const PORT: u16 = 53;

/// A burst of changes (a Deployment scaled up) lands in one rebuild: the index is rebuilt at
/// most this often.
pub const REBUILD_EVERY: Duration = Duration::from_millis(20);

/// What the node's DNS server is told at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address pods' resolv.conf names (`--cluster-dns`).
    pub address: Ipv4Addr,
    /// The cluster's domain (`--cluster-domain`).
    pub domain: String,
    /// Whether names outside the cluster go to the node's upstream resolvers.
    pub forward: bool,
}

/// Errors of the node's DNS server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the DNS address {0}: {1}")]
    Address(Ipv4Addr, crate::network::Error),
    #[error("listening on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("the DNS link task: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Brings up the address, listens, and keeps the index fresh until the process ends.
pub async fn run(cfg: Config, client: kube::Client) -> Result<(), Error> {
    let ip = cfg.address;
    tokio::task::spawn_blocking(move || crate::network::local_dns::ensure(ip))
        .await?
        .map_err(|e| Error::Address(ip, e))?;
    let at = SocketAddr::from((cfg.address, PORT));
    let udp = tokio::net::UdpSocket::bind(at)
        .await
        .map_err(|e| Error::Bind(at, e))?;
    let tcp = tokio::net::TcpListener::bind(at)
        .await
        .map_err(|e| Error::Bind(at, e))?;
    let forwarder = cfg.forward.then(|| {
        let upstreams = forward::node_upstreams();
        if upstreams.is_empty() {
            tracing::warn!("DNS forwarding is on but resolv.conf names no upstream resolver");
        }
        forward::Forwarder::new(upstreams)
    });
    let index: serve::Shared = Arc::new(RwLock::new(None));
    let server = Arc::new(serve::Server {
        index: index.clone(),
        forwarder,
    });
    // Until the first listing the sockets answer SERVFAIL: the client retries, where a
    // premature NXDOMAIN would be cached as the truth.
    tokio::spawn(serve::udp(server.clone(), udp));
    tokio::spawn(serve::tcp(server, tcp));
    tracing::info!(%at, domain = %cfg.domain, forward = cfg.forward, "cluster DNS listening");
    keep_index(cfg, client, index).await;
    Ok(())
}

/// Only what the records need is kept of each pod: the node's copy of every pod in the cluster
/// would otherwise hold their whole specs.
fn slim_pod(p: &mut Pod) {
    p.metadata.managed_fields = None;
    p.metadata.annotations = None;
    p.metadata.labels = None;
    p.metadata.owner_references = None;
    p.spec = None;
    p.status = p.status.take().map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        pod_ips: s.pod_ips,
        ..Default::default()
    });
}

/// Reflects `api` into a store and signals `changed` after every event.
fn reflect<K>(
    api: Api<K>,
    wc: watcher::Config,
    modify: impl FnMut(&mut K) + Send + 'static,
    changed: Arc<tokio::sync::Notify>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let kind = K::kind(&()).into_owned();
    let stream = watcher(api, wc)
        .default_backoff()
        .modify(modify)
        .reflect(writer);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(_) => changed.notify_one(),
                Err(e) => tracing::warn!(error = %e, kind = %kind, "DNS watch"),
            }
        }
    });
    store
}

async fn keep_index(cfg: Config, client: kube::Client, index: serve::Shared) {
    let changed = Arc::new(tokio::sync::Notify::new());
    let services = reflect(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        |s: &mut Service| s.metadata.managed_fields = None,
        changed.clone(),
    );
    let slices = reflect(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(records::SERVICE_NAME_LABEL),
        |s: &mut EndpointSlice| s.metadata.managed_fields = None,
        changed.clone(),
    );
    let pods = reflect(
        Api::<Pod>::all(client),
        watcher::Config::default(),
        slim_pod,
        changed.clone(),
    );
    let ready = futures::future::try_join3(
        services.wait_until_ready(),
        slices.wait_until_ready(),
        pods.wait_until_ready(),
    );
    if ready.await.is_err() {
        return;
    }
    loop {
        let (s, e, p) = (services.state(), slices.state(), pods.state());
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let built = records::Index::build(
            &cfg.domain,
            cfg.address,
            serial,
            &s.iter().map(Arc::as_ref).collect::<Vec<_>>(),
            &e.iter().map(Arc::as_ref).collect::<Vec<_>>(),
            &p.iter().map(Arc::as_ref).collect::<Vec<_>>(),
        );
        *index.write().expect("dns index lock") = Some(Arc::new(built));
        tracing::debug!(
            services = s.len(),
            slices = e.len(),
            pods = p.len(),
            "DNS index rebuilt"
        );
        changed.notified().await;
        tokio::time::sleep(REBUILD_EVERY).await;
    }
}
