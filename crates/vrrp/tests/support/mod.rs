//! Network-namespace lab for the VRRP integration tests.
//!
//! Owns: a bridge namespace (`<prefix>br`, so nothing is added to the root namespace), two LB
//! hosts `a` (198.18.0.1) and `b` (198.18.0.2) and a client `c` (198.18.0.3), each with `eth0`
//! on the bridge; a tiny TCP listener on port 7000 in each LB host that answers with the host's
//! name (so the client can tell who holds the VIP); starting `warren vrrp` and keepalived
//! processes; probing from the client. Guarantees: leftovers with the prefix are removed before
//! building, and `Drop` kills every process it started (by pid) and deletes the namespaces,
//! also when a test fails (logs are printed then).

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const VIP: &str = "198.18.0.100";
pub const PORT: u16 = 7000;

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests; `None` (with a printed reason) when they cannot run here.
pub fn serial() -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping: network-namespace tests need root");
        return None;
    }
    if Command::new("ip").arg("-V").output().is_err() {
        println!("skipping: iproute2 `ip` is not installed");
        return None;
    }
    Some(LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

pub fn warren_bin() -> PathBuf {
    let p = match std::env::var_os("WARREN_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(|d| d.parent())
                .expect("target dir")
                .join("warren")
        }
    };
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bin warren` first",
        p.display()
    );
    p
}

pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has entered network namespace `ns`.
pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        // SAFETY: setns on this thread only (network namespaces are per thread).
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}

pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
    pub exited: bool,
    /// keepalived's VRRP child writes its own pid file; killed by pid on cleanup.
    pub child_pidfile: Option<PathBuf>,
}

pub struct Lab {
    pub p: String,
    pub dir: PathBuf,
    pub procs: Vec<Proc>,
    stop: Arc<AtomicBool>,
    listeners: Vec<JoinHandle<()>>,
}

fn cleanup(prefix: &str) {
    let list = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for line in String::from_utf8_lossy(&list).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with(prefix) {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Lab {
    pub fn new(prefix: &str) -> Lab {
        cleanup(prefix);
        let dir = std::env::temp_dir().join(format!("{prefix}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut lab = Lab {
            p: prefix.to_string(),
            dir,
            procs: Vec::new(),
            stop: Arc::new(AtomicBool::new(false)),
            listeners: Vec::new(),
        };
        let br = lab.ns("br");
        sh(&["ip", "netns", "add", &br]);
        sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &br, "link", "set", "br0", "up"]);
        for (i, h) in ["a", "b", "c"].iter().enumerate() {
            let ns = lab.ns(h);
            sh(&["ip", "netns", "add", &ns]);
            let port = format!("v{h}");
            sh(&[
                "ip", "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            sh(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"]);
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("198.18.0.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        }
        for h in ["a", "b"] {
            let stop = lab.stop.clone();
            let ns = lab.ns(h);
            let name = h.to_string();
            let (tx, rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let file = File::open(format!("/run/netns/{ns}")).expect("open netns");
                // SAFETY: per-thread namespace switch.
                assert_eq!(
                    unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                let l = TcpListener::bind(("0.0.0.0", PORT)).expect("bind");
                l.set_nonblocking(true).expect("nonblocking");
                tx.send(()).ok();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.write_all(name.as_bytes());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            });
            rx.recv_timeout(Duration::from_secs(5))
                .expect("listener up");
            lab.listeners.push(t);
        }
        lab
    }

    pub fn ns(&self, h: &str) -> String {
        format!("{}{h}", self.p)
    }

    fn spawn(&mut self, name: &str, host: &str, cmd: &[String]) -> usize {
        let log = self.dir.join(format!("{name}.{}.log", self.procs.len()));
        let f = File::create(&log).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .expect("spawn");
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
            exited: false,
            child_pidfile: None,
        });
        self.procs.len() - 1
    }

    /// Starts `warren vrrp -n -l -D` on `host` with config text `conf`.
    pub fn warren(&mut self, host: &str, conf: &str) -> usize {
        let n = self.procs.len();
        let cf = self.dir.join(format!("warren-{host}-{n}.conf"));
        std::fs::write(&cf, conf).expect("conf");
        let pid = self.dir.join(format!("warren-{host}-{n}.pid"));
        let cmd = vec![
            warren_bin().display().to_string(),
            "vrrp".into(),
            "-n".into(),
            "-l".into(),
            "-D".into(),
            "-f".into(),
            cf.display().to_string(),
            "-p".into(),
            pid.display().to_string(),
        ];
        self.spawn(&format!("warren-{host}"), host, &cmd)
    }

    /// Starts keepalived 2.x (VRRP only) on `host`.
    pub fn keepalived(&mut self, host: &str, conf: &str) -> usize {
        let n = self.procs.len();
        let cf = self.dir.join(format!("keepalived-{host}-{n}.conf"));
        std::fs::write(&cf, conf).expect("conf");
        let pid = |k: &str| {
            self.dir
                .join(format!("keepalived-{host}-{n}-{k}.pid"))
                .display()
                .to_string()
        };
        let cmd = vec![
            "keepalived".to_string(),
            "-n".into(),
            "-l".into(),
            "-D".into(),
            "--vrrp".into(),
            "-f".into(),
            cf.display().to_string(),
            "-p".into(),
            pid("main"),
            "-r".into(),
            pid("vrrp"),
            "-c".into(),
            pid("chk"),
        ];
        let vrrp_pid = PathBuf::from(pid("vrrp"));
        let i = self.spawn(&format!("keepalived-{host}"), host, &cmd);
        self.procs[i].child_pidfile = Some(vrrp_pid);
        i
    }

    pub fn signal(&mut self, idx: usize, sig: i32) {
        let pid = self.procs[idx].child.id() as i32;
        // SAFETY: signalling a child we started, by pid.
        unsafe { libc::kill(pid, sig) };
    }

    /// Stops a process with `sig` and waits for it to exit (SIGKILL after 3 s).
    pub fn stop(&mut self, idx: usize, sig: i32) {
        self.signal(idx, sig);
        let t = Instant::now();
        loop {
            if let Ok(Some(_)) = self.procs[idx].child.try_wait() {
                break;
            }
            if t.elapsed() > Duration::from_secs(3) {
                let _ = self.procs[idx].child.kill();
                let _ = self.procs[idx].child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.procs[idx].exited = true;
    }

    pub fn log(&self, idx: usize) -> String {
        std::fs::read_to_string(&self.procs[idx].log).unwrap_or_default()
    }

    pub fn has_vip(&self, host: &str) -> bool {
        self.has_addr(host, VIP)
    }

    pub fn has_addr(&self, host: &str, addr: &str) -> bool {
        let out = sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "-4",
            "addr",
            "show",
            "dev",
            "eth0",
        ]);
        out.contains(&format!("inet {addr}/"))
    }

    pub fn mac(&self, host: &str) -> String {
        let out = sh(&["ip", "-n", &self.ns(host), "link", "show", "eth0"]);
        out.split("link/ether ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    }

    /// The client's kernel ARP entry for the VIP (MAC), if any.
    pub fn client_arp(&self) -> Option<String> {
        let out = sh(&["ip", "-n", &self.ns("c"), "neigh", "show", VIP]);
        out.split("lladdr ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(str::to_string)
    }

    pub fn link(&self, host: &str, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.ns(host),
            "link",
            "set",
            "eth0",
            if up { "up" } else { "down" },
        ]);
    }

    /// One TCP connect from the client to VIP:7000; the answering host's name.
    pub fn probe(&self) -> Option<String> {
        in_ns(&self.ns("c"), probe_once)
    }

    /// Probes every 10 ms until `want` answers; the time it took.
    pub fn probe_until(&self, want: &str, timeout: Duration) -> Option<Duration> {
        let want = want.to_string();
        in_ns(&self.ns("c"), move || {
            let t = Instant::now();
            while t.elapsed() < timeout {
                if probe_once().as_deref() == Some(want.as_str()) {
                    return Some(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        })
    }

    /// Waits until `cond` holds; panics (with every log) after `timeout`.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Lab) -> bool,
    ) -> Duration {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if cond(self) {
                return t.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out after {timeout:?} waiting for: {what}");
    }

    /// Asserts that exactly `host` holds the VIP for `period` (sampled).
    pub fn stable_master(&self, host: &str, period: Duration) {
        let other = if host == "a" { "b" } else { "a" };
        let t = Instant::now();
        while t.elapsed() < period {
            assert!(self.has_vip(host), "{host} lost the VIP");
            assert!(
                !self.has_vip(other),
                "{other} also holds the VIP (split brain)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn probe_once() -> Option<String> {
    let addr: SocketAddr = format!("{VIP}:{PORT}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl Drop for Lab {
    fn drop(&mut self) {
        for i in 0..self.procs.len() {
            if !self.procs[i].exited {
                // SIGTERM first: keepalived's parent then stops its VRRP child itself.
                self.stop(i, libc::SIGTERM);
            }
            if let Some(pf) = &self.procs[i].child_pidfile {
                if let Some(pid) = std::fs::read_to_string(pf)
                    .ok()
                    .and_then(|t| t.trim().parse::<i32>().ok())
                {
                    // SAFETY: a pid we started (keepalived's child), killed by pid.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.listeners.drain(..) {
            let _ = t.join();
        }
        if std::thread::panicking() {
            for p in &self.procs {
                eprintln!(
                    "===== {} ({}) =====\n{}",
                    p.name,
                    p.log.display(),
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
        }
        cleanup(&self.p);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
