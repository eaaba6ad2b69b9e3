//! The Kubernetes REST API over the store (issue 4).
//!
//! The object semantics below are pure functions over JSON, keyed by (group, kind), so the
//! request path (routing, store, watch) and the per-kind knowledge stay apart. Until they are
//! filled in they are neutral: no defaults, no errors, plain columns.

pub mod apply;
pub mod defaults;
pub mod kinds;
pub mod openapi;
pub mod strategic_merge;
pub mod table;
pub mod validation;

pub mod admission;
pub mod allocation;
pub mod audit;
pub mod auth;
pub mod authorization;
pub mod bootstrap;
pub mod connect;
pub mod conversion;
pub mod crd;
pub mod deletes;
pub mod discovery;
pub mod encoding;
pub mod eviction;
pub mod handler;
pub mod health;
pub mod http;
pub mod identity;
pub mod impersonation;
pub mod join;
pub mod kubernetes_service;
pub mod lifecycle;
pub mod metrics;
pub mod negotiate;
pub mod node_proxy;
pub mod overload;
pub mod pipeline;
pub mod protobuf;
pub mod reads;
pub mod registry;
pub mod request_info;
pub mod resources;
pub mod secrets_encrypt;
pub mod selectors;
pub mod service_account_token;
pub mod status;
pub mod table_output;
pub mod tls;
pub mod token_request;
pub mod watch;
