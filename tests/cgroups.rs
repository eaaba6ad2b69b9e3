//! Root integration tests for src/runtime/cgroups: real cgroups, real processes, real limits.
//!
//! Self-contained on purpose: scripts/vm-test.sh runs this binary in a VM with pure cgroup v2
//! and nothing else, so the workload processes are forks of this binary that only make raw
//! system calls (no exec, no allocation: the test harness is multithreaded, and after fork
//! only async-signal-safe calls are safe). Each child blocks on a pipe until the test has put
//! it into the cgroup, so every page and cycle it uses is charged there.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nanokube::runtime::cgroups::{self, Cgroup, Hierarchy};
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

const MIB: i64 = 1 << 20;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the cgroup tests need root: run them via sudo ./scripts/test.sh"
    );
}

/// A cgroupsPath unique to this test and process, so parallel tests never share a cgroup.
fn unique_path(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("/nanokube-test/{test}-{}-{n}", std::process::id())
}

/// Removes the test's cgroup and its processes even when an assertion failed midway.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(cg) = Cgroup::open(&self.0) {
            let _ = cg.kill_all(libc::SIGKILL);
            let _ = cg.destroy();
        }
    }
}

/// What a forked child does once released. Every variant uses raw system calls only.
#[derive(Clone, Copy)]
enum Work {
    /// Map and touch this many MiB, report, then wait for a second release byte and exit 0.
    Alloc { mib: usize },
    /// Fork up to this many children that pause; report (forked, errno); then pause.
    ForkBomb { max: u64 },
    /// Burn CPU for this much wall time; report (cpu nanos, wall nanos); exit 0.
    Spin { millis: u64 },
    /// Just pause until a signal arrives.
    Pause,
    /// Open both paths for reading and report (errno or 0 each), then wait for a second
    /// release and do it again. The pointers are C strings the parent keeps alive.
    OpenTwice {
        a: *const libc::c_char,
        b: *const libc::c_char,
    },
}

struct Child {
    pid: i32,
    release: OwnedFd,
    report: File,
    reaped: bool,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-element array for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn now_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; clock_gettime is async-signal-safe.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn report(fd: i32, a: u64, b: u64) {
    let buf = [a, b];
    // SAFETY: buf is 16 readable bytes; write is async-signal-safe.
    unsafe { libc::write(fd, buf.as_ptr().cast(), 16) };
}

/// Runs in the forked child: only async-signal-safe calls, never returns.
fn child_main(release: i32, report_fd: i32, work: Work) -> ! {
    let mut byte = 0u8;
    // SAFETY: reading one byte into a valid local.
    unsafe { libc::read(release, (&mut byte as *mut u8).cast(), 1) };
    match work {
        Work::Alloc { mib } => {
            let len = mib << 20;
            // SAFETY: an anonymous private mapping; no existing memory is affected.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(2) };
            }
            let p = p.cast::<u8>();
            for off in (0..len).step_by(4096) {
                // SAFETY: off < len, inside the mapping just created.
                unsafe { p.add(off).write_volatile(1) };
            }
            report(report_fd, mib as u64, 0);
            // SAFETY: as above.
            unsafe { libc::read(release, (&mut byte as *mut u8).cast(), 1) };
        }
        Work::ForkBomb { max } => {
            let mut forked = 0;
            let mut errno = 0;
            while forked < max {
                // SAFETY: the grandchild only pauses and exits.
                match unsafe { libc::fork() } {
                    0 => loop {
                        // SAFETY: pause is async-signal-safe.
                        unsafe { libc::pause() };
                    },
                    -1 => {
                        // SAFETY: reading this thread's errno.
                        errno = unsafe { *libc::__errno_location() } as u64;
                        break;
                    }
                    _ => forked += 1,
                }
            }
            report(report_fd, forked, errno);
            loop {
                // SAFETY: pause is async-signal-safe.
                unsafe { libc::pause() };
            }
        }
        Work::Spin { millis } => {
            let start = now_nanos(libc::CLOCK_MONOTONIC);
            let cpu_start = now_nanos(libc::CLOCK_PROCESS_CPUTIME_ID);
            let mut wall = 0;
            let mut x = 0u64;
            while wall < millis * 1_000_000 {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                wall = now_nanos(libc::CLOCK_MONOTONIC) - start;
            }
            let cpu = now_nanos(libc::CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
            report(report_fd, cpu, wall);
        }
        Work::OpenTwice { a, b } => {
            let try_open = |path: *const libc::c_char| -> u64 {
                // SAFETY: path is a NUL-terminated string in memory copied from the parent.
                let fd = unsafe { libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    // SAFETY: reading this thread's errno.
                    unsafe { *libc::__errno_location() as u64 }
                } else {
                    // SAFETY: closing the fd just opened.
                    unsafe { libc::close(fd) };
                    0
                }
            };
            report(report_fd, try_open(a), try_open(b));
            // SAFETY: reading one byte into a valid local.
            unsafe { libc::read(release, (&mut byte as *mut u8).cast(), 1) };
            report(report_fd, try_open(a), try_open(b));
        }
        Work::Pause => loop {
            // SAFETY: pause is async-signal-safe.
            unsafe { libc::pause() };
        },
    }
    // SAFETY: _exit skips atexit handlers and stdio, which belong to the parent.
    unsafe { libc::_exit(0) }
}

impl Child {
    /// Forks a child that waits for `release()` before doing `work`.
    fn spawn(work: Work) -> Child {
        let (release_r, release_w) = pipe();
        let (report_r, report_w) = pipe();
        // SAFETY: the child runs child_main, which only makes async-signal-safe calls and
        // ends in _exit, so the forked copy of this multithreaded process is never at risk.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            child_main(release_r.as_raw_fd(), report_w.as_raw_fd(), work);
        }
        drop(release_r);
        drop(report_w);
        Child {
            pid,
            release: release_w,
            report: File::from(report_r),
            reaped: false,
        }
    }

