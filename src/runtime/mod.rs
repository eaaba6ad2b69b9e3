//! The container runtime: an OCI runtime spec and a bundle in, a running container out.
//! Synchronous, owns its `unsafe`, and knows nothing of Kubernetes API types.

pub mod cgroups;
pub mod cli;
pub mod seccomp;
