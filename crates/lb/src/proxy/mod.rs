//! TCP proxying: binding listeners (`SO_REUSEPORT`, so `-sf` can take over a port), the accept
//! loop per bind, and one task per session that picks a server (queueing when every usable
//! server is at `maxconn`), connects with `retries`/`option redispatch`, optionally sends a PROXY
//! protocol header, forwards bytes (`forward`), counts them and logs a tcplog line (`log`).
//! Guarantees: the number of live sessions never exceeds the frontend and global `maxconn`
//! (each accepted connection waits for a permit before its session starts, and the accept loop
//! accepts nothing more meanwhile), so the backend queue is bounded too. On soft stop the loop
//! takes what the kernel already queued on its listener before closing it.

pub mod forward;
pub mod log;

use crate::balance::Pick;
use crate::config::ProxyProtocol;
use crate::state::{Counters, ProxyState, Runtime, ServerState};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Binds one listening socket with `SO_REUSEADDR` + `SO_REUSEPORT` (before any fork, so errors
/// reach the invoking shell).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    Ok(sock.into())
}

/// Accepts until `stop` turns true. Each session holds a global and a frontend permit.
pub async fn accept_loop(
    rt: Arc<Runtime>,
    fe: Arc<ProxyState>,
    listener: TcpListener,
    global: Arc<Semaphore>,
    frontend: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    struct Accepting<'a>(&'a Runtime);
    impl Drop for Accepting<'_> {
        fn drop(&mut self) {
            self.0.accepting.fetch_sub(1, Relaxed);
        }
    }
    rt.accepting.fetch_add(1, Relaxed);
    let _accepting = Accepting(&rt);
    loop {
        // Accept, then wait for a global and a frontend slot before serving. (Waiting for the
        // slots first, as a single-threaded HAProxy does, could let one thread hold the last slot
        // while the connection sits in another thread's listener.) So at most one connection
        // per thread waits accepted-but-unserved beyond `maxconn`; the rest stay in the backlog.
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (sock, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("[WARNING] {}: accept failed: {e}", fe.cfg.name);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Not interruptible by the stop signal: this connection is ours now and must be served.
        let (Ok(g), Ok(f)) = (
            global.clone().acquire_owned().await,
            frontend.clone().acquire_owned().await,
        ) else {
            return;
        };
        start_session(&rt, &fe, sock, peer, [g, f]);
    }
    // Soft stop. A new process normally shares this socket (`takeover`) and accepts whatever
    // stays queued on it; when none took it over (a plain SIGUSR1, or an old binary), the
    // connections the kernel already queued would be reset on close: take them first.
    let Ok(listener) = listener.into_std() else {
        return;
    };
    while let Ok((s, peer)) = listener.accept() {
        let Ok(sock) = s.set_nonblocking(true).and_then(|_| TcpStream::from_std(s)) else {
            continue;
        };
        let (Ok(g), Ok(f)) = (
            global.clone().acquire_owned().await,
            frontend.clone().acquire_owned().await,
        ) else {
            return;
        };
        start_session(&rt, &fe, sock, peer, [g, f]);
    }
}

fn start_session(
    rt: &Arc<Runtime>,
    fe: &Arc<ProxyState>,
    sock: TcpStream,
    peer: SocketAddr,
    permits: [OwnedSemaphorePermit; 2],
) {
    let _ = sock.set_nodelay(true);
    if fe.cfg.cli_tcpka {
        let _ = socket2::SockRef::from(&sock).set_keepalive(true);
    }
    rt.cur_conns.fetch_add(1, Relaxed);
    tokio::spawn(session(rt.clone(), fe.clone(), sock, peer, permits));
}

/// Decrements a session counter however the session task ends.
struct Live<'a>(&'a Counters);
impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.session_ended();
    }
}

/// A claimed server slot (counts against the server's `maxconn`); freeing it wakes the queue.
struct Slot {
    be: Arc<ProxyState>,
    idx: usize,
}

