//! nanokube: a small Kubernetes for bare Linux hosts. See docs/ for the design; each module below
//! owns one component and documents where it sits in the cluster.

pub mod agent;
pub mod apiserver;
pub mod cli;
pub mod image;
pub mod runtime;
pub mod server;
pub mod store;
