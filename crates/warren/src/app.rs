//! A node's lifecycle, as `rabbitmqctl stop_app | reset | start_app` see it: the process
//! and its control listener (cluster port) stay up while the broker application (AMQP
//! listeners, management API, queues) is started, stopped and reset.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use warren_broker::{Broker, BrokerConfig};
use warren_cluster::group::Group;
use warren_cluster::raft::Peer;

pub struct App {
    pub node: String,
    pub config: BrokerConfig,
    pub mgmt: SocketAddr,
    pub prometheus: SocketAddr,
    pub cluster_port: u16,
    pub started: Instant,
    running: Mutex<Option<Arc<Broker>>>,
    /// This node's member of the metadata Raft group, while clustered and running.
    group: Mutex<Option<Arc<Group>>>,
    pub cookie: String,
    /// Serialises start_app, stop_app, reset and joins.
    lifecycle: tokio::sync::Mutex<()>,
    /// `warren ctl stop`: the whole node exits.
    pub stop_node: Notify,
}

/// Written by `join_cluster`: the node joins through this seed on its next `start_app`.
const JOIN_FILE: &str = "cluster-join.json";
/// The metadata Raft log; its presence means this node is a cluster member.
const RAFT_FILE: &str = "raft.redb";

impl App {
    pub fn new(
        config: BrokerConfig,
        mgmt: SocketAddr,
        prometheus: SocketAddr,
        cluster_port: u16,
        cookie: String,
    ) -> Arc<Self> {
        Arc::new(App {
            node: config.node_name.clone(),
            config,
            mgmt,
            prometheus,
            cluster_port,
            started: Instant::now(),
            running: Mutex::new(None),
            group: Mutex::new(None),
            cookie,
            lifecycle: tokio::sync::Mutex::new(()),
            stop_node: Notify::new(),
        })
    }

    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn group(&self) -> Option<Arc<Group>> {
        self.group.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone().unwrap_or_default()
    }

    /// This node as a cluster member: its name and the address of its cluster port.
    pub fn peer(&self) -> Peer {
        let host = warren_cluster::NodeName::parse(&self.node)
            .map(|n| n.host)
            .unwrap_or_else(|_| "localhost".into());
        Peer {
            name: self.node.clone(),
            addr: format!("{host}:{}", self.cluster_port),
            amqp_port: self.config.listeners.first().map_or(5672, |l| l.port()),
        }
    }

    /// Whether this node belongs (or is about to belong) to a cluster.
    pub fn is_clustered(&self) -> bool {
        let dir = self.data_dir();
        dir.join(RAFT_FILE).exists() || dir.join(JOIN_FILE).exists()
    }

