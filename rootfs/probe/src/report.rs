//! `probe report`: everything a test may want to know about the container, as one JSON object.

use crate::json::Json;
use crate::{cgroup, mountinfo};
use std::ffi::CStr;

/// Fields of /proc/self/status by name ("CapEff", "Seccomp", "Umask", ...).
fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim().to_string())
    })
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its full length; gethostname NUL-terminates within it
    // (the last byte stays 0 because we pass len - 1).
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn groups() -> Vec<u32> {
    // SAFETY: a zero-size call only returns the count.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n <= 0 {
        return Vec::new();
    }
    let mut v = vec![0 as libc::gid_t; n as usize];
    // SAFETY: `v` holds `n` gid_t slots.
    let n = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
    v.truncate(n.max(0) as usize);
    v
}

/// Open fds, excluding the one the listing itself uses.
fn fds() -> Vec<(i32, String)> {
    let mut out = Vec::new();
    // SAFETY: the path is a valid NUL-terminated string.
    let dir = unsafe { libc::opendir(c"/proc/self/fd".as_ptr()) };
    if dir.is_null() {
        return out;
    }
    // SAFETY: `dir` is a valid open DIR*.
    let own = unsafe { libc::dirfd(dir) };
    loop {
        // SAFETY: `dir` is a valid open DIR*; the entry is read before the next readdir.
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated by the kernel.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let Ok(fd) = name.to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fd == own {
            continue;
        }
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push((fd, target));
    }
    // SAFETY: `dir` came from opendir and is closed once.
    unsafe { libc::closedir(dir) };
    out
}

fn rlimit(res: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit to fill.
    unsafe { libc::getrlimit(res, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

pub fn run() -> i32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mounts = mountinfo::read();
    let mut j = Json::new();
    j.begin_object();
    // SAFETY: getpid/getppid/getuid/getgid cannot fail.
    let (pid, ppid, uid, gid) = unsafe {
        (
            libc::getpid(),
            libc::getppid(),
            libc::getuid(),
            libc::getgid(),
        )
    };
    j.key("pid").number(pid);
    j.key("ppid").number(ppid);
    j.key("hostname").string(&hostname());
    j.key("uid").number(uid);
    j.key("gid").number(gid);
    j.key("groups").begin_array();
    for g in groups() {
        j.number(g);
    }
    j.end_array();
    match std::env::current_dir() {
        Ok(p) => j.key("cwd").string(&p.to_string_lossy()),
        Err(_) => j.key("cwd").null(),
    };
    j.key("umask")
        .opt_string(status_field(&status, "Umask").as_deref());

    j.key("ns").begin_object();
    for ns in ["pid", "mnt", "uts", "ipc", "net", "cgroup", "user", "time"] {
        let link = std::fs::read_link(format!("/proc/self/ns/{ns}"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        j.key(ns).opt_string(link.as_deref());
    }
    j.end_object();

    j.key("caps").begin_object();
    for (k, f) in [
        ("effective", "CapEff"),
        ("permitted", "CapPrm"),
        ("inheritable", "CapInh"),
        ("bounding", "CapBnd"),
        ("ambient", "CapAmb"),
    ] {
        j.key(k).opt_string(status_field(&status, f).as_deref());
    }
    j.end_object();

    // SAFETY: PR_GET_NO_NEW_PRIVS takes no pointers.
    let nnp = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    j.key("no_new_privs").boolean(nnp == 1);
    let seccomp = status_field(&status, "Seccomp").and_then(|s| s.parse::<u32>().ok());
    match seccomp {
        Some(s) => j.key("seccomp").number(s),
        None => j.key("seccomp").null(),
    };
    let oom = std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    match oom {
        Some(s) => j.key("oom_score_adj").number(s),
        None => j.key("oom_score_adj").null(),
    };

    j.key("fds").begin_array();
    for (fd, target) in fds() {
        j.begin_object();
        j.key("fd").number(fd);
        j.key("target").string(&target);
        j.end_object();
    }
    j.end_array();

    j.key("mounts").begin_array();
    for m in &mounts {
        j.begin_object();
        j.key("mountpoint").string(&m.mountpoint);
        j.key("fstype").string(&m.fstype);
        j.key("options").string(&m.options);
        j.key("source").string(&m.source);
        j.key("root").string(&m.root);
        j.key("propagation").string(&m.propagation);
        j.key("super_options").string(&m.super_options);
        j.end_object();
    }
    j.end_array();

    let cg = cgroup::read(&mounts);
    j.key("cgroup").begin_object();
    j.key("version").opt_string(cg.version);
    j.key("path").opt_string(cg.path.as_deref());
    j.key("lines").begin_array();
    for l in &cg.lines {
        j.string(l);
    }
    j.end_array();
    j.key("memory_max").opt_string(cg.memory_max.as_deref());
    j.key("memory_swap_max")
        .opt_string(cg.memory_swap_max.as_deref());
    j.key("pids_max").opt_string(cg.pids_max.as_deref());
    j.key("cpu_max").opt_string(cg.cpu_max.as_deref());
    j.key("cpu_weight_or_shares")
        .opt_string(cg.cpu_weight_or_shares.as_deref());
    j.key("cpuset_cpus").opt_string(cg.cpuset_cpus.as_deref());
    j.end_object();

    j.key("rlimits").begin_object();
    for (k, r) in [
        ("nofile", libc::RLIMIT_NOFILE),
        ("nproc", libc::RLIMIT_NPROC),
        ("core", libc::RLIMIT_CORE),
    ] {
        let (soft, hard) = rlimit(r);
        j.key(k).begin_array().number(soft).number(hard).end_array();
    }
    j.end_object();

    j.key("env").begin_array();
    for (k, v) in std::env::vars_os() {
        j.string(&format!("{}={}", k.to_string_lossy(), v.to_string_lossy()));
    }
    j.end_array();
    j.key("args").begin_array();
    for a in std::env::args_os() {
        j.string(&a.to_string_lossy());
    }
    j.end_array();
    j.end_object();
    println!("{}", j.finish());
    0
}
