//! `warren server`: start one broker node, like `rabbitmq-server`.
//!
//! Settings come from flags, then environment variables, then the config file, then
//! defaults (flag beats env beats file). SIGTERM/SIGINT close every client connection with
//! 320 CONNECTION_FORCED and exit 0.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use warren_broker::BrokerConfig;

use crate::app::App;

use crate::{config, daemon};

#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Node name, `name@host` (default `warren@<short hostname>`).
    #[arg(long, env = "WARREN_NODENAME")]
    node_name: Option<String>,
    /// AMQP port (listens on every interface, IPv4 and IPv6).
    #[arg(long, env = "WARREN_NODE_PORT")]
    port: Option<u16>,
    /// Management HTTP API port (RabbitMQ's 15672).
    #[arg(long, env = "WARREN_MGMT_PORT")]
    mgmt_port: Option<u16>,
    /// Prometheus metrics port (rabbitmq_prometheus's 15692).
    #[arg(long, env = "WARREN_PROMETHEUS_PORT")]
    prometheus_port: Option<u16>,
    /// Inter-node and `warren ctl` port (RabbitMQ's 25672).
    #[arg(long, env = "WARREN_CLUSTER_PORT")]
    cluster_port: Option<u16>,
    /// Shared secret file (default `$HOME/.warren.cookie`, created on first start).
    #[arg(long, env = "WARREN_COOKIE_FILE")]
    cookie_file: Option<PathBuf>,
    /// Data directory (default /var/lib/warren/<node> for root, else $XDG_DATA_HOME/warren/<node>).
    #[arg(long, env = "WARREN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file in rabbitmq.conf style (default /etc/warren/warren.conf if present).
    #[arg(long, env = "WARREN_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Log to this file instead of stderr.
    #[arg(long, env = "WARREN_LOG_FILE")]
    log_file: Option<PathBuf>,
    /// Run in the background (also accepted as `-detached`, like rabbitmq-server).
    #[arg(long)]
    detached: bool,
}

fn short_hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or("localhost").to_string())
        .unwrap_or_else(|| "localhost".into())
}

fn default_data_dir(node: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/warren").join(node);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("warren").join(node)
}

