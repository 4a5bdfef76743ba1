//! `warren up`: the whole local stack in one command, on loopback and without root —
//! N clustered nodes (`warren1@localhost`…), the `^mirror` policy, and `warren lb` in front of
//! them on 5672 (so RabbitMQ's tutorial programs work against `localhost` unchanged) with its
//! stats page on 8888. It stays in the foreground printing what changes (nodes, LB servers)
//! and stops everything on Ctrl-C.
//!
//! Every part is a child process of this same binary (`warren server`, `warren lb`), driven
//! with `warren ctl`, exactly as a user would run them by hand; the commands it runs are the
//! README's cluster steps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Number of broker nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Where the nodes keep their data, logs, cookie and the LB's config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep the data between runs (by default each run starts fresh and cleans up).
    #[arg(long)]
    keep: bool,
    /// Added to every port, to run beside another broker.
    #[arg(long, default_value_t = 0)]
    port_offset: u16,
}

struct Ports {
    amqp: u16,
    mgmt: u16,
    cluster: u16,
    prometheus: u16,
}

fn ports(i: u16, offset: u16) -> Ports {
    Ports {
        amqp: 5673 + i + offset,
        mgmt: 15672 + i + offset,
        cluster: 25672 + i + offset,
        prometheus: 15692 + i + offset,
    }
}

fn node_name(i: u16) -> String {
    format!("warren{}@localhost", i + 1)
}

/// The child processes; all are stopped (SIGTERM, then SIGKILL) when this is dropped.
struct Stack {
    children: Vec<(String, Child)>,
}

impl Stack {
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
    /// Stops the load balancer, then the nodes from the last to the first, one at a time:
    /// each leaves the voter set in turn and the first node stays the cluster's last voter.
    fn drop(&mut self) {
        for (name, c) in self.children.iter_mut().rev() {
            // SAFETY: a pid of our own child.
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

pub fn main(a: UpArgs) -> ExitCode {
    match run(a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warren up: {e}");
            ExitCode::from(70)
        }
    }
}

fn default_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("warren").join("up")
}

fn run(a: UpArgs) -> Result<(), String> {
    if a.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let dir = a.data_dir.clone().unwrap_or_else(default_dir);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cookie = dir.join("cookie");
    warren_cluster::cookie::read_or_create(&cookie)?;
    let stop = install_sigint()?;
    let mut stack = Stack {
        children: Vec::new(),
    };
    let started = Instant::now();
    for i in 0..a.nodes {
        let p = ports(i, a.port_offset);
        let name = node_name(i);
        let log = dir.join(format!("warren{}.log", i + 1));
        let child = Command::new(&exe)
            .args(["server", "--node-name", &name])
            .args(["--port", &p.amqp.to_string()])
            .args(["--mgmt-port", &p.mgmt.to_string()])
            .args(["--cluster-port", &p.cluster.to_string()])
            .args(["--prometheus-port", &p.prometheus.to_string()])
            .arg("--data-dir")
            .arg(dir.join(format!("warren{}", i + 1)))
            .arg("--cookie-file")
            .arg(&cookie)
            .arg("--log-file")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        stack.children.push((name, child));
    }
    let ctl = |i: u16, args: &[&str]| ctl(&exe, &cookie, i, a.port_offset, args);
    for i in 0..a.nodes {
        wait_for(
            &mut stack,
            || ctl(i, &["await_startup"]).is_ok(),
            &format!(
                "{} to start (log: {})",
                node_name(i),
                dir.join(format!("warren{}.log", i + 1)).display()
            ),
        )?;
    }
    let seed = format!("{}:{}", node_name(0), ports(0, a.port_offset).cluster);
    for i in 1..a.nodes {
        let status = ctl(i, &["cluster_status", "--formatter", "json"])?;
        if status.contains(&node_name(0)) {
            continue; // already clustered (--keep)
        }
        ctl(i, &["stop_app"])?;
        ctl(i, &["reset"])?;
        ctl(i, &["join_cluster", &seed])?;
        ctl(i, &["start_app"])?;
    }
    wait_for(
        &mut stack,
        || {
            ctl(0, &["cluster_status", "--formatter", "json"])
                .ok()
                .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
                .is_some_and(|v| {
                    v["running_nodes"].as_array().map_or(0, Vec::len) == a.nodes as usize
                })
        },
        "the cluster to form",
    )?;
    ctl(
        0,
        &[
            "set_policy",
            "ha-two",
            "^mirror",
            r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}"#,
            "--apply-to",
            "queues",
        ],
    )?;
    let lb_port = 5672 + a.port_offset;
    let stats_port = 8888 + a.port_offset;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        haproxy_cfg(a.nodes, a.port_offset, lb_port, stats_port),
    )
    .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let lb_log = std::fs::File::create(dir.join("lb.log")).map_err(|e| e.to_string())?;
    let lb = Command::new(&exe)
        .args(["lb", "-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(lb_log))
        .spawn()
        .map_err(|e| format!("cannot start the load balancer: {e}"))?;
    stack.children.push(("warren lb".into(), lb));
    wait_for(
        &mut stack,
        || std::net::TcpStream::connect(("127.0.0.1", lb_port)).is_ok(),
        &format!(
            "the load balancer on port {lb_port} (log: {})",
            dir.join("lb.log").display()
        ),
    )?;
    print_banner(&a, &dir, lb_port, stats_port, started.elapsed());
    let mut last = String::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        stack
            .check()
            .map_err(|e| format!("{e} (logs in {})", dir.display()))?;
        let line = status_line(&exe, &cookie, &a, stats_port);
        if line != last {
            println!("{}  {line}", clock());
            last = line;
        }
        for _ in 0..20 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("stopping: load balancer, then nodes ...");
    drop(stack);
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
        println!("stopped; removed {}", dir.display());
    } else {
        println!("stopped; data kept in {}", dir.display());
    }
    Ok(())
}

