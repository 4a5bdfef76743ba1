//! `warren up`: a whole cluster in one command, in the foreground, stopped by Ctrl-C.
//!
//! Two topologies share this module's pieces: `local` (N nodes on loopback, no root) and
//! `netns` (hosts `hadoop100`–`hadoop102`, two load-balancer/VRRP hosts and a client, each in
//! its own network namespace; root only). This module owns what both do the same way: the
//! child processes and their orderly stop, waiting with deadlines, the cluster steps a user
//! types (`stop_app; reset; join_cluster; start_app`), the `^mirror` policy, the generated
//! haproxy.cfg, reading the load balancer's CSV stats, and the live status loop.
//!
//! Every part is a child process of this same binary (`warren server`, `warren lb`,
//! `warren vrrp`), driven with `warren ctl`, exactly as a user would run them by hand.

mod local;
// Also compiled into the namespace tests (`#[path]`), which use parts this binary does not.
#[allow(dead_code)]
mod namespaces;
mod netns;

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Number of broker nodes (loopback mode; --netns always runs three hosts).
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Where the nodes keep their data, logs, cookie and the LB's config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data between runs (by default each run starts fresh and cleans up).
    #[arg(long)]
    keep: bool,
    /// Added to every port, to run beside another broker (loopback mode).
    #[arg(long, default_value_t = 0, conflicts_with = "netns")]
    port_offset: u16,
    /// Network namespaces instead of loopback (root only): hosts hadoop100-102, lb1, lb2 and
    /// client on 198.18.0.0/24, with warren lb + warren vrrp on lb1/lb2 and a floating VIP.
    #[arg(long)]
    netns: bool,
    /// With --netns: remove every namespace and process a previous `up --netns` left behind.
    #[arg(long, requires = "netns")]
    down: bool,
    /// With --netns: the virtual IP the VRRP pair floats (in 198.18.0.0/24).
    #[arg(long, requires = "netns", default_value = "198.18.0.150/24")]
    vip: String,
    /// With --netns: namespace name prefix (namespaces are <prefix>hadoop100, <prefix>client, ...).
    #[arg(long, requires = "netns", default_value = "warren-")]
    prefix: String,
}

/// A failure, and the exit code it maps to.
pub struct Failure {
    code: u8,
    msg: String,
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        // EX_SOFTWARE: something we started did not come up.
        Failure { code: 70, msg }
    }
}

impl From<&str> for Failure {
    fn from(msg: &str) -> Failure {
        Failure::from(msg.to_string())
    }
}

