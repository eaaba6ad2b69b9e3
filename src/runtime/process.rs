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
    /// chdir to process.cwd failed (runc's wording, so tools that match it keep working).
    #[error("chdir to cwd ({cwd:?}) set in config.json failed: {}", errno_text(.source))]
    Cwd {
        cwd: String,
        #[source]
        source: io::Error,
    },
    /// args[0] has no '/' and is on none of the PATH's directories.
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotInPath(String),
    /// args[0] is a path that does not resolve.
    #[error("exec: {path:?}: stat {path}: {}", errno_text(.source))]
    Stat {
        path: String,
        #[source]
        source: io::Error,
    },
    /// args[0] is a directory or lacks execute permission.
    #[error("exec: {0:?}: permission denied")]
    NotExecutable(String),
    /// execve(2) itself failed (or would: see `exec_precheck`).
    #[error("exec {path}: {}", errno_text(.source))]
    Exec {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// An errno as runc (Go) words it: strerror with a lower-case first letter, no "(os error N)".
pub fn errno_text(e: &io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return e.to_string();
    };
    // SAFETY: strerror returns a pointer to a static or thread-local NUL-terminated string.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strerror(n)) }
        .to_string_lossy()
        .into_owned();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => text,
    }
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

/// The first try at process.cwd, still with the runtime's privileges, as runc does: a
/// directory only root may enter (a private WORKDIR) then works for any user. Returns false
/// when permission was denied, so the caller retries as the container's user (who may own a
/// directory that root cannot enter, e.g. on NFS with root squashing).
pub fn enter_cwd_early(cwd: &Path) -> Result<bool, Error> {
    match chdir(cwd) {
        Ok(()) => Ok(true),
        Err(Error::Cwd { source, .. })
            if matches!(source.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

pub fn chdir(cwd: &Path) -> Result<(), Error> {
    let cwd_err = |source| Error::Cwd {
        cwd: cwd.display().to_string(),
        source,
    };
    let c = sys::cstr(cwd).map_err(cwd_err)?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chdir(c.as_ptr()) }).map_err(cwd_err)?;
    Ok(())
}

/// Checks the kernel still places our cwd under our root: a leaked descriptor named by
/// /proc/self/fd/N would give a cwd outside it (CVE-2024-21626). getcwd(2) needs no
/// permission on the path, so this works after dropping privileges too.
pub fn check_cwd(cwd: &Path) -> Result<(), Error> {
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() && !p.to_string_lossy().starts_with("(unreachable)") => Ok(()),
        _ => Err(Error::CwdOutside(cwd.display().to_string())),
    }
}

/// Finds args[0] the way runc does (Go's exec.LookPath), using the container's PATH: a name
/// with a '/' is taken as it is, anything else is searched on PATH. The errors carry runc's
/// words.
pub fn find_program(arg0: &str, env: &[String]) -> Result<CString, Error> {
    let exe_ok = |p: &Path| {
        let Ok(c) = sys::cstr(p) else { return false };
        // SAFETY: valid C string.
        p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
    };
    if arg0.contains('/') {
        let path = Path::new(arg0);
        if let Err(source) = std::fs::metadata(path) {
            return Err(Error::Stat {
                path: arg0.into(),
                source,
            });
        }
        return if exe_ok(path) {
            sys::cstr(path).map_err(sys_err("args[0]"))
        } else {
            Err(Error::NotExecutable(arg0.into()))
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
    Err(Error::NotInPath(arg0.into()))
}

/// What execve(2) of `program` would fail with for want of an interpreter: a `#!` line or
/// an ELF program interpreter (the dynamic loader) that does not exist in the container. The
/// kernel reports both as ENOENT on the program itself, and an init that execs through the
/// trampoline could only say "cannot execute"; checking first gives runc's
/// `exec /run.sh: no such file or directory`. Anything unreadable is left to the kernel.
pub fn exec_precheck(program: &Path) -> Result<(), Error> {
    let mut path = program.to_path_buf();
    // The kernel allows a few levels of interpreters (BINPRM_MAX_RECURSION).
    for _ in 0..5 {
        // What /proc/self/exe names changes with the trampoline's own execve: leave it to
        // the kernel (and the trampoline, CVE-2019-5736).
        if path.starts_with("/proc") {
            return Ok(());
        }
        let interp = match interpreter_of(&path) {
            Some(i) => i,
            None => return Ok(()),
        };
        if let Err(source) = std::fs::metadata(&interp) {
            return Err(Error::Exec {
                path: program.display().to_string(),
                source: io::Error::from_raw_os_error(source.raw_os_error().unwrap_or(libc::ENOENT)),
            });
        }
        path = interp;
    }
    Ok(())
}

/// The interpreter a file asks for: its `#!` path, or an ELF file's PT_INTERP.
fn interpreter_of(path: &Path) -> Option<PathBuf> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 256];
    let n = f.read(&mut head).ok()?;
    parse_interpreter(&head[..n], |offset, len| {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; len.min(libc::PATH_MAX as usize)];
        f.read_exact_at(&mut buf, offset).ok()?;
        Some(buf)
    })
}

