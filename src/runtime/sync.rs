//! The parent <-> init channel: a unix stream socket pair carrying length-prefixed JSON
//! messages, with file descriptors (a pty master, namespace handles) passed by SCM_RIGHTS.
//! Both ends are ordinary processes after exec, so plain Rust (allocation, serde) is fine here.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

/// Errors on the sync channel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed or the peer went away mid-message.
    #[error("sync channel: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a message we know.
    #[error("sync channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    /// The peer closed the channel without a word (it died).
    #[error("the container's init exited before reporting")]
    Closed,
}

/// A compiled seccomp program in a serialisable form (code, jt, jf, k).
pub type Filter = Vec<(u16, u8, u8, u32)>;

/// What the container init needs to build the container.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitConfig {
    pub id: String,
    pub spec: Spec,
    /// Absolute path of the rootfs directory (the overlay mount point when an overlay is used).
    pub rootfs: PathBuf,
    /// The exec fifo in the state dir; init blocks opening it until `start`.
    pub fifo: PathBuf,
    pub seccomp: Option<Filter>,
    /// cgroup v1 `tasks` files the init writes "0" to, joining them itself: a single thread
    /// moving itself needs no global lock, unlike the parent moving it (an RCU grace period).
    #[serde(default)]
    pub join: Vec<PathBuf>,
    /// The container's cgroup directories on the host (`Cgroup::dirs`), bound into the
    /// container when it has no cgroup namespace of its own.
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    /// The spec has hooks around the init's work (prestart, createRuntime, createContainer,
    /// startContainer): the init waits before pivot_root for the runtime's createRuntime
    /// hooks, then reads `Message::HookState` for its own.
    #[serde(default)]
    pub hooks: bool,
    /// `--no-pivot`: move the rootfs onto / and chroot instead of pivot_root (a rootfs on
    /// a ramdisk, where pivot_root is refused).
    #[serde(default)]
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring instead of joining a new one.
    #[serde(default)]
    pub no_new_keyring: bool,
}

/// What an exec'd helper needs to run an extra process in a running container.
/// The namespace handles ride along as fds, in the order of `namespaces`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecConfig {
    pub process: Process,
    pub namespaces: Vec<String>,
    pub seccomp: Option<Filter>,
    /// As `InitConfig::join`.
    #[serde(default)]
    pub join: Vec<PathBuf>,
    /// Report `Ready` and exit without waiting for the process: it is then reparented to the
    /// caller's subreaper (containerd's shim, conmon), which reaps it (`exec --detach`).
    #[serde(default)]
    pub detach: bool,
    /// The host uid that the container's user maps to when the helper joins a user
    /// namespace: the owner of the exec's terminal (the helper cannot map it itself).
    #[serde(default)]
    pub terminal_uid: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    Init(Box<InitConfig>),
    Exec(Box<ExecConfig>),
    /// The parent has moved the init into its cgroup (and run its createRuntime hooks).
    CgroupJoined,
    /// The init has unshared its user namespace: the runtime writes its uid and gid maps.
    MapIds,
    /// The maps are written.
    IdsMapped,
    /// The state document for the init's own hooks (createContainer, startContainer).
    HookState {
        state: String,
    },
    /// The init's seccomp filter hands syscalls to an agent: its listener rides along, for
    /// the runtime to pass on to the agent at linux.seccomp.listenerPath.
    SeccompListener,
    /// The agent has the listener; the init goes on.
    SeccompListenerDelivered,
    /// Setup is done; `pid` is the process the caller should track (host pid namespace view is
    /// the parent's business; for exec it is the pid inside the container).
    Ready {
        pid: i32,
    },
    /// Setup failed; the sender exits after this.
    Error {
        message: String,
    },
    /// An exec'd process finished with this raw wait status.
    Exited {
        status: i32,
    },
}

const MAX_FDS: usize = 16;

pub struct Channel {
    sock: UnixStream,
}

impl Channel {
    pub fn pair() -> Result<(Channel, Channel), Error> {
        // std creates the pair with SOCK_CLOEXEC; the child side clears it just before exec.
        let (a, b) = UnixStream::pair()?;
        Ok((Channel { sock: a }, Channel { sock: b }))
    }

