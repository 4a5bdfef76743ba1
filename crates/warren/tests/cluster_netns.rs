//! The cluster as users deploy it: three hosts `hadoop100`–`hadoop102`, each in its own
//! network namespace with its own address (198.18.0.100–102 on one bridge), default ports,
//! node names `warren@hadoop100`… resolved through the hosts' `/etc/hosts`
//! (`/etc/netns/<ns>/hosts`), and the cluster steps exactly as the README gives them. Then
//! `kill -9` of a node, and a partition that isolates one host: it stops serving while the
//! majority goes on, and after healing all three agree. The isolated host leads a mirrored
//! queue: it confirms nothing while cut off, the majority promotes the synchronised mirror,
//! and after healing every confirmed message is consumed once (duplicates only redelivered).
//!
//! Needs root and iproute2; without them it prints one line and passes.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "wcl";
const HOSTS: [&str; 3] = ["hadoop100", "hadoop101", "hadoop102"];

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect(args[0]);
    assert!(st.success(), "{args:?} failed");
}

fn can_run() -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        println!("skipping: network-namespace tests need root");
        return false;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        println!("skipping: iproute2 `ip` is not installed");
        return false;
    }
    true
}

struct Lab {
    dir: PathBuf,
    nodes: Vec<Option<Child>>,
}

fn ns(i: usize) -> String {
    format!("{PREFIX}{i}")
}

fn cleanup() {
    for i in 0..3 {
        let _ = Command::new("ip")
            .args(["netns", "del", &ns(i)])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", ns(i)));
    }
    let _ = Command::new("ip")
        .args(["netns", "del", &format!("{PREFIX}br")])
        .stderr(Stdio::null())
        .status();
}

