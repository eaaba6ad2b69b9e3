//! Controllers that run inside the server process, each an API client with its own identity
//! (reconcilers over watches, as kube-rs shapes them). The scheduler and the workload
//! controllers join them with their issue. See docs/controllers.md.

pub mod deployment;

/// How often a workload controller looks at each object again with no change seen, as
/// upstream's informers resync: a lost watch event is healed by the next look.
pub const RESYNC: std::time::Duration = std::time::Duration::from_secs(30);

pub mod events;
pub mod nodeipam;
pub mod ownership;
pub mod replicaset;

/// Starts the workload controllers (ReplicaSet, ReplicationController, Deployment), each an
/// API client as `client`'s identity.
pub fn spawn_workloads(client: &kube::Client) {
    use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::ReplicationController};
    tokio::spawn(replicaset::run::<ReplicaSet>(client.clone()));
    tokio::spawn(replicaset::run::<ReplicationController>(client.clone()));
    tokio::spawn(deployment::run(client.clone()));
}
