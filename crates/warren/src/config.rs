//! The node's configuration file, in RabbitMQ's `rabbitmq.conf` style (`key = value`, `#`
//! comments).
//!
//! A user's existing `rabbitmq.conf` must start a node: keys RabbitMQ knows but Warren does
//! not implement yet are reported with file:line and ignored. Keys neither knows (typos) and
//! bad values are refused with file:line, the expected form and the nearest valid key.

use std::net::SocketAddr;

use std::path::Path;
use warren_broker::alarm::Watermark;

/// Settings read from the file; `None` where the file is silent.
#[derive(Default, Debug)]
pub struct FileConfig {
    pub listeners: Vec<SocketAddr>,
    pub default_user: Option<String>,
    pub default_pass: Option<String>,
    pub default_vhost: Option<String>,
    /// `loopback_users.NAME = true|false`, or `loopback_users = none`.
    pub loopback_users: Option<Vec<(String, bool)>>,
    pub heartbeat: Option<u16>,
    pub frame_max: Option<u32>,
    pub channel_max: Option<u16>,
    pub log_file: Option<String>,
    pub log_level: Option<String>,
    pub memory_watermark: Option<Watermark>,
    pub disk_free_limit: Option<u64>,
    /// Warnings to log once logging is set up (ignored RabbitMQ keys).
    pub warnings: Vec<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "listeners.tcp.default",
    "listeners.tcp.<n>",
    "default_user",
    "default_pass",
    "default_vhost",
    "loopback_users",
    "loopback_users.<user>",
    "heartbeat",
    "frame_max",
    "channel_max",
    "log.file",
    "log.file.level",
    "log.console",
    "log.console.level",
    "vm_memory_high_watermark.relative",
    "vm_memory_high_watermark.absolute",
    "disk_free_limit.absolute",
    "disk_free_limit.relative",
];

/// RabbitMQ keys (by prefix) that Warren accepts and ignores for now.
const RABBITMQ_ONLY_PREFIXES: &[&str] = &[
    "vm_memory_high_watermark_paging_ratio",
    "management.",
    "prometheus.",
    "cluster_formation.",
    "cluster_partition_handling",
    "cluster_name",
    "cluster_keepalive_interval",
    "ssl_options.",
    "listeners.ssl.",
    "tcp_listen_options.",
    "num_acceptors.",
    "handshake_timeout",
    "auth_backends.",
    "auth_mechanisms.",
    "default_permissions.",
    "default_user_tags.",
    "queue_master_locator",
    "collect_statistics",
    "collect_statistics_interval",
    "consumer_timeout",
    "mqtt.",
    "stomp.",
    "web_stomp.",
    "web_mqtt.",
    "log.",
    "total_memory_available_override_value",
    "memory_monitor_interval",
    "mirroring_sync_batch_size",
    "mirroring_sync_max_throughput",
    "hipe_compile",
    "background_gc_enabled",
    "channel_operation_timeout",
    "max_message_size",
    "proxy_protocol",
    "cluster_formation",
    "deprecated_features.",
];

