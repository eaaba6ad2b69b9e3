//! nanokube: a small Kubernetes for bare Linux hosts. See docs/ for the design; each module below
//! owns one component and documents where it sits in the cluster.

// `unsafe` lives only where the kernel is met directly: the runtime and the image unpacker allow
// it for themselves, every other module is refused it (tests/architecture.rs keeps the list).
#![deny(unsafe_code)]

pub mod agent;
pub mod apiserver;
pub mod cli;
pub mod cluster;
pub mod controllers;
pub mod image;
pub mod network;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod shim;
pub mod store;
