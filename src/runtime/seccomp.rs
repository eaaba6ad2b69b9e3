//! seccomp: compile linux.seccomp from the spec (or the built-in default profile) into a BPF
//! program before clone(2); the container's init only installs the ready program.
//!
//! Interface contract (the runtime core calls exactly this; the seccomp work fills it in).

use oci_spec::runtime::LinuxSeccomp;

/// Errors of seccomp compilation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not implemented yet (placeholder until the seccomp work lands).
    #[error("seccomp is not implemented yet")]
    NotImplemented,
}

/// A compiled filter, ready to install without allocating.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub filter: Vec<libc::sock_filter>,
}

/// The built-in default profile (like Docker's / containerd's), used when the spec has none
/// and the caller asks for the default.
pub fn default_profile() -> LinuxSeccomp {
    LinuxSeccomp::default()
}

/// Compiles a profile for the host architecture.
pub fn compile(_profile: &LinuxSeccomp) -> Result<Program, Error> {
    Err(Error::NotImplemented)
}

/// Installs a compiled program in the calling thread (after no_new_privs, or with CAP_SYS_ADMIN).
/// Async-signal-safe: no allocation.
pub fn install(_program: &Program) -> Result<(), nix::Error> {
    Err(nix::Error::ENOSYS)
}
