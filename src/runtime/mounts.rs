//! The container's filesystem, built by the init inside its new mount namespace: the rootfs
//! (plain directory or overlay), the spec's mounts resolved inside the root, /dev, sysctls,
//! pivot_root, then masked and read-only paths. Runs in the single-threaded init after exec,
//! so ordinary Rust is fine here.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, Mount, Spec};
use serde::{Deserialize, Serialize};

use super::sys::{self, fd_path};

/// Errors building the container's filesystem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed; `what` says which step and path.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    /// Something on disk is not what it must be (a symlinked /proc, a fake /dev/null, ...).
    #[error("{0}")]
    Refused(String),
}

fn sys(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

/// Annotation asking for an overlay rootfs: JSON `{"lower":["/l1","/l2"],"upper":"/u","work":"/w"}`
/// (host paths). The overlay is mounted on root.path inside the container's mount namespace,
/// so it disappears with the container and leaves nothing to clean up on the host.
pub const OVERLAY_ANNOTATION: &str = "io.nanokube.rootfs.overlay";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overlay {
    pub lower: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
}

impl Overlay {
    pub fn parse(text: &str) -> Result<Overlay, String> {
        let o: Overlay = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if o.lower.is_empty() {
            return Err("lower must list at least one directory".into());
        }
        if o.upper.is_some() != o.work.is_some() {
            return Err("upper and work go together".into());
        }
        let all = o.lower.iter().chain(o.upper.iter()).chain(o.work.iter());
        for p in all {
            let s = p.to_string_lossy();
            if !p.is_absolute() || s.contains(',') || s.contains(':') {
                return Err(format!("{s}: must be absolute, without ',' or ':'"));
            }
        }
        Ok(o)
    }

    fn data(&self) -> String {
        let lower: Vec<String> = self.lower.iter().map(|p| p.display().to_string()).collect();
        let mut data = format!("lowerdir={}", lower.join(":"));
        if let (Some(u), Some(w)) = (&self.upper, &self.work) {
            data.push_str(&format!(
                ",upperdir={},workdir={}",
                u.display(),
                w.display()
            ));
        }
        data
    }
}

pub fn propagation_flag(name: &str) -> Option<libc::c_ulong> {
    Some(match name {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

// Mount attributes of mount_setattr(2) (linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

/// fstab-style options split into mount flags, propagation changes and filesystem data.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub data: Vec<String>,
    pub bind: bool,
    /// Attributes for the whole mount tree (`rro`, `rnosuid`, ...), set and cleared with
    /// mount_setattr(AT_RECURSIVE) once the mount is made: the old mount(2) flags only ever
    /// reach the top mount of a recursive bind, so dropping these would leave submounts
    /// writable.
    pub rec_set: u64,
    pub rec_clr: u64,
    /// `tmpcopyup`: a tmpfs starts with a copy of the directory it covers (never mount data).
    pub copyup: bool,
}

/// The recursive form of an option (runc 1.1's list): (set, clear) for mount_setattr. An
/// atime mode must clear the whole atime field (the kernel requires it) and set one value.
fn recursive_option(opt: &str) -> Option<(u64, u64)> {
    let atime = |set| (set, MOUNT_ATTR_ATIME);
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        "rnoatime" => atime(MOUNT_ATTR_NOATIME),
        "rstrictatime" => atime(MOUNT_ATTR_STRICTATIME),
        "rrelatime" | "ratime" | "rnorelatime" | "rnostrictatime" => atime(MOUNT_ATTR_RELATIME),
        _ => return None,
    })
}

pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    for opt in opts {
        if let Some((set, clear)) = recursive_option(opt) {
            // Gathered as runc gathers them: both lists grow, and the kernel clears first,
            // so "rro" beats "rrw" whatever their order.
            o.rec_set |= set;
            o.rec_clr |= clear;
            continue;
        }
        let (set, clear): (libc::c_ulong, libc::c_ulong) = match opt.as_str() {
            "nosymfollow" => (libc::MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, libc::MS_NOSYMFOLLOW),
            "iversion" => (libc::MS_I_VERSION, 0),
            "noiversion" => (0, libc::MS_I_VERSION),
            "lazytime" => (libc::MS_LAZYTIME, 0),
            "nolazytime" => (0, libc::MS_LAZYTIME),
            "acl" => (libc::MS_POSIXACL, 0),
            "noacl" => (0, libc::MS_POSIXACL),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "nosuid" => (libc::MS_NOSUID, 0),
            "suid" => (0, libc::MS_NOSUID),
            "nodev" => (libc::MS_NODEV, 0),
            "dev" => (0, libc::MS_NODEV),
            "noexec" => (libc::MS_NOEXEC, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "noatime" => (libc::MS_NOATIME, 0),
            "atime" => (0, libc::MS_NOATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (libc::MS_BIND, 0)
            }
            "rbind" => {
                o.bind = true;
                (libc::MS_BIND | libc::MS_REC, 0)
            }
            "defaults" => (0, 0),
            "tmpcopyup" => {
                o.copyup = true;
                continue;
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else {
                    o.data.push(other.to_string());
                }
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
    }
    o
}

/// A mount destination as runc reads it: relative to the container's root even without a
/// leading '/', with "." dropped and ".." taken lexically and clamped at the root. Symlinks
/// are left to `open_in_root`, which follows them inside the root.
pub fn clean_dest(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Opens `path` (absolute, container view) inside the root at `rootfd`, creating missing
/// directories on the way and, if `file` is set, the last component as an empty file. A
/// dangling symlink in the image is followed *inside* the root (its target is created there),
/// never on the host.
fn open_in_root(rootfd: &OwnedFd, path: &Path, file: bool) -> io::Result<OwnedFd> {
    open_in_root_depth(rootfd, path, file, 0)
}

fn open_in_root_depth(
    rootfd: &OwnedFd,
    path: &Path,
    file: bool,
    depth: u32,
) -> io::Result<OwnedFd> {
    if depth > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    // ".." is taken lexically here (a link target such as "../var" is joined to its
    // directory first), clamped at the root; openat2 keeps any link it meets inside the root.
    let clean = clean_dest(path);
    let rel = clean.strip_prefix("/").unwrap_or(&clean).to_path_buf();
    if rel.as_os_str().is_empty() {
        return sys::openat2(
            rootfd.as_raw_fd(),
            Path::new("."),
            libc::O_PATH,
            libc::RESOLVE_IN_ROOT,
        );
    }
    let resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    match sys::openat2(rootfd.as_raw_fd(), &rel, libc::O_PATH, resolve) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        Err(_) => {}
    }
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = open_in_root_depth(rootfd, parent_rel, false, depth + 1)?;
    // The parent fd is O_PATH; reopen it as a directory to create inside it.
    let dir = sys::open(
        Path::new(&fd_path(&parent)),
        libc::O_DIRECTORY | libc::O_RDONLY,
    )?;
    let name = CString::new(rel.file_name().unwrap_or_default().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: stat is plain data; fstatat gets a valid dirfd, C string and out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above; never follows the last component.
    let exists = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    } == 0;
    if exists && st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: valid dirfd, C string and buffer of the given length.
        let n = sys::cvt_long(unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr() as *mut libc::c_char,
                buf.len(),
            ) as libc::c_long
        })?;
        buf.truncate(n as usize);
        let target = PathBuf::from(std::ffi::OsString::from_vec(buf));
        // A relative target counts from the directory the link really sits in, which is not
        // `parent_rel` when that path went through links itself.
        let real_parent = match (
            std::fs::read_link(fd_path(&parent)),
            std::fs::read_link(fd_path(rootfd)),
        ) {
            (Ok(p), Ok(root)) => p
                .strip_prefix(&root)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| parent_rel.to_path_buf()),
            _ => parent_rel.to_path_buf(),
        };
        let next = Path::new("/").join(real_parent).join(target);
        return open_in_root_depth(rootfd, &next, file, depth + 1);
    }
    if file {
        // SAFETY: valid dirfd and C string; the new fd is closed at once.
        let fd = sys::cvt(unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        })?;
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
    } else {
        sys::mkdirat(dir.as_raw_fd(), &name, 0o755)?;
    }
    sys::openat2(rootfd.as_raw_fd(), &rel, libc::O_PATH, resolve)
}