/// `warren ctl -n NODE ...` against node `i`; the output, or why it failed.
fn ctl(exe: &Path, cookie: &Path, i: u16, offset: u16, args: &[&str]) -> Result<String, String> {
    let node = format!("{}:{}", node_name(i), ports(i, offset).cluster);
    let out = Command::new(exe)
        .args(["ctl", "-q", "-n", &node, "--cookie-file"])
        .arg(cookie)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "warren ctl {} on {}: {}",
            args.join(" "),
            node_name(i),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

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

fn haproxy_cfg(nodes: u16, offset: u16, lb_port: u16, stats_port: u16) -> String {
    let mut s = format!(
        "# Written by `warren up`: HAProxy's format, as the RabbitMQ tutorial's haproxy.cfg.\n\
         global\n    maxconn 4096\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 3h\n    timeout server 3h\n\n\
         listen rabbitmq\n    bind 127.0.0.1:{lb_port}\n    mode tcp\n    balance roundrobin\n"
    );
    for i in 0..nodes {
        s.push_str(&format!(
            "    server warren{} 127.0.0.1:{} check inter 2000 rise 2 fall 3 weight 1\n",
            i + 1,
            ports(i, offset).amqp
        ));
    }
    s.push_str(&format!(
        "\nlisten stats\n    bind 127.0.0.1:{stats_port}\n    mode http\n    stats enable\n    stats uri /stats\n    stats refresh 5s\n"
    ));
    s
}

fn print_banner(a: &UpArgs, dir: &Path, lb_port: u16, stats_port: u16, took: Duration) {
    println!(
        "warren up: {} nodes clustered in {:.1}s; data, logs and cookie in {}",
        a.nodes,
        took.as_secs_f64(),
        dir.display()
    );
    println!();
    println!("  AMQP (through the load balancer)  amqp://guest:guest@localhost:{lb_port}/");
    for i in 0..a.nodes {
        let p = ports(i, a.port_offset);
        println!(
            "  {:<18} AMQP :{}  management http://localhost:{}/  metrics http://localhost:{}/metrics",
            node_name(i),
            p.amqp,
            p.mgmt,
            p.prometheus
        );
    }
    println!("  load balancer stats              http://localhost:{stats_port}/stats");
    println!("  policy                           ha-two: ^mirror -> ha-mode exactly 2, ha-sync-mode automatic");
    println!();
    println!("Try:");
    let cookie = dir.join("cookie");
    let ctl = format!(
        "warren ctl --cookie-file {} -n {}:{}",
        cookie.display(),
        node_name(0),
        ports(0, a.port_offset).cluster
    );
    println!("  {ctl} cluster_status");
    println!("  {ctl} list_queues name messages pid");
    println!("  warren perf --uri amqp://guest:guest@localhost:{lb_port} -x 1 -y 1 -z 10");
    println!();
    println!(
        "Ctrl-C stops everything{}.",
        if a.keep {
            " (data is kept)"
        } else {
            " and removes the data"
        }
    );
}

/// "nodes 3/3 up · lb warren1 UP, warren2 UP, warren3 UP": what changed is printed.
fn status_line(exe: &Path, cookie: &Path, a: &UpArgs, stats_port: u16) -> String {
    let mut up = 0;
    for i in 0..a.nodes {
        if ctl(exe, cookie, i, a.port_offset, &["status"]).is_ok() {
            up += 1;
        }
    }
    let lb = lb_states(stats_port).unwrap_or_else(|| "stats unavailable".into());
    format!("nodes {up}/{} up · lb {lb}", a.nodes)
}

/// Server states from the LB's CSV stats (HAProxy's columns: pxname, svname, ..., status).
fn lb_states(stats_port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", stats_port)).ok()?;
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
            f.first() == Some(&"rabbitmq") && f.get(1).is_some_and(|s| s.starts_with("warren"))
        })
        .map(|f| format!("{} {}", f[1], f.get(status).unwrap_or(&"?")))
        .collect();
    Some(states.join(", "))
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
fn install_sigint() -> Result<&'static std::sync::atomic::AtomicBool, String> {
    static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn on_signal(_: libc::c_int) {
        STOP.store(true, std::sync::atomic::Ordering::Relaxed);
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
