//! Live state shared by the proxy, the health checks, the stats page and the stats socket:
//! per-proxy and per-server counters (atomics, so the data path never takes a lock for them) and
//! each server's health/administrative state (a small mutex, touched by checks and on selection).

use crate::config::{self, Config, HealthCheck, Proxy, ServerOpts};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Counters of one frontend, backend or server (the CSV's numeric columns).
#[derive(Default)]
pub struct Counters {
    pub scur: AtomicU64,
    pub smax: AtomicU64,
    pub stot: AtomicU64,
    pub lbtot: AtomicU64,
    pub bin: AtomicU64,
    pub bout: AtomicU64,
    pub ereq: AtomicU64,
    pub econ: AtomicU64,
    pub eresp: AtomicU64,
    pub wretr: AtomicU64,
    pub wredis: AtomicU64,
    pub qcur: AtomicU64,
    pub qmax: AtomicU64,
    pub cli_abrt: AtomicU64,
    pub srv_abrt: AtomicU64,
    pub rate: Rate,
    /// Milliseconds since process start of the last session, plus one (0 = never).
    pub last_sess_ms: AtomicU64,
}

impl Counters {
    pub fn session_started(&self, now_ms: u64) {
        let cur = self.scur.fetch_add(1, Relaxed) + 1;
        self.smax.fetch_max(cur, Relaxed);
        self.stot.fetch_add(1, Relaxed);
        self.rate.hit(now_ms);
        self.last_sess_ms.store(now_ms + 1, Relaxed);
    }
    pub fn session_ended(&self) {
        self.scur.fetch_sub(1, Relaxed);
    }
    pub fn queued(&self) {
        let q = self.qcur.fetch_add(1, Relaxed) + 1;
        self.qmax.fetch_max(q, Relaxed);
    }
    pub fn dequeued(&self) {
        self.qcur.fetch_sub(1, Relaxed);
    }
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Sessions per second over the last complete second, as HAProxy's "Session rate" Cur column,
/// and the highest value seen.
#[derive(Default)]
pub struct Rate {
    /// (second << 32) | count: one word so readers never see a torn pair.
    slot: AtomicU64,
    prev: AtomicU64,
    pub max: AtomicU64,
}

impl Rate {
    pub fn hit(&self, now_ms: u64) {
        let sec = now_ms / 1000;
        let mut cur = self.slot.load(Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if s == sec {
                (s << 32) | (n + 1)
            } else {
                (sec << 32) | 1
            };
            match self.slot.compare_exchange_weak(cur, next, Relaxed, Relaxed) {
                Ok(_) => {
                    if s != sec {
                        self.prev.store(if s + 1 == sec { n } else { 0 }, Relaxed);
                    }
                    self.max.fetch_max(next & 0xffff_ffff, Relaxed);
                    return;
                }
                Err(c) => cur = c,
            }
        }
    }
    /// The current rate: this second's count, or the previous second's if higher (a smoothing
    /// close enough to HAProxy's sliding window for a dashboard).
    pub fn current(&self, now_ms: u64) -> u64 {
        let sec = now_ms / 1000;
        let cur = self.slot.load(Relaxed);
        let (s, n) = (cur >> 32, cur & 0xffff_ffff);
        if s == sec {
            n.max(self.prev.load(Relaxed))
        } else if s + 1 == sec {
            n
        } else {
            0
        }
    }
}

/// Administrative state set from the stats socket (`set server ... state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admin {
    Ready,
    Drain,
    Maint,
}

/// One health-check outcome, as shown in LastChk and the CSV `check_*` columns.
#[derive(Clone, Debug)]
pub struct CheckResult {
    /// `L4OK`, `L4CON`, `L4TOUT`, `L7OK`, `L7STS`, `L7RSP`, `L7TOUT`, `L6RSP`, `SOCKERR`, `INI`.
    pub status: &'static str,
    pub code: Option<u16>,
    pub duration: Option<Duration>,
    pub desc: String,
}

/// Health as HAProxy counts it: `health` in `0..rise+fall`; the server is UP when `up` is true.
/// A checked server starts UP with `health == rise`, so its first failure takes it DOWN.
pub struct Health {
    pub up: bool,
    pub health: u32,
    pub admin: Admin,
    pub last_change: Instant,
    pub last_check: Option<CheckResult>,
    pub chkfail: u64,
    pub chkdown: u64,
    pub downtime: Duration,
    pub down_since: Option<Instant>,
}

pub struct ServerState {
    pub name: String,
    pub sid: u32,
    pub addr: SocketAddr,
    pub opts: ServerOpts,
    pub counters: Counters,
    health: Mutex<Health>,
    /// Cached "may receive new sessions" so the balancer reads one atomic.
    pub usable: AtomicBool,
    /// Current weight: the configured one until `set weight` changes it.
    weight: std::sync::atomic::AtomicU32,
}

impl ServerState {
    pub fn health(&self) -> MutexGuard<'_, Health> {
        // A poisoned lock only means a panic elsewhere mid-update; the data is still plain values.
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn checked(&self) -> bool {
        self.opts.check
    }
    fn refresh_usable(&self, h: &Health) {
        self.usable.store(
            h.up && h.admin == Admin::Ready && self.weight() > 0,
            Relaxed,
        );
    }
    /// Applies a change and keeps the cached flag in step; returns what `f` returns.
    pub fn update<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        let mut h = self.health();
        let was_down = !h.up || h.admin == Admin::Maint;
        let r = f(&mut h);
        let is_down = !h.up || h.admin == Admin::Maint;
        if was_down != is_down {
            let now = Instant::now();
            if is_down {
                h.down_since = Some(now);
            } else if let Some(since) = h.down_since.take() {
                h.downtime += now - since;
            }
        }
        self.refresh_usable(&h);
        r
    }
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }
    /// Changes the weight (stats socket); 0 stops new sessions like HAProxy's drain.
    pub fn set_weight(&self, w: u32) {
        self.weight.store(w, Relaxed);
        self.update(|_| ());
    }
    pub fn is_usable(&self) -> bool {
        self.usable.load(Relaxed)
    }
    pub fn slots_free(&self) -> bool {
        match self.opts.maxconn {
            Some(m) => Counters::get(&self.counters.scur) < u64::from(m),
            None => true,
        }
    }
}

