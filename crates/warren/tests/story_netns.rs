//! The user's story end to end, on the deployment the tutorial describes: broker hosts
//! `hadoop100`–`hadoop102`, load-balancer hosts `lb1`/`lb2` running `warren lb` and
//! `warren vrrp` with a VIP, and a `client` host, each in its own network namespace on
//! 198.18.0.0/24. In order: the cluster forms with `join_cluster`; the `^mirror` policy is
//! set over the HTTP API (as rabbitmqadmin does); a client publishes through the VIP with
//! confirms; the queue gets a synchronised mirror; the leader's node stops and is killed; the
//! load balancer marks it DOWN; a new leader and a new mirror appear; the master LB's VRRP
//! stops and the VIP moves; the client reconnects through the VIP and consumes every
//! confirmed message.
//!
//! Each step is a function; a failure names the step and why, and prints the timeline so far
//! and every log. Needs root and iproute2; without them it prints one line and passes.

#[path = "../../broker/tests/common/mod.rs"]
mod common;
#[path = "../src/up/namespaces.rs"]
#[allow(dead_code)]
mod namespaces;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use namespaces::Host;
use serde_json::Value;

const PREFIX: &str = "wst-";
const BROKERS: [(&str, &str); 3] = [
    ("hadoop100", "198.18.0.100"),
    ("hadoop101", "198.18.0.101"),
    ("hadoop102", "198.18.0.102"),
];
const LBS: [(&str, &str); 2] = [("lb1", "198.18.0.111"), ("lb2", "198.18.0.112")];
const CLIENT: &str = "client";
const VIP: &str = "198.18.0.150";
const QUEUE: &str = "mirror_hello";
const USER: &str = "admin";
const PASS: &str = "admin";
/// Messages published (persistent, with confirms).
const N: usize = 500;
const WAIT: Duration = Duration::from_secs(25);

fn hosts() -> Vec<Host> {
    BROKERS
        .iter()
        .chain(LBS.iter())
        .chain([&(CLIENT, "198.18.0.200")])
        .map(|(n, a)| Host::new(n, a))
        .collect()
}

fn ns(host: &str) -> String {
    namespaces::ns(PREFIX, host)
}

fn node(i: usize) -> String {
    format!("warren@{}", BROKERS[i].0)
}

/// Polls `f` until it yields a value; the last reason it gave when the deadline passes.
fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; last: {e}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Every process the story starts, by name; all are killed (by pid) and the namespaces
/// removed when this is dropped.
struct Lab {
    dir: PathBuf,
    procs: Vec<(String, Child, PathBuf)>,
    /// Processes the story stopped on purpose.
    stopped: Vec<String>,
}

impl Lab {
    fn new() -> Result<Lab, String> {
        // Leftovers of an earlier, interrupted run.
        namespaces::remove(PREFIX, &hosts());
        let dir = std::env::temp_dir().join(format!("warren-story-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lab = Lab {
            dir,
            procs: Vec::new(),
            stopped: Vec::new(),
        };
        namespaces::create(PREFIX, &hosts(), &format!("{VIP} vip\n"))?;
        let cookie = lab.dir.join("cookie");
        std::fs::write(&cookie, "STORYNETNSCOOKIE").map_err(|e| e.to_string())?;
        namespaces::sh(&["chmod", "600", cookie.to_str().unwrap()])?;
        Ok(lab)
    }

    /// Starts `args` (a `warren` role) inside `host`'s namespace as process `name`.
    fn spawn(&mut self, name: &str, host: &str, args: &[String]) -> Result<(), String> {
        let log = self.dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = namespaces::exec(&ns(host))
            .arg(common::warren_bin())
            .args(args)
            .env("WARREN_REGISTRY_DIR", self.dir.join(host).join("run"))
            .env("WARREN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().map_err(|e| e.to_string())?)
            .stderr(f)
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        self.procs.push((name.to_string(), child, log));
        Ok(())
    }

    fn proc_index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|(n, _, _)| n == name)
    }