pub fn load(path: &Path) -> Result<FileConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, file: &str) -> Result<FileConfig, String> {
    let mut c = FileConfig::default();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{file}:{}", i + 1);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{at}: expected 'key = value', got '{line}'"));
        };
        let (key, value) = (key.trim(), value.trim());
        let bad = |expected: &str| {
            format!("{at}: invalid value '{value}' for '{key}': expected {expected}")
        };
        match key {
            "listeners.tcp.default" => c
                .listeners
                .push(listener(value).ok_or_else(|| bad("a port or IP:PORT"))?),
            k if k.starts_with("listeners.tcp.") => c
                .listeners
                .push(listener(value).ok_or_else(|| bad("a port or IP:PORT"))?),
            "default_user" => c.default_user = Some(value.to_string()),
            "default_pass" => c.default_pass = Some(value.to_string()),
            "default_vhost" => c.default_vhost = Some(value.to_string()),
            "loopback_users" if value == "none" => c.loopback_users = Some(Vec::new()),
            "loopback_users" => return Err(bad("'none' (or loopback_users.NAME = true|false)")),
            k if k.starts_with("loopback_users.") => {
                let user = &k["loopback_users.".len()..];
                let on = match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("true or false")),
                };
                c.loopback_users
                    .get_or_insert_with(Vec::new)
                    .push((user.to_string(), on));
            }
            "heartbeat" => c.heartbeat = Some(value.parse().map_err(|_| bad("seconds, 0-65535"))?),
            "frame_max" => {
                let v: u32 = value.parse().map_err(|_| bad("bytes, 4096 or more"))?;
                if v < 4096 {
                    return Err(bad("bytes, 4096 or more"));
                }
                c.frame_max = Some(v)
            }
            "channel_max" => {
                c.channel_max = Some(value.parse().map_err(|_| bad("a number 1-65535"))?)
            }
            "log.file" => c.log_file = Some(value.to_string()),
            "log.file.level" | "log.console.level" => c.log_level = Some(value.to_string()),
            "log.console" => {}
            "vm_memory_high_watermark.relative" => {
                let f: f64 = value.parse().map_err(|_| bad("a fraction such as 0.4"))?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(bad("a fraction between 0 and 1"));
                }
                c.memory_watermark = Some(Watermark::Relative(f));
            }
            "vm_memory_high_watermark.absolute" => {
                c.memory_watermark = Some(Watermark::Absolute(bytes(value).ok_or_else(|| {
                    bad("bytes, optionally with a unit: 1073741824, 1024MiB, 2GB")
                })?))
            }
            "disk_free_limit.absolute" => {
                c.disk_free_limit = Some(
                    bytes(value).ok_or_else(|| bad("bytes, optionally with a unit: 50MB, 1GB"))?,
                )
            }
            "disk_free_limit.relative" => {
                let f: f64 = value
                    .parse()
                    .map_err(|_| bad("a multiple of total RAM such as 1.5"))?;
                c.disk_free_limit =
                    Some((warren_broker::alarm::total_memory_bytes() as f64 * f) as u64);
            }
            k if RABBITMQ_ONLY_PREFIXES.iter().any(|p| k.starts_with(p)) => c.warnings.push(
                format!("{at}: RabbitMQ setting '{k}' is not supported by Warren yet; ignored"),
            ),
            k => {
                let nearest = KNOWN_KEYS
                    .iter()
                    .min_by_key(|known| edit_distance(k, known))
                    .unwrap_or(&"");
                return Err(format!(
                    "{at}: unknown setting '{k}' (did you mean '{nearest}'?)"
                ));
            }
        }
    }
    Ok(c)
}

/// RabbitMQ's information units: plain bytes, or kB/MB/GB (powers of 1000), KiB/MiB/GiB and
/// k/K/M/G (powers of 1024).
pub fn bytes(v: &str) -> Option<u64> {
    let split = v
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim() {
        "" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "k" | "K" | "KiB" | "kiB" => 1024.0,
        "M" | "MiB" => 1024.0 * 1024.0,
        "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "T" | "TiB" => 1024f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as u64)
}

fn listener(v: &str) -> Option<SocketAddr> {
    if let Ok(port) = v.parse::<u16>() {
        return Some(SocketAddr::from(([0u16; 8], port)));
    }
    v.parse().ok()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + (ca != *cb) as usize)
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rabbitmq_style_and_reports_lines() {
        let c = parse(
            "# comment\nlisteners.tcp.default = 5673\ndefault_user = admin\nloopback_users.guest = false\ncluster_formation.peer_discovery_backend = classic_config\n",
            "w.conf",
        )
        .unwrap();
        assert_eq!(c.listeners[0].port(), 5673);
        assert_eq!(c.default_user.as_deref(), Some("admin"));
        assert_eq!(c.loopback_users, Some(vec![("guest".to_string(), false)]));
        assert!(c.warnings[0].starts_with("w.conf:5:"));
        let e = parse("\ndefualt_user = x\n", "w.conf").unwrap_err();
        assert!(
            e.starts_with("w.conf:2: unknown setting 'defualt_user'"),
            "{e}"
        );
        assert!(e.contains("did you mean 'default_user'"), "{e}");
        assert_eq!(bytes("50MB"), Some(50_000_000));
        assert_eq!(bytes("1024MiB"), Some(1 << 30));
        assert_eq!(bytes("12"), Some(12));
        assert_eq!(bytes("3 parsecs"), None);
        let c = parse(
            "vm_memory_high_watermark.relative = 0.6\ndisk_free_limit.absolute = 1GB\n",
            "w.conf",
        )
        .unwrap();
        assert_eq!(c.memory_watermark, Some(Watermark::Relative(0.6)));
        assert_eq!(c.disk_free_limit, Some(1_000_000_000));
        let e = parse("heartbeat = soon\n", "w.conf").unwrap_err();
        assert!(
            e.contains("w.conf:1: invalid value 'soon' for 'heartbeat'"),
            "{e}"
        );
    }
}
