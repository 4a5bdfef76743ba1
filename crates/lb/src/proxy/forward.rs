//! Moves bytes between the client and the server until both directions end, enforcing
//! `timeout client` / `timeout server` as inactivity timeouts and propagating half-closes.
//!
//! On Linux the bytes go socket → pipe → socket with `splice(2)`, so they never enter user
//! space. This is written by hand over `libc` rather than taken from a crate: the few splice
//! crates either own their own event loop or do blocking I/O, while here the splice calls must be
//! driven by tokio's readiness (`readable()`/`try_io`) so that timeouts, half-close and counters
//! stay in our hands. Elsewhere (or if a pipe cannot be made) a plain buffered copy with the same
//! structure is used; it behaves like `tokio::io::copy_bidirectional` plus the timeouts.
//! Each direction starts buffered and switches to splice once a read fills the 16 KiB buffer
//! (like HAProxy's `splice-auto`): short exchanges skip the pipe setup, bulk streams get zero-copy.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Which side made a session end, for the log's termination state and the stats counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    ClientTimeout,
    ServerTimeout,
    ClientError,
    ServerError,
}

impl Stop {
    /// The first character of HAProxy's termination state.
    pub fn code(self) -> char {
        match self {
            Stop::ClientTimeout => 'c',
            Stop::ServerTimeout => 's',
            Stop::ClientError => 'C',
            Stop::ServerError => 'S',
        }
    }
}

/// Byte counters to add each transferred chunk to (frontend, backend, server, session).
pub struct Sinks<'a> {
    pub to_server: [&'a AtomicU64; 4],
    pub to_client: [&'a AtomicU64; 4],
}

/// Last time any byte moved in either direction: HAProxy refreshes both sides' timeouts on
/// activity, so a long upload with a silent server is not cut by `timeout server`.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.base.elapsed().as_millis() as u64, Relaxed);
    }
    fn deadline(&self, t: Duration) -> tokio::time::Instant {
        tokio::time::Instant::from_std(
            self.base + Duration::from_millis(self.last_ms.load(Relaxed)) + t,
        )
    }
}

/// The timeouts that apply to a session (`timeout tunnel`, when set, is passed as both `client`
/// and `server`, which it supersedes in TCP mode).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeouts {
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    /// `timeout client-fin`/`server-fin`: replace the side's timeout once it has half-closed.
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
}

/// One side's current inactivity timeout; changes when that side half-closes.
struct SideTimeout(AtomicU64);