    /// Sends `sig` to process `name` and waits for it to exit (SIGKILL after 10 s).
    fn stop(&mut self, name: &str, sig: i32) -> Result<(), String> {
        let i = self
            .proc_index(name)
            .ok_or_else(|| format!("no process {name}"))?;
        self.stopped.push(name.to_string());
        let c = &mut self.procs[i].1;
        // SAFETY: a child we started, by pid (`ip netns exec` execs the program).
        unsafe { libc::kill(c.id() as i32, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return Err(format!("{name} ignored signal {sig}; killed"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Fails naming any process that exited on its own.
    fn check_alive(&mut self) -> Result<(), String> {
        for (name, c, log) in self.procs.iter_mut() {
            if self.stopped.contains(name) {
                continue;
            }
            if let Ok(Some(st)) = c.try_wait() {
                return Err(format!("{name} exited ({st}); log {}", log.display()));
            }
        }
        Ok(())
    }

    /// `warren ctl -n warren@<host>` run inside that host's namespace.
    fn ctl(&self, i: usize, args: &[&str]) -> Result<String, String> {
        let host = BROKERS[i].0;
        let out = namespaces::exec(&ns(host))
            .arg(common::warren_bin())
            .args(["ctl", "-q", "-n", &node(i), "--cookie-file"])
            .arg(self.dir.join("cookie"))
            .args(args)
            .env("WARREN_REGISTRY_DIR", self.dir.join(host).join("run"))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ctl {} on {host}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn has_vip(&self, lb: &str) -> bool {
        namespaces::has_addr(&ns(lb), "eth0", VIP)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c, _) in self.procs.iter_mut().rev() {
            // SIGTERM first so that VRRP releases the VIP and nodes close cleanly.
            // SAFETY: our own children, by pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c, _) in self.procs.iter_mut() {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for (name, _, log) in &self.procs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                // The tail is what explains a failure; whole logs drown it.
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("===== {name} ({}) =====", log.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        namespaces::remove(PREFIX, &hosts());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One HTTP/1.0 request from inside `from`'s namespace, with the administrator's basic
/// auth: (status, body).
fn http(
    from: &str,
    addr: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    let body = body.unwrap_or("").to_string();
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}:{port}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let target: std::net::SocketAddr = format!("{addr}:{port}")
        .parse()
        .map_err(|e| format!("{e}"))?;
    namespaces::in_ns(&ns(from), move || -> Result<(u16, String), String> {
        let mut s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
            .map_err(|e| format!("connect {target}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
        let resp = String::from_utf8_lossy(&resp).into_owned();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad HTTP response: {resp}"))?;
        let body = resp.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
        Ok((status, body))
    })?
}

/// Server name → status from `lb`'s stats page (`/stats;csv`, HAProxy's columns).
fn lb_status(lb: &str) -> Result<Vec<(String, String)>, String> {
    let (code, csv) = http(lb, "127.0.0.1", 8888, "GET", "/stats;csv", None)?;
    if code != 200 {
        return Err(format!("stats page answered {code}"));
    }
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or("empty CSV")?
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .ok_or(format!("no column {n}"))
    };
    let (px, sv, st) = (col("pxname")?, col("svname")?, col("status")?);
    Ok(lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.get(px) == Some(&"rabbitmq_cluster"))
        .filter(|f| {
            f.get(sv)
                .is_some_and(|s| *s != "FRONTEND" && *s != "BACKEND")
        })
        .map(|f| (f[sv].to_string(), f.get(st).unwrap_or(&"?").to_string()))
        .collect())
}

/// The queue's leader, mirrors and synchronised mirrors, as the management API reports them.
#[derive(Debug, Clone)]
struct Placement {
    leader: String,
    mirrors: Vec<String>,
    synced: Vec<String>,
    messages: u64,
}

fn placement(via: usize) -> Result<Placement, String> {
    let (code, body) = http(
        CLIENT,
        BROKERS[via].1,
        15672,
        "GET",
        &format!("/api/queues/%2F/{QUEUE}"),
        None,
    )?;
    if code != 200 {
        return Err(format!("GET queue answered {code}: {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    let names = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(Placement {
        leader: v["node"].as_str().unwrap_or("").to_string(),
        mirrors: names("slave_nodes"),
        synced: names("synchronised_slave_nodes"),
        messages: v["messages"].as_u64().unwrap_or(0),
    })
}

fn amqp_uri() -> String {
    format!("amqp://{USER}:{PASS}@{VIP}:5672/%2f")
}

/// Runs an async client inside the client host's namespace (its runtime, and so its
/// sockets, live there).
fn client<T: Send + 'static>(
    f: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>>>>
        + Send
        + 'static,
) -> Result<T, String> {
    namespaces::in_ns(&ns(CLIENT), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(f())
    })?
}

struct Story {
    lab: Lab,
    timeline: Vec<(String, Duration, String)>,
    published: usize,
    confirmed: BTreeSet<usize>,
    consumed: usize,
    consumed_unique: BTreeSet<usize>,
    /// Broker index of the leader that was stopped, and of its synchronised mirror.
    old_leader: Option<usize>,
    old_mirror: Option<usize>,
}

impl Story {
    fn step(&mut self, name: &str, f: fn(&mut Story) -> Result<String, String>) {
        let n = self.timeline.len() + 1;
        println!("[{n:>2}] {name} ...");
        let t = Instant::now();
        let r = f(self).and_then(|note| {
            self.lab.check_alive()?;
            Ok(note)
        });
        let took = t.elapsed();
        match r {
            Ok(note) => {
                println!("[{n:>2}] {name}: ok in {:.1}s  {note}", took.as_secs_f64());
                self.timeline.push((name.to_string(), took, note));
            }
            Err(why) => {
                self.print_timeline();
                panic!(
                    "step {n} '{name}' failed after {:.1}s: {why}",
                    took.as_secs_f64()
                );
            }
        }
    }

    fn print_timeline(&self) {
        println!("\ntimeline:");
        let mut total = Duration::ZERO;
        for (i, (name, d, note)) in self.timeline.iter().enumerate() {
            total += *d;
            println!(
                "  {:>2}. {name:<42} {:>5.1}s  {note}",
                i + 1,
                d.as_secs_f64()
            );
        }
        println!("  total {:.1}s", total.as_secs_f64());
        println!(
            "messages: published {}, confirmed {}, consumed {} ({} distinct)\n",
            self.published,
            self.confirmed.len(),
            self.consumed,
            self.consumed_unique.len()
        );
    }
}

fn start_brokers(s: &mut Story) -> Result<String, String> {
    for (i, (host, _)) in BROKERS.iter().enumerate() {
        let data = s.lab.dir.join(host).join("data");
        let args = vec![
            "server".into(),
            "--node-name".into(),
            node(i),
            "--data-dir".into(),
            data.display().to_string(),
            "--cookie-file".into(),
            s.lab.dir.join("cookie").display().to_string(),
        ];
        s.lab.spawn(host, host, &args)?;
    }
    for i in 0..BROKERS.len() {
        poll(&format!("{} to start", node(i)), WAIT, || {
            s.lab.check_alive()?;
            s.lab.ctl(i, &["await_startup"])
        })?;
    }
    Ok("3 nodes on default ports".into())
}

fn running_nodes(out: &str) -> usize {
    serde_json::from_str::<Value>(out)
        .ok()
        .and_then(|v| v["running_nodes"].as_array().map(Vec::len))
        .unwrap_or(0)
}

fn join_cluster(s: &mut Story) -> Result<String, String> {
    for i in [1, 2] {
        s.lab.ctl(i, &["stop_app"])?;
        s.lab.ctl(i, &["reset"])?;
        s.lab.ctl(i, &["join_cluster", "warren@hadoop100"])?;
        s.lab.ctl(i, &["start_app"])?;
    }
    for i in 0..3 {
        poll("all three running", WAIT, || {
            let out = s.lab.ctl(i, &["cluster_status", "--formatter", "json"])?;
            (running_nodes(&out) == 3)
                .then_some(())
                .ok_or(format!("{}: {out}", node(i)))
        })?;
    }
    Ok("cluster_status lists 3 running nodes on every host".into())
}

fn add_admin(s: &mut Story) -> Result<String, String> {
    s.lab.ctl(0, &["add_user", USER, PASS])?;
    s.lab.ctl(0, &["set_user_tags", USER, "administrator"])?;
    s.lab
        .ctl(0, &["set_permissions", "-p", "/", USER, ".*", ".*", ".*"])?;
    Ok(format!("{USER} (guest is loopback-only)"))
}

fn set_policy(s: &mut Story) -> Result<String, String> {
    let _ = s;
    let body = r#"{"pattern":"^mirror","definition":{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"},"apply-to":"queues","priority":0}"#;
    let (code, resp) = poll("the HTTP API on hadoop100", WAIT, || {
        http(
            CLIENT,
            BROKERS[0].1,
            15672,
            "PUT",
            "/api/policies/%2F/ha-two",
            Some(body),
        )
    })?;
    if code != 201 && code != 204 {
        return Err(format!(
            "PUT /api/policies/%2F/ha-two answered {code}: {resp}"
        ));
    }
    // Read back from another host: the policy is cluster metadata.
    poll("the policy on hadoop102", WAIT, || {
        let (code, body) = http(
            CLIENT,
            BROKERS[2].1,
            15672,
            "GET",
            "/api/policies/%2F",
            None,
        )?;
        (code == 200 && body.contains("ha-two") && body.contains("^mirror"))
            .then_some(())
            .ok_or(format!("{code}: {body}"))
    })?;
    Ok(format!("PUT answered {code}; hadoop102 lists ha-two"))
}

fn lb_cfg() -> String {
    let mut s = String::from(
        "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 3h\n    timeout server 3h\n\n\
         listen rabbitmq_cluster\n    bind 0.0.0.0:5672\n    mode tcp\n    balance roundrobin\n    option amqp-check\n",
    );
    for (h, addr) in BROKERS {
        s.push_str(&format!(
            "    server {h} {addr}:5672 check inter 500 rise 2 fall 3 weight 1\n"
        ));
    }
    s.push_str("\nlisten monitor\n    bind 0.0.0.0:8888\n    mode http\n    stats enable\n    stats uri /stats\n    stats refresh 5s\n");
    s
}

fn keepalived_cfg(lb: usize, check: &std::path::Path) -> String {
    let (state, prio) = if lb == 0 {
        ("MASTER", 101)
    } else {
        ("BACKUP", 100)
    };
    format!(
        "global_defs {{\n    router_id {}\n    script_user root\n}}\n\
         vrrp_script chk_lb {{\n    script \"{}\"\n    interval 1\n    weight 2\n}}\n\
         vrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    virtual_router_id 51\n    priority {prio}\n    advert_int 1\n\
         \x20   authentication {{\n        auth_type PASS\n        auth_pass 1111\n    }}\n\
         \x20   track_script {{\n        chk_lb\n    }}\n\
         \x20   virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n",
        LBS[lb].0,
        check.display()
    )
}

fn start_lbs(s: &mut Story) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    for (j, (lb, _)) in LBS.iter().enumerate() {
        let d = s.lab.dir.join(lb);
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let cfg = d.join("haproxy.cfg");
        std::fs::write(&cfg, lb_cfg()).map_err(|e| e.to_string())?;
        let check = d.join("chk_lb.sh");
        std::fs::write(&check, "#!/bin/bash\nexec 3<>/dev/tcp/127.0.0.1/8888\n")
            .map_err(|e| e.to_string())?;
        std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let kc = d.join("keepalived.conf");
        std::fs::write(&kc, keepalived_cfg(j, &check)).map_err(|e| e.to_string())?;
        let p = |f: &str| d.join(f).display().to_string();
        s.lab.spawn(
            &format!("{lb}-lb"),
            lb,
            &[
                "lb".into(),
                "-db".into(),
                "-f".into(),
                p("haproxy.cfg"),
                "-p".into(),
                p("lb.pid"),
            ],
        )?;
        s.lab.spawn(
            &format!("{lb}-vrrp"),
            lb,
            &[
                "vrrp".into(),
                "-n".into(),
                "-l".into(),
                "-f".into(),
                p("keepalived.conf"),
                "-p".into(),
                p("vrrp.pid"),
                "-r".into(),
                p("vrrp-child.pid"),
            ],
        )?;
    }
    for (lb, _) in LBS {
        poll(&format!("{lb} to mark all three UP"), WAIT, || {
            s.lab.check_alive()?;
            let st = lb_status(lb)?;
            (st.len() == 3 && st.iter().all(|(_, v)| v == "UP"))
                .then_some(())
                .ok_or(format!("{st:?}"))
        })?;
    }
    poll("the VIP on lb1 only", WAIT, || {
        (s.lab.has_vip("lb1") && !s.lab.has_vip("lb2"))
            .then_some(())
            .ok_or(format!(
                "lb1 {} lb2 {}",
                s.lab.has_vip("lb1"),
                s.lab.has_vip("lb2")
            ))
    })?;
    Ok("both LBs see 3 servers UP; lb1 holds the VIP".into())
}

fn publish(s: &mut Story) -> Result<String, String> {
    let (published, confirmed) = client(|| {
        Box::pin(async move {
            let conn =
                lapin::Connection::connect(&amqp_uri(), lapin::ConnectionProperties::default())
                    .await
                    .map_err(|e| format!("connect to the VIP: {e}"))?;
            let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
            let durable = QueueDeclareOptions {
                durable: true,
                ..Default::default()
            };
            ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
                .await
                .map_err(|e| format!("declare {QUEUE}: {e}"))?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let mut pending = Vec::with_capacity(N);
            for i in 0..N {
                let c = ch
                    .basic_publish(
                        "".into(),
                        QUEUE.into(),
                        BasicPublishOptions::default(),
                        format!("m{i}").as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .map_err(|e| format!("publish {i}: {e}"))?;
                pending.push((i, c));
            }
            let mut confirmed = BTreeSet::new();
            for (i, c) in pending {
                let c = tokio::time::timeout(WAIT, c)
                    .await
                    .map_err(|_| format!("no confirm for message {i}"))?
                    .map_err(|e| format!("confirm {i}: {e}"))?;
                if c.is_ack() {
                    confirmed.insert(i);
                }
            }
            let _ = conn.close(200, "done".into()).await;
            Ok((N, confirmed))
        })
    })?;
    s.published = published;
    s.confirmed = confirmed;
    if s.confirmed.len() != published {
        return Err(format!(
            "{} of {published} confirmed (nacks on a healthy cluster)",
            s.confirmed.len()
        ));
    }
    Ok(format!(
        "{published} persistent messages, {} confirmed, through {VIP}:5672",
        s.confirmed.len()
    ))
}

fn broker_index(name: &str) -> Result<usize, String> {
    (0..BROKERS.len())
        .find(|&i| node(i) == name)
        .ok_or(format!("unknown node '{name}'"))
}

fn mirror_synchronised(s: &mut Story) -> Result<String, String> {
    let want = s.confirmed.len() as u64;
    let p = poll("one synchronised mirror", WAIT, || {
        let p = placement(0)?;
        (p.synced.len() == 1 && p.mirrors.len() == 1 && p.messages == want)
            .then_some(p.clone())
            .ok_or(format!("{p:?}"))
    })?;
    s.old_leader = Some(broker_index(&p.leader)?);
    s.old_mirror = Some(broker_index(&p.synced[0])?);
    Ok(format!(
        "leader {}, synchronised mirror {}, {} messages",
        p.leader, p.synced[0], p.messages
    ))
}

fn stop_leader(s: &mut Story) -> Result<String, String> {
    let i = s.old_leader.ok_or("no leader recorded")?;
    s.lab.ctl(i, &["stop_app"])?;
    s.lab.stop(BROKERS[i].0, libc::SIGKILL)?;
    Ok(format!("stop_app, then kill -9 of {}", node(i)))
}

fn lb_marks_down(s: &mut Story) -> Result<String, String> {
    let host = BROKERS[s.old_leader.ok_or("no leader recorded")?].0;
    for (lb, _) in LBS {
        poll(&format!("{lb} to mark {host} DOWN"), WAIT, || {
            let st = lb_status(lb)?;
            let mine = st
                .iter()
                .find(|(n, _)| n == host)
                .ok_or(format!("{st:?}"))?;
            let others_up = st.iter().filter(|(n, v)| n != host && v == "UP").count();
            (mine.1.starts_with("DOWN") && others_up == 2)
                .then_some(())
                .ok_or(format!("{st:?}"))
        })?;
    }
    Ok(format!("{host} DOWN on lb1 and lb2, the other two UP"))
}

fn new_leader_and_mirror(s: &mut Story) -> Result<String, String> {
    let old = s.old_leader.ok_or("no leader recorded")?;
    let mirror = s.old_mirror.ok_or("no mirror recorded")?;
    let spare = (0..3)
        .find(|&i| i != old && i != mirror)
        .ok_or("no spare host")?;
    let want = s.confirmed.len() as u64;
    let p = poll("a new leader and a new synchronised mirror", WAIT, || {
        let p = placement(mirror)?;
        (p.leader == node(mirror) && p.synced == [node(spare)] && p.messages == want)
            .then_some(p.clone())
            .ok_or(format!(
                "want leader {} and synced [{}]; {p:?}",
                node(mirror),
                node(spare)
            ))
    })?;
    Ok(format!(
        "leader {} (was mirror), new synchronised mirror {}, {} messages",
        p.leader, p.synced[0], p.messages
    ))
}

fn vrrp_failover(s: &mut Story) -> Result<String, String> {
    s.lab.stop("lb1-vrrp", libc::SIGTERM)?;
    poll("the VIP on lb2 only", WAIT, || {
        (s.lab.has_vip("lb2") && !s.lab.has_vip("lb1"))
            .then_some(())
            .ok_or(format!(
                "lb1 {} lb2 {}",
                s.lab.has_vip("lb1"),
                s.lab.has_vip("lb2")
            ))
    })?;
    Ok("warren vrrp on lb1 stopped; lb2 holds the VIP".into())
}

fn consume(s: &mut Story) -> Result<String, String> {
    let want = s.confirmed.len();
    // Reconnecting may take a few tries while the VIP settles, as a client would retry.
    let (bodies, left) = poll("a connection through the VIP", WAIT, || {
        client(move || {
            Box::pin(async move {
                let conn =
                    lapin::Connection::connect(&amqp_uri(), lapin::ConnectionProperties::default())
                        .await
                        .map_err(|e| format!("reconnect to the VIP: {e}"))?;
                let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
                ch.basic_qos(200, BasicQosOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut consumer = ch
                    .basic_consume(
                        QUEUE.into(),
                        "story".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| format!("consume {QUEUE}: {e}"))?;
                let mut bodies = Vec::new();
                let mut distinct = BTreeSet::new();
                while distinct.len() < want {
                    let d = match tokio::time::timeout(WAIT, consumer.next()).await {
                        Ok(Some(Ok(d))) => d,
                        Ok(Some(Err(e))) => {
                            return Err(format!("after {} deliveries: {e}", bodies.len()))
                        }
                        Ok(None) | Err(_) => break,
                    };
                    let text = String::from_utf8_lossy(&d.data).into_owned();
                    distinct.insert(text.clone());
                    bodies.push(text);
                    d.ack(BasicAckOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                ch.basic_cancel("story".into(), Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                // Nothing beyond the confirmed messages is left behind.
                let q = ch
                    .queue_declare(
                        QUEUE.into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close(200, "done".into()).await;
                Ok((bodies, q.message_count()))
            })
        })
    })?;
    s.consumed = bodies.len();
    s.consumed_unique = bodies
        .iter()
        .filter_map(|b| b.strip_prefix('m').and_then(|n| n.parse().ok()))
        .collect();
    let lost: Vec<&usize> = s.confirmed.difference(&s.consumed_unique).collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} confirmed messages never consumed (first: {:?})",
            lost.len(),
            &lost[..lost.len().min(10)]
        ));
    }
    if s.consumed_unique.len() != want || left != 0 {
        return Err(format!(
            "consumed {} distinct, confirmed {want}, {left} left in the queue",
            s.consumed_unique.len()
        ));
    }
    Ok(format!(
        "{} deliveries, every one of the {want} confirmed messages, queue empty",
        s.consumed
    ))
}

#[test]
fn story_three_brokers_two_lbs_vip_failover_no_confirmed_message_lost() {
    if let Some(why) = namespaces::unavailable() {
        println!("skipping: {why}");
        return;
    }
    println!("[ 1] hosts: 6 namespaces on 198.18.0.0/24 ...");
    let started = Instant::now();
    let lab = Lab::new().unwrap_or_else(|e| panic!("step 0 'hosts' failed: {e}"));
    let mut s = Story {
        lab,
        timeline: vec![(
            "hosts: 6 namespaces on 198.18.0.0/24".into(),
            started.elapsed(),
            format!("prefix {PREFIX}"),
        )],
        published: 0,
        confirmed: BTreeSet::new(),
        consumed: 0,
        consumed_unique: BTreeSet::new(),
        old_leader: None,
        old_mirror: None,
    };
    s.step("start warren server on hadoop100-102", start_brokers);
    s.step("join_cluster warren@hadoop100", join_cluster);
    s.step("add an administrator", add_admin);
    s.step("PUT /api/policies/%2F/ha-two", set_policy);
    s.step("warren lb + warren vrrp on lb1, lb2", start_lbs);
    s.step("client publishes through the VIP", publish);
    s.step("queue has a synchronised mirror", mirror_synchronised);
    s.step("leader: stop_app, then kill -9", stop_leader);
    s.step("warren lb marks the leader DOWN", lb_marks_down);
    s.step(
        "new leader and new synchronised mirror",
        new_leader_and_mirror,
    );
    s.step("VRRP failover: stop lb1's warren vrrp", vrrp_failover);
    s.step("client reconnects via the VIP and consumes", consume);
    s.print_timeline();
}
