//! Address syntax of `bind` and `server` lines: `ADDR:PORT`, `*:PORT`, `:PORT`, `[::]:PORT`,
//! `ipv6@...`/`ipv4@...` prefixes, comma lists and port ranges on `bind`, and host names on
//! `server` (resolved once at startup, as HAProxy does without `resolvers`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Splits `host:port` where the host may be bracketed (`[::1]:80`) or a bare IPv6 address
/// whose last colon separates the port (`::1:80`, HAProxy's rule).
fn split_host_port(text: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = text.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("missing ']' in address '{text}'"))?;
        let host = &rest[..end];
        let after = &rest[end + 1..];
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!(
                "unexpected '{after}' after ']' in address '{text}'"
            )),
        };
    }
    match text.rfind(':') {
        Some(i) => Ok((&text[..i], Some(&text[i + 1..]))),
        None => Ok((text, None)),
    }
}

fn parse_port(port: &str, text: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid port '{port}' in address '{text}'")),
    }
}

fn strip_family(text: &str) -> Result<&str, String> {
    for prefix in ["ipv4@", "ipv6@"] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return Ok(rest);
        }
    }
    if let Some(at) = text.find('@') {
        return Err(format!(
            "address family '{}' is not supported",
            &text[..=at]
        ));
    }
    Ok(text)
}

/// Parses one `bind` address argument (possibly a comma list, ports possibly ranges).
pub fn parse_bind(text: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = strip_family(part)?;
        let (host, port) = split_host_port(part)?;
        let port = port.ok_or_else(|| format!("missing port in bind address '{part}'"))?;
        let ip: IpAddr = if host.is_empty() || host == "*" || host == "0.0.0.0" {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            match host.parse() {
                Ok(ip) => ip,
                Err(_) => resolve(host, 0)?.ip(),
            }
        };
        let (lo, hi) = match port.split_once('-') {
            Some((a, b)) => (parse_port(a, part)?, parse_port(b, part)?),
            None => {
                let p = parse_port(port, part)?;
                (p, p)
            }
        };
        if hi < lo {
            return Err(format!("invalid port range '{port}' in '{part}'"));
        }
        if u32::from(hi - lo) >= 1024 {
            return Err(format!("port range '{port}' is too wide (max 1024 ports)"));
        }
        for p in lo..=hi {
            out.push(SocketAddr::new(ip, p));
        }
    }
    Ok(out)
}

/// Parses a `server` address; the port is required (HAProxy's "same port as the client" form
/// is not supported).
pub fn parse_server(text: &str) -> Result<SocketAddr, String> {
    let text = strip_family(text)?;
    let (host, port) = split_host_port(text)?;
    let port = port.ok_or_else(|| {
        format!("server address '{text}' has no port (port-less servers are not supported)")
    })?;
    if port.starts_with('+') || port.starts_with('-') {
        return Err(format!("relative server port '{port}' is not supported"));
    }
    let port = parse_port(port, text)?;
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, port)),
        Err(_) if host.is_empty() => Err(format!("server address '{text}' has no host")),
        Err(_) => resolve(host, port),
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("could not resolve address '{host}': {e}"))?
        .next()
        .ok_or_else(|| format!("could not resolve address '{host}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_forms() {
        assert_eq!(
            parse_bind("0.0.0.0:5670").unwrap(),
            ["0.0.0.0:5670".parse().unwrap()]
        );
        assert_eq!(parse_bind("*:80").unwrap(), ["0.0.0.0:80".parse().unwrap()]);
        assert_eq!(parse_bind(":80").unwrap(), ["0.0.0.0:80".parse().unwrap()]);
        assert_eq!(parse_bind("[::]:80").unwrap(), ["[::]:80".parse().unwrap()]);
        assert_eq!(parse_bind(":::80").unwrap(), ["[::]:80".parse().unwrap()]);
        assert_eq!(
            parse_bind("ipv6@::1:80").unwrap(),
            ["[::1]:80".parse().unwrap()]
        );
        assert_eq!(parse_bind("127.0.0.1:80,127.0.0.1:81").unwrap().len(), 2);
        assert_eq!(parse_bind("127.0.0.1:80-82").unwrap().len(), 3);
    }

    #[test]
    fn bad_binds() {
        assert!(parse_bind("127.0.0.1").is_err());
        assert!(parse_bind("127.0.0.1:0").is_err());
        assert!(parse_bind("127.0.0.1:99999").is_err());
        assert!(parse_bind("127.0.0.1:82-80").is_err());
        assert!(parse_bind("unix@/tmp/x").is_err());
    }

    #[test]
    fn server_forms() {
        assert_eq!(
            parse_server("10.0.0.1:5672").unwrap(),
            "10.0.0.1:5672".parse().unwrap()
        );
        assert_eq!(
            parse_server("[::1]:5672").unwrap(),
            "[::1]:5672".parse().unwrap()
        );
        assert_eq!(parse_server("localhost:5672").unwrap().port(), 5672);
        assert!(parse_server("10.0.0.1").is_err());
        assert!(parse_server("10.0.0.1:+1").is_err());
        assert!(parse_server(":5672").is_err());
    }
}