/// The interpreter named by a file starting with `head`; `read(offset, len)` fetches more of
/// it (an ELF file's program headers and interpreter path lie anywhere in it).
fn parse_interpreter(
    head: &[u8],
    mut read: impl FnMut(u64, usize) -> Option<Vec<u8>>,
) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if let Some(rest) = head.strip_prefix(b"#!") {
        let line = rest.split(|&b| b == b'\n').next()?;
        let name = line
            .split(|&b| b == b' ' || b == b'\t')
            .find(|w| !w.is_empty())?;
        return Some(PathBuf::from(std::ffi::OsStr::from_bytes(name)));
    }
    // A 64-bit little-endian ELF file (the only kind the trampoline's architecture runs).
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[4] != 2 || head[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8"));
    let (phoff, phentsize, phnum) = (
        u64_at(head, 32),
        u16_at(head, 54) as usize,
        u16_at(head, 56),
    );
    if phentsize < 56 {
        return None;
    }
    const PT_INTERP: u32 = 3;
    for i in 0..phnum.min(64) as u64 {
        let ph = read(phoff + i * phentsize as u64, 56)?;
        if u32_at(&ph, 0) == PT_INTERP {
            let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32) as usize);
            let mut name = read(offset, size)?;
            if let Some(end) = name.iter().position(|&b| b == 0) {
                name.truncate(end);
            }
            return Some(PathBuf::from(std::ffi::OsStr::from_bytes(&name)));
        }
    }
    None
}

/// The environment the program gets, as runc builds it: a name listed twice keeps its first
/// place and its last value, and an unset or empty HOME comes from `home` (the container's
/// /etc/passwd entry of the process's uid).
pub fn finish_env(env: &[String], home: impl FnOnce() -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len() + 1);
    for e in env {
        let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
        match out
            .iter_mut()
            .find(|o| o.split_once('=').map_or(o.as_str(), |(n, _)| n) == name)
        {
            Some(slot) => slot.clone_from(e),
            None => out.push(e.clone()),
        }
    }
    match out.iter_mut().find(|e| e.starts_with("HOME=")) {
        Some(h) if h.len() > "HOME=".len() => {}
        Some(h) => *h = format!("HOME={}", home()),
        None => out.push(format!("HOME={}", home())),
    }
    out
}

/// The home directory of `uid` in the container's /etc/passwd, or "/".
pub fn home_of(uid: u32) -> String {
    home_in(
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        uid,
    )
}

fn home_in(passwd: &str, uid: u32) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn duplicate_env_entries_keep_the_first_place_and_the_last_value() {
        let env = strings(&[
            "PATH=/bin",
            "A=1",
            "B=2",
            "A=3",
            "C=x=y",
            "HOME=/h1",
            "HOME=/h2",
        ]);
        assert_eq!(
            finish_env(&env, || unreachable!("HOME is set")),
            strings(&["PATH=/bin", "A=3", "B=2", "C=x=y", "HOME=/h2"])
        );
    }

    #[test]
    fn an_unset_or_empty_home_comes_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nnohome:x:7:7:::/bin/sh\n";
        assert_eq!(home_in(passwd, 0), "/root");
        assert_eq!(home_in(passwd, 65534), "/nonexistent");
        assert_eq!(home_in(passwd, 1000), "/");
        assert_eq!(home_in(passwd, 7), "/");
        assert_eq!(
            finish_env(&strings(&["PATH=/bin"]), || "/root".into()),
            strings(&["PATH=/bin", "HOME=/root"])
        );
        assert_eq!(
            finish_env(&strings(&["HOME=/x", "A=1", "HOME="]), || "/root".into()),
            strings(&["HOME=/root", "A=1"])
        );
    }

    #[test]
    fn interpreters_of_scripts_and_elf_files() {
        let none = |_: u64, _: usize| -> Option<Vec<u8>> { None };
        assert_eq!(
            parse_interpreter(b"#!/bin/sh -e\necho", none),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            parse_interpreter(b"#!  /usr/bin/env\tpython3\n", none),
            Some(PathBuf::from("/usr/bin/env"))
        );
        assert_eq!(parse_interpreter(b"echo hi\n", none), None);
        // This test binary is a dynamic ELF file: its interpreter is the loader.
        let me = std::env::current_exe().unwrap();
        let interp = interpreter_of(&me).expect("a PT_INTERP");
        assert!(interp.exists(), "{}", interp.display());
        // An ELF header whose one program header is not PT_INTERP (a static program).
        let mut elf = [0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        let at = |o: u64, n: usize| elf.get(o as usize..o as usize + n).map(<[u8]>::to_vec);
        assert_eq!(parse_interpreter(&elf[..64], at), None);
    }

    #[test]
    fn errno_text_is_worded_as_runc_words_it() {
        let e = |n| errno_text(&io::Error::from_raw_os_error(n));
        assert_eq!(e(libc::ENOENT), "no such file or directory");
        assert_eq!(e(libc::EACCES), "permission denied");
        assert_eq!(e(libc::ENOEXEC), "exec format error");
    }
}
