//! The node's image store (issue 3).

pub mod cli;