/// Everything before pivot_root. `cgroup` mounts need the init to sit in its cgroup, which
/// the parent may still be arranging (a v1 migration waits for an RCU grace period), so they
/// are returned for `mount_deferred` after pivot_root, unless another mount nests under one:
/// then they are mounted in order, after `before_cgroup` (which waits for the cgroup).
pub fn prepare_rootfs(
    spec: &Spec,
    rootfs: &Path,
    host: &HostCgroups,
    before_cgroup: &mut dyn FnMut() -> Result<(), Error>,
) -> Result<Vec<Mount>, Error> {
    let linux = spec.linux().clone().unwrap_or_default();
    // Nothing we mount may propagate back to the host.
    let prop = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(propagation_flag)
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    sys::mount(None, "/", None, libc::MS_SLAVE | libc::MS_REC, None)
        .map_err(sys("make / rslave"))?;
    let root_str = rootfs
        .to_str()
        .ok_or_else(|| Error::Refused("rootfs path is not UTF-8".into()))?;
    if let Some(text) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(OVERLAY_ANNOTATION))
    {
        let overlay = Overlay::parse(text).map_err(Error::Refused)?;
        sys::mount(
            Some("overlay"),
            root_str,
            Some("overlay"),
            0,
            Some(&overlay.data()),
        )
        .map_err(sys(format!("mount overlay on {root_str}")))?;
    }
    // pivot_root needs the new root to be a mount point.
    sys::mount(
        Some(root_str),
        root_str,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(sys(format!("bind {root_str}")))?;
    sys::mount(None, root_str, None, prop, None).map_err(sys("rootfs propagation"))?;
    let rootfd = sys::open(rootfs, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(sys(format!("open {root_str}")))?;

    let mut mounts: Vec<Mount> = spec.mounts().clone().unwrap_or_default();
    for m in &mut mounts {
        let dest = clean_dest(m.destination());
        m.set_destination(dest);
    }
    // /dev is always a fresh tmpfs we populate ourselves (an image's /dev is never trusted).
    if !mounts.iter().any(|m| m.destination() == Path::new("/dev")) {
        let mut dev = Mount::default();
        dev.set_destination("/dev".into());
        dev.set_typ(Some("tmpfs".into()));
        dev.set_source(Some("tmpfs".into()));
        dev.set_options(Some(vec![
            "nosuid".into(),
            "strictatime".into(),
            "mode=755".into(),
            "size=65536k".into(),
        ]));
        mounts.insert(0, dev);
    }
    for (typ, dest, opts) in [
        ("devpts", "/dev/pts", "newinstance,ptmxmode=0666,mode=0620"),
        ("tmpfs", "/dev/shm", "mode=1777,size=65536k"),
    ] {
        if !mounts.iter().any(|m| m.destination() == Path::new(dest)) {
            let mut m = Mount::default();
            m.set_destination(dest.into());
            m.set_typ(Some(typ.into()));
            m.set_source(Some(typ.into()));
            let mut o: Vec<String> = vec!["nosuid".into(), "noexec".into()];
            o.extend(opts.split(',').map(String::from));
            m.set_options(Some(o));
            mounts.push(m);
        }
    }
    let is_cgroup = |m: &Mount| matches!(m.typ().as_deref(), Some("cgroup") | Some("cgroup2"));
    let nested = mounts.iter().filter(|c| is_cgroup(c)).any(|c| {
        mounts.iter().any(|m| {
            m.destination() != c.destination() && m.destination().starts_with(c.destination())
        })
    });
    let mut deferred = Vec::new();
    let mut dev_done = false;
    let mut hook = Some(before_cgroup);
    for m in &mounts {
        if is_cgroup(m) {
            // Binding the host's directories (no cgroup namespace) needs the host still
            // visible and no membership, so only fresh mounts wait for after pivot_root.
            if !nested && host.is_empty() {
                deferred.push(m.clone());
                continue;
            }
            if host.is_empty() {
                if let Some(h) = hook.take() {
                    h()?;
                }
            }
        }
        let m = &devpts_ids_on_host(&linux, m);
        mount_one(&rootfd, m, host).map_err(|e| match e {
            Error::Sys { what, source } => Error::Sys {
                what: format!("mount {}: {what}", m.destination().display()),
                source,
            },
            other => other,
        })?;
        if m.destination() == Path::new("/dev") {
            populate_dev(&rootfd, spec)?;
            dev_done = true;
        }
    }
    debug_assert!(dev_done);
    if let Some(sysctl) = linux.sysctl() {
        write_sysctls(sysctl)?;
    }
    Ok(deferred)
}

/// A devpts is mounted before the container's user namespace exists (init.rs,
/// `enter_user_namespace`), so its `uid=`/`gid=` options would name host ids; they are given
/// as the host ids the container's ids map to, so a terminal's group (gid=5, tty) is the
/// container's tty group inside, as with runc.
fn devpts_ids_on_host(linux: &oci_spec::runtime::Linux, m: &Mount) -> Mount {
    let new_userns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::User && n.path().is_none());
    if m.typ().as_deref() != Some("devpts") || !new_userns {
        return m.clone();
    }
    let map = |maps, id| super::spec::host_id(maps, id).unwrap_or(id);
    let options = m.options().as_ref().map(|opts| {
        opts.iter()
            .map(|o| match o.split_once('=') {
                Some(("uid", v)) => v.parse().map_or(o.clone(), |id| {
                    format!("uid={}", map(linux.uid_mappings(), id))
                }),
                Some(("gid", v)) => v.parse().map_or(o.clone(), |id| {
                    format!("gid={}", map(linux.gid_mappings(), id))
                }),
                _ => o.clone(),
            })
            .collect()
    });
    let mut m = m.clone();
    m.set_options(options);
    m
}

