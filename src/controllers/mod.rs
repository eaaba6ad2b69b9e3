//! Controllers that run inside the server process, each an API client with its own identity
//! (reconcilers over watches, as kube-rs shapes them). The scheduler and the workload
//! controllers join them with their issue.

pub mod nodeipam;
pub mod servicelb;