    fn release(&self) {
        let rc = nix::unistd::write(&self.release, b"x").expect("release child");
        assert_eq!(rc, 1);
    }

    /// Reads the child's two-number report; None if it died before reporting.
    fn read_report(&mut self) -> Option<(u64, u64)> {
        let mut buf = [0u8; 16];
        self.report.read_exact(&mut buf).ok()?;
        let a = u64::from_ne_bytes(buf[..8].try_into().unwrap());
        let b = u64::from_ne_bytes(buf[8..].try_into().unwrap());
        Some((a, b))
    }

    fn wait(&mut self) -> nix::sys::wait::WaitStatus {
        let status =
            nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None).expect("waitpid");
        self.reaped = true;
        status
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        }
    }
}

fn memory(limit: i64, swap: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(swap)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

fn read_file(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// The directory of a controller's files: the one cgroup dir on v2, the controller's on v1.
fn controller_dir(cg: &Cgroup, controller: &str) -> PathBuf {
    let dirs = cg.dirs();
    match cg.hierarchy() {
        Hierarchy::Unified => dirs[0].clone(),
        Hierarchy::Legacy => dirs
            .iter()
            .find(|d| {
                d.strip_prefix("/sys/fs/cgroup")
                    .ok()
                    .and_then(|rel| rel.components().next())
                    .is_some_and(|first| {
                        first
                            .as_os_str()
                            .to_string_lossy()
                            .split(',')
                            .any(|c| c == controller)
                    })
            })
            .unwrap_or_else(|| panic!("no {controller} dir among {dirs:?}"))
            .clone(),
    }
}

fn assert_gone(dirs: &[PathBuf]) {
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

#[test]
fn detect_matches_the_mounted_hierarchy() {
    require_root();
    let path = unique_path("detect");
    let _cleanup = Cleanup(path.clone());
    let cg = Cgroup::create(&path, None).unwrap();
    let rel = path.trim_start_matches('/');
    match cgroups::detect() {
        Hierarchy::Unified => {
            let controllers = read_file(Path::new("/sys/fs/cgroup"), "cgroup.controllers");
            assert!(
                controllers.contains("memory"),
                "v2 without memory: {controllers}"
            );
            assert_eq!(cg.dirs(), vec![Path::new("/sys/fs/cgroup").join(rel)]);
        }
        Hierarchy::Legacy => {
            assert!(
                Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
                    || std::fs::read_to_string("/proc/self/mountinfo")
                        .unwrap()
                        .lines()
                        .any(|l| l.contains(" - cgroup "))
            );
            let memory = controller_dir(&cg, "memory");
            assert!(memory.join("memory.limit_in_bytes").exists());
            assert!(memory.ends_with(rel));
        }
    }
    assert_eq!(cg.hierarchy(), cgroups::detect());
    let dirs = cg.dirs();
    assert!(dirs.iter().all(|d| d.is_dir()));
    cg.destroy().unwrap();
    assert_gone(&dirs);
}

#[test]
fn memory_limit_breach_is_oom_killed_and_reported() {
    require_root();
    let path = unique_path("oom");
    let _cleanup = Cleanup(path.clone());
    // swap == limit: no swap allowance, so exceeding the limit must end in the OOM killer.
    let cg = Cgroup::create(&path, Some(&memory(32 * MIB, 32 * MIB))).unwrap();
    assert_eq!(cg.stats().unwrap().memory_limit_bytes, Some(32 << 20));

    // Under the limit: runs to completion and nothing is reported.
    let mut small = Child::spawn(Work::Alloc { mib: 8 });
    cg.add_pid(small.pid).unwrap();
    small.release();
    assert_eq!(small.read_report(), Some((8, 0)));
    assert!(cg.stats().unwrap().memory_usage_bytes >= 8 << 20);
    small.release();
    assert_eq!(
        small.wait(),
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(small.pid), 0)
    );
    assert!(!cg.oom_killed().unwrap(), "OOM reported without one");

    // Over the limit: killed by the kernel with SIGKILL, reported as OOM.
    let mut big = Child::spawn(Work::Alloc { mib: 128 });
    cg.add_pid(big.pid).unwrap();
    big.release();
    assert_eq!(
        big.read_report(),
        None,
        "allocated 128 MiB under a 32 MiB limit"
    );
    assert_eq!(
        big.wait(),
        nix::sys::wait::WaitStatus::Signaled(
            nix::unistd::Pid::from_raw(big.pid),
            nix::sys::signal::Signal::SIGKILL,
            false
        )
    );
    assert!(cg.oom_killed().unwrap());
    assert!(cg.stats().unwrap().oom_kills >= 1);
    let dirs = cg.dirs();
    cg.destroy().unwrap();
    assert_gone(&dirs);
}

#[test]
fn fork_bomb_is_stopped_by_pids_max() {
    require_root();
    let path = unique_path("forkbomb");
    let _cleanup = Cleanup(path.clone());
    let resources = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(8).build().unwrap())
        .build()
        .unwrap();
    let cg = Cgroup::create(&path, Some(&resources)).unwrap();
    let mut bomb = Child::spawn(Work::ForkBomb { max: 200 });
    cg.add_pid(bomb.pid).unwrap();
    bomb.release();
    let (forked, errno) = bomb.read_report().expect("fork bomb report");
    // The bomb itself counts, so at most 7 children fit under pids.max = 8.
    assert_eq!(forked, 7, "forked {forked} children under pids.max 8");
    assert_eq!(errno, libc::EAGAIN as u64);
    let pids = cg.pids().unwrap();
    assert_eq!(pids.len(), 8, "{pids:?}");
    assert!(pids.contains(&bomb.pid));
    let stats = cg.stats().unwrap();
    assert_eq!(stats.pids_current, 8);
    assert_eq!(stats.pids_limit, Some(8));

    cg.kill_all(libc::SIGKILL).unwrap();
    assert!(matches!(
        bomb.wait(),
        nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    let dirs = cg.dirs();
    cg.destroy().unwrap();
    assert_gone(&dirs);
}

#[test]
fn cpu_quota_is_honoured() {
    require_root();
    let path = unique_path("cpuquota");
    let _cleanup = Cleanup(path.clone());
    // 20% of one CPU, in short periods: a hundred chances per second to hit the quota, so
    // throttling shows even when a busy machine gives the spinner little CPU.
    let resources = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .quota(2_000i64)
                .period(10_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let cg = Cgroup::create(&path, Some(&resources)).unwrap();
    let mut spinner = Child::spawn(Work::Spin { millis: 1000 });
    cg.add_pid(spinner.pid).unwrap();
    spinner.release();
    let (cpu, wall) = spinner.read_report().expect("spinner report");
    spinner.wait();
    // A generous bound: 20% quota must keep the spinner well under half a CPU, whatever the
    // load on the machine (load only lowers the figure further).
    assert!(cpu > 0);
    assert!(
        cpu * 2 < wall,
        "spinner used {} ms of CPU in {} ms under a 20% quota",
        cpu / 1_000_000,
        wall / 1_000_000
    );
    let stats = cg.stats().unwrap();
    assert!(stats.cpu_throttled_periods > 0, "{stats:?}");
    assert!(stats.cpu_usage_nanos > 0, "{stats:?}");
    assert!(stats.cpu_usage_nanos * 2 < wall, "{stats:?}");
    cg.destroy().unwrap();
}

#[test]
fn limits_are_written_read_back_and_updated() {
    require_root();
    let path = unique_path("update");
    let _cleanup = Cleanup(path.clone());
    // memory+swap == memory: no swap allowance.
    let initial = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .swap(64 * MIB)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(100).build().unwrap())
        .build()
        .unwrap();
    let cg = Cgroup::create(&path, Some(&initial)).unwrap();
    let mem = controller_dir(&cg, "memory");
    let cpu = controller_dir(&cg, "cpu");
    let pids = controller_dir(&cg, "pids");
    match cg.hierarchy() {
        Hierarchy::Unified => {
            assert_eq!(read_file(&mem, "memory.max"), (64 * MIB).to_string());
            assert_eq!(read_file(&cpu, "cpu.max"), "50000 100000");
            assert_eq!(
                read_file(&cpu, "cpu.weight"),
                cgroups::shares_to_weight(512).to_string()
            );
        }
        Hierarchy::Legacy => {
            assert_eq!(
                read_file(&mem, "memory.limit_in_bytes"),
                (64 * MIB).to_string()
            );
            assert_eq!(read_file(&cpu, "cpu.cfs_quota_us"), "50000");
            assert_eq!(read_file(&cpu, "cpu.cfs_period_us"), "100000");
            assert_eq!(read_file(&cpu, "cpu.shares"), "512");
        }
    }
    assert_eq!(read_file(&pids, "pids.max"), "100");

    // A process holding 4 MiB shows up in the stats.
    let mut holder = Child::spawn(Work::Alloc { mib: 4 });
    cg.add_pid(holder.pid).unwrap();
    holder.release();
    assert_eq!(holder.read_report(), Some((4, 0)));
    assert_eq!(cg.pids().unwrap(), vec![holder.pid]);
    let stats = cg.stats().unwrap();
    assert!(stats.memory_usage_bytes >= 4 << 20, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, Some(64 << 20));
    assert_eq!(stats.pids_current, 1);
    assert_eq!(stats.pids_limit, Some(100));

    // Update: raise memory (without restating swap: the allowance stays zero), lower pids,
    // lift the cpu quota but keep the period.
    let update = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(128 * MIB)
                .build()
                .unwrap(),
        )
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
        .build()
        .unwrap();
    cg.update(&update).unwrap();
    match cg.hierarchy() {
        Hierarchy::Unified => {
            assert_eq!(read_file(&mem, "memory.max"), (128 * MIB).to_string());
            assert_eq!(read_file(&mem, "memory.swap.max"), "0");
            assert_eq!(read_file(&cpu, "cpu.max"), "max 100000");
        }
        Hierarchy::Legacy => {
            assert_eq!(
                read_file(&mem, "memory.limit_in_bytes"),
                (128 * MIB).to_string()
            );
            assert_eq!(
                read_file(&mem, "memory.memsw.limit_in_bytes"),
                (128 * MIB).to_string()
            );
            assert_eq!(read_file(&cpu, "cpu.cfs_quota_us"), "-1");
        }
    }
    assert_eq!(read_file(&pids, "pids.max"), "20");
    let stats = cg.stats().unwrap();
    assert_eq!(stats.memory_limit_bytes, Some(128 << 20));
    assert_eq!(stats.pids_limit, Some(20));

    // Open (as a restarted caller would) sees the same cgroup.
    let reopened = Cgroup::open(&path).unwrap();
    assert_eq!(reopened.pids().unwrap(), vec![holder.pid]);
    assert_eq!(reopened.dirs(), cg.dirs());

    holder.release();
    holder.wait();
    cg.destroy().unwrap();
}

#[test]
fn invalid_resources_fail_and_leave_nothing() {
    require_root();
    let path = unique_path("invalid");
    let _cleanup = Cleanup(path.clone());
    // memory+swap below the memory limit cannot be expressed in either hierarchy.
    let err = Cgroup::create(&path, Some(&memory(64 * MIB, 32 * MIB))).unwrap_err();
    assert!(
        err.to_string().contains("linux.resources.memory.swap"),
        "{err}"
    );
    assert!(matches!(
        Cgroup::open(&path),
        Err(cgroups::Error::NotFound(_))
    ));
    assert!(matches!(
        Cgroup::create("/nanokube-test/../escape", None),
        Err(cgroups::Error::InvalidPath { .. })
    ));
    assert!(matches!(
        Cgroup::create("/", None),
        Err(cgroups::Error::InvalidPath { .. })
    ));
}

#[test]
fn kill_all_signals_every_member_and_destroy_cleans_up() {
    require_root();
    let path = unique_path("killall");
    let _cleanup = Cleanup(path.clone());
    let cg = Cgroup::create(&path, None).unwrap();
    // Creating again reuses the same cgroup.
    let again = Cgroup::create(&path, None).unwrap();
    assert_eq!(again.dirs(), cg.dirs());
    let mut children: Vec<Child> = (0..3).map(|_| Child::spawn(Work::Pause)).collect();
    for c in &children {
        cg.add_pid(c.pid).unwrap();
        c.release();
    }
    let mut expected: Vec<i32> = children.iter().map(|c| c.pid).collect();
    expected.sort();
    assert_eq!(cg.pids().unwrap(), expected);

    // A container may make cgroups of its own: a process there is still a member, is still
    // signalled, and the nested cgroup must not block removal.
    for dir in cg.dirs() {
        let nested = dir.join("nested");
        std::fs::create_dir(&nested).unwrap();
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if nested.join(file).exists() {
                std::fs::write(nested.join(file), read_file(&dir, file)).unwrap();
            }
        }
        std::fs::write(nested.join("cgroup.procs"), children[0].pid.to_string()).unwrap();
    }
    assert_eq!(cg.pids().unwrap(), expected);
    // Live processes: destroy refuses and reports them.
    let refused = Cgroup::open(&path).unwrap().destroy().unwrap_err();
    assert!(matches!(refused, cgroups::Error::Busy { .. }), "{refused}");

    // SIGTERM takes the freezer path (cgroup.kill only does SIGKILL).
    cg.kill_all(libc::SIGTERM).unwrap();
    for c in &mut children {
        assert!(matches!(
            c.wait(),
            nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGTERM, _)
        ));
    }
    let dirs = cg.dirs();
    cg.destroy().unwrap();
    assert_gone(&dirs);
    // Killing in or destroying what is already gone is fine; opening it is not.
    again.kill_all(libc::SIGKILL).unwrap();
    again.destroy().unwrap();
    assert!(matches!(
        Cgroup::open(&path),
        Err(cgroups::Error::NotFound(_))
    ));
}

