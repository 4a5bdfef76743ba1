//! Resource alarms, as RabbitMQ's: a memory high watermark and a free-disk limit.
//!
//! A monitor task samples the process's resident memory and the data directory's free space
//! once a second. While an alarm is in effect, connections that publish are sent
//! `connection.blocked` with RabbitMQ's reason ("low on memory", "low on disk") and are not
//! read from until it clears (`connection.unblocked`); connections that only consume keep
//! draining, which is what frees memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The memory limit: a fraction of RAM (RabbitMQ's default 0.4) or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Watermark {
    Relative(f64),
    Absolute(u64),
}

impl Default for Watermark {
    fn default() -> Self {
        Watermark::Relative(0.4)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AlarmConfig {
    pub memory: Watermark,
    /// Free bytes below which the disk alarm goes off (RabbitMQ's default 50 MB).
    pub disk_free_limit: u64,
}

impl Default for AlarmConfig {
    fn default() -> Self {
        AlarmConfig {
            memory: Watermark::default(),
            disk_free_limit: 50_000_000,
        }
    }
}

/// Alarms in effect: the `connection.blocked` reasons.
pub type Alarms = Vec<&'static str>;

pub const MEMORY: &str = "low on memory";
pub const DISK: &str = "low on disk";

/// Resident memory of this process in bytes.
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

pub fn total_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|k| k.parse::<u64>().ok())
                })
        })
        .map_or(0, |kb| kb * 1024)
}

/// Free bytes available to us on the filesystem holding `path`.
pub fn disk_free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and an out-pointer to a zeroed statvfs.
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

impl AlarmConfig {
    pub fn memory_limit(&self) -> u64 {
        match self.memory {
            Watermark::Absolute(b) => b,
            Watermark::Relative(f) => (total_memory_bytes() as f64 * f) as u64,
        }
    }

    fn evaluate(&self, data_dir: Option<&PathBuf>) -> Alarms {
        let mut a = Vec::new();
        if resident_bytes() > self.memory_limit() {
            a.push(MEMORY);
        }
        if let Some(free) = data_dir.and_then(|d| disk_free_bytes(d)) {
            if free < self.disk_free_limit {
                a.push(DISK);
            }
        }
        a
    }
}

/// Samples once a second and publishes changes (logged as RabbitMQ logs them).
pub async fn monitor(
    config: AlarmConfig,
    data_dir: Option<PathBuf>,
    out: Arc<watch::Sender<Alarms>>,
) {
    loop {
        let now = config.evaluate(data_dir.as_ref());
        let before = out.borrow().clone();
        if now != before {
            for a in now.iter().filter(|a| !before.contains(a)) {
                tracing::warn!("resource alarm set: {a}; publishers are blocked");
            }
            for a in before.iter().filter(|a| !now.contains(a)) {
                tracing::info!("resource alarm cleared: {a}");
            }
            let _ = out.send(now);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
