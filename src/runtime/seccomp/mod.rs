//! seccomp: compile linux.seccomp from the spec (or the built-in default profile) into a BPF
//! program before clone(2); the container's init only installs the ready program.
//!
//! Interface contract (the runtime core calls exactly this): [`compile`] in the parent, where
//! allocating and failing with a good message are fine; [`install`] in the child as the last
//! step of its setup (after PR_SET_NO_NEW_PRIVS), where nothing may allocate.
//!
//! The BPF is generated here ([`bpf`] is a small assembler, [`compile`] the code generator)
//! rather than by seccompiler, because OCI profiles give every rule its own action (ALLOW,
//! ERRNO with its own errno, ...) while seccompiler's filters have a single match action.

pub mod agent;
mod bpf;
mod compile;
mod profile;
mod syscalls_x86_64;

use oci_spec::runtime::LinuxSeccomp;

pub use profile::{
    default_profile, default_profile_for, CLONE_NAMESPACE_FLAGS, DOCKER_DEFAULT_CAPS,
};

/// Errors of seccomp compilation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of the profile cannot be compiled; `field` is its path in config.json.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The program exceeds the kernel's limit of 4096 instructions.
    #[error("linux.seccomp: the filter needs {0} BPF instructions, more than the kernel's 4096")]
    TooLarge(usize),
    /// A conditional jump would span more than 255 instructions (an internal limit of BPF that
    /// the code generator normally avoids).
    #[error("linux.seccomp: a rule needs a jump of {0} instructions, more than BPF allows")]
    JumpTooFar(usize),
    /// Nothing answers at linux.seccomp.listenerPath (worded as runc words it).
    #[error("failed to connect with seccomp agent specified in the seccomp profile: dial unix {path}: connect: {reason}")]
    AgentUnreachable { path: String, reason: String },
    /// The seccomp agent at linux.seccomp.listenerPath could not be given the listener.
    #[error("cannot hand the seccomp listener to the agent at {path}: {source}")]
    Agent {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A compiled filter, ready to install without allocating.
///
/// Only the instructions: the runtime ships them to the container's init over a socket.
/// linux.seccomp.flags are accepted but not applied: TSYNC means nothing to a single-threaded
/// init, LOG only adds audit records, SPEC_ALLOW would weaken a mitigation and
/// WAIT_KILLABLE_RECV is an agent's choice that the kernel of the day may not have.
#[derive(Debug, Clone, Default)]
pub struct Program {
    pub filter: Vec<libc::sock_filter>,
}

impl Program {
    /// Some rule hands its syscall to a seccomp agent (SCMP_ACT_NOTIFY): installing the
    /// program then yields a listener descriptor for the agent named by listenerPath.
    /// Read off the program itself, so it survives the trip to the init as plain instructions.
    pub fn notifies(&self) -> bool {
        const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        self.filter.iter().any(|i| {
            i.code == BPF_RET_K
                && i.k & libc::SECCOMP_RET_ACTION_FULL == libc::SECCOMP_RET_USER_NOTIF
        })
    }
}

/// Compiles a profile for the host architecture (x86_64). Syscall names x86_64 does not have
/// (other architectures' calls, or newer than our table) are skipped, as runc skips names
/// libseccomp does not know; [`unknown_syscalls`] lists them.
pub fn compile(profile: &LinuxSeccomp) -> Result<Program, Error> {
    compile::compile(profile)
}

/// The syscall names in `profile` that x86_64 does not have, in order of appearance.
pub fn unknown_syscalls(profile: &LinuxSeccomp) -> Vec<String> {
    let mut unknown: Vec<String> = Vec::new();
    for name in profile.syscalls().iter().flatten().flat_map(|s| s.names()) {
        if syscalls_x86_64::number(name).is_none() && !unknown.contains(name) {
            unknown.push(name.clone());
        }
    }
    unknown
}

/// Checks the raw JSON of `linux.seccomp` for enum strings this runtime does not know
/// (actions, operators, architectures, flags), naming the offending field, e.g.
/// `linux.seccomp.syscalls[3].action: unknown value "SCMP_ACT_FOO"`. Typed deserialization
/// only says "unknown variant" with a line and column; a caller whose config.json fails to
/// parse can call this to point at the field instead.
pub fn check_json(seccomp: &serde_json::Value) -> Result<(), Error> {
    use oci_spec::runtime::{
        Arch, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    };
    fn known<T: serde::de::DeserializeOwned>(
        value: Option<&serde_json::Value>,
        field: &str,
    ) -> Result<(), Error> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(()),
            Some(v) => serde_json::from_value::<T>(v.clone())
                .map(|_| ())
                .map_err(|_| Error::Invalid {
                    field: field.to_string(),
                    reason: format!("unknown value {v}"),
                }),
        }
    }
    let list = |key: &str| {
        seccomp
            .get(key)
            .and_then(|v| v.as_array())
            .map(|a| a.as_slice())
            .unwrap_or_default()
    };
    known::<LinuxSeccompAction>(seccomp.get("defaultAction"), "linux.seccomp.defaultAction")?;
    for (i, arch) in list("architectures").iter().enumerate() {
        known::<Arch>(Some(arch), &format!("linux.seccomp.architectures[{i}]"))?;
    }
    for (i, flag) in list("flags").iter().enumerate() {
        known::<LinuxSeccompFilterFlag>(Some(flag), &format!("linux.seccomp.flags[{i}]"))?;
    }
    for (i, syscall) in list("syscalls").iter().enumerate() {
        let field = format!("linux.seccomp.syscalls[{i}]");
        known::<LinuxSeccompAction>(syscall.get("action"), &format!("{field}.action"))?;
        let args = syscall.get("args").and_then(|v| v.as_array());
        for (j, arg) in args
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            known::<LinuxSeccompOperator>(arg.get("op"), &format!("{field}.args[{j}].op"))?;
        }
    }
    Ok(())
}

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;

/// Installs a compiled program in the calling thread (after no_new_privs, or with CAP_SYS_ADMIN).
/// Async-signal-safe: no allocation. A program that [`notifies`](Program::notifies) returns
/// the listener the seccomp agent reads the notifications from.
pub fn install(program: &Program) -> Result<Option<std::os::fd::OwnedFd>, nix::Error> {
    let len = u16::try_from(program.filter.len()).map_err(|_| nix::Error::E2BIG)?;
    if len == 0 {
        return Err(nix::Error::EINVAL);
    }
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer; the type is *mut for historical reasons.
        filter: program.filter.as_ptr().cast_mut(),
    };
    let notifies = program.notifies();
    let flags = if notifies {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: fprog points at `len` initialized sock_filter entries that live in `program`
    // for the whole call; the kernel copies the program before returning. No memory of ours
    // is written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 if !notifies => Ok(None),
        fd if fd >= 0 && notifies => {
            // SAFETY: with NEW_LISTENER the call returns a fresh descriptor that nothing else
            // owns.
            Ok(Some(unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32)
            }))
        }
        _ => {
            let err = nix::Error::last();
            if err != nix::Error::ENOSYS || notifies {
                return Err(err);
            }
            // Kernels before 3.17 have no seccomp(2); prctl installs the same filter.
            // SAFETY: as above, fprog and the program it points to outlive the call.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &fprog as *const libc::sock_fprog,
                )
            };
            if rc == 0 {
                Ok(None)
            } else {
                Err(nix::Error::last())
            }
        }
    }
}

#[cfg(test)]
mod tests;