impl Lab {
    fn new() -> Lab {
        cleanup();
        let dir = std::env::temp_dir().join(format!("warren-netns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let br = format!("{PREFIX}br");
        sh(&["ip", "netns", "add", &br]);
        sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        let hosts: String = HOSTS
            .iter()
            .enumerate()
            .map(|(i, h)| format!("198.18.0.{} {h}\n", 100 + i))
            .collect();
        for i in 0..3 {
            let n = ns(i);
            sh(&["ip", "netns", "add", &n]);
            let port = format!("v{i}");
            sh(&[
                "ip", "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &n,
            ]);
            sh(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"]);
            sh(&["ip", "-n", &n, "link", "set", "lo", "up"]);
            let addr = format!("198.18.0.{}/24", 100 + i);
            sh(&["ip", "-n", &n, "addr", "add", &addr, "dev", "eth0"]);
            sh(&["ip", "-n", &n, "link", "set", "eth0", "up"]);
            // `ip netns exec` mounts this over /etc/hosts inside the namespace.
            let etc = format!("/etc/netns/{n}");
            std::fs::create_dir_all(&etc).unwrap();
            std::fs::write(
                format!("{etc}/hosts"),
                format!("127.0.0.1 localhost\n{hosts}"),
            )
            .unwrap();
        }
        let cookie = dir.join("cookie");
        std::fs::write(&cookie, "NETNSCLUSTERCOOKIE").unwrap();
        sh(&["chmod", "600", cookie.to_str().unwrap()]);
        let mut lab = Lab {
            dir,
            nodes: vec![None, None, None],
        };
        for i in 0..3 {
            lab.start(i);
        }
        lab
    }

    fn node(i: usize) -> String {
        format!("warren@{}", HOSTS[i])
    }

    /// Runs the pika client below on host `i` against its own node: its JSON answer.
    fn client(&self, i: usize, args: &[&str]) -> serde_json::Value {
        let script = self.dir.join("client.py");
        std::fs::write(&script, CLIENT).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns(i), "/usr/bin/python3"])
            .arg(&script)
            .arg(format!("198.18.0.{}", 100 + i))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "client {args:?} on {}: {e}: {text}{}",
                HOSTS[i],
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// `warren server` with default ports, as a user runs it on that host.
    fn start(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}.log", HOSTS[i])))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns(i)])
            .arg(common::warren_bin())
            .args(["server", "--node-name", &Self::node(i), "--data-dir"])
            .arg(self.dir.join(HOSTS[i]))
            .arg("--cookie-file")
            .arg(self.dir.join("cookie"))
            .env("WARREN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.nodes[i] = Some(child);
        self.eventually(i, &["status"], "node started", |_| true);
    }

    fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].take() {
            // `ip netns exec` execs the server, so this pid is the server's.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `warren ctl` on host `i` against its own node: (exit code, stdout + stderr).
    fn ctl(&self, i: usize, args: &[&str]) -> (i32, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns(i)])
            .arg(common::warren_bin())
            .args(["ctl", "-n", &Self::node(i), "--cookie-file"])
            .arg(self.dir.join("cookie"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn ok(&self, i: usize, args: &[&str]) -> String {
        let (code, out) = self.ctl(i, args);
        assert_eq!(code, 0, "ctl {args:?} on {}: {out}", HOSTS[i]);
        out
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", HOSTS[i]))).unwrap_or_default()
    }

    fn eventually(
        &self,
        i: usize,
        args: &[&str],
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (code, out) = self.ctl(i, args);
            if code == 0 && pred(&out) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: ctl {args:?} on {}: {out}\n--- log:\n{}",
                HOSTS[i],
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn wait_log(&self, i: usize, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log(i).contains(text) {
            assert!(
                Instant::now() < deadline,
                "{} never logged '{text}':\n{}",
                HOSTS[i],
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Cuts (or restores) host `i`'s only link.
    fn link(&self, i: usize, up: bool) {
        let port = format!("v{i}");
        let state = if up { "up" } else { "down" };
        sh(&[
            "ip",
            "-n",
            &format!("{PREFIX}br"),
            "link",
            "set",
            &port,
            state,
        ]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill9(i);
        }
        if std::thread::panicking() {
            for (i, host) in HOSTS.iter().enumerate() {
                eprintln!("===== {host} =====\n{}", self.log(i));
            }
        }
        cleanup();
    }
}

/// A pika client (python3-pika, as RabbitMQ users have it): `HOST publish QUEUE FROM TO`
/// publishes persistent messages `mFROM..mTO` with confirms (5 s each) and reports how many
/// were confirmed; `HOST drain QUEUE` takes every message and reports body -> redelivered
/// flags.
const CLIENT: &str = r#"
import json, sys, pika
host, mode, queue = sys.argv[1], sys.argv[2], sys.argv[3]
params = pika.ConnectionParameters(host, credentials=pika.PlainCredentials("app", "app"),
                                   blocked_connection_timeout=5, socket_timeout=5)
out = {}
try:
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    if mode == "publish":
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        confirmed = 0
        for i in range(int(sys.argv[4]), int(sys.argv[5])):
            ch.basic_publish("", queue, b"m%d" % i, pika.BasicProperties(delivery_mode=2))
            confirmed += 1
        out["confirmed"] = confirmed
    else:
        seen = {}
        while True:
            m, props, body = ch.basic_get(queue, auto_ack=True)
            if m is None:
                break
            seen.setdefault(body.decode(), []).append(m.redelivered)
        out["seen"] = seen
    conn.close()
except Exception as e:
    out.setdefault("confirmed", locals().get("confirmed", 0))
    out["error"] = repr(e)
print(json.dumps(out))
"#;

fn running(out: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(out)
        .ok()
        .and_then(|v| v["running_nodes"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn three_hosts_join_fail_and_heal_a_partition() {
    if !can_run() {
        return;
    }
    let mut lab = Lab::new();
    // The README's steps, on hosts 2 and 3.
    for i in [1, 2] {
        lab.ok(i, &["stop_app"]);
        lab.ok(i, &["reset"]);
        lab.ok(i, &["join_cluster", "warren@hadoop100"]);
        lab.ok(i, &["start_app"]);
    }
    for i in 0..3 {
        lab.eventually(
            i,
            &["cluster_status", "--formatter", "json"],
            "all three running",
            |o| running(o) == 3,
        );
    }
    lab.ok(
        1,
        &[
            "set_policy",
            "ha-two",
            "^mirror",
            r#"{"ha-mode":"exactly","ha-params":2}"#,
        ],
    );
    lab.eventually(2, &["list_policies"], "policy on every host", |o| {
        o.contains("ha-two")
    });

    // kill -9 of one host's node: the other two keep accepting changes.
    lab.kill9(1);
    lab.ok(0, &["add_vhost", "while-101-is-down"]);
    lab.eventually(2, &["list_vhosts"], "change seen", |o| {
        o.contains("while-101-is-down")
    });
    lab.start(1);
    lab.eventually(1, &["list_vhosts"], "restarted host caught up", |o| {
        o.contains("while-101-is-down")
    });

    // hadoop102 leads a mirrored queue with one synchronised mirror.
    lab.ok(
        1,
        &[
            "set_policy",
            "ha-two",
            "^mirror",
            r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}"#,
        ],
    );
    lab.ok(0, &["add_user", "app", "app"]);
    lab.ok(0, &["set_permissions", "app", ".*", ".*", ".*"]);
    let sent = lab.client(2, &["publish", "mirror_part", "0", "200"]);
    assert_eq!(sent["confirmed"], 200, "{sent}");
    let listed = lab.eventually(
        0,
        &["list_queues", "name", "pid", "synchronised_slave_pids"],
        "a synchronised mirror",
        |o| {
            o.lines()
                .any(|l| l.starts_with("mirror_part\twarren@hadoop102\t[\"warren@hadoop10"))
        },
    );
    println!("before the partition: {listed}");

    // Partition: hadoop102 alone cannot reach a majority and stops serving.
    lab.link(2, false);
    // Cut off, it confirms nothing: its mirror cannot be left out without the majority.
    let cut_off = lab.client(2, &["publish", "mirror_part", "1000", "1001"]);
    assert_eq!(
        cut_off["confirmed"], 0,
        "the isolated leader confirmed: {cut_off}"
    );
    // The majority promotes the synchronised mirror and carries on.
    let moved = lab.eventually(
        0,
        &["list_queues", "name", "pid"],
        "the mirror promoted on the majority side",
        |o| {
            o.lines()
                .any(|l| l.starts_with("mirror_part\twarren@hadoop10") && !l.contains("hadoop102"))
        },
    );
    println!("during the partition: {moved}");
    let more = lab.client(0, &["publish", "mirror_part", "200", "300"]);
    assert_eq!(more["confirmed"], 100, "{more}");
    lab.eventually(2, &["cluster_status"], "isolated host pauses", |o| {
        o.contains("cannot reach a majority")
    });
    lab.wait_log(2, "stops serving clients");
    let (code, out) = lab.ctl(2, &["add_vhost", "minority-side"]);
    assert_ne!(code, 0, "no change on the minority side: {out}");
    // The majority keeps working.
    lab.ok(0, &["add_vhost", "during-partition"]);
    lab.eventually(1, &["list_vhosts"], "majority side", |o| {
        o.contains("during-partition")
    });
    // Healed: all three agree, and the isolated host serves again.
    lab.link(2, true);
    lab.eventually(2, &["list_vhosts"], "healed host caught up", |o| {
        o.contains("during-partition") && !o.contains("minority-side")
    });
    lab.eventually(2, &["cluster_status"], "healed host serves", |o| {
        !o.contains("cannot reach a majority")
    });
    lab.wait_log(2, "reachable again: serving clients");
    for i in 0..3 {
        lab.eventually(
            i,
            &["cluster_status", "--formatter", "json"],
            "all three running again",
            |o| running(o) == 3,
        );
    }
    // Every confirmed message is there, read through the formerly isolated host.
    let drained = lab.client(2, &["drain", "mirror_part"]);
    let seen = drained["seen"].as_object().expect("drained");
    for i in 0..300 {
        assert!(
            seen.contains_key(&format!("m{i}")),
            "confirmed m{i} lost: {drained}"
        );
    }
    for (body, flags) in seen {
        let flags = flags.as_array().unwrap();
        assert!(
            flags.len() == 1 || flags.iter().skip(1).all(|r| r == true),
            "{body} delivered again without redelivered: {drained}"
        );
    }
    println!(
        "after healing: {} messages consumed, all 300 confirmed ones among them",
        seen.len()
    );
}
