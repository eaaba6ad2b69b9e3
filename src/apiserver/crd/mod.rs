//! CustomResourceDefinitions (apiextensions.k8s.io/v1): kinds that users define while the server
//! runs.
//!
//! A CRD is an ordinary stored object (`definition`: its registry entry, validation and delete
//! hook). `controller` watches them: it accepts or refuses their names (`names`,
//! NamesAccepted), builds a registry entry per served version (`entries`, with a
//! `strategy::CustomResource`) and swaps them into the registry, then marks the CRD Established; on delete it removes every object of the resource,
//! stops serving it and lets the CRD go. Objects of a custom resource pass through the schema's
//! stages on every write: `prune` (unknown fields dropped), `default`, `validate` (422 with
//! field paths); on every read `default` again, as the stored object may predate a default.
//! `openapi` turns a version's schema into the definition that discovery's OpenAPI documents
//! publish, `jsonpath` evaluates printer columns. See docs/crds.md.

pub mod cel;
pub mod cel_libs;
pub mod controller;
pub mod default;
pub mod definition;
pub mod entries;
pub mod jsonpath;
pub mod names;
pub mod openapi;
pub mod prune;
pub mod schema;
pub mod strategy;
pub mod validate;

/// The group of the CustomResourceDefinition kind.
pub const GROUP: &str = "apiextensions.k8s.io";

/// Held by a CRD being deleted until its objects are gone.
pub const FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";