/// The `cgroup` mounts `prepare_rootfs` left for after pivot_root (the root is now "/").
pub fn mount_deferred(mounts: &[Mount], host: &HostCgroups) -> Result<(), Error> {
    if mounts.is_empty() {
        return Ok(());
    }
    let rootfd =
        sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).map_err(sys("open /"))?;
    for m in mounts {
        mount_one(&rootfd, m, host)?;
    }
    Ok(())
}

fn mount_one(rootfd: &OwnedFd, m: &Mount, host: &HostCgroups) -> Result<(), Error> {
    let dest = m.destination();
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "" });
    let bind = opts.bind || typ == "bind";
    let source = m.source().as_ref().map(|s| s.display().to_string());
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());

    // A bind of a file needs a file to bind onto.
    let src_is_file = bind
        && source
            .as_deref()
            .and_then(|s| std::fs::metadata(s).ok())
            .is_some_and(|md| !md.is_dir());
    if dest == Path::new("/proc") {
        // CVE-2019-16884: /proc must be a real directory, never a symlink the image planted.
        let rel = Path::new("proc");
        if let Ok(fd) = sys::openat2(
            rootfd.as_raw_fd(),
            rel,
            libc::O_PATH | libc::O_NOFOLLOW,
            libc::RESOLVE_IN_ROOT,
        ) {
            if !is_dir(&fd)? {
                return Err(Error::Refused(
                    "the image's /proc is not a directory".into(),
                ));
            }
        }
    }
    let mut data = data.map(str::to_string);
    if typ == "tmpfs" && !opts.data.iter().any(|d| d.starts_with("mode=")) {
        // As runc: a tmpfs over an existing directory keeps that directory's mode (a fresh
        // tmpfs would be 1777); one that `mode=` sets is left alone.
        if let Some(mode) = existing_dir_mode(rootfd, dest) {
            let d = data.get_or_insert_with(String::new);
            if !d.is_empty() {
                d.push(',');
            }
            d.push_str(&format!("mode={mode:o}"));
        }
    }
    let data = data.as_deref();
    let target = open_in_root(rootfd, dest, src_is_file).map_err(sys("resolve in root"))?;
    // A symlink in the image can lead a destination into /proc even though the spec's path
    // is elsewhere (CVE-2019-16884): only the proc mount itself may land on procfs.
    if typ != "proc" && sys::fs_type(&target).map_err(sys("statfs"))? == libc::PROC_SUPER_MAGIC {
        return Err(Error::Refused(format!(
            "mount {}: resolves into /proc; mounts over or under /proc are refused",
            dest.display()
        )));
    }
    let tpath = fd_path(&target);
    let mut flags = opts.flags & !libc::MS_BIND & !libc::MS_REC;
    if dest == Path::new("/dev") {
        // /dev is filled after mounting it; a read-only one is made so by `readonly_dev`.
        flags &= !libc::MS_RDONLY;
    }
    match typ {
        "cgroup" | "cgroup2" if !bind => mount_cgroups(rootfd, dest, &target, flags, host)?,
        _ if bind => {
            let src = source
                .as_deref()
                .ok_or_else(|| Error::Refused("bind mount without source".into()))?;
            let rec = opts.flags & libc::MS_REC;
            sys::mount(Some(src), &tpath, None, libc::MS_BIND | rec, None)
                .map_err(sys(format!("bind {src}")))?;
            if flags != 0 {
                // Bind mounts take their flags only on a remount of the new mount; reopen the
                // target so the fd names the new mount, not the directory underneath.
                let fresh = open_in_root(rootfd, dest, false).map_err(sys("reopen"))?;
                let keep = locked_flags(&fresh);
                sys::mount(
                    None,
                    &fd_path(&fresh),
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | flags | keep,
                    None,
                )
                .map_err(sys("remount bind"))?;
            }
        }
        _ => {
            // The covered directory, still reachable through this fd once the tmpfs is on it.
            let below = (opts.copyup && typ == "tmpfs")
                .then(|| sys::open(Path::new(&tpath), libc::O_DIRECTORY | libc::O_RDONLY))
                .transpose()
                .map_err(sys(format!("tmpcopyup: open {}", dest.display())))?;
            let src = source.as_deref().unwrap_or(typ);
            sys::mount(Some(src), &tpath, Some(typ), flags, data)
                .map_err(sys(format!("mount {typ}")))?;
            if let Some(below) = below {
                let fresh = open_in_root(rootfd, dest, false).map_err(sys("reopen"))?;
                let top = sys::open(
                    Path::new(&fd_path(&fresh)),
                    libc::O_DIRECTORY | libc::O_RDONLY,
                )
                .map_err(sys("reopen"))?;
                super::copyup::copy_tree(&below, &top)
                    .map_err(sys(format!("tmpcopyup into {}", dest.display())))?;
            }
        }
    }
    let fresh = open_in_root(rootfd, dest, false).map_err(sys("reopen"))?;
    if typ == "proc" {
        // Verify we got a real procfs instance, not something raced in beneath it.
        if sys::fs_type(&fresh).map_err(sys("statfs"))? != libc::PROC_SUPER_MAGIC {
            return Err(Error::Refused(
                "/proc is not procfs after mounting it".into(),
            ));
        }
    }
    if opts.rec_set != 0 || opts.rec_clr != 0 {
        set_recursive(&fresh, opts.rec_set, opts.rec_clr).map_err(sys("mount_setattr"))?;
    }
    for p in &opts.propagation {
        sys::mount(None, &fd_path(&fresh), None, *p, None).map_err(sys("propagation"))?;
    }
    Ok(())
}