impl Slot {
    fn claim(be: &Arc<ProxyState>, idx: usize) -> Option<Slot> {
        let s = &be.servers[idx];
        let scur = &s.counters.scur;
        let mut cur = scur.load(Relaxed);
        loop {
            if s.opts.maxconn.is_some_and(|m| cur >= u64::from(m)) {
                return None;
            }
            match scur.compare_exchange_weak(cur, cur + 1, Relaxed, Relaxed) {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        s.counters.smax.fetch_max(cur + 1, Relaxed);
        s.counters.lbtot.fetch_add(1, Relaxed);
        be.be.lbtot.fetch_add(1, Relaxed);
        Some(Slot {
            be: be.clone(),
            idx,
        })
    }
    fn server(&self) -> &Arc<ServerState> {
        &self.be.servers[self.idx]
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.server().counters.scur.fetch_sub(1, Relaxed);
        self.be.slot_freed.notify_waiters();
    }
}

/// Why no server connection was made: the two tcplog termination characters.
struct Failed {
    term: [char; 2],
    server: Option<String>,
}

async fn acquire(
    be: &Arc<ProxyState>,
    ip: IpAddr,
    avoid: Option<usize>,
    queue_timeout: Option<Duration>,
) -> Result<Slot, Failed> {
    let deadline = queue_timeout.map(|t| tokio::time::Instant::now() + t);
    let mut queued = false;
    let leave = |queued: bool| {
        if queued {
            be.be.dequeued();
        }
    };
    loop {
        // Register interest before looking, so a slot freed in between is not missed.
        let notified = be.slot_freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match be.balancer.pick(&be.servers, be.cfg.allbackups, ip, avoid) {
            Pick::Server(i) => {
                if let Some(slot) = Slot::claim(be, i) {
                    leave(queued);
                    return Ok(slot);
                }
            }
            Pick::NoServer => {
                leave(queued);
                return Err(Failed {
                    term: ['S', 'C'],
                    server: None,
                });
            }
            Pick::Full => {
                if !queued {
                    queued = true;
                    be.be.queued();
                }
                let timed_out = match deadline {
                    Some(d) => tokio::time::timeout_at(d, notified).await.is_err(),
                    None => {
                        notified.await;
                        false
                    }
                };
                if timed_out {
                    leave(queued);
                    return Err(Failed {
                        term: ['s', 'Q'],
                        server: None,
                    });
                }
            }
        }
    }
}

/// Picks a server and connects, with `retries` on the same server and, with `option
/// redispatch`, the last retry on another one.
async fn connect(
    be: &Arc<ProxyState>,
    ip: IpAddr,
    retries_done: &mut u32,
) -> Result<(Slot, TcpStream, Duration, Duration), Failed> {
    let cfg = &be.cfg;
    let queue_timeout = cfg.timeouts.queue.or(cfg.timeouts.connect);
    let t0 = Instant::now();
    let mut slot = acquire(be, ip, None, queue_timeout).await?;
    let tw = t0.elapsed();
    loop {
        let addr = slot.server().addr;
        let t1 = Instant::now();
        let attempt = match cfg.timeouts.connect {
            Some(t) => tokio::time::timeout(t, TcpStream::connect(addr))
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "connect timeout",
                    ))
                }),
            None => TcpStream::connect(addr).await,
        };
        let err = match attempt {
            Ok(s) => return Ok((slot, s, tw, t1.elapsed())),
            Err(e) => e,
        };
        let code = if err.kind() == std::io::ErrorKind::TimedOut {
            's'
        } else {
            'S'
        };
        let srv = slot.server().clone();
        if *retries_done >= cfg.retries {
            srv.counters.econ.fetch_add(1, Relaxed);
            be.be.econ.fetch_add(1, Relaxed);
            return Err(Failed {
                term: [code, 'C'],
                server: Some(srv.name.clone()),
            });
        }
        *retries_done += 1;
        srv.counters.wretr.fetch_add(1, Relaxed);
        be.be.wretr.fetch_add(1, Relaxed);
        if cfg.redispatch && *retries_done == cfg.retries {
            let failed = slot.idx;
            drop(slot);
            slot = acquire(be, ip, Some(failed), queue_timeout).await?;
            if slot.idx != failed {
                srv.counters.wredis.fetch_add(1, Relaxed);
                be.be.wredis.fetch_add(1, Relaxed);
            }
        } else {
            // HAProxy's turn-around pause before retrying the same server, so a refusing server is
            // not hammered; bounded by the connect timeout.
            let pause = cfg
                .timeouts
                .connect
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_millis(50));
            tokio::time::sleep(pause).await;
        }
    }
}