    /// Adopts an inherited descriptor (the init side after exec).
    ///
    /// # Safety
    /// `fd` must be an open unix stream socket that nothing else owns.
    pub unsafe fn from_raw(fd: RawFd) -> Channel {
        // SAFETY: the caller guarantees `fd` is an open socket we now own.
        let sock = unsafe { UnixStream::from_raw_fd(fd) };
        Channel { sock }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    pub fn send(&mut self, msg: &Message) -> Result<(), Error> {
        self.send_with_fds(msg, &[])
    }

    pub fn send_with_fds(&mut self, msg: &Message, fds: &[RawFd]) -> Result<(), Error> {
        let body = serde_json::to_vec(msg)?;
        let mut bytes = (body.len() as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        let sent = send_fds(self.sock.as_raw_fd(), &bytes, fds)?;
        self.sock.write_all(&bytes[sent..])?;
        Ok(())
    }

    pub fn recv(&mut self) -> Result<(Message, Vec<OwnedFd>), Error> {
        let mut header = [0u8; 4];
        let mut fds = Vec::new();
        let mut got = 0;
        while got < 4 {
            let n = recv_fds(self.sock.as_raw_fd(), &mut header[got..], &mut fds)?;
            if n == 0 {
                return Err(Error::Closed);
            }
            got += n;
        }
        let len = u32::from_le_bytes(header) as usize;
        let mut body = vec![0u8; len];
        self.sock.read_exact(&mut body).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Closed
            } else {
                Error::Io(e)
            }
        })?;
        Ok((serde_json::from_slice(&body)?, fds))
    }
}

/// Sends `bytes` (possibly partially) with `fds` attached; returns how many bytes went out.
pub fn send_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    assert!(fds.len() <= MAX_FDS);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cbuf = [0u64; 64];
    // SAFETY: msghdr is plain data; zero is a valid "no name, no control" value.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        hdr.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        hdr.msg_controllen = space;
        // SAFETY: msg_control points at `cbuf`, which is large enough for MAX_FDS descriptors,
        // so the first header and its data lie inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg) as *mut RawFd,
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: `hdr` points at live buffers for the duration of the call.
        let n = unsafe { libc::sendmsg(sock, &hdr, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives into `buf`, appending any passed descriptors to `fds`.
pub fn recv_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 64];
    // SAFETY: plain data, zero is valid.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = &mut iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    hdr.msg_controllen = std::mem::size_of_val(&cbuf);
    let n = loop {
        // SAFETY: `hdr` points at live buffers; MSG_CMSG_CLOEXEC keeps received fds from leaking
        // into anything we exec later.
        let n = unsafe { libc::recvmsg(sock, &mut hdr, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    // SAFETY: the kernel filled `hdr.msg_control` with well-formed headers up to
    // msg_controllen; the CMSG_* macros walk exactly that.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let count =
                    ((*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&hdr, cmsg);
        }
    }
    Ok(n)
}

pub fn filter_to_wire(program: &crate::runtime::seccomp::Program) -> Filter {
    program
        .filter
        .iter()
        .map(|f| (f.code, f.jt, f.jf, f.k))
        .collect()
}

pub fn filter_from_wire(filter: &Filter) -> crate::runtime::seccomp::Program {
    crate::runtime::seccomp::Program {
        filter: filter
            .iter()
            .map(|&(code, jt, jf, k)| libc::sock_filter { code, jt, jf, k })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_cross_the_channel() {
        let (mut a, mut b) = Channel::pair().unwrap();
        let file = std::fs::File::open("/proc/self/status").unwrap();
        a.send_with_fds(&Message::Ready { pid: 42 }, &[file.as_raw_fd()])
            .unwrap();
        a.send(&Message::Exited { status: 9 }).unwrap();
        let (msg, fds) = b.recv().unwrap();
        assert!(matches!(msg, Message::Ready { pid: 42 }));
        assert_eq!(fds.len(), 1);
        let mut text = String::new();
        std::fs::File::from(fds.into_iter().next().unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.starts_with("Name:"));
        assert!(matches!(b.recv().unwrap().0, Message::Exited { status: 9 }));
        drop(a);
        assert!(matches!(b.recv(), Err(Error::Closed)));
    }
}
