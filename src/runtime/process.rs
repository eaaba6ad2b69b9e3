//! The last steps before execve(2) of the user's program, shared by the container init and
//! by exec: rlimits, user and groups, the five capability sets, no_new_privs, the working
//! directory check, and finding the program on the container's PATH.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capabilities, Capability, PosixRlimitType, Process};

use super::sys;

/// Errors preparing the user's process.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `what` names the step.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Changing a capability set failed.
    #[error("capabilities ({what}): {source}")]
    Caps {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The working directory resolved outside the container's root (CVE-2024-21626).
    #[error("working directory {0} is outside the container's root")]
    CwdOutside(String),
    /// process.args[0] names nothing executable in the container.
    #[error("executable file {0:?} not found or not executable")]
    NotFound(String),
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

fn rlimit_resource(t: PosixRlimitType) -> Option<libc::__rlimit_resource_t> {
    use PosixRlimitType::*;
    Some(match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    })
}

pub fn set_rlimits(process: &Process) -> Result<(), Error> {
    for r in process.rlimits().as_deref().unwrap_or(&[]) {
        let Some(res) = rlimit_resource(r.typ()) else {
            continue;
        };
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: valid resource and pointer.
        sys::cvt(unsafe { libc::setrlimit(res, &lim) })
            .map_err(sys_err(format!("setrlimit {:?}", r.typ())))?;
    }
    Ok(())
}

pub fn set_oom_score_adj(pid: i32, adj: i32) -> Result<(), Error> {
    std::fs::write(format!("/proc/{pid}/oom_score_adj"), adj.to_string())
        .map_err(sys_err("oom_score_adj"))
}

/// The kernel's number of a capability (linux/capability.h).
fn cap_number(c: Capability) -> u32 {
    use Capability::*;
    match c {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// A capability set as the kernel's bit mask.
fn mask(set: &Option<Capabilities>) -> u64 {
    set.iter()
        .flatten()
        .fold(0, |m, c| m | 1u64 << cap_number(*c))
}

/// The highest capability the running kernel knows (it may know more than this code).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// struct __user_cap_header_struct and __user_cap_data_struct (version 3: two 32-bit halves).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// capset(2) of this thread's effective, permitted and inheritable sets, all at once.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |m: u64, i: usize| (m >> (32 * i)) as u32;
    let data: [CapData; 2] = std::array::from_fn(|i| CapData {
        effective: half(effective, i),
        permitted: half(permitted, i),
        inheritable: half(inheritable, i),
    });
    // SAFETY: a valid version-3 header and the two data structs that version reads.
    sys::cvt(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } as libc::c_int)?;
    Ok(())
}

fn caps_err(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Caps { what, source }
}

/// Switches to the process's user and capability sets. Run as root with full caps; the
/// bounding set is cut first (needs CAP_SETPCAP), and the kernel keeps permitted caps across
/// setuid only with KEEPCAPS, after which the three sets are set exactly as the spec lists
/// them (absent means empty: CVE-2022-29162) and ambient ones raised.
pub fn set_user_and_caps(process: &Process) -> Result<(), Error> {
    let user = process.user();
    let sets = process.capabilities().clone().unwrap_or_else(empty_caps);
    let bounding = mask(sets.bounding());
    for cap in 0..=last_cap() {
        if bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments.
            sys::cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) })
                .map_err(caps_err("bounding"))?;
        }
    }
    // SAFETY: prctl with integer arguments.
    sys::cvt(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) })
        .map_err(sys_err("keepcaps"))?;
    let gids: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    // SAFETY: pointer and length describe `gids`.
    sys::cvt(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) })
        .map_err(sys_err("setgroups"))?;
    // SAFETY: integer arguments.
    sys::cvt(unsafe { libc::setresgid(user.gid(), user.gid(), user.gid()) })
        .map_err(sys_err("setresgid"))?;
    // SAFETY: integer arguments.
    sys::cvt(unsafe { libc::setresuid(user.uid(), user.uid(), user.uid()) })
        .map_err(sys_err("setresuid"))?;
    // SAFETY: prctl with integer arguments.
    sys::cvt(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) })
        .map_err(sys_err("keepcaps"))?;
    let permitted = mask(sets.permitted());
    let inheritable = mask(sets.inheritable());
    // The kernel refuses an effective cap that is not permitted, as it should: an error.
    capset(mask(sets.effective()), permitted, inheritable).map_err(caps_err("sets"))?;
    // SAFETY: prctl with integer arguments.
    sys::cvt(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })
    .map_err(caps_err("ambient"))?;
    // The kernel only lets a cap into ambient when it is permitted and inheritable; specs
    // (runc's default among them) often list ambient caps without inheritable ones, and runc
    // skips those, so we do too.
    let ambient = mask(sets.ambient()) & inheritable & permitted;
    for cap in (0..64).filter(|c| ambient & (1 << c) != 0) {
        // SAFETY: prctl with integer arguments.
        sys::cvt(unsafe {
            libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, cap, 0, 0)
        })
        .map_err(caps_err("ambient"))?;
    }
    if let Some(mask) = user.umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

fn empty_caps() -> oci_spec::runtime::LinuxCapabilities {
    // An absent capabilities object means none at all (runc does the same).
    serde_json::from_str("{}").expect("empty capabilities")
}

pub fn set_no_new_privs() -> Result<(), Error> {
    // SAFETY: prctl with integer arguments.
    sys::cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
        .map_err(sys_err("no_new_privs"))?;
    Ok(())
}

/// chdir to the process's cwd, then check the kernel still places it under our root: a
/// leaked descriptor named by /proc/self/fd/N would give a cwd outside it (CVE-2024-21626).
pub fn enter_cwd(cwd: &Path) -> Result<(), Error> {
    let c = sys::cstr(cwd).map_err(sys_err("cwd"))?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chdir(c.as_ptr()) })
        .map_err(sys_err(format!("chdir {}", cwd.display())))?;
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() && !p.to_string_lossy().starts_with("(unreachable)") => Ok(()),
        _ => Err(Error::CwdOutside(cwd.display().to_string())),
    }
}

/// Finds args[0] the way execvp(3) does, using the container's PATH.
pub fn find_program(arg0: &str, env: &[String]) -> Result<CString, Error> {
    let exe_ok = |p: &Path| {
        let Ok(c) = sys::cstr(p) else { return false };
        // SAFETY: valid C string.
        p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
    };
    if arg0.contains('/') {
        return if exe_ok(Path::new(arg0)) {
            sys::cstr(Path::new(arg0)).map_err(sys_err("args[0]"))
        } else {
            Err(Error::NotFound(arg0.into()))
        };
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = PathBuf::from(dir).join(arg0);
        if exe_ok(&candidate) {
            return sys::cstr(&candidate).map_err(sys_err("args[0]"));
        }
    }
    Err(Error::NotFound(arg0.into()))
}

/// The home directory of `uid` in the container's /etc/passwd, or "/".
pub fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse() == Ok(uid))
        .map(|f| f[5].to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

pub fn cstrings(items: &[String]) -> Vec<CString> {
    items
        .iter()
        .map(|s| CString::new(s.replace('\0', "")).expect("NUL removed"))
        .collect()
}

/// execve(2); returns only on failure.
pub fn exec(program: &CString, args: &[CString], env: &[CString]) -> io::Error {
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: null-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}
