//! Sends log lines to the configured `log` targets: syslog over UDP or a UNIX datagram socket
//! (RFC 3164 header, UTC timestamps), or stdout/stderr. Sending never blocks the proxy: sockets
//! are non-blocking and a datagram that cannot be sent at once is dropped, as syslog over UDP
//! may drop anyway.

use crate::config::logtarget::{LogDest, LogTarget};
use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::{SystemTime, UNIX_EPOCH};

enum Sink {
    Udp(UdpSocket),
    Unix(UnixDatagram, std::path::PathBuf),
    Stdout,
    Stderr,
}

pub struct Logger {
    sinks: Vec<(LogTarget, Sink)>,
    tag: String,
    /// In the foreground, lines that go to syslog are echoed on stderr too (unless a target
    /// already is stdout/stderr), so `warren lb -db` shows its traffic like a debugging HAProxy.
    echo: bool,
}

static FOREGROUND: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Marks the process as running in the foreground (called before the runtime starts).
pub fn set_foreground(on: bool) {
    FOREGROUND.store(on, std::sync::atomic::Ordering::Relaxed);
}

impl Logger {
    /// Opens the targets; ones that cannot be opened are reported once and skipped.
    pub fn new(targets: &[LogTarget]) -> Logger {
        let mut sinks = Vec::new();
        for t in targets {
            let sink = match &t.dest {
                LogDest::Stdout => Ok(Sink::Stdout),
                LogDest::Stderr => Ok(Sink::Stderr),
                LogDest::Udp(addr) => {
                    let local = if addr.is_ipv4() {
                        "0.0.0.0:0"
                    } else {
                        "[::]:0"
                    };
                    UdpSocket::bind(local).and_then(|s| {
                        s.connect(addr)
                            .and(s.set_nonblocking(true))
                            .map(|_| Sink::Udp(s))
                    })
                }
                LogDest::Unix(path) => UnixDatagram::unbound()
                    .and_then(|s| s.set_nonblocking(true).map(|_| Sink::Unix(s, path.clone()))),
            };
            match sink {
                Ok(s) => sinks.push((t.clone(), s)),
                Err(e) => eprintln!("[WARNING] cannot open log target {:?}: {e}", t.dest),
            }
        }
        let console = sinks
            .iter()
            .any(|(_, s)| matches!(s, Sink::Stdout | Sink::Stderr));
        let echo =
            FOREGROUND.load(std::sync::atomic::Ordering::Relaxed) && !sinks.is_empty() && !console;
        Logger {
            sinks,
            tag: "warren-lb".into(),
            echo,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// Sends `msg` at severity `level` to every target whose max level admits it.
    pub fn send(&self, level: u8, msg: &str) {
        if self.echo && level >= crate::config::logtarget::INFO {
            let _ = writeln!(std::io::stderr().lock(), "{msg}");
        }
        for (t, sink) in &self.sinks {
            if level > t.max_level {
                continue;
            }
            let line = if t.raw {
                msg.to_string()
            } else {
                format!(
                    "<{}>{} {}[{}]: {msg}",
                    u32::from(t.facility) * 8 + u32::from(level),
                    stamp(SystemTime::now()),
                    self.tag,
                    std::process::id()
                )
            };
            match sink {
                Sink::Udp(s) => {
                    let _ = s.send(line.as_bytes());
                }
                Sink::Unix(s, path) => {
                    let _ = s.send_to(line.as_bytes(), path);
                }
                Sink::Stdout => {
                    let _ = writeln!(std::io::stdout().lock(), "{line}");
                }
                Sink::Stderr => {
                    let _ = writeln!(std::io::stderr().lock(), "{line}");
                }
            }
        }
    }
}

/// RFC 3164 timestamp `Nov 26 03:10:00` (UTC: there is no time zone database here).
fn stamp(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (_, m, d) = crate::proxy::log::civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[(m - 1) as usize],
        d,
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn syslog_over_udp_has_priority_and_tag() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = crate::config::logtarget::parse(&[
            rx.local_addr().unwrap().to_string(),
            "local0".into(),
            "info".into(),
        ])
        .unwrap();
        let l = Logger::new(&[t]);
        l.send(7, "debug is filtered out");
        l.send(6, "hello");
        let mut buf = [0u8; 512];
        let n = rx.recv(&mut buf).unwrap();
        let got = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(got.starts_with("<134>"), "{got}");
        assert!(
            got.ends_with(&format!(" warren-lb[{}]: hello", std::process::id())),
            "{got}"
        );
    }

    #[test]
    fn stamps() {
        assert_eq!(
            stamp(UNIX_EPOCH + Duration::from_secs(1_795_662_600)),
            "Nov 26 03:10:00"
        );
    }
}