pub fn run(a: ServerArgs) -> ExitCode {
    let config_path = a.config.clone().or_else(|| {
        let p = PathBuf::from("/etc/warren/warren.conf");
        p.exists().then_some(p)
    });
    let file = match config_path.as_deref().map(config::load).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => {
            eprintln!("warren server: {e}");
            return ExitCode::from(78);
        }
    };
    let node_name = a
        .node_name
        .clone()
        .unwrap_or_else(|| format!("warren@{}", short_hostname()));
    let data_dir = a
        .data_dir
        .clone()
        .unwrap_or_else(|| default_data_dir(&node_name));
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!(
            "warren server: cannot create data directory {}: {e}",
            data_dir.display()
        );
        return ExitCode::from(73);
    }
    let log_file = a
        .log_file
        .clone()
        .or_else(|| file.log_file.as_ref().map(PathBuf::from))
        .or_else(|| a.detached.then(|| data_dir.join("warren.log")));
    if a.detached {
        let log = log_file
            .clone()
            .unwrap_or_else(|| data_dir.join("warren.log"));
        if let Err(e) = daemon::detach(&log, &data_dir.join("warren.pid")) {
            eprintln!("warren server: cannot detach: {e}");
            return ExitCode::from(71);
        }
    }
    init_logging(log_file.as_deref(), file.log_level.as_deref());
    for w in &file.warnings {
        tracing::warn!("{w}");
    }
    let defaults = BrokerConfig::default();
    let listeners: Vec<SocketAddr> = match a.port {
        Some(p) => vec![SocketAddr::from(([0u16; 8], p))],
        None if !file.listeners.is_empty() => file.listeners.clone(),
        None => defaults.listeners.clone(),
    };
    let mut loopback_users = defaults.loopback_users.clone();
    if let Some(list) = &file.loopback_users {
        if list.is_empty() {
            loopback_users.clear();
        }
        for (user, on) in list {
            loopback_users.retain(|u| u != user);
            if *on {
                loopback_users.push(user.clone());
            }
        }
    }
    let cfg = BrokerConfig {
        node_name: node_name.clone(),
        listeners,
        default_user: file.default_user.clone().unwrap_or(defaults.default_user),
        default_pass: file.default_pass.clone().unwrap_or(defaults.default_pass),
        default_vhost: file.default_vhost.clone().unwrap_or(defaults.default_vhost),
        loopback_users,
        frame_max: file.frame_max.unwrap_or(defaults.frame_max),
        channel_max: file.channel_max.unwrap_or(defaults.channel_max),
        heartbeat: file.heartbeat.unwrap_or(defaults.heartbeat),
        data_dir: Some(data_dir.clone()),
        alarms: warren_broker::alarm::AlarmConfig {
            memory: file.memory_watermark.unwrap_or_default(),
            disk_free_limit: file
                .disk_free_limit
                .unwrap_or(defaults.alarms.disk_free_limit),
        },
    };
    // WARREN_SCHEDULERS sets the number of runtime worker threads (default: one per CPU),
    // like RabbitMQ's `+S` scheduler count.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("WARREN_SCHEDULERS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        builder.worker_threads(n.max(1));
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warren server: cannot start runtime: {e}");
            return ExitCode::from(71);
        }
    };
    let mgmt = SocketAddr::from(([0u16; 8], a.mgmt_port.unwrap_or(15672)));
    let cluster_port = a.cluster_port.unwrap_or(25672);
    let prometheus = SocketAddr::from(([0u16; 8], a.prometheus_port.unwrap_or(15692)));
    let cookie_path = warren_cluster::cookie::path(a.cookie_file.as_deref());
    let cookie = match warren_cluster::cookie::read_or_create(&cookie_path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("warren server: {e}");
            return ExitCode::from(78);
        }
    };
    rt.block_on(serve(cfg, mgmt, prometheus, cluster_port, cookie))
}

fn init_logging(file: Option<&Path>, level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARREN_LOG").unwrap_or_else(|_| {
        // openraft warns on every heartbeat to a stopped member; those are not news.
        let level = level.unwrap_or("info");
        tracing_subscriber::EnvFilter::new(format!("{level},openraft=error"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match file.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    }) {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

async fn serve(
    cfg: BrokerConfig,
    mgmt: SocketAddr,
    prometheus: SocketAddr,
    cluster_port: u16,
    cookie: String,
) -> ExitCode {
    let node = cfg.node_name.clone();
    let amqp_port = cfg.listeners.first().map_or(5672, |l| l.port());
    let control = match warren_broker::server::bind(SocketAddr::from(([0u16; 8], cluster_port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warren server: cannot listen on [::]:{cluster_port} (cluster and CLI port): {e}; choose another with --cluster-port");
            return ExitCode::from(69);
        }
    };
    let app = App::new(cfg, mgmt, prometheus, cluster_port, cookie.clone());
    if let Err(e) = app.start_app().await {
        tracing::error!("{e}");
        eprintln!("warren server: {e}");
        return ExitCode::from(69);
    }
    tokio::spawn(crate::ctl::server::serve(app.clone(), control, cookie));
    let entry = warren_cluster::registry::Entry {
        node: node.clone(),
        pid: std::process::id(),
        amqp_port,
        mgmt_port: mgmt.port(),
        cluster_port,
        netns: warren_cluster::registry::current_netns(),
    };
    if let Err(e) = warren_cluster::registry::register(&entry) {
        tracing::warn!(
            "cannot record the node in {}: {e}",
            warren_cluster::registry::dir().display()
        );
    }
    tokio::select! {
        _ = wait_for_signal() => {}
        _ = app.stop_node.notified() => {}
    }
    tracing::info!("stopping node {node}");
    app.stop_app().await;
    warren_cluster::registry::unregister(&node);
    tracing::info!("node {node} stopped");
    ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
