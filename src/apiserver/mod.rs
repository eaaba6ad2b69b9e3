//! The Kubernetes REST API over the store (issue 4).
