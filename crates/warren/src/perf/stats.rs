//! Counters and latency samples, reported once a second and summarised at the end in
//! PerfTest's wording.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    /// Consumer latencies (µs) since the last report.
    latencies: Mutex<Vec<u64>>,
    /// Every latency sample of the run, for the summary.
    all_latencies: Mutex<Vec<u64>>,
}

impl Stats {
    pub fn record_latency(&self, micros: u64) {
        self.latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(micros);
    }

    fn take_latencies(&self) -> Vec<u64> {
        let v = std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all = self.all_latencies.lock().unwrap_or_else(|e| e.into_inner());
        // Keep the summary's memory bounded on long runs: a sample of at most 2M values.
        if all.len() < 2_000_000 {
            all.extend_from_slice(&v);
        }
        v
    }
}

/// min/median/75th/95th/99th of `v` (sorted in place).
pub fn percentiles(v: &mut [u64]) -> [u64; 5] {
    if v.is_empty() {
        return [0; 5];
    }
    v.sort_unstable();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    [v[0], at(0.5), at(0.75), at(0.95), at(0.99)]
}

fn fmt_lat(p: [u64; 5]) -> String {
    format!("{}/{}/{}/{}/{} µs", p[0], p[1], p[2], p[3], p[4])
}

pub struct Reporter {
    id: String,
    started: Instant,
    last: Instant,
    last_sent: u64,
    last_received: u64,
    quiet: bool,
}

impl Reporter {
    pub fn new(id: String, quiet: bool) -> Self {
        let now = Instant::now();
        Reporter {
            id,
            started: now,
            last: now,
            last_sent: 0,
            last_received: 0,
            quiet,
        }
    }

    pub fn tick(&mut self, s: &Stats) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64().max(1e-9);
        let sent = s.sent.load(Ordering::Relaxed);
        let received = s.received.load(Ordering::Relaxed);
        let mut lat = s.take_latencies();
        if !self.quiet {
            println!(
                "id: {}, time: {:.3}s, sent: {} msg/s, received: {} msg/s, min/median/75th/95th/99th consumer latency: {}",
                self.id,
                now.duration_since(self.started).as_secs_f64(),
                ((sent - self.last_sent) as f64 / dt).round(),
                ((received - self.last_received) as f64 / dt).round(),
                fmt_lat(percentiles(&mut lat)),
            );
        }
        self.last = now;
        self.last_sent = sent;
        self.last_received = received;
    }

    pub fn summary(&mut self, s: &Stats, elapsed: Duration) {
        let _ = s.take_latencies();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let sent = s.sent.load(Ordering::Relaxed);
        let received = s.received.load(Ordering::Relaxed);
        println!(
            "id: {}, sending rate avg: {} msg/s",
            self.id,
            (sent as f64 / secs).round()
        );
        println!(
            "id: {}, receiving rate avg: {} msg/s",
            self.id,
            (received as f64 / secs).round()
        );
        let mut all =
            std::mem::take(&mut *s.all_latencies.lock().unwrap_or_else(|e| e.into_inner()));
        println!(
            "id: {}, consumer latency min/median/75th/95th/99th {}",
            self.id,
            fmt_lat(percentiles(&mut all))
        );
        let (confirmed, nacked, returned) = (
            s.confirmed.load(Ordering::Relaxed),
            s.nacked.load(Ordering::Relaxed),
            s.returned.load(Ordering::Relaxed),
        );
        if confirmed + nacked + returned > 0 {
            println!(
                "id: {}, confirmed: {confirmed}, nacked: {nacked}, returned: {returned}",
                self.id
            );
        }
        println!(
            "id: {}, totals: sent {sent}, received {received} in {secs:.3}s",
            self.id
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut v), [1, 51, 75, 95, 99]);
        assert_eq!(percentiles(&mut []), [0; 5]);
    }
}
