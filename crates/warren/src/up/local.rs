//! `warren up` on loopback, without root: N clustered nodes (`warren1@localhost`…), the
//! `^mirror` policy, and `warren lb` in front of them on 5672 (so RabbitMQ's tutorial
//! programs work against `localhost` unchanged) with its stats page on 8888.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    apply_policy, default_dir, foreground, form_cluster, haproxy_cfg, install_sigint, lb_states,
    node_states, run_ctl, wait_for, LbConfig, Stack, UpArgs, POLICY_TEXT,
};

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

pub fn run(a: UpArgs) -> Result<(), String> {
    if a.nodes == 0 {
        return Err("--nodes must be at least 1".into());
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let dir = a.data_dir.clone().unwrap_or_else(|| default_dir("up"));
    if !a.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cookie = dir.join("cookie");
    warren_cluster::cookie::read_or_create(&cookie)?;
    let stop = install_sigint()?;
    let mut stack = Stack::new();
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
        stack.push(&name, child);
    }
    let ctl = |i: usize, args: &[&str]| ctl(&exe, &cookie, i as u16, a.port_offset, args);
    for i in 0..a.nodes {
        wait_for(
            &mut stack,
            || ctl(i as usize, &["await_startup"]).is_ok(),
            &format!(
                "{} to start (log: {})",
                node_name(i),
                dir.join(format!("warren{}.log", i + 1)).display()
            ),
        )?;
    }
    let seed = format!("{}:{}", node_name(0), ports(0, a.port_offset).cluster);
    form_cluster(&mut stack, a.nodes as usize, &node_name(0), &seed, &ctl)?;
    apply_policy(&ctl)?;
    let lb_port = 5672 + a.port_offset;
    let stats_port = 8888 + a.port_offset;
    let cfg = dir.join("haproxy.cfg");
    let servers = (0..a.nodes)
        .map(|i| {
            (
                format!("warren{}", i + 1),
                format!("127.0.0.1:{}", ports(i, a.port_offset).amqp),
            )
        })
        .collect();
    let text = haproxy_cfg(&LbConfig {
        writer: "warren up",
        bind: format!("127.0.0.1:{lb_port}"),
        stats_bind: format!("127.0.0.1:{stats_port}"),
        servers,
        check: "check inter 2000 rise 2 fall 3 weight 1",
        amqp_check: false,
    });
    std::fs::write(&cfg, text).map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
    let lb_log = std::fs::File::create(dir.join("lb.log")).map_err(|e| e.to_string())?;
    let lb = Command::new(&exe)
        .args(["lb", "-db", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(lb_log))
        .spawn()
        .map_err(|e| format!("cannot start the load balancer: {e}"))?;
    stack.push("warren lb", lb);
    wait_for(
        &mut stack,
        || std::net::TcpStream::connect(("127.0.0.1", lb_port)).is_ok(),
        &format!(
            "the load balancer on port {lb_port} (log: {})",
            dir.join("lb.log").display()
        ),
    )?;
    print_banner(&a, &dir, lb_port, stats_port, started.elapsed());
    foreground(&mut stack, stop, || {
        status_line(&exe, &cookie, &a, stats_port)
    })?;
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
    let mut cmd = Command::new(exe);
    cmd.args(["ctl", "-q", "-n", &node, "--cookie-file"])
        .arg(cookie)
        .args(args);
    run_ctl(cmd, &format!("{} on {}", args.join(" "), node_name(i)))
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
    println!("  policy                           {POLICY_TEXT}");
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

/// "nodes 3/3 running · lb warren1 UP, warren2 UP, warren3 UP": what changed is printed.
fn status_line(exe: &Path, cookie: &Path, a: &UpArgs, stats_port: u16) -> String {
    let names: Vec<String> = (0..a.nodes).map(node_name).collect();
    let nodes = node_states(&names, &|i, args| {
        ctl(exe, cookie, i as u16, a.port_offset, args)
    });
    let lb = lb_states(stats_port).unwrap_or_else(|| "stats unavailable".into());
    format!("{nodes} · lb {lb}")
}