    /// Starts the metadata group for a running broker (a standalone node becomes a
    /// one-node cluster the first time another node joins it).
    pub async fn start_group(
        &self,
        broker: &Arc<Broker>,
        restarted: bool,
    ) -> Result<Arc<Group>, String> {
        if let Some(g) = self.group() {
            return Ok(g);
        }
        let dir = self.data_dir();
        let join_file = dir.join(JOIN_FILE);
        let seed = std::fs::read(&join_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["seed"].as_str().map(str::to_string));
        let g = Group::start(
            broker,
            self.peer(),
            self.cookie.clone(),
            &dir,
            seed.is_some(),
        )
        .await
        .map_err(|e| format!("cannot start the cluster metadata group: {e}"))?;
        *self.group.lock().unwrap_or_else(|e| e.into_inner()) = Some(g.clone());
        tokio::spawn(watch_majority(Arc::downgrade(&g), Arc::downgrade(broker)));
        let (me, cookie) = (self.peer(), self.cookie.clone());
        let group = g.clone();
        let broker = broker.clone();
        tokio::spawn(async move {
            // Become (again) a voting member: through the seed when joining, else through
            // whichever member leads. Retried until the cluster answers.
            let req = serde_json::json!({"cluster": "join", "peer": me});
            loop {
                let r = match &seed {
                    Some(addr) => {
                        warren_cluster::raft::network::call_once(addr, &cookie, &me.name, &req)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    None => group.ask_leader(req.clone()).await,
                };
                match r {
                    // Done only once this node sees itself among the voters: a node that
                    // wrongly believed it led (restarted as the leader of a past term) can
                    // answer "ok" to a join it never committed.
                    Ok(v) if v["ok"].as_bool() == Some(true) => {
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                        while !group.is_voter() && tokio::time::Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        if group.is_voter() {
                            break;
                        }
                        tracing::info!("joining the cluster: not a voter yet; asking again");
                    }
                    Ok(v) if v["retry"].as_bool() == Some(true) => {}
                    Ok(v) => tracing::warn!("joining the cluster: {}", v["error"]),
                    Err(e) => tracing::debug!("joining the cluster: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let _ = std::fs::remove_file(&join_file);
            if restarted {
                // Non-durable and exclusive queues homed here did not survive the restart.
                // Committed through the group and applied here, it is also the barrier after
                // which this node has every change made while it was away.
                let op = warren_broker::metadata::MetaOp::DropTransientQueuesOf {
                    node: me.name.clone(),
                };
                while let Err(e) = broker.submit(op.clone()).await {
                    tracing::warn!("could not drop this node's transient queues: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            broker.set_caught_up(true);
            tracing::info!("node {} is a running member of the cluster", me.name);
        });
        Ok(g)
    }

    pub fn request_stop(&self) {
        self.stop_node.notify_one();
    }

    /// Opens storage, binds the AMQP and management listeners and starts serving.
    pub async fn start_app(&self) -> Result<(), String> {
        let _one = self.lifecycle.lock().await;
        if self.broker().is_some() {
            return Ok(());
        }
        let dir = self.config.data_dir.clone().unwrap_or_default();
        let broker = Broker::open(self.config.clone())
            .map_err(|e| format!("cannot open data directory {}: {e}", dir.display()))?;
        // Cluster peers log in to each other's AMQP listeners with this secret.
        broker
            .auth
            .set_internal_secret(warren_cluster::handshake::prove(
                &self.cookie,
                "warren-internal-node-link",
            ));
        if self.is_clustered() {
            // Clients wait until this node has applied what the cluster decided meanwhile.
            broker.set_caught_up(false);
            self.start_group(&broker, true).await?;
        }
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
        let _one = self.lifecycle.lock().await;
        // The group keeps answering peers while we leave: the change needs our vote too.
        if let Some(g) = self.group() {
            // Hand over: leave the voter set (staying a member) so that the nodes still
            // running keep a majority; the last voter stays one and keeps serving.
            let req = serde_json::json!({"cluster": "leave", "node": self.node});
            match tokio::time::timeout(Duration::from_secs(10), g.ask_leader(req)).await {
                Ok(Ok(v)) if v["ok"].as_bool() == Some(true) => {
                    tracing::info!("left the cluster's voter set; still a member")
                }
                other => tracing::warn!("could not leave the voter set cleanly: {other:?}"),
            }
            self.group.lock().unwrap_or_else(|e| e.into_inner()).take();
            g.shutdown().await;
        }
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
        if self.is_clustered() {
            self.leave_cluster_for_reset();
        }
        for entry in ["definitions.json", "journal", RAFT_FILE, JOIN_FILE] {
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

    /// The cluster members recorded in this node's definitions file (usable while stopped).
    pub fn recorded_members(&self) -> Vec<Peer> {
        let path = self.data_dir().join("definitions.json");
        let doc: serde_json::Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let nodes = &doc["warren_cluster"]["membership"]["membership"]["nodes"];
        nodes
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|p| serde_json::from_value::<Peer>(p.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `reset` of a cluster member: asks the other members to forget this node (best
    /// effort: with none reachable the reset goes on, as rabbitmqctl's does).
    fn leave_cluster_for_reset(&self) {
        let me = self.node.clone();
        let others: Vec<Peer> = self
            .recorded_members()
            .into_iter()
            .filter(|p| p.name != me)
            .collect();
        let cookie = self.cookie.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let req = serde_json::json!({"cluster": "forget", "node": me});
                for p in others {
                    let call =
                        warren_cluster::raft::network::call_once(&p.addr, &cookie, &me, &req);
                    if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_secs(10), call).await {
                        if v["ok"].as_bool() == Some(true) {
                            return Some(p.name);
                        }
                    }
                }
                None
            })
        })
        .join()
        .ok()
        .flatten();
        match done {
            Some(via) => tracing::info!("the cluster forgot this node (via {via})"),
            None => tracing::warn!("no cluster member reachable to forget this node"),
        }
    }
}

/// How long a node may be out of touch with a majority before it stops serving.
const MAJORITY_GRACE: Duration = Duration::from_secs(3);

/// Pauses the broker while this node cannot reach a majority of the cluster's voters (it
/// may be on the small side of a partition, or the last survivor of crashes it cannot tell
/// from one), and resumes it when it can. Ends with the group or the broker.
async fn watch_majority(group: std::sync::Weak<Group>, broker: std::sync::Weak<Broker>) {
    let mut out_of_touch_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (Some(g), Some(b)) = (group.upgrade(), broker.upgrade()) else {
            return;
        };
        if g.has_majority(MAJORITY_GRACE) {
            if out_of_touch_since.take().is_some() && b.paused().borrow().is_some() {
                tracing::info!("a majority of the cluster is reachable again: serving clients");
                b.set_paused(None);
            }
            continue;
        }
        let since = *out_of_touch_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= MAJORITY_GRACE && b.paused().borrow().is_none() {
            tracing::warn!(
                "node {} cannot reach a majority of the cluster's nodes: it stops serving clients until it can (no split brain); if the other nodes are gone for good, stop this app and run 'warren ctl forget_cluster_node --offline'",
                g.me.name
            );
            b.set_paused(Some("no majority of the cluster reachable".into()));
        }
    }
}
