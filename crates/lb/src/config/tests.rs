//! Parser tests: the tutorial configuration, directives, and refusals with `file:line`.

use super::*;
use std::time::Duration;

const TUTORIAL: &str = include_str!("../../tests/data/haproxy-tutorial.cfg");

fn ok(text: &str) -> (Config, Diagnostics) {
    let (cfg, d) = load_str("t.cfg", text);
    match cfg {
        Some(c) => (c, d),
        None => panic!("config refused: {:?}", d.errors),
    }
}

fn err(text: &str) -> String {
    let (cfg, d) = load_str("t.cfg", text);
    assert!(cfg.is_none(), "config unexpectedly accepted");
    d.errors.join("\n")
}

#[test]
fn tutorial_config_is_accepted_without_warnings() {
    let (cfg, d) = ok(TUTORIAL);
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(cfg.global.maxconn, Some(4096));
    assert!(cfg.global.daemon);
    let rmq = &cfg.proxies[0];
    assert_eq!(rmq.name, "rabbitmq_cluster");
    assert_eq!(rmq.binds[0].addr, "0.0.0.0:5670".parse().unwrap());
    assert_eq!(rmq.servers.len(), 3);
    let s = &rmq.servers[0].opts;
    assert!(s.check);
    assert_eq!(
        (s.inter, s.rise, s.fall, s.weight),
        (Duration::from_secs(5), 2, 3, 1)
    );
    assert_eq!(rmq.timeouts.client, Some(Duration::from_secs(120)));
    assert_eq!(rmq.retries, 3);
    assert_eq!(rmq.maxconn, Some(2000));
    assert!(rmq.tcplog && rmq.dontlognull);
    assert_eq!(rmq.logs.len(), 1);
    let mon = &cfg.proxies[1];
    assert!(mon.is_stats());
    assert_eq!(mon.stats.uri, "/stats");
    assert_eq!(mon.stats.refresh, Some(Duration::from_secs(5)));
}

const BASE: &str =
    "defaults\n mode tcp\n timeout connect 1s\n timeout client 1s\n timeout server 1s\n";

#[test]
fn frontend_backend_and_server_options() {
    let (cfg, _) = ok(&format!(
        "{BASE}frontend fe\n bind :5000\n bind [::1]:5001\n default_backend be\n maxconn 10\n\
         backend be\n balance leastconn\n default-server inter 100ms fall 2\n option amqp-check\n\
         server a 127.0.0.1:1 check port 2 weight 3 maxconn 5 send-proxy-v2\n server b 127.0.0.1:3 backup disabled\n"
    ));
    let fe = &cfg.proxies[0];
    assert_eq!(fe.binds.len(), 2);
    assert_eq!(fe.backend_index, Some(1));
    let be = &cfg.proxies[1];
    assert_eq!(be.balance, Balance::LeastConn);
    assert_eq!(be.check, HealthCheck::Amqp);
    let a = &be.servers[0].opts;
    assert_eq!(
        (a.port, a.weight, a.maxconn, a.fall),
        (Some(2), 3, Some(5), 2)
    );
    assert_eq!(a.inter, Duration::from_millis(100));
    assert_eq!(a.send_proxy, Some(ProxyProtocol::V2));
    assert!(be.servers[1].opts.backup && be.servers[1].opts.disabled);
}

#[test]
fn httpchk_options() {
    let (cfg, _) = ok(&format!(
        "{BASE}listen l\n bind :5000\n option httpchk GET /health\n http-check send hdr Host example\n\
         http-check expect status 204\n server a 127.0.0.1:1 check\n"
    ));
    match &cfg.proxies[0].check {
        HealthCheck::Http {
            method,
            uri,
            headers,
            expect_status,
            ..
        } => {
            assert_eq!((method.as_str(), uri.as_str()), ("GET", "/health"));
            assert_eq!(headers, &[("Host".to_string(), "example".to_string())]);
            assert_eq!(*expect_status, Some(204));
        }
        c => panic!("{c:?}"),
    }
}

#[test]
fn stats_auth_and_socket() {
    let (cfg, _) = ok("global\n stats socket /tmp/x.sock mode 600 level admin\n\
         listen s\n bind :8000\n mode http\n stats enable\n stats uri /s\n stats auth u:p\n stats realm \"My Realm\"\n");
    assert_eq!(cfg.global.stats_sockets[0].level, Level::Admin);
    assert_eq!(cfg.global.stats_sockets[0].mode, Some(0o600));
    assert_eq!(
        cfg.proxies[0].stats.auth,
        [("u".to_string(), "p".to_string())]
    );
    assert_eq!(cfg.proxies[0].stats.realm, "My Realm");
}

#[test]
fn defaults_are_inherited_and_reset() {
    let (cfg, _) = ok(&format!("{BASE} retries 7\nlisten a\n bind :1\n server s 127.0.0.1:2\ndefaults\n mode tcp\nlisten b\n bind :3\n timeout client 1s\n timeout connect 1s\n timeout server 1s\n server s 127.0.0.1:2\n"));
    assert_eq!(cfg.proxies[0].retries, 7);
    assert_eq!(cfg.proxies[1].retries, 3);
}

#[test]
fn unsupported_directives_warn_with_location() {
    let (_, d) = ok(&format!(
        "{BASE}listen a\n bind :1\n option contstats\n server s 127.0.0.1:2\n"
    ));
    assert!(
        d.warnings
            .iter()
            .any(|w| w.contains("t.cfg:8") && w.contains("contstats")),
        "{:?}",
        d.warnings
    );
}

