//! The Kubernetes REST API over the store (issue 4).
//!
//! The object semantics below are pure functions over JSON, keyed by (group, kind), so the
//! request path (routing, store, watch) and the per-kind knowledge stay apart. Until they are
//! filled in they are neutral: no defaults, no errors, plain columns.

pub mod apply;
pub mod defaults;
pub mod openapi;
pub mod strategic_merge;
pub mod table;
pub mod validation;

pub mod registry;
pub mod status;
pub mod selectors;
pub mod encoding;
pub mod tls;
pub mod auth;
pub mod discovery;