#[test]
fn device_access_is_limited_to_the_allowed_devices() {
    require_root();
    let path = unique_path("devices");
    let _cleanup = Cleanup(path.clone());
    // Our own nodes: /dev/null's numbers (allowed to every container) and /dev/kmsg's
    // (allowed to none unless the spec says so).
    let dir = std::env::temp_dir().join(format!("nanokube-devices-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    struct RemoveDir(PathBuf);
    impl Drop for RemoveDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = RemoveDir(dir.clone());
    let null =
        std::ffi::CString::new(dir.join("null").into_os_string().into_encoded_bytes()).unwrap();
    let kmsg =
        std::ffi::CString::new(dir.join("kmsg").into_os_string().into_encoded_bytes()).unwrap();
    for (node, minor) in [(&null, 3), (&kmsg, 11)] {
        // SAFETY: node is a valid C string; mknod creates a character device node.
        let rc = unsafe {
            libc::mknod(
                node.as_ptr(),
                libc::S_IFCHR | 0o600,
                libc::makedev(1, minor),
            )
        };
        assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    }
    // Outside the cgroup both open.
    assert!(File::open(dir.join("kmsg")).is_ok());

    let cg = Cgroup::create(&path, None).unwrap();
    let mut child = Child::spawn(Work::OpenTwice {
        a: null.as_ptr(),
        b: kmsg.as_ptr(),
    });
    cg.add_pid(child.pid).unwrap();
    child.release();
    assert_eq!(child.read_report(), Some((0, libc::EPERM as u64)));

    // An update that allows 1:11 for reading lets the same process open it.
    let allow_kmsg = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1i64)
            .minor(11i64)
            .access("r")
            .build()
            .unwrap()])
        .build()
        .unwrap();
    cg.update(&allow_kmsg).unwrap();
    child.release();
    assert_eq!(child.read_report(), Some((0, 0)));
    child.wait();
    cg.destroy().unwrap();
}