/// struct mount_attr (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// mount_setattr(2) with AT_RECURSIVE on the mount tree whose root `fd` names.
fn set_recursive(fd: &OwnedFd, set: u64, clr: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid fd, an empty C string with AT_EMPTY_PATH, and a mount_attr of the size
    // passed; the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    sys::cvt_long(r).map(drop)
}

/// The permission bits of `dest` inside the root if it already is a directory.
fn existing_dir_mode(rootfd: &OwnedFd, dest: &Path) -> Option<u32> {
    let rel = dest.strip_prefix("/").unwrap_or(dest);
    let fd = sys::openat2(
        rootfd.as_raw_fd(),
        rel,
        libc::O_PATH,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
    .ok()?;
    let st = sys::fstat(&fd).ok()?;
    (st.st_mode & libc::S_IFMT == libc::S_IFDIR).then_some(st.st_mode & 0o7777)
}

/// Creates process.cwd (0755, as runc) when the image lacks it, inside the root (after
/// pivot_root) and before a read-only root would forbid it.
pub fn make_cwd(cwd: &Path) -> Result<(), Error> {
    let root =
        sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).map_err(sys("open /"))?;
    open_in_root(&root, cwd, false)
        .map(drop)
        .map_err(sys(format!("create cwd {}", cwd.display())))
}

