//! The parsed, validated configuration: what `warren lb` will run. Every value here has already
//! been checked (ranges, references between proxies); the runtime never re-validates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where a directive came from, for messages (`file:line`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Config {
    pub global: Global,
    pub proxies: Vec<Proxy>,
}

#[derive(Clone, Debug, Default)]
pub struct Global {
    /// Process-wide connection limit (`maxconn` in `global`).
    pub maxconn: Option<u32>,
    /// Worker threads (`nbthread`); default: one per CPU, as HAProxy 2.x.
    pub nbthread: Option<usize>,
    pub daemon: bool,
    /// `master-worker` in `global`: `Some(true)`, or `Some(false)` with `no-exit-on-failure`
    /// (the master outlives a failed worker and waits for a reload).
    pub master_worker: Option<bool>,
    pub pidfile: Option<PathBuf>,
    pub stats_sockets: Vec<StatsSocket>,
    /// `log` targets of `global`; proxies with `log global` use them.
    pub logs: Vec<super::logtarget::LogTarget>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Level {
    User,
    Operator,
    Admin,
}

#[derive(Clone, Debug)]
pub struct StatsSocket {
    pub path: PathBuf,
    pub mode: Option<u32>,
    pub level: Level,
    pub loc: Loc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Listen,
    Frontend,
    Backend,
}

impl ProxyKind {
    pub fn name(self) -> &'static str {
        match self {
            ProxyKind::Listen => "listen",
            ProxyKind::Frontend => "frontend",
            ProxyKind::Backend => "backend",
        }
    }
    pub fn has_frontend(self) -> bool {
        self != ProxyKind::Backend
    }
    pub fn has_backend(self) -> bool {
        self != ProxyKind::Frontend
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tcp,
    Http,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastConn,
    Source,
    First,
}

impl Balance {
    pub fn name(self) -> &'static str {
        match self {
            Balance::RoundRobin => "roundrobin",
            Balance::LeastConn => "leastconn",
            Balance::Source => "source",
            Balance::First => "first",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bind {
    pub addr: SocketAddr,
    pub loc: Loc,
}

#[derive(Clone, Debug, Default)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub client: Option<Duration>,
    pub server: Option<Duration>,
    pub check: Option<Duration>,
    pub queue: Option<Duration>,
    /// Supersedes `client` and `server` once connected (TCP mode has no analysers).
    pub tunnel: Option<Duration>,
    pub client_fin: Option<Duration>,
    pub server_fin: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheck {
    /// HAProxy's default: a TCP connect.
    Tcp,
    /// `option httpchk` (+ `http-check send`/`expect status`).
    Http {
        method: String,
        uri: String,
        version: String,
        headers: Vec<(String, String)>,
        /// `None`: any 2xx or 3xx passes, as HAProxy.
        expect_status: Option<u16>,
    },
    /// `option amqp-check`: protocol header out, `connection.start` expected back.
    Amqp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

/// Options of a `server` line (also the `default-server` template).
#[derive(Clone, Debug)]
pub struct ServerOpts {
    pub check: bool,
    pub port: Option<u16>,
    pub inter: Duration,
    pub fastinter: Option<Duration>,
    pub downinter: Option<Duration>,
    pub rise: u32,
    pub fall: u32,
    pub weight: u32,
    pub backup: bool,
    pub disabled: bool,
    pub maxconn: Option<u32>,
    pub maxqueue: Option<u32>,
    pub send_proxy: Option<ProxyProtocol>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        // HAProxy's defaults: inter 2s, rise 2, fall 3, weight 1.
        ServerOpts {
            check: false,
            port: None,
            inter: Duration::from_secs(2),
            fastinter: None,
            downinter: None,
            rise: 2,
            fall: 3,
            weight: 1,
            backup: false,
            disabled: false,
            maxconn: None,
            maxqueue: None,
            send_proxy: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub opts: ServerOpts,
    pub loc: Loc,
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub enabled: bool,
    pub uri: String,
    pub refresh: Option<Duration>,
    /// `user:password` pairs from `stats auth`.
    pub auth: Vec<(String, String)>,
    pub realm: String,
    pub hide_version: bool,
}

#[derive(Clone, Debug)]
pub struct Proxy {
    pub name: String,
    pub kind: ProxyKind,
    pub loc: Loc,
    pub mode: Mode,
    pub binds: Vec<Bind>,
    pub balance: Balance,
    pub servers: Vec<Server>,
    pub default_server: ServerOpts,
    pub timeouts: Timeouts,
    pub maxconn: Option<u32>,
    pub retries: u32,
    pub redispatch: bool,
    pub allbackups: bool,
    /// `option clitcpka`/`srvtcpka`/`tcpka`: TCP keepalive on client/server sockets.
    pub cli_tcpka: bool,
    pub srv_tcpka: bool,
    pub tcplog: bool,
    pub httplog: bool,
    pub dontlognull: bool,
    /// Log targets (`log global` copies the global ones; `no log` clears them).
    pub logs: Vec<super::logtarget::LogTarget>,
    pub stats: Stats,
    pub check: HealthCheck,
    pub default_backend: Option<String>,
    pub use_backend: Option<String>,
    /// Set by validation: index (in `Config::proxies`) of the backend this frontend uses.
    pub backend_index: Option<usize>,
}

impl Proxy {
    /// The `defaults` section's starting point: HAProxy's built-in defaults.
    pub fn builtin_defaults() -> Proxy {
        Proxy {
            name: String::new(),
            kind: ProxyKind::Listen,
            loc: Loc::default(),
            mode: Mode::Tcp,
            binds: Vec::new(),
            balance: Balance::RoundRobin,
            servers: Vec::new(),
            default_server: ServerOpts::default(),
            timeouts: Timeouts::default(),
            maxconn: None,
            retries: 3,
            redispatch: false,
            allbackups: false,
            cli_tcpka: false,
            srv_tcpka: false,
            tcplog: false,
            httplog: false,
            dontlognull: false,
            logs: Vec::new(),
            stats: Stats {
                realm: "HAProxy Statistics".into(),
                uri: "/haproxy?stats".into(),
                ..Stats::default()
            },
            check: HealthCheck::Tcp,
            default_backend: None,
            use_backend: None,
            backend_index: None,
        }
    }

    /// Whether this proxy is the stats page (HTTP mode is only supported for that).
    pub fn is_stats(&self) -> bool {
        self.mode == Mode::Http && self.stats.enabled
    }
}