pub struct ProxyState {
    pub cfg: Proxy,
    pub iid: u32,
    pub fe: Counters,
    pub be: Counters,
    pub servers: Vec<Arc<ServerState>>,
    /// Index into `Runtime::proxies` of the backend this frontend forwards to.
    pub backend: Option<usize>,
    pub balancer: crate::balance::Balancer,
    /// Woken when a server slot frees up, for sessions waiting in the backend queue.
    pub slot_freed: Notify,
    pub frontend_maxconn: u64,
    pub last_change: Instant,
    /// This proxy's `log` targets (traffic lines and server state changes).
    pub logger: crate::logger::Logger,
}

impl ProxyState {
    pub fn check(&self) -> &HealthCheck {
        &self.cfg.check
    }
    pub fn is_backend_up(&self) -> bool {
        self.servers.iter().any(|s| s.is_usable())
    }
}

pub struct Runtime {
    pub proxies: Vec<Arc<ProxyState>>,
    pub global: config::Global,
    pub start: Instant,
    pub start_wall: std::time::SystemTime,
    pub pid: u32,
    pub global_maxconn: u64,
    /// Sessions started (counted before their task runs, so a soft stop cannot miss one).
    pub cur_conns: AtomicU64,
    /// Accept loops still running; a soft stop waits for them to drain their backlog.
    pub accepting: AtomicU64,
    pub stopping: AtomicBool,
}

/// HAProxy's built-in default when `global` has no `maxconn`.
pub const DEFAULT_MAXCONN: u32 = 4096;

impl Runtime {
    pub fn new(cfg: &Config) -> Runtime {
        let now = Instant::now();
        let global_maxconn = cfg.global.maxconn.unwrap_or(DEFAULT_MAXCONN);
        let proxies = cfg
            .proxies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let servers = p
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        let h = Health {
                            up: true,
                            // Starts UP but on the edge, as HAProxy: the first failure takes it DOWN.
                            health: if s.opts.check {
                                s.opts.rise
                            } else {
                                s.opts.rise + s.opts.fall - 1
                            },
                            admin: if s.opts.disabled {
                                Admin::Maint
                            } else {
                                Admin::Ready
                            },
                            last_change: now,
                            last_check: None,
                            chkfail: 0,
                            chkdown: 0,
                            downtime: Duration::ZERO,
                            down_since: if s.opts.disabled { Some(now) } else { None },
                        };
                        let st = ServerState {
                            name: s.name.clone(),
                            sid: j as u32 + 1,
                            addr: s.addr,
                            opts: s.opts.clone(),
                            counters: Counters::default(),
                            health: Mutex::new(h),
                            usable: AtomicBool::new(false),
                            weight: std::sync::atomic::AtomicU32::new(s.opts.weight),
                        };
                        st.update(|_| ());
                        Arc::new(st)
                    })
                    .collect::<Vec<_>>();
                Arc::new(ProxyState {
                    cfg: p.clone(),
                    iid: i as u32 + 1,
                    fe: Counters::default(),
                    be: Counters::default(),
                    balancer: crate::balance::Balancer::new(p.balance, servers.len()),
                    servers,
                    backend: p.backend_index,
                    slot_freed: Notify::new(),
                    frontend_maxconn: u64::from(p.maxconn.unwrap_or(global_maxconn)),
                    last_change: now,
                    logger: crate::logger::Logger::new(&p.logs),
                })
            })
            .collect();
        Runtime {
            proxies,
            global: cfg.global.clone(),
            start: now,
            start_wall: std::time::SystemTime::now(),
            pid: std::process::id(),
            global_maxconn: u64::from(global_maxconn),
            cur_conns: AtomicU64::new(0),
            accepting: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Finds `backend/server` for the stats socket.
    pub fn find_server(
        &self,
        backend: &str,
        server: &str,
    ) -> Option<(Arc<ProxyState>, Arc<ServerState>)> {
        let p = self
            .proxies
            .iter()
            .find(|p| p.cfg.name == backend && p.cfg.kind.has_backend())?;
        let s = p.servers.iter().find(|s| s.name == server)?;
        Some((p.clone(), s.clone()))
    }
}
