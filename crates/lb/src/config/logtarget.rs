//! The `log` directive: `log <target> [len N] [format rfc3164|raw] <facility> [<max level>
//! [<min level>]]` where the target is `stdout`, `stderr`, a UNIX datagram socket path, or a UDP
//! address (`127.0.0.1`, `127.0.0.1:514`, `udp@host:port`; default port 514).

use super::addr;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    Unix(PathBuf),
    Udp(SocketAddr),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogTarget {
    pub dest: LogDest,
    pub facility: u8,
    /// Highest severity number sent (`info` = 6 lets everything but debug through).
    pub max_level: u8,
    /// `format raw`: the bare message, no syslog header.
    pub raw: bool,
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "auth2",
    "ftp", "ntp", "audit", "alert", "cron2", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];
const LEVELS: [&str; 8] = [
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

/// Severity numbers for the events we log.
pub const ALERT: u8 = 1;
pub const NOTICE: u8 = 5;
pub const INFO: u8 = 6;

/// Parses the words after `log` (not `global`, which the caller handles).
pub fn parse(args: &[String]) -> Result<LogTarget, String> {
    let target = args.first().ok_or("'log' expects a target")?;
    let dest = match target.as_str() {
        "stdout" => LogDest::Stdout,
        "stderr" => LogDest::Stderr,
        t if t.starts_with('/') => LogDest::Unix(PathBuf::from(t)),
        t if t.starts_with("ring@") || t.starts_with("fd@") || t.starts_with("unix@") => {
            return Err(format!("log target '{t}' is not supported (use stdout, stderr, a UNIX socket path or a UDP address)"))
        }
        t => {
            let t = t.strip_prefix("udp@").unwrap_or(t);
            match t.parse::<IpAddr>() {
                Ok(ip) => LogDest::Udp(SocketAddr::new(ip, 514)),
                Err(_) => LogDest::Udp(addr::parse_server(t).or_else(|_| addr::parse_server(&format!("{t}:514")))?),
            }
        }
    };
    let mut rest = &args[1..];
    let mut raw = false;
    loop {
        match rest.first().map(String::as_str) {
            Some("len") | Some("sample") => {
                rest = rest.get(2..).ok_or("'log': option expects a value")?;
            }
            Some("format") => {
                raw = match rest.get(1).map(String::as_str) {
                    Some("raw") | Some("short") => true,
                    Some("rfc3164") | Some("local") => false,
                    Some(f) => {
                        return Err(format!("log format '{f}' is not supported (rfc3164, raw)"))
                    }
                    None => return Err("'log ... format' expects a value".into()),
                };
                rest = &rest[2..];
            }
            _ => break,
        }
    }
    let facility = rest
        .first()
        .ok_or("'log' expects a facility (e.g. local0)")?;
    let facility = FACILITIES
        .iter()
        .position(|f| f == facility)
        .ok_or_else(|| format!("unknown log facility '{facility}'"))? as u8;
    let max_level = match rest.get(1) {
        Some(l) => LEVELS
            .iter()
            .position(|x| x == l)
            .ok_or_else(|| format!("unknown log level '{l}'"))? as u8,
        None => 7,
    };
    if let Some(l) = rest.get(2) {
        if !LEVELS.contains(&l.as_str()) {
            return Err(format!("unknown log level '{l}'"));
        }
    }
    if rest.len() > 3 {
        return Err(format!("unexpected '{}' in 'log'", rest[3]));
    }
    Ok(LogTarget {
        dest,
        facility,
        max_level,
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<LogTarget, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn targets() {
        let t = p("127.0.0.1 local0 info").unwrap();
        assert_eq!(t.dest, LogDest::Udp("127.0.0.1:514".parse().unwrap()));
        assert_eq!((t.facility, t.max_level, t.raw), (16, 6, false));
        assert_eq!(
            p("127.0.0.1:5140 local1").unwrap().dest,
            LogDest::Udp("127.0.0.1:5140".parse().unwrap())
        );
        assert_eq!(
            p("/dev/log daemon").unwrap().dest,
            LogDest::Unix("/dev/log".into())
        );
        let t = p("stderr format raw local0").unwrap();
        assert_eq!((t.dest, t.raw), (LogDest::Stderr, true));
        assert!(p("127.0.0.1 nowhere").is_err());
        assert!(p("127.0.0.1 local0 loud").is_err());
        assert!(p("ring@buf local0").is_err());
        assert!(p("127.0.0.1").is_err());
    }
}