#[test]
fn errors_carry_file_and_line() {
    assert!(err(&format!("{BASE}listen a\n bind :1\n frobnicate 3\n")).contains("t.cfg:8"));
    assert!(err(&format!(
        "{BASE}listen a\n bind :1\n server s 127.0.0.1:2 weight 300\n"
    ))
    .contains("t.cfg:8"));
    assert!(err(&format!("{BASE}listen a\n bind :1\n timeout server 5x\n")).contains("t.cfg:8"));
    assert!(err(&format!("{BASE}listen a\n bind :1\n balance uri\n")).contains("not supported"));
    assert!(err("listen a\n bind :1\n stats realm \"unterminated\n").contains("t.cfg:3"));
    assert!(err("listen a\n bind :1\n mode http\n").contains("only supported for the stats page"));
    assert!(err("server s 127.0.0.1:1\n").contains("out of section"));
}

#[test]
fn contradictions_are_refused() {
    let e = err(&format!(
        "{BASE}frontend f\n bind :1\n default_backend nope\n"
    ));
    assert!(e.contains("unknown backend 'nope'"), "{e}");
    let e = err(&format!("{BASE}listen a\n bind :1\nlisten b\n bind :1\n"));
    assert!(e.contains("already bound"), "{e}");
    let e = err(&format!("{BASE}listen a\n bind :1\nbackend a\n"));
    assert!(e.contains("same name"), "{e}");
    let e = err(&format!("{BASE}backend b\n bind :1\n"));
    assert!(e.contains("not allowed in a 'backend'"), "{e}");
    let e = err(&format!(
        "{BASE}listen a\n bind :1\n server s 127.0.0.1:2\n server s 127.0.0.1:3\n"
    ));
    assert!(e.contains("already defined"), "{e}");
    let e = err(&format!(
        "{BASE}frontend f\n bind :1\n use_backend b if foo\nbackend b\n"
    ));
    assert!(e.contains("ACL"), "{e}");
}

#[test]
fn nbthread_and_config_directories() {
    let (cfg, d) = ok("global\n nbthread 1\n");
    assert!(d.warnings.is_empty());
    assert_eq!(cfg.global.nbthread, Some(1));
    assert!(err("global\n nbthread 0\n").contains("t.cfg:2"));
    let dir = std::env::temp_dir().join(format!("warren-lb-cfgdir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("10-global.cfg"), "global\n maxconn 77\n").unwrap();
    std::fs::write(
        dir.join("20-px.cfg"),
        format!("{BASE}listen a\n bind :1\n server s 127.0.0.1:2\n"),
    )
    .unwrap();
    std::fs::write(dir.join("ignored.txt"), "garbage\n").unwrap();
    let (cfg, d) = load(std::slice::from_ref(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = cfg.unwrap_or_else(|| panic!("{:?}", d.errors));
    assert_eq!(cfg.global.maxconn, Some(77));
    assert_eq!(cfg.proxies.len(), 1);
}

#[test]
fn tcp_keepalive_options() {
    let (cfg, d) = ok(&format!(
        "{BASE} option tcpka\nlisten a\n bind :1\n no option srvtcpka\n server s 127.0.0.1:2\n"
    ));
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert!(cfg.proxies[0].cli_tcpka && !cfg.proxies[0].srv_tcpka);
}

/// A cheap fuzz: random lines built from real keywords, odd values and quoting never panic,
/// and every refusal carries a location.
#[test]
fn random_configurations_never_panic() {
    const WORDS: &[&str] = &[
        "global",
        "defaults",
        "listen",
        "frontend",
        "backend",
        "bind",
        "server",
        "default-server",
        "mode",
        "tcp",
        "http",
        "balance",
        "roundrobin",
        "first",
        "timeout",
        "connect",
        "client",
        "queue",
        "tunnel",
        "check",
        "inter",
        "rise",
        "fall",
        "weight",
        "backup",
        "port",
        "maxconn",
        "retries",
        "option",
        "no",
        "httpchk",
        "amqp-check",
        "http-check",
        "send",
        "hdr",
        "expect",
        "status",
        "stats",
        "uri",
        "auth",
        "socket",
        "level",
        "admin",
        "use_backend",
        "default_backend",
        "a",
        "b",
        "px",
        "s1",
        ":80",
        "*:81",
        "[::]:82",
        "127.0.0.1:83",
        "127.0.0.1",
        "[::1",
        "1-",
        "65536",
        "0",
        "-1",
        "5s",
        "100ms",
        "9999999999d",
        "\"",
        "'",
        "\\",
        "#",
        "${X}",
        "\"a b\"",
        "u:p",
        "/tmp/x.sock",
        "600",
        "",
        "\t",
        "ipv6@::1:1",
    ];
    // No `log` and no word with a host-name-and-port shape: a host name would be resolved
    // through DNS, and these tests must not leave the machine.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..next(12) {
            for _ in 0..next(7) {
                text.push_str(WORDS[next(WORDS.len())]);
                text.push(' ');
            }
            text.push('\n');
        }
        let (cfg, d) = load_str("f.cfg", &text);
        if cfg.is_none() {
            assert!(!d.errors.is_empty());
            assert!(
                d.errors.iter().all(|e| e.contains("f.cfg:")),
                "{:?}\n{text}",
                d.errors
            );
        }
    }
}
