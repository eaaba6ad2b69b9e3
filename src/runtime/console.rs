//! The caller's terminal as the container's: a foreground `run` or `exec -t` without
//! `--console-socket` relays between our stdin/stdout and the pty master, with our terminal in
//! raw mode (the container's pty does the line discipline) and window size changes passed on.
//! runc does the same, so `runc run` from a shell gives an interactive container.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Errors of the relay.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("terminal relay: {what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn last(what: &'static str) -> Error {
    Error::Sys {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// Our terminal's settings, restored when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Puts `fd` in raw mode when it is a terminal; `None` when it is not (a pipe, a file).
    pub fn enter(fd: RawFd) -> Option<RawMode> {
        // SAFETY: a zeroed termios is a valid buffer for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is an open descriptor; saved is a valid termios.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: raw is a valid termios copy.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the settings read from the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// Copies our window size (from stdin or stdout, whichever is a terminal) to `master`.
pub fn copy_size(master: RawFd) {
    for fd in [0, 1] {
        // SAFETY: a zeroed winsize is a valid buffer.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills a winsize.
        if unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 {
            // SAFETY: TIOCSWINSZ reads a winsize.
            unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
            return;
        }
    }
}

/// Sets the window size of the terminal behind `master` (a remote client's resize).
pub fn set_size(master: RawFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize; a bad descriptor only fails the call.
    unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
}

/// Write end of the pipe the SIGWINCH handler pokes.
static WINCH_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_winch(_: libc::c_int) {
    let fd = WINCH_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the poke.
        unsafe { libc::write(fd, b"w".as_ptr() as *const libc::c_void, 1) };
    }
}

fn write_all(fd: RawFd, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Relays until the container's side of the terminal is gone (every slave descriptor closed,
/// so reading the master fails with EIO). Our stdin reaching its end stops only the input.
pub fn relay(master: &OwnedFd) -> Result<(), Error> {
    let m = master.as_raw_fd();
    let _raw = RawMode::enter(0);
    copy_size(m);
    let mut pipe = [-1; 2];
    // SAFETY: pipe2 fills two fds.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(last("pipe"));
    }
    WINCH_PIPE.store(pipe[1], Ordering::Relaxed);
    // SAFETY: installing a handler that only calls async-signal-safe write(2).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_winch as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGWINCH, &sa, std::ptr::null_mut());
    }
    let mut stdin_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    let result = loop {
        let mut fds = [
            libc::pollfd {
                fd: m,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pipe[0],
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: three valid pollfd entries (a negative fd is ignored by poll).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break Err(last("poll"));
        }
        if fds[2].revents != 0 {
            let mut b = [0u8; 64];
            // SAFETY: draining our own non-blocking pipe.
            while unsafe { libc::read(pipe[0], b.as_mut_ptr() as *mut libc::c_void, b.len()) } > 0 {
            }
            copy_size(m);
        }
        if fds[0].revents != 0 {
            // SAFETY: buf is valid for its length.
            let r = unsafe { libc::read(m, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if r <= 0 {
                // EIO: the container's last holder of the terminal is gone.
                break Ok(());
            }
            if !write_all(1, &buf[..r as usize]) {
                break Ok(());
            }
        }
        if stdin_open && fds[1].revents != 0 {
            // SAFETY: as above.
            let r = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if r <= 0 || !write_all(m, &buf[..r as usize]) {
                stdin_open = false;
            }
        }
    };
    WINCH_PIPE.store(-1, Ordering::Relaxed);
    // SAFETY: closing the pipe we made.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    result
}
