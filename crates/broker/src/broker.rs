//! One node's broker: its vhosts, users, live connections and shutdown signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use tokio::sync::watch;
use warren_store::Journal;

use crate::auth::{Auth, Permission};
use crate::channel::reply_to::ReplyTarget;
use crate::vhost::Vhost;

/// Settings a node starts with.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub node_name: String,
    pub listeners: Vec<SocketAddr>,
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: String,
    pub loopback_users: Vec<String>,
    /// Offered in `connection.tune`.
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    /// Where durable state lives; `None` keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    pub alarms: crate::alarm::AlarmConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_name: "warren@localhost".into(),
            listeners: vec!["[::]:5672".parse().expect("literal address")],
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            loopback_users: vec!["guest".into()],
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            data_dir: None,
            alarms: crate::alarm::AlarmConfig::default(),
        }
    }
}

/// What the broker knows of a live connection (for listing and forced closes).
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    pub id: u64,
    pub peer: SocketAddr,
    pub user: String,
    pub vhost: String,
    /// Our end of the socket (part of RabbitMQ's connection name).
    pub local: SocketAddr,
    pub connected_at: std::time::SystemTime,
    pub client_properties: warren_amqp::FieldTable,
    /// As negotiated in `connection.tune-ok`.
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    /// The connection's channels and its close switch.
    pub live: Arc<crate::connection::live::LiveConnection>,
}

pub struct Broker {
    pub config: BrokerConfig,
    pub auth: Auth,
    vhosts: RwLock<HashMap<String, Arc<Vhost>>>,
    next_connection_id: AtomicU64,
    connections: Mutex<HashMap<u64, ConnectionInfo>>,
    shutdown: watch::Sender<bool>,
    /// Why this node does not serve clients now (no majority of the cluster reachable).
    paused: watch::Sender<Option<String>>,
    /// False while a (re)started cluster member has not yet applied the cluster's latest
    /// metadata: until then its view of which node leads which queue may be stale (a former
    /// leader must not serve a queue that failed over while it was away).
    caught_up: watch::Sender<bool>,
    /// Direct reply-to consumers by token.
    reply_targets: Mutex<HashMap<String, ReplyTarget>>,
    store: Option<Store>,
    alarms: Arc<watch::Sender<crate::alarm::Alarms>>,
    /// Message counters for metrics (relaxed atomics: a publish costs one increment).
    pub stats: Stats,
    /// Set while definitions are being loaded, or a batch of changes applied: no write-back
    /// of half-done state (the batch writes once at its end).
    loading: AtomicBool,
    /// The cluster's metadata group, when this node is clustered.
    metadata: OnceLock<Arc<dyn crate::metadata::Metadata>>,
    /// The metadata group's applied position and membership, stored in the definitions file
    /// so that both change in one atomic write (see `persist_definitions`).
    cluster_state: Mutex<Option<serde_json::Value>>,
    /// Links that forward messages to queues' home nodes (see `queue::remote`).
    pub(crate) forward_links: crate::queue::remote::ForwardLinks,
    /// Counts of queues led by other nodes, as their leaders last reported them:
    /// `vhost NUL name` -> (ready, unacked, consumers).
    remote_stats: Mutex<std::collections::HashMap<String, (usize, usize, usize)>>,
    /// Wakes the placement loop (a member was just seen down).
    placement_wake: tokio::sync::Notify,
    me: Weak<Broker>,
}

/// Where the metadata group's state sits in the definitions file.
const CLUSTER_STATE_KEY: &str = "warren_cluster";

/// Node-wide message counters, as rabbitmq_prometheus reports them.
#[derive(Default)]
pub struct Stats {
    pub published: AtomicU64,
    pub acknowledged: AtomicU64,
    pub unroutable: AtomicU64,
}

/// Durable storage of a node.
struct Store {
    definitions: PathBuf,
    journal: Arc<Journal>,
    write_lock: Mutex<()>,
}

