//! `warren up --netns` as a user runs it: without root it refuses in one line; as root the
//! banner names the client shell command and the VIP URL, the namespaces and the VIP exist,
//! a client in the `client` namespace publishes through the VIP, and Ctrl-C removes every
//! namespace and the data. After a `kill -9` of `up`, `--down` finds what it left (pid files,
//! namespace names) and removes it. Needs root for the second part; skips it in one line.

#[path = "../../broker/tests/common/mod.rs"]
mod common;
#[path = "../src/up/namespaces.rs"]
#[allow(dead_code)]
mod namespaces;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

const PREFIX: &str = "wun-";
const VIP: &str = "198.18.0.160";
const HOSTS: [&str; 7] = [
    "hadoop100",
    "hadoop101",
    "hadoop102",
    "lb1",
    "lb2",
    "client",
    "br",
];

fn mine() -> Vec<String> {
    let all = namespaces::list();
    HOSTS
        .iter()
        .map(|h| namespaces::ns(PREFIX, h))
        .filter(|n| all.contains(n))
        .collect()
}

/// Processes whose command line names `dir` (everything `up` starts does).
fn procs_using(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .filter(|c| c.contains(&d))
                .collect()
        })
        .unwrap_or_default()
}

fn start(dir: &Path) -> (Child, String) {
    let mut child = Command::new(common::warren_bin())
        .args(["up", "--netns", "--prefix", PREFIX, "--vip"])
        .arg(format!("{VIP}/24"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !banner.contains("Ctrl-C stops everything") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("warren up --netns ended early:\n{banner}\n{err}");
        }
        banner.push_str(&line);
        assert!(Instant::now() < deadline, "no banner:\n{banner}");
    }
    // Keep draining the status lines so that `up` never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    (child, banner)
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "warren up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn up_netns_refuses_without_root() {
    // As root, drop to nobody for this one command.
    // SAFETY: geteuid has no preconditions.
    let mut cmd = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(common::warren_bin());
        c
    } else {
        Command::new(common::warren_bin())
    };
    let Ok(o) = cmd.args(["up", "--netns"]).output() else {
        println!("skipping: setpriv is not installed");
        return;
    };
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(77), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("need root"), "{err}");
}

#[test]
fn up_netns_builds_the_topology_ctrl_c_and_down_remove_it() {
    if let Some(why) = namespaces::unavailable() {
        println!("skipping: {why}");
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("warren-up-netns-{}", std::process::id()));
    // Leftovers of an interrupted run of this test.
    let _ = Command::new(common::warren_bin())
        .args(["up", "--netns", "--down", "--prefix", PREFIX, "--data-dir"])
        .arg(&dir)
        .output();

    let (mut child, banner) = start(&dir);
    assert!(
        banner.contains(&format!("ip netns exec {PREFIX}client bash")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("amqp://admin:admin@{VIP}:5672/")),
        "{banner}"
    );
    assert!(banner.contains(&dir.display().to_string()), "{banner}");
    assert_eq!(mine().len(), HOSTS.len(), "namespaces: {:?}", mine());
    assert!(namespaces::has_addr(
        &namespaces::ns(PREFIX, "lb1"),
        "eth0",
        VIP
    ));
    assert!(!namespaces::has_addr(
        &namespaces::ns(PREFIX, "lb2"),
        "eth0",
        VIP
    ));
    for f in [
        "lb1/haproxy.cfg",
        "lb2/keepalived.conf",
        "cookie",
        "hadoop100/server.log",
    ] {
        assert!(dir.join(f).exists(), "{f} missing in {}", dir.display());
    }

    // A client on the client host publishes through the VIP (warren lb on lb1).
    let r = namespaces::in_ns(&namespaces::ns(PREFIX, "client"), || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let uri = format!("amqp://admin:admin@{VIP}:5672/%2f");
                let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
                ch.queue_declare(
                    "mirror_up".into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
                ch.confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let c = ch
                    .basic_publish(
                        "".into(),
                        "mirror_up".into(),
                        BasicPublishOptions::default(),
                        b"hello",
                        BasicProperties::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<bool, String>(c.is_ack())
            })
    })
    .unwrap();
    assert_eq!(r, Ok(true), "publish through the VIP");

    // Ctrl-C: everything stops, namespaces and data are gone.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(wait_exit(&mut child, 60).success());
    assert!(mine().is_empty(), "namespaces left: {:?}", mine());
    assert!(!dir.exists(), "data folder left behind");
    assert!(procs_using(&dir).is_empty(), "{:?}", procs_using(&dir));

    // kill -9 of `up` leaves everything running; --down removes it.
    let (mut child, _) = start(&dir);
    let _ = child.kill();
    wait_exit(&mut child, 10);
    assert!(
        !procs_using(&dir).is_empty(),
        "children should outlive a kill -9 of up"
    );
    let o = Command::new(common::warren_bin())
        .args(["up", "--netns", "--down", "--prefix", PREFIX, "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("removed namespaces"), "{out}");
    assert!(mine().is_empty(), "namespaces left: {:?}", mine());
    assert!(!dir.exists(), "data folder left behind");
    assert!(procs_using(&dir).is_empty(), "{:?}", procs_using(&dir));
}
