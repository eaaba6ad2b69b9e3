//! Controllers that run inside the server process, each an API client with its own identity
//! (reconcilers over watches, as kube-rs shapes them). The scheduler and the workload
//! controllers join them with their issue. See docs/controllers.md.

pub mod deployment;
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
