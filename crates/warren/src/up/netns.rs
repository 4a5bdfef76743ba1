//! `warren up --netns`: the deployment the user's story describes, on one machine (root
//! only). Broker hosts `hadoop100`–`hadoop102` (198.18.0.100–102, default ports, node names
//! `warren@hadoop100`…, one cookie), load-balancer hosts `lb1`/`lb2` (.111/.112) each running
//! `warren lb` and `warren vrrp` from generated haproxy.cfg/keepalived.conf, a VIP
//! (198.18.0.150 by default) and a `client` host (.200) to work from. Each host is a network
//! namespace (see `namespaces`); every process is a child of this one, started through
//! `ip netns exec`, with a pid file under `<data dir>/pids` so that `--down` can find what a
//! crashed run left behind.
//!
//! Owns: the topology (names, addresses, ports), the generated LB/VRRP configs, the banner,
//! the status line, and `--down`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::namespaces::{self, Host};
use super::{
    apply_policy, default_dir, foreground, form_cluster, haproxy_cfg, install_sigint, lb_states,
    node_states, run_ctl, wait_for, Failure, LbConfig, Stack, UpArgs, POLICY_TEXT,
};

const BROKERS: [(&str, &str); 3] = [
    ("hadoop100", "198.18.0.100"),
    ("hadoop101", "198.18.0.101"),
    ("hadoop102", "198.18.0.102"),
];
const LBS: [(&str, &str); 2] = [("lb1", "198.18.0.111"), ("lb2", "198.18.0.112")];
const CLIENT: (&str, &str) = ("client", "198.18.0.200");
/// guest may only log in from loopback (as in RabbitMQ), and clients here come from other
/// hosts, so the cluster gets an administrator the way an operator adds one.
const USER: &str = "admin";
const PASS: &str = "admin";
const STATS_PORT: u16 = 8888;

fn hosts() -> Vec<Host> {
    BROKERS
        .iter()
        .chain(LBS.iter())
        .chain([&CLIENT])
        .map(|(n, a)| Host::new(n, a))
        .collect()
}

fn node(i: usize) -> String {
    format!("warren@{}", BROKERS[i].0)
}

pub fn main(a: UpArgs) -> Result<(), Failure> {
    if let Some(why) = namespaces::unavailable() {
        return Err(Failure {
            code: 77, // EX_NOPERM
            msg: format!("--netns: {why}; run it as root (e.g. with sudo)"),
        });
    }
    if a.prefix.is_empty()
        || a.prefix.len() > 20
        || !a
            .prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Failure {
            code: 64,
            msg: format!(
                "--prefix '{}': use up to 20 letters, digits, '-', '_' or '.'",
                a.prefix
            ),
        });
    }
    let vip = parse_vip(&a.vip).map_err(|msg| Failure { code: 64, msg })?;
    let dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| default_dir("up-netns"));
    if a.down {
        return down(&a.prefix, &dir, a.keep, true).map_err(Failure::from);
    }
    run(&a, &dir, &vip).map_err(|e| {
        // Every child is stopped by now; the logs stay for the post-mortem.
        let _ = std::fs::remove_dir_all(dir.join("pids"));
        Failure::from(format!("{e} (logs in {})", dir.display()))
    })
}

/// `198.18.0.150/24` (or without the length) → the address; it must be a free host address
/// in 198.18.0.0/24, the only range these namespaces use.
fn parse_vip(s: &str) -> Result<String, String> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "24"));
    let ip: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("--vip '{s}': not an IPv4 address"))?;
    let o = ip.octets();
    if len != "24" || o[..3] != [198, 18, 0] || o[3] == 0 || o[3] == 255 {
        return Err(format!(
            "--vip '{s}': must be a host address in 198.18.0.0/24 (e.g. 198.18.0.150/24)"
        ));
    }
    if hosts().iter().any(|h| h.addr == addr) {
        return Err(format!("--vip '{s}': that address belongs to a host"));
    }
    Ok(addr.to_string())
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// The command line of a live process, NULs as spaces.
fn cmdline(pid: i32) -> Option<String> {
    let b = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&b).replace('\0', " "))
}

