//! One node's broker: its vhosts, users, live connections and shutdown signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

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
}

pub struct Broker {
    pub config: BrokerConfig,
    pub auth: Auth,
    vhosts: RwLock<HashMap<String, Arc<Vhost>>>,
    next_connection_id: AtomicU64,
    connections: Mutex<HashMap<u64, ConnectionInfo>>,
    shutdown: watch::Sender<bool>,
    /// Direct reply-to consumers by token.
    reply_targets: Mutex<HashMap<String, ReplyTarget>>,
}

impl Broker {
    pub fn new(config: BrokerConfig) -> Arc<Self> {
        let auth = Auth::default();
        auth.add_user(
            &config.default_user,
            &config.default_pass,
            &["administrator"],
        );
        auth.set_loopback_users(config.loopback_users.clone());
        auth.set_permissions(
            &config.default_user,
            &config.default_vhost,
            Permission::new(".*", ".*", ".*").expect("literal regex"),
        );
        let mut vhosts = HashMap::new();
        vhosts.insert(
            config.default_vhost.clone(),
            Vhost::new(&config.default_vhost),
        );
        Arc::new(Broker {
            config,
            auth,
            vhosts: RwLock::new(vhosts),
            next_connection_id: AtomicU64::new(1),
            connections: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            reply_targets: Mutex::new(HashMap::new()),
        })
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
            .or_insert_with(|| Vhost::new(name))
            .clone()
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