/// A spec that mounts /dev read-only gets it so once everything under it exists (devices,
/// the console, the pts/shm/mqueue mount points), as runc does at the end.
pub fn readonly_dev(spec: &Spec) -> Result<(), Error> {
    let ro = spec.mounts().iter().flatten().any(|m| {
        clean_dest(m.destination()) == Path::new("/dev")
            && parse_options(m.options().as_deref().unwrap_or(&[])).flags & libc::MS_RDONLY != 0
    });
    if !ro {
        return Ok(());
    }
    let fd = sys::open(
        Path::new("/dev"),
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
    )
    .map_err(sys("open /dev"))?;
    let keep = locked_flags(&fd);
    sys::mount(
        None,
        &fd_path(&fd),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
        None,
    )
    .map_err(sys("remount /dev read-only"))
}

fn is_dir(fd: &OwnedFd) -> Result<bool, Error> {
    let st = sys::fstat(fd).map_err(sys("fstat"))?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Flags of the mount behind `fd` that a bind remount must repeat (the kernel refuses to
/// clear nosuid/nodev/noexec that way).
fn locked_flags(fd: &OwnedFd) -> libc::c_ulong {
    // SAFETY: plain data filled by the kernel.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) } != 0 {
        return 0;
    }
    let mut f = 0;
    for (st_flag, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            f |= ms;
        }
    }
    f
}

/// A `cgroup` mount: cgroup2 when the host is unified; on v1 / hybrid hosts a tmpfs holding
/// one mount per hierarchy listed in /proc/self/cgroup (inside a cgroup namespace each shows
/// only the container's own subtree).
fn mount_cgroups(
    rootfd: &OwnedFd,
    dest: &Path,
    target: &OwnedFd,
    flags: libc::c_ulong,
    host: &HostCgroups,
) -> Result<(), Error> {
    let tpath = fd_path(target);
    let flags = flags | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // Which hierarchies we are in, from /proc/self/cgroup: looking at /sys/fs/cgroup would
    // see the container's (still empty) view once pivot_root has happened.
    let list =
        std::fs::read_to_string("/proc/self/cgroup").map_err(sys("read /proc/self/cgroup"))?;
    if list.lines().all(|l| l.starts_with("0::")) {
        if let Some((_, fd)) = host.iter().find(|(n, _)| n.is_empty()) {
            sys::mount(Some(&fd_path(fd)), &tpath, None, libc::MS_BIND, None)
                .map_err(sys("bind cgroup"))?;
            // Remount the new mount, not the directory the old fd still names.
            let fresh = open_in_root(rootfd, dest, false).map_err(sys("reopen cgroup"))?;
            return sys::mount(
                None,
                &fd_path(&fresh),
                None,
                libc::MS_BIND | libc::MS_REMOUNT | flags,
                None,
            )
            .map_err(sys("remount cgroup"));
        }
        return sys::mount(Some("cgroup2"), &tpath, Some("cgroup2"), flags, None)
            .map_err(sys("mount cgroup2"));
    }
    sys::mount(
        Some("tmpfs"),
        &tpath,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(sys("mount cgroup tmpfs"))?;
    // Reopen by path: the old fd still names the directory underneath the new tmpfs.
    let top = open_in_root(rootfd, dest, false).map_err(sys("reopen cgroup tmpfs"))?;
    let tpath = fd_path(&top);
    let dir = sys::open(Path::new(&tpath), libc::O_DIRECTORY | libc::O_RDONLY)
        .map_err(sys("open cgroup tmpfs"))?;
    for line in list.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls) = (parts.next(), parts.next().unwrap_or(""));
        let (name, fstype, data) = if ctrls.is_empty() {
            // On a hybrid host the v2 hierarchy holds no controllers, and a fresh cgroup2
            // mount costs more (~14 ms here) than the rest of the container's start.
            continue;
        } else {
            let name = ctrls.strip_prefix("name=").unwrap_or(ctrls).to_string();
            (name, "cgroup", Some(ctrls))
        };
        let own = host.iter().find(|(n, _)| *n == name);
        if !host.is_empty() && own.is_none() {
            // Without a cgroup namespace we only show the container's own directories; a
            // hierarchy it has none in (e.g. name=systemd) stays out.
            continue;
        }
        let cname =
            CString::new(name.clone()).map_err(|_| Error::Refused("bad cgroup name".into()))?;
        sys::mkdirat(dir.as_raw_fd(), &cname, 0o755).map_err(sys("mkdir cgroup"))?;
        let sub = format!("{}/{}", fd_path(&dir), name);
        match own {
            Some((_, fd)) => bind_cgroup(fd, &sub, flags)?,
            None => sys::mount(Some(fstype), &sub, Some(fstype), flags, data)
                .map_err(sys(format!("mount cgroup {name}")))?,
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        sys::mount(
            None,
            &tpath,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | flags,
            None,
        )
        .map_err(sys("remount cgroup tmpfs ro"))?;
    }
    Ok(())
}

/// The container's own cgroup directories on the host, opened before pivot_root, by
/// hierarchy name ("cpu", "memory", ... on v1; "" for a v2-only host's single hierarchy).
/// Without a cgroup namespace, a fresh cgroup mount would show the host's whole tree, so the
/// `cgroup` mount binds these instead (as runc does). Empty when there is a cgroup namespace.
pub type HostCgroups = Vec<(String, OwnedFd)>;