/// SIGTERM, then SIGKILL after `grace`; true when it is gone.
fn stop_pid(pid: i32, grace: Duration) -> bool {
    // SAFETY: signalling a pid read from our own pid file, checked against its command line.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while cmdline(pid).is_some_and(|c| !c.is_empty()) {
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            std::thread::sleep(Duration::from_millis(100));
            return cmdline(pid).is_none_or(|c| c.is_empty());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// A running `warren up --netns` for this data dir, by its pid file.
fn running_up(dir: &Path) -> Option<i32> {
    let pid = read_pid(&dir.join("pids").join("up.pid"))?;
    let c = cmdline(pid)?;
    (pid != std::process::id() as i32 && c.contains(" up ") && c.contains("--netns")).then_some(pid)
}

/// `--down`: stops a running `up --netns` (it stops its own children in order), then any
/// process a crashed run left (by pid file, and only if its command line names this data
/// dir, so a reused pid is never hit), then deletes the namespaces and hosts files.
fn down(prefix: &str, dir: &Path, keep: bool, verbose: bool) -> Result<(), String> {
    let mut stopped = Vec::new();
    if let Some(pid) = running_up(dir) {
        if verbose {
            println!("stopping warren up --netns (pid {pid}) ...");
        }
        stop_pid(pid, Duration::from_secs(60));
        stopped.push(format!("warren up (pid {pid})"));
    }
    let dir_text = dir.display().to_string();
    if let Ok(rd) = std::fs::read_dir(dir.join("pids")) {
        let mut entries: Vec<std::fs::DirEntry> = rd.flatten().collect();
        // The order `up` itself stops them in: VRRP (releases the VIP), LBs, then nodes.
        entries.sort_by_key(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (!n.contains("-vrrp"), !n.contains("-lb"), n)
        });
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = read_pid(&e.path()) else {
                continue;
            };
            if name == "up.pid" || !cmdline(pid).is_some_and(|c| c.contains(&dir_text)) {
                continue;
            }
            stop_pid(pid, Duration::from_secs(10));
            stopped.push(format!("{} (pid {pid})", name.trim_end_matches(".pid")));
            let _ = std::fs::remove_file(e.path());
        }
    }
    let gone = namespaces::remove(prefix, &hosts());
    if !keep {
        let _ = std::fs::remove_dir_all(dir);
    }
    if verbose {
        if stopped.is_empty() && gone.is_empty() {
            println!("nothing to remove (prefix '{prefix}', data dir {dir_text})");
        } else {
            if !stopped.is_empty() {
                println!("stopped: {}", stopped.join(", "));
            }
            if !gone.is_empty() {
                println!("removed namespaces: {}", gone.join(", "));
            }
        }
        if !keep {
            println!("removed {dir_text}");
        }
    }
    Ok(())
}

/// Removes the namespaces when `up` ends, however it ends (children are stopped first:
/// the `Stack` is declared after this, so it is dropped before).
struct NsGuard<'a> {
    prefix: &'a str,
}

