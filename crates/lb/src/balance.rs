//! Server selection: roundrobin (smooth weighted round-robin, so weights interleave instead of
//! bursting), leastconn (fewest sessions per unit of weight), source (client address hash over
//! weights), first (first server with a free slot). Backup servers are only considered when no
//! active server is usable; without `option allbackups` only the first usable backup serves.

use crate::config::Balance;
use crate::state::ServerState;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Outcome of a selection.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    Server(usize),
    /// Usable servers exist but all are at `maxconn`: the session should queue.
    Full,
    /// No usable server at all.
    NoServer,
}

pub struct Balancer {
    algo: Balance,
    /// Smooth WRR "current weight" per server.
    current: Mutex<Vec<i64>>,
    cursor: AtomicUsize,
}

impl Balancer {
    pub fn new(algo: Balance, n: usize) -> Balancer {
        Balancer {
            algo,
            current: Mutex::new(vec![0; n]),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Picks a server for a new session. `avoid` is a server that just failed (redispatch); it is
    /// skipped when another candidate exists.
    pub fn pick(
        &self,
        servers: &[Arc<ServerState>],
        allbackups: bool,
        client: IpAddr,
        avoid: Option<usize>,
    ) -> Pick {
        let mut cands: Vec<usize> = (0..servers.len())
            .filter(|&i| !servers[i].opts.backup && servers[i].is_usable())
            .collect();
        if cands.is_empty() {
            cands = (0..servers.len())
                .filter(|&i| servers[i].opts.backup && servers[i].is_usable())
                .collect();
            if !allbackups {
                cands.truncate(1);
            }
        }
        if cands.is_empty() {
            return Pick::NoServer;
        }
        if let Some(a) = avoid {
            if cands.len() > 1 {
                cands.retain(|&i| i != a);
            }
        }
        let free: Vec<usize> = cands
            .iter()
            .copied()
            .filter(|&i| servers[i].slots_free())
            .collect();
        if free.is_empty() {
            return Pick::Full;
        }
        Pick::Server(match self.algo {
            Balance::RoundRobin => self.smooth_wrr(servers, &free),
            Balance::LeastConn => self.least_conn(servers, &free),
            Balance::Source => source_hash(servers, &free, client),
            Balance::First => free[0],
        })
    }

    fn smooth_wrr(&self, servers: &[Arc<ServerState>], free: &[usize]) -> usize {
        let mut cur = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0i64;
        let mut best = free[0];
        for &i in free {
            let w = i64::from(servers[i].weight());
            cur[i] += w;
            total += w;
            if cur[i] > cur[best] {
                best = i;
            }
        }
        cur[best] -= total;
        best
    }

    fn least_conn(&self, servers: &[Arc<ServerState>], free: &[usize]) -> usize {
        // Rotate the starting point so ties spread like round-robin.
        let start = self.cursor.fetch_add(1, Relaxed) % free.len();
        let mut best = free[start];
        for k in 1..free.len() {
            let i = free[(start + k) % free.len()];
            let (ci, cb) = (conns(&servers[i]), conns(&servers[best]));
            let (wi, wb) = (
                u64::from(servers[i].weight()),
                u64::from(servers[best].weight()),
            );
            if ci * wb < cb * wi {
                best = i;
            }
        }
        best
    }
}

fn conns(s: &ServerState) -> u64 {
    s.counters.scur.load(Relaxed)
}

fn source_hash(servers: &[Arc<ServerState>], free: &[usize], client: IpAddr) -> usize {
    // FNV-1a over the address bytes: stable across restarts, unlike std's randomised hasher.
    let bytes: Vec<u8> = match client {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let total: u64 = free.iter().map(|&i| u64::from(servers[i].weight())).sum();
    let mut point = h % total.max(1);
    for &i in free {
        let w = u64::from(servers[i].weight());
        if point < w {
            return i;
        }
        point -= w;
    }
    free[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::state::{Admin, Runtime};

    fn runtime(extra: &str) -> Runtime {
        let text = format!(
            "defaults\n timeout connect 1s\n timeout client 1s\n timeout server 1s\nlisten l\n bind 127.0.0.1:1\n{extra}"
        );
        let (cfg, d) = load_str("t.cfg", &text);
        Runtime::new(&cfg.unwrap_or_else(|| panic!("{:?}", d.errors)))
    }
    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn picks(rt: &Runtime, n: usize) -> Vec<usize> {
        let p = &rt.proxies[0];
        (0..n)
            .map(|_| match p.balancer.pick(&p.servers, false, LOCAL, None) {
                Pick::Server(i) => i,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn smooth_weighted_round_robin_interleaves() {
        let rt = runtime(
            " server a 127.0.0.1:2 weight 2\n server b 127.0.0.1:3\n server c 127.0.0.1:4\n",
        );
        let p = picks(&rt, 8);
        assert_eq!(p, [0, 1, 2, 0, 0, 1, 2, 0]);
    }

    #[test]
    fn backups_only_when_no_active_is_usable() {
        let rt = runtime(
            " server a 127.0.0.1:2\n server b 127.0.0.1:3 backup\n server c 127.0.0.1:4 backup\n",
        );
        assert_eq!(picks(&rt, 3), [0, 0, 0]);
        rt.proxies[0].servers[0].update(|h| h.admin = Admin::Maint);
        assert_eq!(picks(&rt, 3), [1, 1, 1]);
        rt.proxies[0].servers[1].update(|h| h.up = false);
        assert_eq!(picks(&rt, 2), [2, 2]);
        rt.proxies[0].servers[2].update(|h| h.up = false);
        let p = &rt.proxies[0];
        assert_eq!(
            p.balancer.pick(&p.servers, false, LOCAL, None),
            Pick::NoServer
        );
    }

    #[test]
    fn maxconn_full_means_queue_and_first_fills_in_order() {
        let rt = runtime(
            " balance first\n server a 127.0.0.1:2 maxconn 1\n server b 127.0.0.1:3 maxconn 1\n",
        );
        let p = &rt.proxies[0];
        assert_eq!(picks(&rt, 1), [0]);
        p.servers[0].counters.session_started(0);
        assert_eq!(picks(&rt, 1), [1]);
        p.servers[1].counters.session_started(0);
        assert_eq!(p.balancer.pick(&p.servers, false, LOCAL, None), Pick::Full);
    }

    #[test]
    fn leastconn_prefers_idle_servers() {
        let rt = runtime(" balance leastconn\n server a 127.0.0.1:2\n server b 127.0.0.1:3\n");
        rt.proxies[0].servers[0].counters.session_started(0);
        assert_eq!(picks(&rt, 3), [1, 1, 1]);
    }

    #[test]
    fn source_is_sticky_and_redispatch_avoids_failed_server() {
        let rt = runtime(" balance source\n server a 127.0.0.1:2\n server b 127.0.0.1:3\n");
        let p = &rt.proxies[0];
        let first = picks(&rt, 1)[0];
        assert!(picks(&rt, 5).iter().all(|&i| i == first));
        assert_eq!(
            p.balancer.pick(&p.servers, false, LOCAL, Some(first)),
            Pick::Server(1 - first)
        );
    }
}