pub fn open_host_cgroups(dirs: &[PathBuf]) -> Result<HostCgroups, Error> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(rel) = dir.strip_prefix("/sys/fs/cgroup") else {
            continue;
        };
        let fd = sys::open(dir, libc::O_PATH | libc::O_DIRECTORY)
            .map_err(sys(format!("open {}", dir.display())))?;
        const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
        let v2_only = sys::fs_type(
            &sys::open(Path::new("/sys/fs/cgroup"), libc::O_PATH)
                .map_err(sys("open /sys/fs/cgroup"))?,
        )
        .map_err(sys("statfs /sys/fs/cgroup"))?
            == CGROUP2_SUPER_MAGIC;
        let name = if v2_only {
            String::new()
        } else {
            match rel.components().next() {
                Some(Component::Normal(n)) => n.to_string_lossy().into_owned(),
                _ => continue,
            }
        };
        out.push((name, fd));
    }
    Ok(out)
}

/// Binds a host cgroup directory (an O_PATH fd) at `target`, read-only if `flags` says so.
fn bind_cgroup(src: &OwnedFd, target: &str, flags: libc::c_ulong) -> Result<(), Error> {
    sys::mount(Some(&fd_path(src)), target, None, libc::MS_BIND, None)
        .map_err(sys("bind cgroup"))?;
    sys::mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags,
        None,
    )
    .map_err(sys("remount cgroup"))
}

/// The devices every container gets (hardening.md): null, zero, full, random, urandom, tty.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn populate_dev(rootfd: &OwnedFd, spec: &Spec) -> Result<(), Error> {
    let devp = open_in_root(rootfd, Path::new("/dev"), false).map_err(sys("open /dev"))?;
    if sys::fs_type(&devp).map_err(sys("statfs /dev"))? != libc::TMPFS_MAGIC {
        return Err(Error::Refused("/dev is not the tmpfs we mounted".into()));
    }
    let dev = sys::open(
        Path::new(&fd_path(&devp)),
        libc::O_DIRECTORY | libc::O_RDONLY,
    )
    .map_err(sys("open /dev"))?;
    let mknod = |dir: RawFd,
                 name: &str,
                 kind: libc::mode_t,
                 major: u32,
                 minor: u32,
                 mode: u32,
                 uid: u32,
                 gid: u32|
     -> Result<(), Error> {
        let c = CString::new(name).map_err(|_| Error::Refused("bad device name".into()))?;
        // SAFETY: valid dirfd and C string.
        let r = unsafe {
            libc::mknodat(
                dir,
                c.as_ptr(),
                kind | (mode & 0o7777),
                libc::makedev(major, minor),
            )
        };
        match sys::cvt(r) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => return Ok(()),
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("mknod /dev/{name}"),
                    source: e,
                })
            }
        }
        // SAFETY: valid dirfd and C string; umask may have cut the mode, so set it again.
        sys::cvt(unsafe { libc::fchmodat(dir, c.as_ptr(), mode & 0o7777, 0) })
            .map_err(sys("chmod device"))?;
        // SAFETY: as above; never follow a link.
        sys::cvt(unsafe { libc::fchownat(dir, c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
            .map_err(sys("chown device"))?;
        Ok(())
    };
    for (name, major, minor) in DEFAULT_DEVICES {
        mknod(
            dev.as_raw_fd(),
            name,
            libc::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
        )?;
    }
    if let Some(devices) = spec.linux().as_ref().and_then(|l| l.devices().as_ref()) {
        for d in devices {
            let path = d.path();
            let parts: Vec<&std::ffi::OsStr> = path
                .strip_prefix("/dev")
                .ok()
                .and_then(|rel| {
                    rel.components()
                        .map(|c| match c {
                            Component::Normal(n) => Some(n),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                })
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    Error::Refused(format!(
                        "linux.devices: {} must be a path under /dev",
                        path.display()
                    ))
                })?;
            // Parent directories as runc makes them (--privileged brings /dev/cpu/0/cpuid,
            // /dev/dri/card0, ...), each opened without following links.
            let (name, dirs) = parts.split_last().expect("not empty");
            let mut parent: Option<OwnedFd> = None;
            for dir in dirs {
                let at = parent.as_ref().map_or(dev.as_raw_fd(), |f| f.as_raw_fd());
                let c = CString::new(dir.as_bytes())
                    .map_err(|_| Error::Refused("bad device path".into()))?;
                sys::mkdirat(at, &c, 0o755)
                    .map_err(sys(format!("mkdir for device {}", path.display())))?;
                let next = sys::openat2(
                    at,
                    Path::new(dir),
                    libc::O_DIRECTORY | libc::O_RDONLY | libc::O_NOFOLLOW,
                    libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_BENEATH,
                )
                .map_err(sys(format!("open directory for device {}", path.display())))?;
                parent = Some(next);
            }
            let at = parent.as_ref().map_or(dev.as_raw_fd(), |f| f.as_raw_fd());
            let name = Path::new(name);
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                LinuxDeviceType::A => continue,
            };
            let mode = d.file_mode().unwrap_or(0o666);
            mknod(
                at,
                &name.to_string_lossy(),
                kind,
                d.major() as u32,
                d.minor() as u32,
                mode,
                d.uid().unwrap_or(0),
                d.gid().unwrap_or(0),
            )?;
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let l = CString::new(link).expect("static");
        let t = CString::new(target).expect("static");
        if link == "ptmx" {
            // A spec's device list may hold the host's /dev/ptmx (--privileged copies all of
            // /dev): as runc, the link to the container's own devpts wins.
            // SAFETY: valid dirfd and C string; removes a non-directory entry only.
            let _ = unsafe { libc::unlinkat(dev.as_raw_fd(), l.as_ptr(), 0) };
        }
        // SAFETY: valid dirfd and C strings.
        match sys::cvt(unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), l.as_ptr()) }) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("symlink /dev/{link}"),
                    source: e,
                })
            }
        }
    }
    for dir in ["pts", "shm", "mqueue"] {
        let c = CString::new(dir).expect("static");
        sys::mkdirat(dev.as_raw_fd(), &c, 0o755).map_err(sys(format!("mkdir /dev/{dir}")))?;
    }
    Ok(())
}

