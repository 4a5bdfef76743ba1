//! End-to-end tests of operations and the data path: limits, queues, timeouts, retries, PROXY
//! protocol, logging, the stats socket, daemonising and `-st` (reloads: `reload.rs`).

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn port_in_use_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut lb = Lb::spawn(
        &format!("{DEFAULTS}listen px\n    bind 127.0.0.1:{port}\n    server s 127.0.0.1:1\n"),
        &[],
    );
    let start = Instant::now();
    let code = loop {
        if let Some(s) = lb.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "warren lb kept running on a busy port"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(1));
    let log = lb.log();
    assert!(
        log.contains("cannot bind socket") && log.contains(&format!("127.0.0.1:{port}")),
        "{log}"
    );
    assert!(log.contains("in use"), "{log}");
}

#[test]
fn timeout_server_closes_a_hanging_backend_and_logs_sd() {
    let (fe, b1) = (free_port(), free_port());
    let _h = Backend::start(b1, "hang", Behaviour::Silent);
    let cfg = format!(
        "global\n    log stderr format raw local0\ndefaults\n    mode tcp\n    log global\n    option tcplog\n    timeout connect 1s\n    timeout client 20s\n    timeout server 300ms\n\
         listen px\n    bind 127.0.0.1:{fe}\n    server hang 127.0.0.1:{b1}\n"
    );
    let lb = Lb::start(&cfg, fe, &[]);
    let mut c = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t0 = Instant::now();
    c.write_all(b"hello?").unwrap();
    let mut buf = [0u8; 16];
    let n = c.read(&mut buf).unwrap_or(0);
    let took = t0.elapsed();
    assert_eq!(n, 0, "expected the LB to close the connection");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(8),
        "closed after {took:?}"
    );
    wait_until("tcplog line with sD", Duration::from_secs(5), || {
        lb.log().contains(" sD ")
    });
    let log = lb.log();
    assert!(log.contains("px px/hang"), "{log}");
}