/// A pod-style nesting: a cgroup with device rules, and a container's cgroup below it with its
/// own. On v2 both attach a device program (the kernel refuses a child's program under one
/// attached without flags), and the parent's rules can still be updated afterwards.
#[test]
fn nested_cgroups_each_get_their_device_rules() {
    require_root();
    let parent = unique_path("devnest");
    let child = format!("{parent}/container");
    let _cleanup = Cleanup(parent.clone());
    let _cleanup_child = Cleanup(child.clone());
    let allow_kmsg = LinuxResourcesBuilder::default()
        .devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1i64)
            .minor(11i64)
            .access("r")
            .build()
            .unwrap()])
        .build()
        .unwrap();
    // The parent allows first: below it (v1 and v2 alike) nothing may allow more.
    let parent_cg = Cgroup::create(&parent, Some(&allow_kmsg)).unwrap();
    let child_cg = Cgroup::create(&child, None).unwrap();
    let mut proc = Child::spawn(Work::Pause);
    child_cg.add_pid(proc.pid).unwrap();
    proc.release();
    child_cg.update(&allow_kmsg).unwrap();
    match parent_cg.hierarchy() {
        // Attaching again replaces the parent's program, children or not.
        Hierarchy::Unified => parent_cg.update(&allow_kmsg).unwrap(),
        // v1's devices controller refuses to reset (devices.deny "a") a cgroup with children:
        // that is the kernel's rule, and the error must say which file refused.
        Hierarchy::Legacy => {
            let err = parent_cg.update(&allow_kmsg).unwrap_err().to_string();
            assert!(err.contains("devices.deny"), "{err}");
        }
    }
    child_cg.kill_all(libc::SIGKILL).unwrap();
    proc.wait();
    child_cg.destroy().unwrap();
    parent_cg.destroy().unwrap();
}