/// Writes sysctls through a private procfs instance that is mounted nowhere
/// (`sys::private_procfs`), never through the container's /proc: a bundle can plant mounts
/// there (a bind through an image symlink, or one propagated from a shared mount), and even
/// a bound procfs file of another process passes an fstatfs check (CVE-2025-52881).
/// `RESOLVE_NO_XDEV` also refuses any mount inside the private instance.
fn write_sysctls(sysctl: &std::collections::HashMap<String, String>) -> Result<(), Error> {
    if sysctl.is_empty() {
        return Ok(());
    }
    let proc_fd = sys::private_procfs().map_err(sys("a private procfs for sysctls"))?;
    for (key, value) in sysctl {
        let rel = PathBuf::from("sys").join(key.replace('.', "/"));
        let fd = sys::openat2(
            proc_fd.as_raw_fd(),
            &rel,
            libc::O_WRONLY,
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV,
        )
        .map_err(sys(format!("sysctl {key}")))?;
        if sys::fs_type(&fd).map_err(sys("statfs sysctl"))? != libc::PROC_SUPER_MAGIC {
            return Err(Error::Refused(format!("sysctl {key} is not on procfs")));
        }
        sys::write_fd(&fd, value.as_bytes()).map_err(sys(format!("sysctl {key}")))?;
    }
    Ok(())
}

/// pivot_root into `rootfs` and drop the old root, without needing a directory for it.
pub fn pivot(rootfs: &Path) -> Result<(), Error> {
    let fd = sys::open(rootfs, libc::O_DIRECTORY | libc::O_RDONLY).map_err(sys("open rootfs"))?;
    // SAFETY: valid fd.
    sys::cvt(unsafe { libc::fchdir(fd.as_raw_fd()) }).map_err(sys("chdir rootfs"))?;
    // pivot_root(".", ".") stacks the old root under the new one; unmounting "." then
    // removes the old root (lazily, since our cwd references it).
    // SAFETY: valid C strings.
    sys::cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) })
        .map_err(sys("pivot_root"))?;
    sys::mount(None, ".", None, libc::MS_SLAVE | libc::MS_REC, None)
        .map_err(sys("old root rslave"))?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })
        .map_err(sys("detach old root"))?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(sys("chdir /"))?;
    Ok(())
}

/// `--no-pivot`: moves the rootfs mount onto / and chroots into it, for a rootfs where
/// pivot_root is refused (on the initramfs). The old root stays reachable from inside by a
/// process with CAP_SYS_CHROOT, which is why pivot_root is the default.
pub fn move_root(rootfs: &Path) -> Result<(), Error> {
    hide_host_kernel_fs(rootfs)?;
    let fd = sys::open(rootfs, libc::O_DIRECTORY | libc::O_RDONLY).map_err(sys("open rootfs"))?;
    // SAFETY: valid fd.
    sys::cvt(unsafe { libc::fchdir(fd.as_raw_fd()) }).map_err(sys("chdir rootfs"))?;
    sys::mount(Some("."), "/", None, libc::MS_MOVE, None).map_err(sys("move rootfs onto /"))?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chroot(c".".as_ptr()) }).map_err(sys("chroot"))?;
    // SAFETY: valid C string.
    sys::cvt(unsafe { libc::chdir(c"/".as_ptr()) }).map_err(sys("chdir /"))?;
    Ok(())
}

/// Without pivot_root the host's procfs and sysfs mounts stay in the container's mount
/// namespace, only out of the chroot's sight; the kernel then lets the container mount a fresh,
/// unmasked procfs (a user namespace's root may, when one fully visible exists). As runc, each
/// one outside the rootfs is detached, or covered with an empty read-only tmpfs if it cannot be.
fn hide_host_kernel_fs(rootfs: &Path) -> Result<(), Error> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(sys("read mountinfo"))?;
    let mut targets: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let point = unescape_mountinfo(left.split_whitespace().nth(4)?);
            (matches!(fstype, "proc" | "sysfs") && !Path::new(&point).starts_with(rootfs))
                .then(|| PathBuf::from(point))
        })
        .collect();
    // Deepest first, so a parent's detach cannot take a child out from under us.
    targets.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    targets.dedup();
    for t in targets {
        let c = sys::cstr(&t).map_err(sys("mount point"))?;
        // SAFETY: valid C string.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
            let target = t.to_string_lossy();
            sys::mount(Some("tmpfs"), &target, Some("tmpfs"), libc::MS_RDONLY, None)
                .map_err(sys(format!("hide {target}")))?;
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The null device to mask files with, verified to be the char device 1:3
/// (CVE-2025-31133: an image's /dev/null symlink must not redirect the mask).
fn null_device() -> Result<OwnedFd, Error> {
    let fd = sys::open(Path::new("/dev/null"), libc::O_PATH | libc::O_NOFOLLOW)
        .map_err(sys("open /dev/null"))?;
    let st = sys::fstat(&fd).map_err(sys("fstat /dev/null"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(Error::Refused(
            "/dev/null is not the null device (1:3); refusing to mask with it".into(),
        ));
    }
    Ok(fd)
}

/// Masks paths after pivot_root: /dev/null over files, an empty read-only tmpfs over dirs.
pub fn mask_paths(paths: &[String]) -> Result<(), Error> {
    if paths.is_empty() {
        return Ok(());
    }
    let null = null_device()?;
    for p in paths {
        let fd = match sys::open(Path::new(p), libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("mask {p}"),
                    source: e,
                })
            }
        };
        if is_dir(&fd)? {
            sys::mount(
                Some("tmpfs"),
                &fd_path(&fd),
                Some("tmpfs"),
                libc::MS_RDONLY,
                Some("size=0"),
            )
            .map_err(sys(format!("mask {p}")))?;
        } else {
            sys::mount(
                Some(&fd_path(&null)),
                &fd_path(&fd),
                None,
                libc::MS_BIND,
                None,
            )
            .map_err(sys(format!("mask {p}")))?;
        }
    }
    Ok(())
}