#[test]
fn stats_socket_disables_and_enables_servers() {
    let (fe, st, b1, b2) = (free_port(), free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let _b = Backend::start(b2, "s2", Behaviour::NameEcho);
    let dir = temp_dir("sock");
    let sock = dir.join("admin.sock");
    let cfg = format!(
        "global\n    stats socket {} level admin\n{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n    server s2 127.0.0.1:{b2}\n{}",
        sock.display(),
        stats_section(st)
    );
    let mut lb = Lb::start(&cfg, st, &[]);
    let cmd = |c: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("stats socket");
        s.write_all(format!("{c}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(cmd("show stat").starts_with("# pxname,svname,"));
    assert!(cmd("show info").contains("Pid: "));
    cmd("disable server px/s1");
    assert_eq!(status(st, "/stats", "px", "s1"), "MAINT");
    for _ in 0..4 {
        assert_eq!(ask(fe), "s2");
    }
    cmd("set server px/s1 state ready");
    cmd("set server px/s2 state drain");
    assert_eq!(status(st, "/stats", "px", "s2"), "DRAIN");
    for _ in 0..4 {
        assert_eq!(ask(fe), "s1");
    }
    cmd("enable server px/s2");
    assert_eq!(status(st, "/stats", "px", "s2"), "no check");
    assert!(cmd("disable server px/nope").contains("No such server"));
    // Weights: 0 drains the server, a percentage scales the configured weight.
    assert_eq!(cmd("set weight px/s1 0"), "\n");
    assert_eq!(status(st, "/stats", "px", "s1"), "DRAIN");
    assert!(cmd("get weight px/s1").starts_with("0 (initial 1)"));
    for _ in 0..3 {
        assert_eq!(ask(fe), "s2");
    }
    assert_eq!(cmd("set server px/s1 weight 100%"), "\n");
    assert!(cmd("get weight px/s1").starts_with("1 (initial 1)"));
    assert!(cmd("set weight px/s1 999").contains("between 0 and 256"));
    // SIGHUP dumps server states and keeps running, as HAProxy.
    let pid = lb.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_until("SIGHUP state dump", Duration::from_secs(5), || {
        lb.log().contains("SIGHUP: Server px/s2 is no check")
    });
    assert!(
        lb.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn send_proxy_v1_announces_the_client() {
    let (fe, b1) = (free_port(), free_port());
    let be = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1} send-proxy\n"
    );
    let _lb = Lb::start(&cfg, fe, &[]);
    assert_eq!(ask(fe), "s1");
    wait_until("PROXY header received", Duration::from_secs(5), || {
        !be.received.lock().unwrap().is_empty()
    });
    let first = String::from_utf8_lossy(&be.received.lock().unwrap()[0]).to_string();
    assert!(
        first.starts_with("PROXY TCP4 127.0.0.1 127.0.0.1 "),
        "{first:?}"
    );
    assert!(first.contains(&format!(" {fe}\r\n")), "{first:?}");
}

#[test]
fn maxconn_queues_sessions_until_a_slot_frees() {
    let (fe, st, b1) = (free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}    timeout queue 10s\nlisten px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1} maxconn 1\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    let mut first = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 3];
    first.read_exact(&mut buf).unwrap();
    let second = std::thread::spawn(move || ask(fe));
    wait_until("one session queued", Duration::from_secs(10), || {
        csv(st, "/stats")
            .iter()
            .any(|r| r["svname"] == "BACKEND" && r["pxname"] == "px" && r["qcur"] == "1")
    });
    drop(first);
    assert_eq!(second.join().unwrap(), "s1");
    let rows = csv(st, "/stats");
    let s1 = rows.iter().find(|r| r["svname"] == "s1").unwrap();
    assert_eq!((s1["smax"].as_str(), s1["stot"].as_str()), ("1", "2"));
}

#[test]
fn bulk_transfer_is_intact_and_counted() {
    let (fe, st, b1) = (free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        // More threads than cores (and listener copies) must work too.
        "global\n    nbthread 3\n{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    let c = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let data: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    let mut w = c.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        // Half-close: the backend sees EOF, finishes echoing, and closes its side.
        w.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    (&c).read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert_eq!(&got[..3], b"s1\n");
    assert!(
        got[3..] == data[..],
        "echoed data differs ({} bytes back)",
        got.len() - 3
    );
    wait_until("byte counters", Duration::from_secs(5), || {
        let rows = csv(st, "/stats");
        let s1 = rows.iter().find(|r| r["svname"] == "s1").unwrap();
        s1["bin"] == data.len().to_string() && s1["bout"] == (data.len() + 3).to_string()
    });
}

fn alive(pid: i32) -> bool {
    // A reparented daemon may linger as a zombie if nothing reaps it; that counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

#[test]
fn daemon_writes_pidfile_and_st_terminates_it() {
    let (fe, b1) = (free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let dir = temp_dir("daemon");
    let pidfile = dir.join("lb.pid");
    let cfgfile = dir.join("lb.cfg");
    std::fs::write(&cfgfile, format!("global\n    daemon\n{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n")).unwrap();
    let out = Command::new(warren_bin())
        .args(["lb", "-f"])
        .arg(&cfgfile)
        .arg("-p")
        .arg(&pidfile)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            if alive(self.0) {
                let _ = Command::new("kill").arg(self.0.to_string()).status();
            }
        }
    }
    let _guard = KillOnDrop(pid);
    assert!(alive(pid));
    wait_until("daemon serves", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", fe)).is_ok()
    });
    assert_eq!(ask(fe), "s1");
    let cfg =
        format!("{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n");
    let _new = Lb::start(&cfg, fe, &["-st", &pid.to_string()]);
    wait_until("daemon terminated by -st", Duration::from_secs(10), || {
        !alive(pid)
    });
    assert_eq!(ask(fe), "s1");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn retries_then_redispatch_to_another_server() {
    let (fe, fe2, st, dead, b2) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _b = Backend::start(b2, "s2", Behaviour::NameEcho);
    // s1 refuses connections and has no check, so only retries/redispatch can save the session.
    let cfg = format!(
        "{DEFAULTS}    retries 2\nlisten px\n    bind 127.0.0.1:{fe}\n    option redispatch\n    balance first\n\
         server s1 127.0.0.1:{dead}\n    server s2 127.0.0.1:{b2}\nlisten strict\n    bind 127.0.0.1:{}\n    balance first\n    server s1 127.0.0.1:{dead}\n{}",
        fe2,
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    assert_eq!(ask(fe), "s2");
    let rows = csv(st, "/stats");
    let s1 = rows
        .iter()
        .find(|r| r["pxname"] == "px" && r["svname"] == "s1")
        .unwrap();
    assert_eq!(
        (
            s1["wretr"].as_str(),
            s1["wredis"].as_str(),
            s1["econ"].as_str()
        ),
        ("2", "1", "0")
    );
    // Without redispatch the session fails after the retries and counts a connection error.
    assert_eq!(ask(fe2), "");
    let rows = csv(st, "/stats");
    let s1 = rows
        .iter()
        .find(|r| r["pxname"] == "strict" && r["svname"] == "s1")
        .unwrap();
    assert_eq!((s1["wretr"].as_str(), s1["econ"].as_str()), ("2", "1"));
}

#[test]
fn ipv6_bind_and_proxy_protocol_v2() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let (fe, b1) = (free_port(), free_port());
    let be = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind [::1]:{fe}\n    server s1 127.0.0.1:{b1} send-proxy-v2\n"
    );
    let lb = Lb::spawn(&cfg, &[]);
    wait_until("listening on [::1]", Duration::from_secs(10), || {
        TcpStream::connect(("::1", fe)).is_ok()
    });
    let c = TcpStream::connect(("::1", fe)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&c), &mut line).unwrap();
    assert_eq!(line, "s1\n", "{}", lb.log());
    (&c).write_all(b"x").unwrap();
    wait_until("PROXY v2 header received", Duration::from_secs(5), || {
        be.received.lock().unwrap().iter().any(|r| r.len() >= 16)
    });
    let got = be
        .received
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.len() >= 16)
        .unwrap()
        .clone();
    assert_eq!(&got[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(got[12], 0x21, "version 2, PROXY command");
    assert_eq!(got[13], 0x21, "TCP over IPv6");
    assert_eq!(u16::from_be_bytes([got[14], got[15]]), 36);
    assert_eq!(
        &got[16 + 16..16 + 32],
        &std::net::Ipv6Addr::LOCALHOST.octets(),
        "destination ::1"
    );
    assert_eq!(
        u16::from_be_bytes([got[16 + 34], got[16 + 35]]),
        fe,
        "destination port"
    );
}

#[test]
fn frontend_maxconn_holds_new_clients_until_a_session_ends() {
    let (fe, st, b1) = (free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!("{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    maxconn 1\n    server s1 127.0.0.1:{b1}\n{}", stats_section(st));
    let _lb = Lb::start(&cfg, st, &[]);
    let mut first = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 3];
    first.read_exact(&mut buf).unwrap();
    // The kernel completes the second handshake, but the LB does not accept it yet.
    let mut second = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        second.read(&mut buf).is_err(),
        "second client served while the first holds maxconn 1"
    );
    let rows = csv(st, "/stats");
    let f = rows
        .iter()
        .find(|r| r["pxname"] == "px" && r["svname"] == "FRONTEND")
        .unwrap();
    assert_eq!((f["scur"].as_str(), f["slim"].as_str()), ("1", "1"));
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"s1\n");
}