impl SideTimeout {
    fn new(t: Option<Duration>) -> SideTimeout {
        let s = SideTimeout(AtomicU64::new(u64::MAX));
        s.set(t);
        s
    }
    fn set(&self, t: Option<Duration>) {
        self.0.store(
            t.map_or(u64::MAX, |d| d.as_millis().min(u64::MAX as u128 - 1) as u64),
            Relaxed,
        );
    }
    fn get(&self) -> Option<Duration> {
        match self.0.load(Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

struct Dir<'a> {
    src: &'a TcpStream,
    dst: &'a TcpStream,
    src_timeout: &'a SideTimeout,
    dst_timeout: &'a SideTimeout,
    /// What a read-side timeout/error and a write-side timeout/error mean.
    src_stop: (Stop, Stop),
    dst_stop: (Stop, Stop),
    sinks: [&'a AtomicU64; 4],
}

/// Runs both directions. Returns `Ok` when both ended with EOF, or the first failure.
pub async fn run(
    client: &TcpStream,
    server: &TcpStream,
    t: Timeouts,
    sinks: Sinks<'_>,
) -> Result<(), Stop> {
    let act = Activity {
        base: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (client_timeout, server_timeout) =
        (&SideTimeout::new(t.client), &SideTimeout::new(t.server));
    let up = Dir {
        src: client,
        dst: server,
        src_timeout: client_timeout,
        dst_timeout: server_timeout,
        src_stop: (Stop::ClientTimeout, Stop::ClientError),
        dst_stop: (Stop::ServerTimeout, Stop::ServerError),
        sinks: sinks.to_server,
    };
    let down = Dir {
        src: server,
        dst: client,
        src_timeout: server_timeout,
        dst_timeout: client_timeout,
        src_stop: (Stop::ServerTimeout, Stop::ServerError),
        dst_stop: (Stop::ClientTimeout, Stop::ClientError),
        sinks: sinks.to_client,
    };
    let a = pump(up, &act);
    let b = pump(down, &act);
    tokio::pin!(a, b);
    let (mut a_done, mut b_done) = (false, false);
    while !(a_done && b_done) {
        tokio::select! {
            r = &mut a, if !a_done => {
                a_done = true;
                r?;
                // The client half-closed: `timeout client-fin` now guards the client side.
                if t.client_fin.is_some() {
                    client_timeout.set(t.client_fin);
                }
            }
            r = &mut b, if !b_done => {
                b_done = true;
                r?;
                if t.server_fin.is_some() {
                    server_timeout.set(t.server_fin);
                }
            }
        }
    }
    Ok(())
}

async fn wait(
    s: &TcpStream,
    interest: Interest,
    timeout: &SideTimeout,
    act: &Activity,
    stop: (Stop, Stop),
) -> Result<(), Stop> {
    loop {
        // Re-read each round: a half-close may have switched this side to its `-fin` timeout.
        let Some(t) = timeout.get() else {
            return s.ready(interest).await.map(|_| ()).map_err(|_| stop.1);
        };
        // `biased`: look at readiness first, so a ready socket never arms the timer.
        tokio::select! {
            biased;
            r = s.ready(interest) => return r.map(|_| ()).map_err(|_| stop.1),
            _ = tokio::time::sleep_until(act.deadline(t)) => {
                if tokio::time::Instant::now() >= act.deadline(t) {
                    return Err(stop.0);
                }
            }
        }
    }
}

fn shutdown_write(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    // SAFETY: shutdown on a socket fd we own (borrowed from a live TcpStream); no memory involved.
    unsafe { libc::shutdown(s.as_raw_fd(), libc::SHUT_WR) };
}

async fn pump(d: Dir<'_>, act: &Activity) -> Result<(), Stop> {
    // Start with a small user-space buffer: most request/response traffic (and every short
    // connection) fits in it, and a pipe pair costs two fds and three syscalls per direction.
    // Once a read fills the buffer the stream is bulk, and we move to splice for the rest.
    if buffered(&d, act, cfg!(target_os = "linux")).await? == Outcome::Done {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    if let Ok(pipe) = splice::Pipe::new() {
        return splice::pump(d, act, pipe).await;
    }
    buffered(&d, act, false).await.map(|_| ())
}

#[derive(PartialEq, Eq)]
enum Outcome {
    Done,
    /// The buffer filled up: worth switching to splice.
    Bulk,
}

async fn buffered(d: &Dir<'_>, act: &Activity, may_switch: bool) -> Result<Outcome, Stop> {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Try first and wait only on WouldBlock: tokio answers from cached readiness without a
        // syscall when the socket is known not ready.
        let n = match d.src.try_read(&mut buf) {
            Ok(0) => {
                shutdown_write(d.dst);
                return Ok(Outcome::Done);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait(d.src, Interest::READABLE, d.src_timeout, act, d.src_stop).await?;
                continue;
            }
            Err(_) => return Err(d.src_stop.1),
        };
        act.touch();
        let mut off = 0;
        while off < n {
            match d.dst.try_write(&buf[off..n]) {
                Ok(m) => off += m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(d.dst, Interest::WRITABLE, d.dst_timeout, act, d.dst_stop).await?;
                    continue;
                }
                Err(_) => return Err(d.dst_stop.1),
            }
            act.touch();
        }
        for s in d.sinks {
            s.fetch_add(n as u64, Relaxed);
        }
        if may_switch && n == buf.len() {
            return Ok(Outcome::Bulk);
        }
        // try_read/try_write do not count against tokio's cooperative budget; this does, so a
        // stream that never runs dry still lets other sessions on this worker run.
        tokio::task::consume_budget().await;
    }
}

#[cfg(target_os = "linux")]
mod splice {
    use super::*;
    use std::os::fd::{AsRawFd, RawFd};

    /// A non-blocking pipe used as the in-kernel buffer between two sockets.
    pub struct Pipe {
        r: RawFd,
        w: RawFd,
        size: usize,
    }

    impl Pipe {
        pub fn new() -> io::Result<Pipe> {
            let mut fds = [0 as libc::c_int; 2];
            // SAFETY: pipe2 writes two fds into the array we pass; we check the result.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // A bigger pipe means fewer syscalls per megabyte; failure just keeps the 64 KiB default.
            // SAFETY: fcntl on the fd we just created.
            let size = unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 256 * 1024) };
            let size = if size > 0 { size as usize } else { 64 * 1024 };
            Ok(Pipe {
                r: fds[0],
                w: fds[1],
                size,
            })
        }
    }

    impl Drop for Pipe {
        fn drop(&mut self) {
            // SAFETY: both fds are owned by this Pipe and closed exactly once.
            unsafe {
                libc::close(self.r);
                libc::close(self.w);
            }
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: splice between two fds we own, no user memory; NONBLOCK keeps it from sleeping
        // on the pipe; sockets are already non-blocking (tokio).
        let r = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    pub async fn pump(d: Dir<'_>, act: &Activity, pipe: Pipe) -> Result<(), Stop> {
        let (src_fd, dst_fd) = (d.src.as_raw_fd(), d.dst.as_raw_fd());
        loop {
            // The pipe is empty here, so EAGAIN can only mean "socket has nothing to read".
            wait(d.src, Interest::READABLE, d.src_timeout, act, d.src_stop).await?;
            let n = match d
                .src
                .try_io(Interest::READABLE, || splice(src_fd, pipe.w, pipe.size))
            {
                Ok(0) => {
                    shutdown_write(d.dst);
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return Err(d.src_stop.1),
            };
            act.touch();
            let mut left = n;
            while left > 0 {
                wait(d.dst, Interest::WRITABLE, d.dst_timeout, act, d.dst_stop).await?;
                match d
                    .dst
                    .try_io(Interest::WRITABLE, || splice(pipe.r, dst_fd, left))
                {
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(_) => return Err(d.dst_stop.1),
                }
                act.touch();
            }
            for s in d.sinks {
                s.fetch_add(n as u64, Relaxed);
            }
        }
    }
}