pub fn main(a: UpArgs) -> ExitCode {
    let r = if a.netns {
        netns::main(a)
    } else {
        local::run(a).map_err(Failure::from)
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("warren up: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

fn default_dir(leaf: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("warren").join(leaf)
}

/// The child processes; all are stopped (SIGTERM, then SIGKILL) when this is dropped, the
/// last started first.
pub struct Stack {
    children: Vec<(String, Child)>,
}

impl Stack {
    fn new() -> Stack {
        Stack {
            children: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, child: Child) {
        self.children.push((name.to_string(), child));
    }

    /// The children that have exited.
    fn exited(&mut self) -> Vec<String> {
        self.children
            .iter_mut()
            .filter_map(|(n, c)| matches!(c.try_wait(), Ok(Some(_))).then(|| n.clone()))
            .collect()
    }

    /// An error naming the first child that exited.
    fn check(&mut self) -> Result<(), String> {
        for (name, c) in self.children.iter_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                return Err(format!("{name} exited ({st}); its log says why"));
            }
        }
        Ok(())
    }
}

impl Drop for Stack {
    /// Stops the load balancers, then the nodes from the last to the first, one at a time:
    /// each leaves the voter set in turn and the first node stays the cluster's last voter.
    fn drop(&mut self) {
        for (name, c) in self.children.iter_mut().rev() {
            if matches!(c.try_wait(), Ok(Some(_))) {
                continue; // reaped already: its pid may belong to someone else now
            }
            // SAFETY: a pid of our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if c.try_wait().ok().flatten().is_none() {
                eprintln!("warren up: {name} did not stop in time; killing it");
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Polls `ok` until it holds; fails after a minute or as soon as a child exits.
fn wait_for(stack: &mut Stack, mut ok: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        stack.check()?;
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Runs a prepared `warren ctl` command; its output, or why it failed.
fn run_ctl(mut cmd: Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "warren ctl {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The README's cluster steps: every node but the first runs `stop_app`, `reset`,
/// `join_cluster <seed>`, `start_app` (skipped when it already lists `first`, e.g. with
/// --keep); then waits until node 0 sees all of them running. `ctl(i, args)` runs
/// `warren ctl` against node `i`.
fn form_cluster(
    stack: &mut Stack,
    nodes: usize,
    first: &str,
    seed: &str,
    ctl: &impl Fn(usize, &[&str]) -> Result<String, String>,
) -> Result<(), String> {
    for i in 1..nodes {
        let status = ctl(i, &["cluster_status", "--formatter", "json"])?;
        if status.contains(first) {
            continue;
        }
        ctl(i, &["stop_app"])?;
        ctl(i, &["reset"])?;
        ctl(i, &["join_cluster", seed])?;
        ctl(i, &["start_app"])?;
    }
    wait_for(
        stack,
        || {
            ctl(0, &["cluster_status", "--formatter", "json"])
                .ok()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
                .is_some_and(|v| v["running_nodes"].as_array().map_or(0, Vec::len) == nodes)
        },
        "the cluster to form",
    )
}

const POLICY: &str = r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}"#;
const POLICY_TEXT: &str = "ha-two: ^mirror -> ha-mode exactly 2, ha-sync-mode automatic";

/// The `^mirror` policy, set through `warren ctl set_policy` on node 0.
fn apply_policy(ctl: &impl Fn(usize, &[&str]) -> Result<String, String>) -> Result<(), String> {
    ctl(
        0,
        &[
            "set_policy",
            "ha-two",
            "^mirror",
            POLICY,
            "--apply-to",
            "queues",
        ],
    )
    .map(|_| ())
}

/// What goes into a generated haproxy.cfg.
struct LbConfig<'a> {
    writer: &'a str,
    bind: String,
    stats_bind: String,
    /// (server name, address:port)
    servers: Vec<(String, String)>,
    check: &'a str,
    /// `option amqp-check`: a node that accepts TCP but does not speak AMQP counts as down.
    amqp_check: bool,
}

/// HAProxy's format, laid out as the RabbitMQ tutorial's haproxy.cfg.
fn haproxy_cfg(c: &LbConfig) -> String {
    let mut s = format!(
        "# Written by `{}`: HAProxy's format, as the RabbitMQ tutorial's haproxy.cfg.\n\
         global\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 3h\n    timeout server 3h\n\n\
         listen rabbitmq\n    bind {}\n    mode tcp\n    balance roundrobin\n",
        c.writer, c.bind
    );
    if c.amqp_check {
        s.push_str("    option amqp-check\n");
    }
    for (name, addr) in &c.servers {
        s.push_str(&format!("    server {name} {addr} {}\n", c.check));
    }
    s.push_str(&format!(
        "\nlisten stats\n    bind {}\n    mode http\n    stats enable\n    stats uri /stats\n    stats refresh 5s\n",
        c.stats_bind
    ));
    s
}

/// "warren1 UP, warren2 DOWN": server states of the `rabbitmq` proxy from the LB's CSV
/// stats (HAProxy's columns: pxname, svname, ..., status), fetched from 127.0.0.1:`port`.
fn lb_states(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /stats;csv HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let csv = body.split("\r\n\r\n").nth(1)?;
    let header: Vec<&str> = csv
        .lines()
        .next()?
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let status = header.iter().position(|h| *h == "status")?;
    let states: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| {
            f.first() == Some(&"rabbitmq")
                && f.get(1)
                    .is_some_and(|s| *s != "FRONTEND" && *s != "BACKEND")
        })
        .map(|f| format!("{} {}", f[1], f.get(status).unwrap_or(&"?")))
        .collect();
    Some(states.join(", "))
}

/// "nodes 2/3 running (warren2@localhost app stopped)": each node's `warren ctl status`.
fn node_states(
    names: &[String],
    ctl: &impl Fn(usize, &[&str]) -> Result<String, String>,
) -> String {
    let mut running = 0;
    let mut other = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match ctl(i, &["status"]) {
            // A stopped app still answers `status`; RabbitMQ prints the same line.
            Ok(o) if o.contains("Application running: true") => running += 1,
            Ok(_) => other.push(format!("{name} app stopped")),
            Err(_) => other.push(format!("{name} down")),
        }
    }
    let mut s = format!("nodes {running}/{} running", names.len());
    if !other.is_empty() {
        s.push_str(&format!(" ({})", other.join(", ")));
    }
    s
}

/// Stays in the foreground until Ctrl-C, printing `status()` whenever it changes. A child
/// that exits does not end it: stopping and killing nodes to watch queues fail over is what
/// these clusters are for, so the status line names it instead.
fn foreground(
    stack: &mut Stack,
    stop: &AtomicBool,
    mut status: impl FnMut() -> String,
) -> Result<(), String> {
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        let mut line = status();
        let gone = stack.exited();
        if !gone.is_empty() {
            line.push_str(&format!(" · exited: {}", gone.join(", ")));
        }
        if line != last {
            println!("{}  {line}", clock());
            last = line;
        }
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

/// SIGINT/SIGTERM set the returned flag (the main loop notices within 100 ms).
fn install_sigint() -> Result<&'static AtomicBool, String> {
    static STOP: AtomicBool = AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        let r = unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
        if r == libc::SIG_ERR {
            return Err("cannot install the Ctrl-C handler".into());
        }
    }
    Ok(&STOP)
}