#[test]
fn tcplog_and_server_events_go_to_syslog_over_udp() {
    let (fe, b1, dead) = (free_port(), free_port(), free_port());
    let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let syslog = rx.local_addr().unwrap();
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "global\n    log {syslog} local0 info\n{DEFAULTS}    log global\n    option tcplog\n\
         listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n    server gone 127.0.0.1:{dead} check inter 100 backup\n"
    );
    let lb = Lb::start(&cfg, fe, &[]);
    let mut c = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).unwrap();
    drop(c);
    let (mut traffic, mut down) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (traffic.is_none() || down.is_none()) && Instant::now() < deadline {
        let mut d = [0u8; 2048];
        let Ok(n) = rx.recv(&mut d) else { break };
        let line = String::from_utf8_lossy(&d[..n]).to_string();
        if line.contains(" px px/s1 ") {
            traffic = Some(line);
        } else if line.contains("px/gone is DOWN") {
            down = Some(line);
        }
    }
    // local0 (16) * 8 + info (6) = 134; server DOWN is an alert (1): 129.
    let traffic = traffic.expect("no tcplog datagram");
    assert!(
        traffic.starts_with("<134>") && traffic.contains(" warren-lb["),
        "{traffic}"
    );
    assert!(traffic.contains(" -- "), "{traffic}");
    assert!(down.expect("no DOWN datagram").starts_with("<129>"));
    // In the foreground (-db) the same traffic line is echoed on stderr.
    wait_until("tcplog echoed on stderr", Duration::from_secs(5), || {
        lb.log().contains(" px px/s1 ")
    });
}

