//! Test harness: starts the real `warren lb` binary against small loopback backends written
//! here (a "name then echo" server, a silent server, a minimal AMQP server), and reads its stats.
//! Everything polls with deadlines instead of sleeping fixed amounts, for loaded CI machines.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub fn warren_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("warren"))
        .expect("target dir");
    if !p.exists() {
        panic!(
            "{} not found: run `cargo build --bin warren` first (or set WARREN_BIN)",
            p.display()
        );
    }
    // `cargo test` rebuilds this test binary but not `warren`: say so when it looks stale.
    let modified = |f: &Path| std::fs::metadata(f).and_then(|m| m.modified()).ok();
    if let (Some(bin), Some(test)) = (modified(&p), modified(&exe)) {
        if bin < test {
            eprintln!(
                "warning: {} is older than this test binary; run `cargo build --bin warren`",
                p.display()
            );
        }
    }
    p
}

/// A free port in 20000..32000 (random start, then probing), unique within this test process.
/// Deliberately below Linux's ephemeral range (32768+): a backend that is stopped and restarted
/// on its port must not find it taken as the source port of some unrelated outgoing connection.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    if NEXT.load(Ordering::Relaxed) == 0 {
        let seed = (u64::from(std::process::id()) ^ now_nanos()) % 11000;
        let _ = NEXT.compare_exchange(0, 20000 + seed as u16, Ordering::Relaxed, Ordering::Relaxed);
    }
    loop {
        let mut p = NEXT.fetch_add(1, Ordering::Relaxed);
        if p >= 32000 {
            NEXT.store(20000, Ordering::Relaxed);
            p = 20000;
        }
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Sends its name and a newline, then echoes.
    NameEcho,
    /// Accepts and reads, never answers.
    Silent,
    /// Answers the AMQP protocol header with a connection.start frame.
    Amqp,
    /// Reads an HTTP request head (recorded in `received`) and answers with this status.
    Http(u16),
}

/// A loopback backend on a fixed port; `stop` closes the listener (existing sessions live on).
pub struct Backend {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    /// First bytes received on each connection (for PROXY protocol checks).
    pub received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Backend {
    pub fn start(port: u16, name: &str, b: Behaviour) -> Backend {
        // Retry briefly: a restarted backend may race the kernel releasing its old socket.
        let start = Instant::now();
        let l = loop {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => break l,
                Err(e) if start.elapsed() > Duration::from_secs(5) => {
                    panic!("backend bind {port}: {e}")
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        };
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, n, r) = (stop.clone(), name.to_string(), received.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let (n, r) = (n.clone(), r.clone());
                        thread::spawn(move || handle(c, &n, b, &r));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Backend {
            port,
            stop,
            thread: Some(thread),
            received,
        }
    }
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn handle(mut c: TcpStream, name: &str, b: Behaviour, received: &Mutex<Vec<Vec<u8>>>) {
    c.set_nonblocking(false).ok();
    c.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut buf = [0u8; 16384];
    match b {
        Behaviour::NameEcho => {
            if c.write_all(format!("{name}\n").as_bytes()).is_err() {
                return;
            }
            let mut first = true;
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if first {
                    received.lock().unwrap().push(buf[..n].to_vec());
                    first = false;
                }
                if c.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
        Behaviour::Silent => {
            while let Ok(n) = c.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
        Behaviour::Http(code) => {
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            received.lock().unwrap().push(head);
            let _ = c.write_all(
                format!("HTTP/1.0 {code} Status\r\nContent-Length: 0\r\n\r\n").as_bytes(),
            );
        }
        Behaviour::Amqp => {
            let mut head = [0u8; 8];
            if c.read_exact(&mut head).is_err() || &head != b"AMQP\x00\x00\x09\x01" {
                return;
            }
            // connection.start: version 0-9, empty server-properties, "PLAIN", "en_US".
            let mut payload = vec![0, 10, 0, 10, 0, 9, 0, 0, 0, 0];
            payload.extend_from_slice(&5u32.to_be_bytes());
            payload.extend_from_slice(b"PLAIN");
            payload.extend_from_slice(&5u32.to_be_bytes());
            payload.extend_from_slice(b"en_US");
            let mut frame = vec![1, 0, 0];
            frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            frame.extend_from_slice(&payload);
            frame.push(0xCE);
            let _ = c.write_all(&frame);
            let _ = c.read(&mut buf);
        }
    }
    let _ = c.shutdown(Shutdown::Both);
}

/// A running `warren lb -db` process; killed on drop.
pub struct Lb {
    pub child: Child,
    pub dir: PathBuf,
    pub stderr: PathBuf,
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "warren-lb-test-{}-{tag}-{}",
        std::process::id(),
        now_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

impl Lb {
    /// Writes `cfg`, starts `warren lb -db -f cfg EXTRA...` and waits until `ready_port` accepts.
    /// Listeners are bound in configuration order, so pass the port of the last section (the
    /// stats listener when there is one) to know that every port is bound.
    pub fn start(cfg: &str, ready_port: u16, extra: &[&str]) -> Lb {
        let lb = Lb::spawn(cfg, extra);
        let start = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", ready_port)).is_ok() {
                return lb;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "warren lb did not listen on {ready_port}; stderr:\n{}",
                    lb.log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    pub fn spawn(cfg: &str, extra: &[&str]) -> Lb {
        let dir = temp_dir("lb");
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let stderr = dir.join("stderr.log");
        let child = Command::new(warren_bin())
            .arg("lb")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn warren");
        Lb { child, dir, stderr }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects through the LB and returns the first line the backend sends (its name).
pub fn ask(port: u16) -> String {
    let c = TcpStream::connect(("127.0.0.1", port)).expect("connect to lb");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(&c).read_line(&mut line);
    line.trim().to_string()
}

/// A minimal HTTP/1.0 GET; returns (status code, headers+body).
pub fn http_get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to stats");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Basic {a}\r\n"));
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// Parses `<uri>;csv` into rows of column-name → value maps.
pub fn csv(port: u16, uri: &str) -> Vec<std::collections::HashMap<String, String>> {
    let (code, text) = http_get(port, &format!("{uri};csv"), None);
    assert_eq!(code, 200, "{text}");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let mut lines = body.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .map(String::from)
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

pub fn status(port: u16, uri: &str, px: &str, sv: &str) -> String {
    csv(port, uri)
        .into_iter()
        .find(|r| r["pxname"] == px && r["svname"] == sv)
        .map(|r| r["status"].clone())
        .unwrap_or_default()
}

pub const DEFAULTS: &str = "defaults\n    mode tcp\n    timeout connect 1s\n    timeout client 20s\n    timeout server 20s\n";

/// A stats listener section on `port`.
pub fn stats_section(port: u16) -> String {
    format!("listen monitor\n    bind 127.0.0.1:{port}\n    mode http\n    stats enable\n    stats uri /stats\n    stats refresh 5s\n")
}
