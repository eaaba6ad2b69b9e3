//! The request pipeline's pluggable stages, held by `Api`. Every request goes, in this order:
//! `request_info` (what it is) → `auth` (who asks) → `audit` (the event begins, if the policy
//! logs it) → `overload` (a slot) → `authorization`
//! (may they) → for connect subresources `connect` (handed off whole, body unread) → body read
//! with limits → decode → mutating admission → validation → validating admission → store
//! (`resources`, `deletes`; `admission`) → `audit` (the event ends). The handler calls the stages; what they do is chosen
//! here, so RBAC, a Node authorizer, webhooks and the node agent plug in without touching it.

use super::admission;
use super::audit;
use super::authorization::{self, Authorizer};
use super::connect::{self, Connector};
use std::sync::Arc;

#[derive(Clone)]
pub struct Pipeline {
    /// Asked about every authenticated request; RBAC and Node authorizers join its Union.
    pub authorizer: Arc<dyn Authorizer>,
    /// The admission plugins of every write (and delete and connect).
    pub admission: Arc<admission::Chain>,
    /// Serves exec, attach, port-forward, logs and proxies.
    pub connector: Arc<dyn Connector>,
    /// The audit log (--audit-log-path with --audit-policy-file), or none.
    pub audit: Option<Arc<audit::Log>>,
}

impl Default for Pipeline {
    /// Today's server: authenticated users may do anything, the standard admission plugins,
    /// no node agent.
    fn default() -> Self {
        Pipeline {
            authorizer: Arc::new(authorization::Union(vec![Arc::new(
                authorization::AlwaysAllowAuthenticated,
            )])),
            admission: Arc::new(admission::Chain::standard()),
            connector: Arc::new(connect::NoNodeAgent),
            audit: None,
        }
    }
}
