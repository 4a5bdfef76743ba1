//! Facts about this node that the broker does not hold: its listeners (all ports, not only
//! AMQP), when it started, what the OS says about its resources (file descriptors, sockets,
//! threads), and the message rates that the Overview page and `message_stats` show.
//!
//! Rates are sampled every 5 seconds, RabbitMQ's default `collect_statistics_interval`, so a
//! rate is the change between the last two samples whoever asks and however often.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use warren_broker::Broker;

/// One listening socket of this node.
#[derive(Clone, Debug)]
pub struct Listener {
    /// RabbitMQ's protocol names: `amqp`, `http`, `http/prometheus`, `clustering`.
    pub protocol: &'static str,
    pub port: u16,
}

pub struct NodeInfo {
    pub listeners: Vec<Listener>,
    pub started: Instant,
    samples: Mutex<VecDeque<(Instant, Counters)>>,
}

/// Node-wide message counters at one instant.
#[derive(Clone, Copy, Default)]
struct Counters {
    publish: u64,
    ack: u64,
    deliver_get: u64,
}

pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

impl NodeInfo {
    pub fn new(listeners: Vec<Listener>, started: Instant) -> Self {
        NodeInfo {
            listeners,
            started,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes one sample of the counters (the sampler task calls this every 5 s).
    pub fn sample(&self, b: &Broker) {
        let mut delivered = 0;
        for vh in b.vhost_names() {
            if let Some(v) = b.vhost(&vh) {
                delivered += v
                    .read()
                    .queues
                    .values()
                    .map(|q| q.delivered_count())
                    .sum::<u64>();
            }
        }
        let c = Counters {
            publish: b.stats.published.load(Ordering::Relaxed),
            ack: b.stats.acknowledged.load(Ordering::Relaxed),
            deliver_get: delivered,
        };
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back((Instant::now(), c));
        while s.len() > 2 {
            s.pop_front();
        }
    }

    /// `message_stats` as RabbitMQ's overview has it: totals and `*_details.rate` per second.
    pub fn message_stats(&self) -> Value {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(&(t1, now)) = s.back() else {
            return json!({});
        };
        let (t0, before) = s.front().copied().unwrap_or((t1, now));
        let secs = (t1 - t0).as_secs_f64();
        let rate = |a: u64, b: u64| {
            if secs > 0.0 {
                // Per-queue delivery counters vanish with their queue: never a negative rate.
                (b.saturating_sub(a) as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        let mut m = Map::new();
        for (name, a, b) in [
            ("publish", before.publish, now.publish),
            ("ack", before.ack, now.ack),
            ("deliver_get", before.deliver_get, now.deliver_get),
        ] {
            m.insert(name.into(), json!(b));
            m.insert(format!("{name}_details"), json!({"rate": rate(a, b)}));
        }
        Value::Object(m)
    }

    /// `/api/overview`'s and `/api/nodes`' `listeners`.
    pub fn listeners_json(&self, node: &str) -> Vec<Value> {
        self.listeners
            .iter()
            .map(|l| json!({"node": node, "protocol": l.protocol, "ip_address": "::", "port": l.port}))
            .collect()
    }
}

/// Samples the counters every 5 seconds until the broker shuts down.
pub async fn sampler(info: Arc<NodeInfo>, broker: Arc<Broker>) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        info.sample(&broker);
        tokio::select! {
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What the OS reports for this process (Linux `/proc`; zero where unavailable).
pub struct ProcessStats {
    pub fd_used: usize,
    pub fd_total: u64,
    pub sockets_used: usize,
    pub threads: u64,
}

impl ProcessStats {
    pub fn read() -> Self {
        let (mut fd_used, mut sockets_used) = (0, 0);
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            for e in dir.flatten() {
                fd_used += 1;
                if std::fs::read_link(e.path())
                    .is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
                {
                    sockets_used += 1;
                }
            }
        }
        let fd_total = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Max open files"))
                    .and_then(|l| l.split_whitespace().nth(3))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:"))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        ProcessStats {
            fd_used,
            fd_total,
            sockets_used,
            threads,
        }
    }
}
