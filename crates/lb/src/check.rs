//! Active health checks with HAProxy's semantics. Kinds: TCP connect (default), HTTP
//! (`option httpchk`, `http-check send`/`expect status`) and AMQP (`option amqp-check`: send the
//! 0-9-1 protocol header, expect a `connection.start` method frame).
//!
//! State machine (as HAProxy 2.6, checked against it): `health` runs from 0 to `rise + fall - 1`;
//! a server is UP while `health >= rise`. A checked server starts UP with `health == rise`, so its
//! first failure takes it DOWN; a DOWN server needs `rise` consecutive successes and then gets full
//! health, after which `fall` consecutive failures take it DOWN. Intervals: `inter` when stable,
//! `fastinter` while transitioning, `downinter` while fully DOWN. Going DOWN never cuts
//! established sessions.

use crate::config::HealthCheck;
use crate::state::{Admin, CheckResult, ProxyState, Runtime, ServerState};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The AMQP 0-9-1 protocol header a client opens with.
pub const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Starts one check task per server with `check`.
pub fn spawn_all(rt: &Arc<Runtime>) {
    let checked: Vec<(Arc<ProxyState>, Arc<ServerState>)> = rt
        .proxies
        .iter()
        .filter(|p| p.cfg.kind.has_backend() && !p.cfg.is_stats())
        .flat_map(|p| {
            p.servers
                .iter()
                .filter(|s| s.checked())
                .map(move |s| (p.clone(), s.clone()))
        })
        .collect();
    // As HAProxy: the first checks are spread over the smallest `inter` of the whole process,
    // so the first server is checked at once and none waits longer than that interval.
    let min_inter = checked
        .iter()
        .map(|(_, s)| s.opts.inter)
        .min()
        .unwrap_or_default();
    let n = checked.len().max(1) as f64;
    for (pos, (p, s)) in checked.into_iter().enumerate() {
        let first = min_inter.mul_f64(pos as f64 / n);
        tokio::spawn(check_loop(rt.clone(), p, s, first));
    }
}

fn interval(s: &ServerState) -> Duration {
    let h = s.health();
    let o = &s.opts;
    if !h.up && h.health == 0 {
        o.downinter.unwrap_or(o.inter)
    } else if h.health < o.rise + o.fall - 1 {
        o.fastinter.unwrap_or(o.inter)
    } else {
        o.inter
    }
}

async fn check_loop(rt: Arc<Runtime>, px: Arc<ProxyState>, s: Arc<ServerState>, first: Duration) {
    tokio::time::sleep(first).await;
    loop {
        if s.health().admin != Admin::Maint {
            let r = run_check(&px, &s).await;
            apply(&rt, &px, &s, r);
        }
        tokio::time::sleep(interval(&s)).await;
    }
}

/// Applies one result to the server's health and reports transitions like HAProxy.
pub fn apply(rt: &Runtime, px: &ProxyState, s: &ServerState, r: CheckResult) {
    let ok = matches!(r.status, "L4OK" | "L7OK" | "L6OK");
    let (rise, fall) = (s.opts.rise, s.opts.fall);
    let desc = describe(&r);
    let change = s.update(|h| {
        h.last_check = Some(r);
        let was_up = h.up;
        if ok {
            if h.health < rise + fall - 1 {
                h.health += 1;
            }
            if !h.up && h.health >= rise {
                h.up = true;
                // HAProxy 2.6 (checked against it): a server coming UP gets full health at
                // once, so it shows "UP", not "UP 1/3", and needs `fall` failures to go DOWN.
                h.health = rise + fall - 1;
            }
        } else {
            if h.up {
                h.chkfail += 1;
            }
            if h.health > rise {
                h.health -= 1;
            } else {
                h.health = 0;
                h.up = false;
            }
        }
        if was_up != h.up {
            h.last_change = Instant::now();
            if !h.up {
                h.chkdown += 1;
            }
            Some(h.up)
        } else {
            None
        }
    });
    let Some(up) = change else { return };
    let active = px
        .servers
        .iter()
        .filter(|x| !x.opts.backup && x.is_usable())
        .count();
    let backup = px
        .servers
        .iter()
        .filter(|x| x.opts.backup && x.is_usable())
        .count();
    let kind = if s.opts.backup {
        "Backup Server"
    } else {
        "Server"
    };
    let sessions = s.counters.scur.load(std::sync::atomic::Ordering::Relaxed);
    use crate::config::logtarget::{ALERT, NOTICE};
    if up {
        let msg = format!(
            "{kind} {}/{} is UP, reason: {desc}. {active} active and {backup} backup servers online. 0 sessions requeued, 0 total in queue.",
            px.cfg.name, s.name
        );
        eprintln!("[WARNING] ({}) : {msg}", rt.pid);
        px.logger.send(NOTICE, &msg);
        // Sessions waiting in the queue may now find a slot.
        px.slot_freed.notify_waiters();
    } else {
        let msg = format!(
            "{kind} {}/{} is DOWN, reason: {desc}. {active} active and {backup} backup servers left. {sessions} sessions active, 0 requeued, 0 remaining in queue.",
            px.cfg.name, s.name
        );
        eprintln!("[WARNING] ({}) : {msg}", rt.pid);
        px.logger.send(ALERT, &msg);
        if active + backup == 0 {
            let msg = format!(
                "{} '{}' has no server available!",
                px.cfg.kind.name(),
                px.cfg.name
            );
            eprintln!("[ALERT] ({}) : {msg}", rt.pid);
            px.logger.send(ALERT, &msg);
        }
    }
}

