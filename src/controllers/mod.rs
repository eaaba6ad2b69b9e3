//! Controllers that run inside the server process, each an API client with its own identity
//! (reconcilers over watches, as kube-rs shapes them). The scheduler and the workload
//! controllers join them with their issue. See docs/controllers.md.

pub mod certificates;
pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod garbagecollector;
pub mod job;
pub mod leader;
pub mod listed;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owned_pods;
pub mod ownership;
mod pod_endpoints;
pub mod replicaset;
pub mod resourcequota;
pub mod root_ca;
pub mod service_account;
pub mod servicelb;
pub mod statefulset;
pub mod ttl_after_finished;

/// How often a workload controller looks at each object again with no change seen, as
/// upstream's informers resync: a lost watch event is healed by the next look.
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

/// What the controller manager needs to know beyond its client.
#[derive(Clone)]
pub struct Settings {
    /// The garbage collector's and the namespace controller's own clients (upstream gives
    /// them service accounts; their roles are `system:controller:*`).
    pub garbage_collector: kube::Client,
    pub namespace_controller: kube::Client,
    pub cluster_cidr: crate::network::Cidr,
    pub node_lifecycle: nodelifecycle::Settings,
    /// The cluster CA certificate (PEM), published in every namespace.
    pub root_ca: String,
    /// The CA that signs approved certificate requests, and for how long.
    pub certificates: certificates::Settings,
}

/// Every controller of the controller manager, until the process ends or the future is
/// dropped (leadership lost): they run inside this one future, not as spawned tasks, so
/// stopping it stops them all.
pub async fn run(client: kube::Client, settings: Settings) {
    use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::ReplicationController};
    tokio::join!(
        replicaset::run::<ReplicaSet>(client.clone()),
        replicaset::run::<ReplicationController>(client.clone()),
        deployment::run(client.clone()),
        statefulset::run(client.clone()),
        nodeipam::run(client.clone(), settings.cluster_cidr),
        nodelifecycle::run(client.clone(), settings.node_lifecycle),
        disruption::run(client.clone()),
        job::run(client.clone()),
        ttl_after_finished::run(client.clone()),
        cronjob::run(client.clone()),
        daemonset::run(client.clone()),
        endpointslice::run(client.clone()),
        endpoints::run(client.clone()),
        resourcequota::run(client.clone()),
        service_account::run(client.clone()),
        root_ca::run(client.clone(), settings.root_ca.clone()),
        certificates::run(client.clone(), settings.certificates.clone()),
        clusterrole_aggregation::run(client.clone()),
        garbagecollector::run(settings.garbage_collector.clone()),
        namespace::run(settings.namespace_controller.clone()),
    );
}
