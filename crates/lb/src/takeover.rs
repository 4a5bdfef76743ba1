//! Seamless takeover of listening sockets between an old and a new `warren lb` process.
//!
//! With `SO_REUSEPORT` alone, the new process binds its own sockets next to the old ones and
//! the old process closes its own on soft stop; every connection the kernel had already queued
//! on a closing socket (handshake done, not yet accepted) is reset. HAProxy solves this with
//! `-x` (the new process fetches the old one's listening sockets over the stats socket); here
//! the same happens without configuration: every process offers duplicates of its listening
//! sockets on an abstract UNIX socket named after its pid, and a process started with
//! `-sf`/`-st PID` takes them from there, so both accept from the same kernel sockets and no
//! queued connection is ever lost when the old one lets go of its copies.
//!
//! Guarantees: only a peer with the same effective uid (or root) receives sockets; once this
//! process starts stopping it offers nothing (its duplicates are closed before its accept
//! loops drain, so a socket nobody took over leaves the kernel's group at once).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// SCM_RIGHTS carries at most 253 descriptors per message (SCM_MAX_FD).
const FDS_PER_MESSAGE: usize = 200;
/// What a taker sends first. A peer that sends nothing (a master checking that its worker
/// serves) gets nothing: the sockets are only duplicated for a real takeover.
const TAKE: u8 = b'T';

/// Listening sockets this process offers; `None` once it stops.
pub type Offered = Arc<Mutex<Option<Vec<(SocketAddr, TcpListener)>>>>;

fn name(pid: u32) -> io::Result<UnixAddr> {
    UnixAddr::from_abstract_name(format!("warren-lb.{pid}.listeners"))
}

/// Duplicates `listeners` into the offer list (the originals stay with the accept loops).
pub fn offer_list<'a>(listeners: impl Iterator<Item = &'a TcpListener>) -> Offered {
    let dups = listeners
        .filter_map(|l| Some((l.local_addr().ok()?, l.try_clone().ok()?)))
        .collect();
    Arc::new(Mutex::new(Some(dups)))
}

/// Serves the offer on `@warren-lb.<pid>.listeners` for the life of the process (after
/// `withdraw`, a taker receives nothing).
pub async fn serve(offered: Offered) {
    let listener = match name(std::process::id()).and_then(|a| UnixListener::bind_addr(&a)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("[WARNING] cannot offer listening sockets for a takeover: {e}");
            return;
        }
    };
    let Ok(listener) = listener
        .set_nonblocking(true)
        .and_then(|_| tokio::net::UnixListener::from_std(listener))
    else {
        return;
    };
    loop {
        let Ok((peer, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        match peer.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            _ => continue,
        }
        let Ok(peer) = peer.into_std() else { continue };
        let offered = offered.clone();
        tokio::task::spawn_blocking(move || {
            let _ = peer.set_nonblocking(false);
            let _ = peer.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = peer.set_write_timeout(Some(Duration::from_secs(5)));
            let mut request = [0u8];
            if !matches!((&peer).read(&mut request), Ok(1) if request[0] == TAKE) {
                return;
            }
            // Duplicates again, so a withdrawal while sending cannot close what is being sent;
            // once withdrawn, nothing is offered.
            let batch: Vec<(SocketAddr, OwnedFd)> = match offered.lock().unwrap().as_ref() {
                Some(list) => list
                    .iter()
                    .filter_map(|(a, l)| Some((*a, OwnedFd::from(l.try_clone().ok()?))))
                    .collect(),
                None => return,
            };
            for chunk in batch.chunks(FDS_PER_MESSAGE) {
                if send(&peer, chunk).is_err() {
                    return;
                }
            }
        });
    }
}

/// Whether process `pid` serves (its offer answers): how a master knows a new worker is up.
/// It connects and sends nothing, so nothing is duplicated or sent.
pub fn is_serving(pid: u32) -> bool {
    name(pid).and_then(|a| UnixStream::connect_addr(&a)).is_ok()
}

/// Withdraws the offer: called before the accept loops close their copies.
pub fn withdraw(offered: &Offered) {
    offered.lock().unwrap().take();
}

/// Takes the listening sockets offered by the processes in `pids` (those that offer none, e.g.
/// already gone, are skipped), grouped by local address.
pub fn take(pids: &[i32]) -> HashMap<SocketAddr, Vec<TcpListener>> {
    let mut out: HashMap<SocketAddr, Vec<TcpListener>> = HashMap::new();
    for &pid in pids {
        let Ok(addr) = name(pid as u32) else { continue };
        let Ok(stream) = UnixStream::connect_addr(&addr) else {
            continue;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if (&stream).write_all(&[TAKE]).is_err() {
            continue;
        }
        while let Ok(Some(batch)) = receive(&stream) {
            for (a, l) in batch {
                out.entry(a).or_default().push(l);
            }
        }
    }
    out
}

/// One message: the addresses, one per line, as data; the sockets as SCM_RIGHTS.
fn send(peer: &UnixStream, chunk: &[(SocketAddr, OwnedFd)]) -> io::Result<()> {
    let text: String = chunk.iter().map(|(a, _)| format!("{a}\n")).collect();
    let fds: Vec<RawFd> = chunk.iter().map(|(_, f)| f.as_raw_fd()).collect();
    let fd_bytes = std::mem::size_of_val(fds.as_slice());
    // SAFETY: CMSG_SPACE is a pure size computation.
    let mut control = vec![0u8; unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize];
    let mut iov = libc::iovec {
        iov_base: text.as_ptr() as *mut libc::c_void,
        iov_len: text.len(),
    };
    // SAFETY: msghdr is plain data; every pointer set below outlives the sendmsg call, and the
    // control buffer is sized by CMSG_SPACE for exactly `fds`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), fd_bytes);
        if libc::sendmsg(peer.as_raw_fd(), &msg, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one message; `None` at end of stream.
fn receive(stream: &UnixStream) -> io::Result<Option<Vec<(SocketAddr, TcpListener)>>> {
    let mut data = vec![0u8; 64 * 1024];
    let fd_room = FDS_PER_MESSAGE * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let mut control = vec![0u8; unsafe { libc::CMSG_SPACE(fd_room as u32) } as usize];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut fds = Vec::new();
    // SAFETY: the buffers outlive recvmsg; control messages are walked with the CMSG macros
    // within msg_controllen, and each received descriptor is owned exactly once below.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = control.len() as _;
        let n = libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(p.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        n as usize
    };
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&data[..n]);
    let addrs = text.lines().map(|l| l.parse::<SocketAddr>());
    let mut out = Vec::new();
    for (addr, fd) in addrs.zip(fds) {
        let Ok(addr) = addr else { continue };
        let l = TcpListener::from(fd);
        if l.set_nonblocking(true).is_ok() {
            out.push((addr, l));
        }
    }
    Ok(Some(out))
}