impl Broker {
    /// An in-memory broker (nothing survives a restart); used when no data dir is given.
    pub fn new(config: BrokerConfig) -> Arc<Self> {
        let b = Self::build(config, None);
        b.add_defaults();
        b
    }

    /// A broker with durable storage in `config.data_dir`: definitions are loaded (or the
    /// defaults created on first start), then the journal is replayed into durable queues.
    pub fn open(config: BrokerConfig) -> std::io::Result<Arc<Self>> {
        let Some(dir) = config.data_dir.clone() else {
            return Ok(Self::new(config));
        };
        std::fs::create_dir_all(&dir)?;
        let (journal, recovered) = warren_store::recover(&dir.join("journal"))?;
        let b = Self::build(
            config,
            Some(Store {
                definitions: dir.join("definitions.json"),
                journal,
                write_lock: Mutex::new(()),
            }),
        );
        let defs = b.store.as_ref().map(|s| s.definitions.clone());
        let existing = match defs.as_deref().map(warren_store::definitions::read) {
            Some(Ok(Some(bytes))) => Some(
                serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", dir.join("definitions.json").display()),
                    )
                })?,
            ),
            Some(Err(e)) => return Err(e),
            _ => None,
        };
        b.loading.store(true, Ordering::Relaxed);
        if let Some(state) = existing.as_ref().and_then(|d| d.get(CLUSTER_STATE_KEY)) {
            *b.cluster_state.lock().unwrap_or_else(|e| e.into_inner()) = Some(state.clone());
        }
        match existing {
            Some(d) => {
                for w in crate::definitions::import(&b, &d).map_err(std::io::Error::other)? {
                    tracing::warn!("definitions: {w}");
                }
            }
            None => b.add_defaults(),
        }
        b.loading.store(false, Ordering::Relaxed);
        b.persist_definitions();
        let mut restored = 0usize;
        let queues = recovered.queues.len();
        for (key, msgs) in recovered.queues {
            let queue = key
                .split_once('\0')
                .and_then(|(vh, name)| b.vhost(vh).and_then(|v| v.queue(name)));
            match queue {
                Some(q) => {
                    restored += msgs.len();
                    q.restore(msgs);
                }
                None => {
                    if let Some(j) = b.journal() {
                        j.drop_queue(&key, &[]);
                    }
                }
            }
        }
        for (key, items) in recovered.delayed {
            let store = key.split_once("\0\u{1}").and_then(|(vh, name)| {
                b.vhost(vh)
                    .and_then(|v| v.exchange(name))
                    .and_then(|x| x.delayed.clone())
            });
            match store {
                Some(s) => {
                    restored += items.len();
                    s.restore(items);
                }
                None => {
                    if let Some(j) = b.journal() {
                        j.drop_queue(&key, &[]);
                    }
                }
            }
        }
        // Recovery read whole segments and built every message before the queues paged most
        // of them out: give that memory back to the OS now rather than keep it as heap.
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free heap pages.
        unsafe {
            libc::malloc_trim(0);
        }
        tracing::info!(
            "recovered {restored} messages in {queues} queues from {} journal segment(s), {:.1} MB, in {} ms",
            recovered.segments,
            recovered.bytes as f64 / 1e6,
            recovered.elapsed_ms
        );
        Ok(b)
    }

    fn build(config: BrokerConfig, store: Option<Store>) -> Arc<Self> {
        let auth = Auth::default();
        auth.set_loopback_users(config.loopback_users.clone());
        Arc::new_cyclic(|me| Broker {
            config,
            auth,
            vhosts: RwLock::new(HashMap::new()),
            next_connection_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            paused: watch::channel(None).0,
            caught_up: watch::channel(true).0,
            reply_targets: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            store,
            alarms: Arc::new(watch::channel(Vec::new()).0),
            loading: AtomicBool::new(false),
            metadata: OnceLock::new(),
            cluster_state: Mutex::new(None),
            forward_links: Default::default(),
            remote_stats: Default::default(),
            placement_wake: tokio::sync::Notify::new(),
            me: me.clone(),
        })
    }

    /// First start: the default vhost and user, as RabbitMQ creates them.
    fn add_defaults(&self) {
        let c = &self.config;
        self.auth
            .add_user(&c.default_user, &c.default_pass, &["administrator"]);
        self.auth.set_permissions(
            &c.default_user,
            &c.default_vhost,
            Permission::new(".*", ".*", ".*").expect("literal regex"),
        );
        self.add_vhost(&c.default_vhost);
    }

    /// Starts the resource alarm monitor (call once, inside the runtime).
    pub fn start_alarm_monitor(&self) {
        tokio::spawn(crate::alarm::monitor(
            self.config.alarms.clone(),
            self.config.data_dir.clone(),
            self.alarms.clone(),
        ));
    }

    /// Alarms in effect, as they change.
    pub fn alarms(&self) -> watch::Receiver<crate::alarm::Alarms> {
        self.alarms.subscribe()
    }

    /// The message journal (with durable storage).
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.store.as_ref().map(|s| &s.journal)
    }

    /// Writes the definitions file (durable metadata changed). Failures are logged: the
    /// change stays in memory and is retried with the next one.
    pub fn persist_definitions(&self) {
        let Some(store) = &self.store else { return };
        if self.loading.load(Ordering::Relaxed) {
            return;
        }
        let _one_writer = store.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let state = self.cluster_state();
        // A cluster member keeps everything the cluster agrees on (transient objects too),
        // so that its metadata after a restart matches its recorded Raft position.
        let mut doc = if state.is_some() {
            crate::definitions::export_cluster(self)
        } else {
            crate::definitions::export(self)
        };
        if let Some(state) = state {
            doc[CLUSTER_STATE_KEY] = state;
        }
        let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        if let Err(e) = warren_store::definitions::write_atomic(&store.definitions, &bytes) {
            tracing::error!("cannot write {}: {e}", store.definitions.display());
        }
    }

    /// Holds definition writes back while a batch of metadata changes is applied, so the
    /// batch costs one atomic write (`release_persist`) instead of one per change.
    pub fn hold_persist(&self) {
        self.loading.store(true, Ordering::Release);
    }

    /// Ends `hold_persist` and writes the definitions once.
    pub fn release_persist(&self) {
        self.loading.store(false, Ordering::Release);
        self.persist_definitions();
    }

    /// Joins this broker to a cluster's metadata group: from now on changes go through it.
    /// Queues loaded before this (recovered at start) start keeping what their mirrors
    /// need, mirrors recorded in the definitions reconnect, and this node takes part in
    /// deciding placement and watching mirrors.
    pub fn set_metadata(self: &Arc<Self>, m: Arc<dyn crate::metadata::Metadata>) {
        if self.metadata.set(m).is_err() {
            return;
        }
        for q in self.all_queues() {
            q.enable_shipping();
            if !q.is_standin() {
                continue;
            }
            if q.placement().mirrors.contains(&self.config.node_name) {
                crate::replication::follower::ensure(self, &q);
            } else {
                q.drop_replica();
            }
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(crate::replication::placement::reconcile(Arc::downgrade(
                self,
            )));
            tokio::spawn(crate::replication::leader::watch_lag(Arc::downgrade(self)));
        }
    }

    /// Makes queue placement look again now (a member was just seen down).
    pub fn wake_placement(&self) {
        self.placement_wake.notify_one();
    }

    pub(crate) async fn placement_woken(&self, max: std::time::Duration) {
        let _ = tokio::time::timeout(max, self.placement_wake.notified()).await;
    }

    /// The counts of the queues led here, for the other nodes' listings.
    pub fn led_queue_stats(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for q in self.all_queues().iter().filter(|q| !q.is_standin()) {
            m.insert(
                format!("{}\0{}", q.vhost, q.name),
                serde_json::json!([q.message_count(), q.unacked_count(), q.consumer_count()]),
            );
        }
        serde_json::Value::Object(m)
    }

    pub fn merge_remote_stats(&self, stats: &serde_json::Value) {
        let Some(m) = stats.as_object() else { return };
        let mut all = self.remote_stats.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in m {
            let n = |i: usize| v.get(i).and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
            all.insert(k.clone(), (n(0), n(1), n(2)));
        }
    }

    /// A queue's (ready, unacked, consumers) as listings show them: its leader's numbers,
    /// wherever it is listed.
    pub fn listed_counts(&self, q: &crate::queue::Queue) -> (usize, usize, usize) {
        let local = (q.message_count(), q.unacked_count(), q.consumer_count());
        if !q.is_standin() {
            return local;
        }
        let key = format!("{}\0{}", q.vhost, q.name);
        self.remote_stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(local)
    }

    /// Every queue of every vhost.
    pub fn all_queues(&self) -> Vec<Arc<crate::queue::Queue>> {
        let mut all = Vec::new();
        for name in self.vhost_names() {
            if let Some(v) = self.vhost(&name) {
                all.extend(v.read().queues.values().cloned());
            }
        }
        all
    }

    pub fn metadata(&self) -> Option<&Arc<dyn crate::metadata::Metadata>> {
        self.metadata.get()
    }

    /// Whether metadata changes must go through the cluster.
    pub fn clustered(&self) -> bool {
        self.metadata.get().is_some()
    }

    /// The metadata group's state as last persisted with the definitions.
    pub fn cluster_state(&self) -> Option<serde_json::Value> {
        self.cluster_state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the metadata group's state; written with the next `persist_definitions`.
    pub fn set_cluster_state(&self, state: Option<serde_json::Value>) {
        *self.cluster_state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<Vhost>> {
        self.vhosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn add_vhost(&self, name: &str) -> Arc<Vhost> {
        self.vhosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Vhost::new(name, self.me.clone()))
            .clone()
    }

    /// Deletes a vhost with everything in it. Returns false if it did not exist.
    pub fn delete_vhost(&self, name: &str) -> bool {
        let Some(v) = self
            .vhosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
        else {
            return false;
        };
        let queues: Vec<_> = v.read().queues.values().cloned().collect();
        for q in queues {
            v.delete_queue(&q);
        }
        for (user, vh, _) in self.auth.permissions() {
            if vh == name {
                self.auth.clear_permissions(&user, &vh);
            }
        }
        self.persist_definitions();
        true
    }

    pub fn vhost_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .vhosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_connection(&self, info: ConnectionInfo) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(info.id, info);
    }

    pub(crate) fn unregister_connection(&self, id: u64) {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut v: Vec<ConnectionInfo> = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub(crate) fn register_reply_target(&self, token: &str, target: ReplyTarget) {
        self.reply_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), target);
    }

    pub(crate) fn unregister_reply_target(&self, token: &str) {
        self.reply_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    pub(crate) fn reply_target(&self, token: &str) -> Option<ReplyTarget> {
        self.reply_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }

    /// Tells every connection to close with 320 CONNECTION_FORCED.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Stops serving clients for `reason` (connections closed with 320, new ones refused),
    /// or resumes with `None`.
    pub fn set_paused(&self, reason: Option<String>) {
        self.paused.send_if_modified(|p| {
            let changed = *p != reason;
            *p = reason;
            changed
        });
    }

    pub fn paused(&self) -> watch::Receiver<Option<String>> {
        self.paused.subscribe()
    }

    /// Whether this node has applied the cluster's metadata since it (re)started.
    pub fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.send_if_modified(|c| {
            let changed = *c != caught_up;
            *c = caught_up;
            changed
        });
    }

    /// Waits (at most `max`) until the node has caught up; false if it has not.
    pub async fn wait_caught_up(&self, max: std::time::Duration) -> bool {
        let mut rx = self.caught_up.subscribe();
        tokio::time::timeout(max, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn connection_count(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