/// Makes paths read-only after pivot_root (bind onto itself, remount read-only).
pub fn readonly_paths(paths: &[String]) -> Result<(), Error> {
    for p in paths {
        let fd = match sys::open(Path::new(p), libc::O_PATH | libc::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Error::Sys {
                    what: format!("readonly {p}"),
                    source: e,
                })
            }
        };
        sys::mount(
            Some(&fd_path(&fd)),
            &fd_path(&fd),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(sys(format!("readonly {p}")))?;
        let fresh = sys::open(Path::new(p), libc::O_PATH | libc::O_NOFOLLOW)
            .map_err(sys(format!("readonly {p}")))?;
        let keep = locked_flags(&fresh);
        sys::mount(
            None,
            &fd_path(&fresh),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
            None,
        )
        .map_err(sys(format!("readonly {p}")))?;
    }
    Ok(())
}

pub fn readonly_root() -> Result<(), Error> {
    let fd = sys::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).map_err(sys("open /"))?;
    let keep = locked_flags(&fd);
    sys::mount(
        None,
        "/",
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
        None,
    )
    .map_err(sys("remount / read-only"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo("/a\\040b/c\\134d"), "/a b/c\\d");
        assert_eq!(unescape_mountinfo("/plain\\04"), "/plain\\04");
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&[
            "ro".into(),
            "nosuid".into(),
            "rbind".into(),
            "rslave".into(),
            "mode=755".into(),
        ]);
        assert_eq!(
            o.flags,
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_BIND | libc::MS_REC
        );
        assert_eq!(o.propagation, vec![libc::MS_SLAVE | libc::MS_REC]);
        assert_eq!(o.data, vec!["mode=755".to_string()]);
        assert!(o.bind);
        let o = parse_options(&["ro".into(), "rw".into()]);
        assert_eq!(o.flags, 0);
        let o = parse_options(&["tmpcopyup".into(), "size=1m".into()]);
        assert!(o.copyup);
        assert_eq!(o.data, vec!["size=1m".to_string()]);
    }

    #[test]
    fn recursive_options_become_mount_attributes() {
        let o = parse_options(&["rbind".into(), "rro".into(), "rnosuid".into()]);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(o.rec_clr, 0);
        assert!(o.data.is_empty(), "{:?}", o.data);
        // Setting beats clearing, whatever the order (as with runc 1.1).
        let o = parse_options(&["rrw".into(), "rro".into(), "rrw".into()]);
        assert_eq!(
            (o.rec_set, o.rec_clr),
            (MOUNT_ATTR_RDONLY, MOUNT_ATTR_RDONLY)
        );
        let o = parse_options(&["rnoatime".into()]);
        assert_eq!(
            (o.rec_set, o.rec_clr),
            (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME)
        );
        let o = parse_options(&["nosymfollow".into(), "lazytime".into()]);
        assert_eq!(o.flags, libc::MS_NOSYMFOLLOW | libc::MS_LAZYTIME);
        assert!(o.data.is_empty());
    }

    #[test]
    fn destinations_are_cleaned_as_runc_cleans_them() {
        for (given, want) in [
            ("tmp", "/tmp"),
            ("/a/../../../b", "/b"),
            ("/./x//y/", "/x/y"),
            ("..", "/"),
            ("/dev", "/dev"),
            ("/a/../proc", "/proc"),
        ] {
            assert_eq!(clean_dest(Path::new(given)), Path::new(want), "{given}");
        }
    }

    #[test]
    fn overlay_annotation_is_checked() {
        assert!(Overlay::parse(r#"{"lower":["/a","/b"],"upper":"/u","work":"/w"}"#).is_ok());
        assert!(Overlay::parse(r#"{"lower":[]}"#).is_err());
        assert!(Overlay::parse(r#"{"lower":["/a"],"upper":"/u"}"#).is_err());
        assert!(Overlay::parse(r#"{"lower":["rel"]}"#).is_err());
        let o = Overlay::parse(r#"{"lower":["/a","/b"],"upper":"/u","work":"/w"}"#).unwrap();
        assert_eq!(o.data(), "lowerdir=/a:/b,upperdir=/u,workdir=/w");
    }
}
