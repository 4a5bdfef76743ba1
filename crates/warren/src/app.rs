//! A node's lifecycle, as `rabbitmqctl stop_app | reset | start_app` see it: the process
//! and its control listener (cluster port) stay up while the broker application (AMQP
//! listeners, management API, queues) is started, stopped and reset.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use warren_broker::{Broker, BrokerConfig};

pub struct App {
    pub node: String,
    pub config: BrokerConfig,
    pub mgmt: SocketAddr,
    pub prometheus: SocketAddr,
    pub cluster_port: u16,
    pub started: Instant,
    running: Mutex<Option<Arc<Broker>>>,
    /// `warren ctl stop`: the whole node exits.
    pub stop_node: Notify,
}

impl App {
    pub fn new(
        config: BrokerConfig,
        mgmt: SocketAddr,
        prometheus: SocketAddr,
        cluster_port: u16,
    ) -> Arc<Self> {
        Arc::new(App {
            node: config.node_name.clone(),
            config,
            mgmt,
            prometheus,
            cluster_port,
            started: Instant::now(),
            running: Mutex::new(None),
            stop_node: Notify::new(),
        })
    }

    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn request_stop(&self) {
        self.stop_node.notify_one();
    }

    /// Opens storage, binds the AMQP and management listeners and starts serving.
    pub async fn start_app(&self) -> Result<(), String> {
        if self.broker().is_some() {
            return Ok(());
        }
        let dir = self.config.data_dir.clone().unwrap_or_default();
        let broker = Broker::open(self.config.clone())
            .map_err(|e| format!("cannot open data directory {}: {e}", dir.display()))?;
        let mut listeners = Vec::new();
        for addr in &self.config.listeners {
            listeners.push((
                *addr,
                warren_broker::server::bind(*addr)
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
            ));
        }
        let mgmt = warren_broker::server::bind(self.mgmt).map_err(|e| {
            format!(
                "cannot listen on {} (management API): {e}; choose another with --mgmt-port",
                self.mgmt
            )
        })?;
        let prometheus = warren_broker::server::bind(self.prometheus).map_err(|e| {
            format!(
                "cannot listen on {} (Prometheus metrics): {e}; choose another with --prometheus-port",
                self.prometheus
            )
        })?;
        tokio::spawn(warren_mgmt::metrics::serve(broker.clone(), prometheus));
        for (addr, l) in listeners {
            tracing::info!("started TCP listener on {addr}");
            tokio::spawn(warren_broker::server::accept_loop(broker.clone(), l));
        }
        tracing::info!("management API listening on {}", self.mgmt);
        tokio::spawn(warren_mgmt::serve(broker.clone(), mgmt, self.node_info()));
        broker.start_alarm_monitor();
        tracing::info!(
            "memory high watermark {} MB, free disk limit {} MB",
            broker.config.alarms.memory_limit() / 1_000_000,
            broker.config.alarms.disk_free_limit / 1_000_000
        );
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(broker);
        tracing::info!(
            "node {} started (data dir {}); Warren {}",
            self.node,
            dir.display(),
            env!("CARGO_PKG_VERSION")
        );
        Ok(())
    }

    /// Every listener of this node, for the management API's node and health endpoints.
    fn node_info(&self) -> warren_mgmt::NodeInfo {
        use warren_mgmt::Listener;
        let mut listeners: Vec<Listener> = self
            .config
            .listeners
            .iter()
            .map(|l| Listener {
                protocol: "amqp",
                port: l.port(),
            })
            .collect();
        listeners.extend([
            Listener {
                protocol: "clustering",
                port: self.cluster_port,
            },
            Listener {
                protocol: "http",
                port: self.mgmt.port(),
            },
            Listener {
                protocol: "http/prometheus",
                port: self.prometheus.port(),
            },
        ]);
        warren_mgmt::NodeInfo::new(listeners, self.started)
    }

    /// Closes every client connection (320 CONNECTION_FORCED), stops the listeners and
    /// flushes the journal. The process and its control listener stay up.
    pub async fn stop_app(&self) {
        let Some(broker) = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        tracing::info!(
            "stopping warren application on node {}: closing client connections",
            self.node
        );
        broker.begin_shutdown();
        let deadline = Instant::now() + Duration::from_secs(5);
        while broker.connection_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(j) = broker.journal() {
            j.close();
        }
        // Give the accept loops and the HTTP server a moment to drop their sockets.
        tokio::time::sleep(Duration::from_millis(50)).await;
        tracing::info!("warren application stopped on node {}", self.node);
    }

    /// Back to a virgin node: definitions and messages are deleted. The app must be stopped.
    pub fn reset(&self) -> Result<(), String> {
        if self.broker().is_some() {
            return Err(
                "Error: this command requires the 'warren' app to be stopped on the target node. Stop it with 'warren ctl stop_app'."
                    .into(),
            );
        }
        let dir: PathBuf = self.config.data_dir.clone().unwrap_or_default();
        for entry in ["definitions.json", "journal"] {
            let p = dir.join(entry);
            let r = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(format!("Error: cannot remove {}: {e}", p.display()));
                }
            }
        }
        tracing::info!("node {} reset: definitions and messages deleted", self.node);
        Ok(())
    }
}