#[test]
fn timeout_queue_and_timeout_client_end_sessions_with_haproxy_codes() {
    let (fe, fe2, st, b1) = (free_port(), free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "global\n    log stderr format raw local0\n{DEFAULTS}    log global\n    option tcplog\n\
         listen px\n    bind 127.0.0.1:{fe}\n    timeout queue 300ms\n    server s1 127.0.0.1:{b1} maxconn 1\n\
         listen idle\n    bind 127.0.0.1:{fe2}\n    timeout client 300ms\n    server s1 127.0.0.1:{b1}\n{}",
        stats_section(st)
    );
    let lb = Lb::start(&cfg, st, &[]);
    let mut first = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 3];
    first.read_exact(&mut buf).unwrap();
    // The second session waits in the queue, then gives up after `timeout queue`.
    let t0 = Instant::now();
    assert_eq!(ask(fe), "");
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    wait_until("sQ logged", Duration::from_secs(5), || {
        lb.log().contains(" sQ ")
    });
    let rows = csv(st, "/stats");
    let be = rows
        .iter()
        .find(|r| r["pxname"] == "px" && r["svname"] == "BACKEND")
        .unwrap();
    assert_eq!((be["qcur"].as_str(), be["qmax"].as_str()), ("0", "1"));
    // An idle client is cut after `timeout client`, logged as a client-side timeout.
    let mut c = TcpStream::connect(("127.0.0.1", fe2)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = [0u8; 3];
    c.read_exact(&mut line).unwrap();
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(
        t0.elapsed() >= Duration::from_millis(250) && t0.elapsed() < Duration::from_secs(8),
        "{:?}",
        t0.elapsed()
    );
    wait_until("cD logged", Duration::from_secs(5), || {
        lb.log().contains(" cD ")
    });
}

#[test]
fn timeout_tunnel_supersedes_client_and_server_timeouts() {
    let (fe, b1) = (free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 200ms\n    timeout server 200ms\n    timeout tunnel 5s\n\
         listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n"
    );
    let _lb = Lb::start(&cfg, fe, &[]);
    let mut c = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).unwrap();
    // Idle for three client/server timeouts: only the tunnel timeout counts now.
    std::thread::sleep(Duration::from_millis(700));
    c.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    c.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
}

#[test]
fn garbage_on_the_stats_page_and_socket_is_refused_without_harm() {
    let st = free_port();
    let dir = temp_dir("garbage");
    let sock = dir.join("s.sock");
    let cfg = format!(
        "global\n    stats socket {}\n{}",
        sock.display(),
        stats_section(st)
    );
    let mut lb = Lb::start(&cfg, st, &[]);
    let send = |bytes: &[u8]| {
        let mut c = TcpStream::connect(("127.0.0.1", st)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(bytes);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    };
    assert!(send(&[0xff; 9000]).starts_with("HTTP/1.0 400"));
    assert!(send(b"\x00\x01\x02\r\n\r\n").starts_with("HTTP/1.0 400"));
    assert!(send(b"GET /elsewhere HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 503"));
    assert!(send(b"POST /stats HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 405"));
    let head = send(b"HEAD /stats HTTP/1.0\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.0 200") && !head.contains("<html"),
        "{head}"
    );
    assert!(
        send(b"GET /stats HTTP/1.0\r\nAuthorization: Basic !!!\r\n\r\n")
            .starts_with("HTTP/1.0 200")
    );
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(&[0xfe; 5000]).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"disable server px/s1\n").unwrap();
    out.clear();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.contains("Permission denied"),
        "operator level must not change servers: {out}"
    );
    assert!(
        lb.child.try_wait().unwrap().is_none(),
        "the process died: {}",
        lb.log()
    );
    assert_eq!(http_get(st, "/stats;csv", None).0, 200);
    let _ = std::fs::remove_dir_all(dir);
}