impl Drop for NsGuard<'_> {
    fn drop(&mut self) {
        namespaces::remove(self.prefix, &hosts());
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn mkdir(path: &Path) -> Result<(), String> {
    std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Starts `cmd` (already `ip netns exec NS ...`) as child `name`, logging to `log`, with its
/// pid in `<dir>/pids/<name>.pid`.
fn spawn(
    stack: &mut Stack,
    dir: &Path,
    name: &str,
    mut cmd: Command,
    log: &Path,
) -> Result<(), String> {
    let f = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone().map_err(|e| e.to_string())?)
        .stderr(f)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    write(
        &dir.join("pids").join(format!("{name}.pid")),
        &child.id().to_string(),
    )?;
    stack.push(name, child);
    Ok(())
}

fn keepalived_conf(lb: usize, vip: &str, check: &Path) -> String {
    let (state, prio) = if lb == 0 {
        ("MASTER", 101)
    } else {
        ("BACKUP", 100)
    };
    // The track script's weight (+2 while the local LB answers) is larger than the priority
    // gap (1), so a dead LB on the master really moves the VIP (with the tutorial's 100/50
    // and weight 2 it never would).
    format!(
        "! Written by `warren up --netns`: keepalived's format, as the tutorial's keepalived.conf.\n\
         global_defs {{\n    router_id {name}\n    script_user root\n}}\n\n\
         vrrp_script chk_lb {{\n    script \"{check}\"\n    interval 1\n    weight 2\n    fall 2\n    rise 2\n}}\n\n\
         vrrp_instance VI_1 {{\n    state {state}\n    interface eth0\n    virtual_router_id 51\n    priority {prio}\n    advert_int 1\n\
         \x20   authentication {{\n        auth_type PASS\n        auth_pass warren\n    }}\n\
         \x20   track_script {{\n        chk_lb\n    }}\n\
         \x20   virtual_ipaddress {{\n        {vip}/24\n    }}\n}}\n",
        name = LBS[lb].0,
        check = check.display(),
    )
}

/// The track script: succeeds while the local `warren lb` accepts connections on its stats
/// port (a listening LB, not just a live process as the tutorial's `ps -C haproxy` checks).
const CHECK_SCRIPT: &str = "#!/bin/bash\n\
# Written by `warren up --netns`: warren vrrp's track script for the local warren lb.\n\
exec 3<>/dev/tcp/127.0.0.1/8888\n";

fn run(a: &UpArgs, dir: &Path, vip: &str) -> Result<(), String> {
    let prefix = a.prefix.as_str();
    if let Some(pid) = running_up(dir) {
        return Err(format!(
            "already running (pid {pid}, data in {}); `warren up --netns --down` stops it",
            dir.display()
        ));
    }
    if !namespaces::existing(prefix, &hosts()).is_empty() || dir.join("pids").exists() {
        println!("removing what an earlier run left behind ...");
        down(prefix, dir, true, true)?;
    }
    if !a.keep {
        let _ = std::fs::remove_dir_all(dir);
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    mkdir(&dir.join("pids"))?;
    write(
        &dir.join("pids").join("up.pid"),
        &std::process::id().to_string(),
    )?;
    let stop = install_sigint()?;
    let started = Instant::now();
    let guard = NsGuard { prefix };
    namespaces::create(prefix, &hosts(), &format!("{vip} vip\n"))?;
    let cookie = dir.join("cookie");
    warren_cluster::cookie::read_or_create(&cookie)?;
    let mut stack = Stack::new();
    // Each host gets its own node registry: namespaces share the file system, and a registry
    // hit means "connect to 127.0.0.1", which in another namespace is another host.
    let registry = |i: usize| dir.join(BROKERS[i].0).join("run");
    for (i, (host, _)) in BROKERS.iter().enumerate() {
        let hd = dir.join(host);
        mkdir(&hd)?;
        let mut cmd = namespaces::exec(&namespaces::ns(prefix, host));
        cmd.arg(&exe)
            .args(["server", "--node-name", &node(i), "--data-dir"])
            .arg(hd.join("data"))
            .arg("--cookie-file")
            .arg(&cookie)
            .arg("--log-file")
            .arg(hd.join("server.log"))
            .env("WARREN_REGISTRY_DIR", registry(i));
        spawn(&mut stack, dir, host, cmd, &hd.join("server.out"))?;
    }
    let ctl = |i: usize, args: &[&str]| {
        let mut cmd = namespaces::exec(&namespaces::ns(prefix, BROKERS[i].0));
        cmd.arg(&exe)
            .args(["ctl", "-q", "-n", &node(i), "--cookie-file"])
            .arg(&cookie)
            .args(args)
            .env("WARREN_REGISTRY_DIR", registry(i));
        run_ctl(cmd, &format!("{} on {}", args.join(" "), node(i)))
    };
    for (i, (host, _)) in BROKERS.iter().enumerate() {
        let log = dir.join(host).join("server.log");
        wait_for(
            &mut stack,
            || ctl(i, &["await_startup"]).is_ok(),
            &format!("{} to start (log: {})", node(i), log.display()),
        )?;
    }
    form_cluster(&mut stack, BROKERS.len(), &node(0), &node(0), &ctl)?;
    apply_policy(&ctl)?;
    let users = ctl(0, &["list_users"])?;
    if !users
        .lines()
        .any(|l| l.split_whitespace().next() == Some(USER))
    {
        ctl(0, &["add_user", USER, PASS])?;
    }
    ctl(0, &["set_user_tags", USER, "administrator"])?;
    ctl(0, &["set_permissions", "-p", "/", USER, ".*", ".*", ".*"])?;

    // Load balancers first, then the VRRP pair (whose track script checks the local LB).
    let servers: Vec<(String, String)> = BROKERS
        .iter()
        .map(|(h, addr)| (h.to_string(), format!("{addr}:5672")))
        .collect();
    for (j, (lb, _)) in LBS.iter().enumerate() {
        let ld = dir.join(lb);
        mkdir(&ld)?;
        let cfg = ld.join("haproxy.cfg");
        write(
            &cfg,
            &haproxy_cfg(&LbConfig {
                writer: "warren up --netns",
                bind: "0.0.0.0:5672".into(),
                stats_bind: format!("0.0.0.0:{STATS_PORT}"),
                servers: servers.clone(),
                check: "check inter 1000 rise 2 fall 3 weight 1",
                amqp_check: true,
            }),
        )?;
        let check = ld.join("chk_lb.sh");
        write(&check, CHECK_SCRIPT)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&check, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        write(
            &ld.join("keepalived.conf"),
            &keepalived_conf(j, vip, &check),
        )?;
        let mut cmd = namespaces::exec(&namespaces::ns(prefix, lb));
        cmd.arg(&exe).args(["lb", "-db", "-f"]).arg(&cfg);
        cmd.arg("-p").arg(ld.join("lb.pid"));
        spawn(
            &mut stack,
            dir,
            &format!("{lb}-lb"),
            cmd,
            &ld.join("lb.log"),
        )?;
    }
    for (lb, _) in LBS {
        let ld = dir.join(lb);
        wait_for(
            &mut stack,
            || {
                namespaces::in_ns(&namespaces::ns(prefix, lb), || lb_states(STATS_PORT))
                    .ok()
                    .flatten()
                    .is_some()
            },
            &format!("warren lb on {lb} (log: {})", ld.join("lb.log").display()),
        )?;
        let mut cmd = namespaces::exec(&namespaces::ns(prefix, lb));
        cmd.arg(&exe)
            .args(["vrrp", "-n", "-l", "-f"])
            .arg(ld.join("keepalived.conf"))
            .arg("-p")
            .arg(ld.join("vrrp.pid"))
            .arg("-r")
            .arg(ld.join("vrrp-child.pid"));
        spawn(
            &mut stack,
            dir,
            &format!("{lb}-vrrp"),
            cmd,
            &ld.join("vrrp.log"),
        )?;
    }
    let client_ns = namespaces::ns(prefix, CLIENT.0);
    let vip_owned = vip.to_string();
    wait_for(
        &mut stack,
        || {
            let v = vip_owned.clone();
            vip_holder(prefix, vip) == "lb1"
                && namespaces::in_ns(&client_ns, move || {
                    std::net::TcpStream::connect_timeout(
                        &std::net::SocketAddr::new(v.parse().expect("vip"), 5672),
                        Duration::from_secs(1),
                    )
                    .is_ok()
                })
                .unwrap_or(false)
        },
        &format!(
            "the VIP {vip} on lb1, reachable from the client (log: {})",
            dir.join("lb1").join("vrrp.log").display()
        ),
    )?;
    print_banner(a, dir, &exe, vip, started.elapsed());
    // Killing parts is what this lab is for: an exited child shows in the status line.
    foreground(&mut stack, stop, || status_line(prefix, vip, &ctl))?;
    println!("stopping: VRRP, load balancers, then nodes ...");
    drop(stack);
    drop(guard);
    if a.keep {
        let _ = std::fs::remove_dir_all(dir.join("pids"));
        println!(
            "stopped; namespaces removed, data kept in {}",
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(dir);
        println!("stopped; namespaces and {} removed", dir.display());
    }
    Ok(())
}

/// Which LB host holds the VIP: "lb1", "lb2", "none", or both (split brain).
fn vip_holder(prefix: &str, vip: &str) -> String {
    let on: Vec<&str> = LBS
        .iter()
        .filter(|(lb, _)| namespaces::has_addr(&namespaces::ns(prefix, lb), "eth0", vip))
        .map(|(lb, _)| *lb)
        .collect();
    match on.len() {
        0 => "none".into(),
        1 => on[0].into(),
        _ => format!("{} (split brain!)", on.join("+")),
    }
}

/// "nodes 3/3 running · VIP on lb1 · lb1 [hadoop100 UP, ...] · lb2 [...]".
fn status_line(
    prefix: &str,
    vip: &str,
    ctl: &impl Fn(usize, &[&str]) -> Result<String, String>,
) -> String {
    let names: Vec<String> = BROKERS.iter().map(|(h, _)| h.to_string()).collect();
    let mut s = format!(
        "{} · VIP on {}",
        node_states(&names, ctl),
        vip_holder(prefix, vip)
    );
    for (lb, _) in LBS {
        let states = namespaces::in_ns(&namespaces::ns(prefix, lb), || lb_states(STATS_PORT))
            .ok()
            .flatten()
            .unwrap_or_else(|| "down".into());
        s.push_str(&format!(" · {lb} [{states}]"));
    }
    s
}

fn print_banner(a: &UpArgs, dir: &Path, exe: &Path, vip: &str, took: Duration) {
    let p = &a.prefix;
    let exe = exe.display();
    let cookie = dir.join("cookie");
    println!(
        "warren up --netns: 3 hosts clustered, 2 load balancers with a VIP, in {:.1}s; data, logs, configs and cookie in {}",
        took.as_secs_f64(),
        dir.display()
    );
    println!();
    println!("  Hosts (network namespaces {p}<host> on 198.18.0.0/24; bridge in {p}br):");
    for (i, (h, addr)) in BROKERS.iter().enumerate() {
        println!(
            "    {h:<10} {addr:<13} {:<17} amqp://{USER}:{PASS}@{addr}:5672/  http://{addr}:15672/  http://{addr}:15692/metrics",
            node(i)
        );
    }
    for (j, (lb, addr)) in LBS.iter().enumerate() {
        println!(
            "    {lb:<10} {addr:<13} warren lb (stats http://{addr}:{STATS_PORT}/stats) + warren vrrp {}",
            if j == 0 { "MASTER, priority 101" } else { "BACKUP, priority 100" }
        );
    }
    println!("    {:<10} {:<13} your shell", CLIENT.0, CLIENT.1);
    println!();
    println!("  AMQP through the VIP     amqp://{USER}:{PASS}@{vip}:5672/   (name `vip` in every host's /etc/hosts)");
    println!("  LB stats through the VIP http://{vip}:{STATS_PORT}/stats   (CSV: /stats;csv)");
    println!("  user                     {USER}/{PASS}, administrator (guest may only log in from loopback, as in RabbitMQ)");
    println!("  policy                   {POLICY_TEXT}");
    println!(
        "  configs                  {0}/lb1/haproxy.cfg, {0}/lb1/keepalived.conf (lb2 likewise)",
        dir.display()
    );
    println!();
    println!("These addresses live inside the namespaces. Enter the client host with:");
    println!("  ip netns exec {p}client bash");
    println!("and try:");
    println!("  {exe} perf --uri amqp://{USER}:{PASS}@{vip}:5672 -x 1 -y 1 -z 10");
    println!(
        "  {exe} ctl -n warren@hadoop100 --cookie-file {} cluster_status",
        cookie.display()
    );
    println!("  curl -s 'http://{vip}:{STATS_PORT}/stats;csv'");
    println!("Faults, from the root namespace:");
    println!(
        "  ip netns exec {p}hadoop100 {exe} ctl -n warren@hadoop100 --cookie-file {} stop_app",
        cookie.display()
    );
    println!(
        "  kill $(cat {}/pids/lb1-vrrp.pid)      # the VIP moves to lb2",
        dir.display()
    );
    println!("  ip -n {p}br link set vhadoop101 down    # cut hadoop101 off (up again to heal)");
    println!();
    println!(
        "Ctrl-C stops everything and removes the namespaces{}; `{exe} up --netns --down` cleans up after a crash.",
        if a.keep { " (data is kept)" } else { " and the data" }
    );
}
