//! Pipes and terminals handed over by a pod's shim, read and written from async code without a
//! thread per descriptor: each is made non-blocking and registered with tokio's reactor, so a
//! session that ends (the client went away) simply drops them. tokio's pipe types take any
//! pollable descriptor when unchecked, which a terminal's master needs.

use std::io;
use std::os::fd::OwnedFd;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe::{Receiver, Sender};

fn nonblocking(fd: &OwnedFd) -> io::Result<()> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map(drop)
    .map_err(io::Error::from)
}

pub fn reader(fd: OwnedFd) -> io::Result<Receiver> {
    nonblocking(&fd)?;
    Receiver::from_owned_fd_unchecked(fd)
}

pub fn writer(fd: OwnedFd) -> io::Result<Sender> {
    nonblocking(&fd)?;
    Sender::from_owned_fd_unchecked(fd)
}

/// Reads what is there; 0 at the end. A terminal's master reports its end (the last process
/// holding the other side exited) as EIO, which counts as the end here too.
pub async fn read(r: &mut Receiver, buf: &mut [u8]) -> io::Result<usize> {
    match r.read(buf).await {
        Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
        other => other,
    }
}
