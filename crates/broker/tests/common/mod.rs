//! Test harness: starts a real `warren server` process on a free port and connects real
//! clients to it. Each test gets its own node and data directory.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};

/// The `warren` binary under test: `$WARREN_BIN`, else `target/<profile>/warren` next to
/// the test executable's `deps/` directory.
pub fn warren_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let p = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("warren"))
        .expect("target dir");
    assert!(
        p.exists(),
        "{} not found: run `cargo build --bin warren` first (or set WARREN_BIN)",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Node {
    child: Option<Child>,
    pub port: u16,
    pub mgmt_port: u16,
    pub cluster_port: u16,
    pub prometheus_port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
}

impl Node {
    pub fn start() -> Node {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Node {
        Self::start_full(extra, None)
    }

    /// A node that shares `cookie` (cluster members must).
    pub fn start_with_cookie(cookie: &str) -> Node {
        Self::start_full(&[], Some(cookie))
    }

    fn start_full(extra: &[&str], cookie: Option<&str>) -> Node {
        let port = free_port();
        let mgmt_port = free_port();
        let cluster_port = free_port();
        let prometheus_port = free_port();
        let dir = std::env::temp_dir().join(format!("warren-test-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("data dir");
        if let Some(c) = cookie {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(dir.join("cookie"))
                .expect("cookie file");
            std::io::Write::write_all(&mut f, c.as_bytes()).expect("write cookie");
        }
        let mut node = Node {
            child: None,
            port,
            mgmt_port,
            cluster_port,
            prometheus_port,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        // A port picked free can be taken by another test before the server binds it; the
        // first start then moves to fresh ports rather than fail the test.
        for attempt in 0.. {
            match node.launch() {
                Ok(()) => return node,
                Err(log) if log.contains("Address already in use") && attempt < 5 => {
                    node.port = free_port();
                    node.mgmt_port = free_port();
                    node.cluster_port = free_port();
                    node.prometheus_port = free_port();
                }
                Err(log) => panic!("warren server did not start: {log}"),
            }
        }
        unreachable!()
    }

    /// Starts the server process (again) on the same ports and data directory.
    pub fn spawn(&mut self) {
        if let Err(log) = self.launch() {
            panic!("warren server did not listen on {}: {log}", self.port);
        }
    }

    /// Starts the server and waits until it listens; `Err` with its log if it exits first.
    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stderr.log"))
            .expect("log file");
        let child = Command::new(warren_bin())
            .args([
                "server",
                "--port",
                &self.port.to_string(),
                "--mgmt-port",
                &self.mgmt_port.to_string(),
                "--cluster-port",
                &self.cluster_port.to_string(),
                "--prometheus-port",
                &self.prometheus_port.to_string(),
                "--node-name",
            ])
            .arg(format!("test{}@localhost", self.port))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--cookie-file")
            .arg(self.cookie_file())
            .args(&self.extra)
            // WARREN_TEST_LOG raises the nodes' log level when a test needs looking into.
            .env(
                "WARREN_LOG",
                std::env::var("WARREN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn warren server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                self.child = None;
                return Err(self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(self.log())
    }

    pub fn cookie_file(&self) -> PathBuf {
        self.dir.join("cookie")
    }

    /// The node's name, as `warren ctl -n` takes it.
    pub fn name(&self) -> String {
        format!("test{}@localhost", self.port)
    }

    /// Runs `warren ctl -n <this node> ARGS` with the node's cookie; returns (exit code,
    /// stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(warren_bin())
            .arg("ctl")
            .args(["-n", &self.name(), "--cookie-file"])
            .arg(self.cookie_file())
            .args(args)
            .output()
            .expect("run warren ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default())
            .await
            .expect("connect")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        unsafe_kill(child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

fn unsafe_kill(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failing test's nodes leave their logs behind (the test's output names them).
        if std::thread::panicking() || std::env::var_os("WARREN_TEST_KEEP").is_some() {
            eprintln!(
                "kept the data and log of {} in {}",
                self.name(),
                self.dir.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A minimal HTTP/1.1 request to the node's management API as guest; returns (status, body).
pub fn http(node: &Node, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_to(node.mgmt_port, method, path, body)
}

/// The same request to any local port (e.g. the Prometheus port).
pub fn http_to(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with(port, method, path, &[], body)
}

/// A request with extra headers; guest's credentials unless `headers` has an
/// `Authorization` (an empty value sends none).
pub fn http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to HTTP port");
    let body = body.unwrap_or("");
    let mut extra = String::new();
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
    {
        extra.push_str("Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n");
    }
    for (k, v) in headers.iter().filter(|(_, v)| !v.is_empty()) {
        extra.push_str(&format!("{k}: {v}\r\n"));
    }
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The AMQP reply code carried by a lapin error, if it is a protocol error.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => Some(a.get_id()),
        _ => None,
    }
}

pub fn reply_text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => a.get_message().to_string(),
        other => format!("{other:?}"),
    }
}

/// A raw socket speaking just enough AMQP to test what client libraries never send.
pub struct RawClient {
    pub stream: TcpStream,
    buf: bytes::BytesMut,
}

impl RawClient {
    pub fn connect(port: u16) -> RawClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        RawClient {
            stream,
            buf: bytes::BytesMut::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn send_method(&mut self, channel: u16, m: &warren_amqp::AMQPClass) {
        let mut out = warren_amqp::outgoing::Outgoing::new();
        out.method(channel, m);
        for c in out.take() {
            self.send(&c);
        }
    }

    /// Reads frames until one on channel 0 decodes to a method; returns it.
    pub fn read_method(&mut self) -> Option<(u16, warren_amqp::AMQPClass)> {
        let mut chunk = [0u8; 4096];
        loop {
            while let Ok(Some(f)) = warren_amqp::frame::decode(&mut self.buf, 0) {
                if f.kind == warren_amqp::frame::FRAME_METHOD {
                    return warren_amqp::method::decode(&f.payload)
                        .ok()
                        .map(|m| (f.channel, m));
                }
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Performs the handshake as guest on vhost `/`; returns after open-ok.
    pub fn handshake(&mut self, heartbeat: u16) {
        self.handshake_with(heartbeat, &[]);
    }

    /// The handshake, announcing client capabilities (e.g. `connection.blocked`).
    pub fn handshake_with(&mut self, heartbeat: u16, capabilities: &[&str]) {
        use warren_amqp::{connection, AMQPClass, AMQPValue, FieldTable, LongString, ShortString};
        let mut caps = FieldTable::default();
        for c in capabilities {
            caps.insert(ShortString::from(*c), AMQPValue::Boolean(true));
        }
        let mut client_properties = FieldTable::default();
        client_properties.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        self.send(warren_amqp::PROTOCOL_HEADER);
        let (_, start) = self.read_method().expect("connection.start");
        assert!(matches!(
            start,
            AMQPClass::Connection(connection::AMQPMethod::Start(_))
        ));
        self.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties,
                mechanism: ShortString::from("PLAIN"),
                response: LongString::from("\0guest\0guest"),
                locale: ShortString::from("en_US"),
            })),
        );
        let (_, tune) = self.read_method().expect("connection.tune");
        let AMQPClass::Connection(connection::AMQPMethod::Tune(t)) = tune else {
            panic!("expected tune, got {tune:?}");
        };
        self.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat,
            })),
        );
        self.send_method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ShortString::from("/"),
            })),
        );
        let (_, ok) = self.read_method().expect("open-ok");
        assert!(matches!(
            ok,
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
        ));
    }

    /// Reads until a `connection.close`; returns its reply code and text.
    pub fn expect_connection_close(&mut self) -> (u16, String) {
        loop {
            match self.read_method() {
                Some((
                    0,
                    warren_amqp::AMQPClass::Connection(warren_amqp::connection::AMQPMethod::Close(
                        c,
                    )),
                )) => return (c.reply_code, c.reply_text.to_string()),
                Some(_) => continue,
                None => panic!("socket closed without connection.close"),
            }
        }
    }
}
