//! End-to-end tests of configuration checking, balancing, health checks and the stats page:
//! the real `warren lb` process in front of loopback backends.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn check_accepts_tutorial_config_and_refuses_broken_one_with_location() {
    let tutorial = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/haproxy-tutorial.cfg"
    );
    let out = Command::new(warren_bin())
        .args(["lb", "-c", "-f", tutorial])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Configuration file is valid"));

    let dir = temp_dir("broken");
    let bad = dir.join("broken.cfg");
    std::fs::write(
        &bad,
        format!("{DEFAULTS}listen x\n    bind 127.0.0.1:1\n    server a 127.0.0.1:2 weight 999\n"),
    )
    .unwrap();
    let out = Command::new(warren_bin())
        .args(["lb", "-c", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("broken.cfg:8"), "{err}");
    assert!(err.contains("weight"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("valid"));
    // A warning alone does not fail the check, and it names file:line too.
    std::fs::write(&bad, format!("{DEFAULTS}listen x\n    bind 127.0.0.1:1\n    option contstats\n    server a 127.0.0.1:2\n")).unwrap();
    let out = Command::new(warren_bin())
        .args(["lb", "-c", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("[WARNING]") && err.contains("broken.cfg:8") && err.contains("contstats"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn round_robin_spreads_over_three_backends() {
    let (fe, st, b1, b2, b3) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _s = [
        Backend::start(b1, "s1", Behaviour::NameEcho),
        Backend::start(b2, "s2", Behaviour::NameEcho),
        Backend::start(b3, "s3", Behaviour::NameEcho),
    ];
    let cfg = format!(
        "global\n    nbthread 1\n{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    balance roundrobin\n    server s1 127.0.0.1:{b1}\n    server s2 127.0.0.1:{b2}\n    server s3 127.0.0.1:{b3}\n{}",
        stats_section(st)
    );
    // Readiness is probed on the stats port so that no probe session skews the rotation.
    let _lb = Lb::start(&cfg, st, &[]);
    let got: Vec<String> = (0..9).map(|_| ask(fe)).collect();
    for name in ["s1", "s2", "s3"] {
        assert_eq!(got.iter().filter(|n| *n == name).count(), 3, "{got:?}");
    }
    // Strict rotation: each window of three holds all three servers.
    for w in got.chunks(3) {
        let mut w = w.to_vec();
        w.sort();
        assert_eq!(w, ["s1", "s2", "s3"], "{got:?}");
    }
}

#[test]
fn killed_backend_goes_down_after_fall_checks_and_comes_back_after_rise() {
    let (fe, st, b1, b2, b3) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let mut b = Backend::start(b2, "s2", Behaviour::NameEcho);
    let _c = Backend::start(b3, "s3", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    default-server check inter 100ms rise 2 fall 3\n\
         server s1 127.0.0.1:{b1}\n    server s2 127.0.0.1:{b2}\n    server s3 127.0.0.1:{b3}\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    // Let checks settle to full health.
    wait_until("s2 fully UP with L4OK", Duration::from_secs(10), || {
        let rows = csv(st, "/stats");
        let r = rows.iter().find(|r| r["svname"] == "s2").unwrap();
        r["status"] == "UP" && r["check_status"] == "L4OK"
    });
    b.stop();
    let killed = Instant::now();
    wait_until("s2 DOWN", Duration::from_secs(10), || {
        status(st, "/stats", "px", "s2") == "DOWN"
    });
    // fall 3 at inter 100ms: the third failure is at least ~200ms after the first.
    assert!(
        killed.elapsed() >= Duration::from_millis(200),
        "went DOWN too fast: {:?}",
        killed.elapsed()
    );
    let rows = csv(st, "/stats");
    let s2 = rows.iter().find(|r| r["svname"] == "s2").unwrap();
    assert_eq!(s2["check_status"], "L4CON");
    assert_eq!(s2["chkdown"], "1");
    let (_, html) = http_get(st, "/stats", None);
    assert!(html.contains("DOWN</td>"), "html lacks DOWN");
    // Traffic avoids the DOWN server.
    for _ in 0..6 {
        assert_ne!(ask(fe), "s2");
    }
    let _b = Backend::start(b2, "s2", Behaviour::NameEcho);
    wait_until("s2 back UP", Duration::from_secs(10), || {
        status(st, "/stats", "px", "s2").starts_with("UP")
    });
    // As HAProxy 2.6: back UP means full health at once ("UP", not "UP 1/3").
    let rows = csv(st, "/stats");
    let s2 = rows.iter().find(|r| r["svname"] == "s2").unwrap();
    assert_eq!(
        (s2["status"].as_str(), s2["check_health"].as_str()),
        ("UP", "4")
    );
    let got: Vec<String> = (0..6).map(|_| ask(fe)).collect();
    assert!(got.contains(&"s2".to_string()), "{got:?}");
}

#[test]
fn backup_serves_only_when_all_actives_are_down() {
    let (fe, st, b1, b2, bk) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let mut a = Backend::start(b1, "a1", Behaviour::NameEcho);
    let mut b = Backend::start(b2, "a2", Behaviour::NameEcho);
    let _k = Backend::start(bk, "bk", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    default-server check inter 100 rise 1 fall 1\n\
         server a1 127.0.0.1:{b1}\n    server a2 127.0.0.1:{b2}\n    server bk 127.0.0.1:{bk} backup\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    for _ in 0..6 {
        assert_ne!(ask(fe), "bk");
    }
    a.stop();
    b.stop();
    wait_until("both actives DOWN", Duration::from_secs(10), || {
        status(st, "/stats", "px", "a1") == "DOWN" && status(st, "/stats", "px", "a2") == "DOWN"
    });
    for _ in 0..4 {
        assert_eq!(ask(fe), "bk");
    }
    let rows = csv(st, "/stats");
    let be = rows
        .iter()
        .find(|r| r["pxname"] == "px" && r["svname"] == "BACKEND")
        .unwrap();
    assert_eq!(
        (
            be["status"].as_str(),
            be["act"].as_str(),
            be["bck"].as_str()
        ),
        ("UP", "0", "1")
    );
    assert_eq!(be["weight"], "1", "only the backup carries weight");
    let _a = Backend::start(b1, "a1", Behaviour::NameEcho);
    wait_until("a1 UP", Duration::from_secs(10), || {
        status(st, "/stats", "px", "a1") == "UP"
    });
    for _ in 0..3 {
        assert_eq!(ask(fe), "a1");
    }
}

#[test]
fn stats_page_html_csv_and_auth() {
    let (fe, st, b1) = (free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server s1 127.0.0.1:{b1}\n    server s2 127.0.0.1:{b1} disabled\n\
         {}    stats auth admin:secret\n    stats realm \"Warren LB\"\n",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    assert_eq!(ask(fe), "s1");
    let (code, resp) = http_get(st, "/stats", None);
    assert_eq!(code, 401);
    assert!(
        resp.contains("WWW-Authenticate: Basic realm=\"Warren LB\""),
        "{resp}"
    );
    assert_eq!(http_get(st, "/stats", Some("YWRtaW46d3Jvbmc=")).0, 401); // admin:wrong
    let auth = Some("YWRtaW46c2VjcmV0"); // admin:secret
    let (code, html) = http_get(st, "/stats", auth);
    assert_eq!(code, 200);
    for needle in [
        "<meta http-equiv=\"refresh\" content=\"5\">",
        ">px<",
        ">Frontend<",
        ">Backend<",
        ">s1<",
        "no check",
        "MAINT",
        "OPEN",
        "Queue",
        "Session rate",
        "Dwntme",
    ] {
        assert!(html.contains(needle), "HTML lacks {needle}");
    }
    let (code, csv) = http_get(st, "/stats;csv", auth);
    assert_eq!(code, 200);
    let body = csv.split("\r\n\r\n").nth(1).unwrap();
    let header = body.lines().next().unwrap();
    assert_eq!(header, warren_lb::stats::csv::HEADER);
    let cols: Vec<&str> = header.trim_start_matches("# ").split(',').collect();
    let rows: Vec<Vec<&str>> = body
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == cols.len()));
    let idx = |c: &str| cols.iter().position(|x| *x == c).unwrap();
    let s1 = rows.iter().find(|r| r[1] == "s1").unwrap();
    assert_eq!(s1[idx("status")], "no check");
    assert_eq!(s1[idx("stot")], "1");
    assert_eq!(s1[idx("type")], "2");
    let s2 = rows.iter().find(|r| r[1] == "s2").unwrap();
    assert_eq!(s2[idx("status")], "MAINT");
    let fe_row = rows
        .iter()
        .find(|r| r[0] == "px" && r[1] == "FRONTEND")
        .unwrap();
    assert_eq!(fe_row[idx("status")], "OPEN");
    assert_eq!(http_get(st, "/other", auth).0, 503);
}

#[test]
fn amqp_check_tells_a_broker_from_a_plain_tcp_server() {
    let (fe, st, b1, b2) = (free_port(), free_port(), free_port(), free_port());
    let _amqp = Backend::start(b1, "amqp", Behaviour::Amqp);
    let _echo = Backend::start(b2, "echo", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    option amqp-check\n    default-server check inter 100 fall 1 rise 1\n\
         server amqp 127.0.0.1:{b1}\n    server echo 127.0.0.1:{b2}\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    wait_until(
        "echo DOWN by amqp-check, amqp UP with L7OK",
        Duration::from_secs(10),
        || {
            let rows = csv(st, "/stats");
            let get = |n: &str| {
                rows.iter()
                    .find(|r| r["svname"] == n)
                    .map(|r| (r["status"].clone(), r["check_status"].clone()))
            };
            get("echo") == Some(("DOWN".into(), "L7RSP".into()))
                && get("amqp") == Some(("UP".into(), "L7OK".into()))
        },
    );
}

#[test]
fn httpchk_uses_check_port_request_and_expected_status() {
    let (fe, st, b1, b2, h1, h2) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _s1 = Backend::start(b1, "s1", Behaviour::NameEcho);
    let _s2 = Backend::start(b2, "s2", Behaviour::NameEcho);
    let ok = Backend::start(h1, "h1", Behaviour::Http(204));
    let _bad = Backend::start(h2, "h2", Behaviour::Http(503));
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    option httpchk GET /health\n    http-check send hdr Host lb.test\n\
         http-check expect status 204\n    default-server inter 100 rise 1 fall 1\n\
         server s1 127.0.0.1:{b1} check port {h1}\n    server s2 127.0.0.1:{b2} check port {h2}\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    wait_until(
        "s1 UP by L7OK/204, s2 DOWN by L7STS/503",
        Duration::from_secs(10),
        || {
            let rows = csv(st, "/stats");
            let get = |n: &str| {
                rows.iter().find(|r| r["svname"] == n).map(|r| {
                    (
                        r["status"].clone(),
                        r["check_status"].clone(),
                        r["check_code"].clone(),
                    )
                })
            };
            get("s1") == Some(("UP".into(), "L7OK".into(), "204".into()))
                && get("s2") == Some(("DOWN".into(), "L7STS".into(), "503".into()))
        },
    );
    let req = String::from_utf8_lossy(&ok.received.lock().unwrap()[0]).to_string();
    assert!(req.starts_with("GET /health HTTP/1.0\r\n"), "{req:?}");
    assert!(req.contains("Host: lb.test\r\n"), "{req:?}");
    for _ in 0..3 {
        assert_eq!(ask(fe), "s1");
    }
}

#[test]
fn sessions_survive_their_server_going_down() {
    let (fe, st, b1, b2) = (free_port(), free_port(), free_port(), free_port());
    let mut a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let _b = Backend::start(b2, "s2", Behaviour::NameEcho);
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    balance first\n    server s1 127.0.0.1:{b1} check inter 100 fall 1 rise 1\n\
         server s2 127.0.0.1:{b2}\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    let mut held = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 3];
    held.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"s1\n");
    a.stop(); // no new connections (checks fail), the established one lives on
    wait_until("s1 DOWN", Duration::from_secs(10), || {
        status(st, "/stats", "px", "s1") == "DOWN"
    });
    held.write_all(b"still").unwrap();
    let mut echo = [0u8; 5];
    held.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"still");
    assert_eq!(ask(fe), "s2");
}

#[test]
fn checked_servers_start_up_on_the_edge_like_haproxy() {
    let (fe, st, b1) = (free_port(), free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    // First checks are spread over the smallest inter (20 s): "late" is not checked for 10 s.
    let cfg = format!(
        "{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server early 127.0.0.1:{b1} check inter 20s\n\
         server late 127.0.0.1:{b1} check inter 20s\n{}",
        stats_section(st)
    );
    let _lb = Lb::start(&cfg, st, &[]);
    let rows = csv(st, "/stats");
    let late = rows.iter().find(|r| r["svname"] == "late").unwrap();
    assert_eq!(
        (
            late["status"].as_str(),
            late["check_status"].as_str(),
            late["check_health"].as_str()
        ),
        ("UP 1/3", "INI", "2")
    );
    // It takes traffic before any check, as HAProxy does.
    let got: Vec<String> = (0..2).map(|_| ask(fe)).collect();
    assert_eq!(got, ["s1", "s1"]);
    let rows = csv(st, "/stats");
    assert_eq!(
        rows.iter().find(|r| r["svname"] == "late").unwrap()["stot"],
        "1"
    );
}