/// A container under a pod cgroup that caps CPU at 50%: lowering its period while its old quota
/// would make the ratio exceed the pod's is refused by the kernel if the period goes first, so
/// the quota goes first then (runc's update.bats "pod cgroup with pod limit set").
#[test]
fn a_shorter_cpu_period_under_a_pod_limit_is_applied() {
    require_root();
    let pod = unique_path("cpupod");
    let child = format!("{pod}/container");
    let _cleanup = Cleanup(pod.clone());
    let _cleanup_child = Cleanup(child.clone());
    let cpu = |period: u64, quota: i64| {
        LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .period(period)
                    .quota(quota)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let pod_cg = Cgroup::create(&pod, Some(&cpu(100_000, 50_000))).unwrap();
    let child_cg = Cgroup::create(&child, Some(&cpu(1_000_000, 500_000))).unwrap();
    child_cg.update(&cpu(10_000, 3_000)).unwrap();
    let dir = controller_dir(&child_cg, "cpu");
    match child_cg.hierarchy() {
        Hierarchy::Unified => assert_eq!(read_file(&dir, "cpu.max").trim(), "3000 10000"),
        Hierarchy::Legacy => {
            assert_eq!(read_file(&dir, "cpu.cfs_period_us").trim(), "10000");
            assert_eq!(read_file(&dir, "cpu.cfs_quota_us").trim(), "3000");
        }
    }
    child_cg.destroy().unwrap();
    pod_cg.destroy().unwrap();
}