async fn session(
    rt: Arc<Runtime>,
    fe: Arc<ProxyState>,
    client: TcpStream,
    peer: SocketAddr,
    _permits: [OwnedSemaphorePermit; 2],
) {
    let accept_wall = SystemTime::now();
    let t0 = Instant::now();
    let now_ms = rt.now_ms();
    fe.fe.session_started(now_ms);
    let _fe_live = Live(&fe.fe);
    // Counted by `start_session` already.
    let live_total = rt.cur_conns.load(Relaxed);
    struct Total<'a>(&'a Runtime);
    impl Drop for Total<'_> {
        fn drop(&mut self) {
            self.0.cur_conns.fetch_sub(1, Relaxed);
        }
    }
    let _total = Total(&rt);
    let Some(be) = fe.backend.and_then(|i| rt.proxies.get(i)).cloned() else {
        return;
    };
    be.be.session_started(now_ms);
    let _be_live = Live(&be.be);

    let mut retries = 0;
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let (term, server_name, tw, tc) = match connect(&be, peer.ip(), &mut retries).await {
        Err(f) => (
            f.term,
            f.server.unwrap_or_else(|| "<NOSRV>".into()),
            t0.elapsed(),
            None,
        ),
        Ok((slot, server, tw, tc)) => {
            let srv = slot.server().clone();
            srv.counters.stot.fetch_add(1, Relaxed);
            srv.counters.rate.hit(now_ms);
            srv.counters.last_sess_ms.store(rt.now_ms() + 1, Relaxed);
            let _ = server.set_nodelay(true);
            if be.cfg.srv_tcpka {
                let _ = socket2::SockRef::from(&server).set_keepalive(true);
            }
            let result = relay(&fe, &be, &srv, &client, &server, peer, [&up, &down]).await;
            let term = match result {
                Ok(()) => ['-', '-'],
                Err(stop) => {
                    let c = match stop {
                        forward::Stop::ClientError | forward::Stop::ClientTimeout => {
                            (&be.be.cli_abrt, &srv.counters.cli_abrt)
                        }
                        forward::Stop::ServerError | forward::Stop::ServerTimeout => {
                            (&be.be.srv_abrt, &srv.counters.srv_abrt)
                        }
                    };
                    c.0.fetch_add(1, Relaxed);
                    c.1.fetch_add(1, Relaxed);
                    [stop.code(), 'D']
                }
            };
            (term, srv.name.clone(), tw, Some(tc))
        }
    };
    let (up, down) = (up.into_inner(), down.into_inner());
    // `option dontlognull`: a connection that carried no data (a port probe) is not logged.
    let null = up == 0 && down == 0;
    if fe.logger.enabled() && fe.cfg.tcplog && !(fe.cfg.dontlognull && null) {
        let srv_cur = be
            .servers
            .iter()
            .find(|s| s.name == server_name)
            .map(|s| Counters::get(&s.counters.scur))
            .unwrap_or(0);
        let line = log::TcpLog {
            client: peer,
            accept: accept_wall,
            frontend: &fe.cfg.name,
            backend: &be.cfg.name,
            server: &server_name,
            tw: tw.as_millis() as i64,
            tc: tc.map(|d| d.as_millis() as i64).unwrap_or(-1),
            tt: t0.elapsed().as_millis() as i64,
            bytes: down,
            term,
            counts: [
                live_total,
                Counters::get(&fe.fe.scur),
                Counters::get(&be.be.scur),
                srv_cur,
                u64::from(retries),
            ],
            queues: [0, Counters::get(&be.be.qcur)],
        };
        fe.logger
            .send(crate::config::logtarget::INFO, &line.to_string());
    }
}

async fn relay(
    fe: &ProxyState,
    be: &ProxyState,
    srv: &ServerState,
    client: &TcpStream,
    server: &TcpStream,
    peer: SocketAddr,
    session: [&AtomicU64; 2],
) -> Result<(), forward::Stop> {
    // As HAProxy in TCP mode: `timeout tunnel` (a backend setting) supersedes client and server
    // timeouts as soon as the connection is established; `-fin` timeouts apply after a half-close
    // (client-fin is a frontend setting, server-fin a backend one).
    let tunnel = be.cfg.timeouts.tunnel;
    let timeouts = forward::Timeouts {
        client: tunnel.or(fe.cfg.timeouts.client),
        server: tunnel.or(be.cfg.timeouts.server),
        client_fin: fe.cfg.timeouts.client_fin,
        server_fin: be.cfg.timeouts.server_fin,
    };
    if let Some(version) = srv.opts.send_proxy {
        let local = client.local_addr().unwrap_or(peer);
        let header = proxy_header(version, peer, local);
        let write = write_all(server, &header);
        let r = match timeouts.server {
            Some(t) => tokio::time::timeout(t, write)
                .await
                .unwrap_or(Err(std::io::ErrorKind::TimedOut.into())),
            None => write.await,
        };
        r.map_err(|_| forward::Stop::ServerError)?;
    }
    let sinks = forward::Sinks {
        to_server: [&fe.fe.bin, &be.be.bin, &srv.counters.bin, session[0]],
        to_client: [&fe.fe.bout, &be.be.bout, &srv.counters.bout, session[1]],
    };
    forward::run(client, server, timeouts, sinks).await
}

/// Writes a small buffer through a shared stream reference (`&TcpStream` has no `AsyncWrite`).
async fn write_all(s: &TcpStream, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        s.writable().await?;
        match s.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Builds a PROXY protocol header announcing the client's and our accepting addresses.
pub fn proxy_header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    // Mixed families (v4-mapped client on a v6 socket) are normalised so the header stays valid.
    let norm = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (c, l) = (norm(client), norm(local));
    let (c, l) = if c.is_ipv4() == l.is_ipv4() {
        (c, l)
    } else {
        let v6 = |a: SocketAddr| match a.ip() {
            IpAddr::V4(ip) => SocketAddr::new(IpAddr::V6(ip.to_ipv6_mapped()), a.port()),
            IpAddr::V6(_) => a,
        };
        (v6(c), v6(l))
    };
    match version {
        ProxyProtocol::V1 => ppp::v1::Addresses::from((c, l)).to_string().into_bytes(),
        ProxyProtocol::V2 => ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (c, l),
        )
        .build()
        .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_headers() {
        let c: SocketAddr = "10.0.0.1:1234".parse().unwrap();
        let l: SocketAddr = "10.0.0.2:5670".parse().unwrap();
        assert_eq!(
            proxy_header(ProxyProtocol::V1, c, l),
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1234 5670\r\n"
        );
        let v2 = proxy_header(ProxyProtocol::V2, c, l);
        assert_eq!(&v2[..12], b"\r\n\r\n\0\r\nQUIT\n");
        assert_eq!(v2.len(), 16 + 12);
    }
}