fn describe(r: &CheckResult) -> String {
    let mut d = r.desc.clone();
    if let Some(c) = r.code {
        d.push_str(&format!(", code: {c}"));
    }
    if let Some(t) = r.duration {
        d.push_str(&format!(", check duration: {}ms", t.as_millis()));
    }
    d
}

fn result(
    status: &'static str,
    code: Option<u16>,
    t0: Option<Instant>,
    desc: impl Into<String>,
) -> CheckResult {
    CheckResult {
        status,
        code,
        duration: t0.map(|t| t.elapsed()),
        desc: desc.into(),
    }
}

/// Runs one check against the server (or its `port`).
pub async fn run_check(px: &ProxyState, s: &ServerState) -> CheckResult {
    let addr = SocketAddr::new(s.addr.ip(), s.opts.port.unwrap_or(s.addr.port()));
    let t = &px.cfg.timeouts;
    // HAProxy: without `timeout check`, `inter` bounds the whole check; with it, the connect is
    // bounded by min(timeout connect, inter) and the response by `timeout check`.
    let (connect_to, read_to) = match t.check {
        Some(c) => (t.connect.unwrap_or(s.opts.inter).min(s.opts.inter), c),
        None => (s.opts.inter, s.opts.inter),
    };
    let t0 = Instant::now();
    let mut stream = match tokio::time::timeout(connect_to, TcpStream::connect(addr)).await {
        Err(_) => return result("L4TOUT", None, Some(t0), "Layer4 timeout"),
        Ok(Err(e)) => {
            return result(
                "L4CON",
                None,
                Some(t0),
                format!("Layer4 connection problem, info: \"{}\"", os_message(&e)),
            );
        }
        Ok(Ok(s)) => s,
    };
    let r = match &px.cfg.check {
        HealthCheck::Tcp => result("L4OK", None, Some(t0), "Layer4 check passed"),
        HealthCheck::Http { .. } => {
            match tokio::time::timeout(read_to, http_check(&mut stream, &px.cfg.check)).await {
                Err(_) => result("L7TOUT", None, Some(t0), "Layer7 timeout"),
                Ok(Err(e)) => result(
                    "L7RSP",
                    None,
                    Some(t0),
                    format!("Layer7 invalid response, info: \"{e}\""),
                ),
                Ok(Ok((code, true))) => result("L7OK", Some(code), Some(t0), "Layer7 check passed"),
                Ok(Ok((code, false))) => {
                    result("L7STS", Some(code), Some(t0), "Layer7 wrong status")
                }
            }
        }
        HealthCheck::Amqp => match tokio::time::timeout(read_to, amqp_check(&mut stream)).await {
            Err(_) => result("L7TOUT", None, Some(t0), "Layer7 timeout"),
            Ok(Err(e)) => result(
                "L7RSP",
                None,
                Some(t0),
                format!("Layer7 invalid response, info: \"{e}\""),
            ),
            Ok(Ok(())) => result(
                "L7OK",
                None,
                Some(t0),
                "Layer7 check passed (AMQP connection.start)",
            ),
        },
    };
    let _ = stream.shutdown().await;
    r
}

fn os_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "Connection refused".into(),
        _ => e.to_string(),
    }
}

async fn http_check(stream: &mut TcpStream, check: &HealthCheck) -> Result<(u16, bool), String> {
    let HealthCheck::Http {
        method,
        uri,
        version,
        headers,
        expect_status,
    } = check
    else {
        return Err("not an HTTP check".into());
    };
    let mut req = format!("{method} {uri} {version}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Only the status line matters; stop at its end, at EOF, or at 16 KiB.
    while !buf.contains(&b'\n') && buf.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    let code: u16 = match parts.next().and_then(|c| c.parse().ok()) {
        Some(c) if proto.starts_with("HTTP/") => c,
        _ => {
            return Err(if buf.is_empty() {
                "empty response".into()
            } else {
                "not an HTTP response".into()
            })
        }
    };
    let pass = match expect_status {
        Some(want) => code == *want,
        None => (200..400).contains(&code),
    };
    Ok((code, pass))
}

/// Sends the AMQP header and checks that the reply starts with a `connection.start` frame:
/// type 1 (method), channel 0, then class 10 / method 10 after the 4-byte size.
async fn amqp_check(stream: &mut TcpStream) -> Result<(), String> {
    stream
        .write_all(AMQP_HEADER)
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 11];
    let mut got = 0;
    while got < head.len() {
        let n = stream
            .read(&mut head[got..])
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(if got == 0 {
                "connection closed without a reply".into()
            } else {
                "short reply".into()
            });
        }
        got += n;
        if got >= 4 && &head[..4] == b"AMQP" {
            return Err("server refused the protocol version (AMQP header returned)".into());
        }
    }
    let (ftype, channel) = (head[0], u16::from_be_bytes([head[1], head[2]]));
    let (class, method) = (
        u16::from_be_bytes([head[7], head[8]]),
        u16::from_be_bytes([head[9], head[10]]),
    );
    if ftype == 1 && channel == 0 && class == 10 && method == 10 {
        Ok(())
    } else {
        Err(format!("expected connection.start, got frame type {ftype} channel {channel} class {class} method {method}"))
    }
}
