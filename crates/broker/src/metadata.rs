//! Metadata changes as values: every change to vhosts, users, permissions, policies,
//! exchanges, queues and bindings can be expressed as a `MetaOp` and applied with `apply`.
//!
//! On a single node the broker applies its changes directly. In a cluster each change is
//! proposed to the metadata Raft group (the `Metadata` implementation in `warren-cluster`)
//! and every node applies the committed sequence with the same `apply`, so all nodes hold
//! the same metadata. `apply` is deterministic: given the same state and op it gives the
//! same result on every node (the leader's result is what the client sees).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warren_amqp::reply::AmqpError;

use crate::auth::{Permission, User};
use crate::broker::Broker;
use crate::json;
use crate::policy::Policy;
use crate::vhost::{Binding, ExchangeSpec, QueueSpec};

/// One metadata change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MetaOp {
    AddVhost {
        name: String,
    },
    DeleteVhost {
        name: String,
    },
    PutUser {
        name: String,
        password_hash: String,
        tags: Vec<String>,
    },
    DeleteUser {
        name: String,
    },
    SetPermissions {
        user: String,
        vhost: String,
        configure: String,
        write: String,
        read: String,
    },
    ClearPermissions {
        user: String,
        vhost: String,
    },
    SetPolicy {
        vhost: String,
        name: String,
        pattern: String,
        apply_to: String,
        priority: i64,
        definition: Value,
    },
    ClearPolicy {
        vhost: String,
        name: String,
    },
    DeclareExchange {
        vhost: String,
        name: String,
        kind: String,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Value,
    },
    DeleteExchange {
        vhost: String,
        name: String,
        if_unused: bool,
    },
    DeclareQueue {
        vhost: String,
        name: String,
        durable: bool,
        auto_delete: bool,
        /// The declaring connection's id on the home node, for exclusive queues.
        exclusive_owner: Option<u64>,
        arguments: Value,
        /// The node that holds the queue's messages (`name@host`).
        home: String,
        server_named: bool,
    },
    /// Unconditional: `if-unused`/`if-empty` are checked by the proposer, which (on the
    /// queue's home node) is the only one that can see consumers and messages.
    DeleteQueue {
        vhost: String,
        name: String,
    },
    Bind(BindingOp),
    Unbind(BindingOp),
    /// A definitions document (RabbitMQ's format), merged as `import_definitions` does.
    Import {
        definitions: Value,
    },
    /// Every queue homed on `node` that does not survive its restart (non-durable,
    /// exclusive) is gone: proposed by a node when it starts.
    DropTransientQueuesOf {
        node: String,
    },
    /// Failover: `home` leads the queue from now on, in leader epoch `epoch` (proposed by
    /// the metadata leader, `replication::placement`).
    Promote {
        vhost: String,
        name: String,
        home: String,
        epoch: u64,
    },
    /// The nodes that hold mirrors of the queue.
    SetMirrors {
        vhost: String,
        name: String,
        mirrors: Vec<String>,
        epoch: u64,
    },
    /// `sync_queue` (or, with `cancel`, `cancel_sync_queue`): the leader's node acts on it.
    SyncQueue {
        vhost: String,
        name: String,
        cancel: bool,
    },
    /// A mirror joins or leaves the in-sync set (proposed by the queue's leader).
    MirrorSync {
        vhost: String,
        name: String,
        node: String,
        in_sync: bool,
        epoch: u64,
    },
}

/// A binding as a change names it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BindingOp {
    pub vhost: String,
    pub source: String,
    pub destination: String,
    pub destination_is_queue: bool,
    pub routing_key: String,
    pub arguments: Value,
}

impl BindingOp {
    pub fn new(vhost: &str, b: Binding) -> BindingOp {
        BindingOp {
            vhost: vhost.to_string(),
            source: b.source,
            destination: b.destination,
            destination_is_queue: b.destination_is_queue,
            routing_key: b.routing_key,
            arguments: json::table(&b.arguments),
        }
    }

    fn binding(&self) -> Binding {
        Binding {
            source: self.source.clone(),
            destination: self.destination.clone(),
            destination_is_queue: self.destination_is_queue,
            routing_key: self.routing_key.clone(),
            arguments: json::to_table(&self.arguments),
        }
    }
}

/// What a successful change reports back.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MetaReply {
    /// The object did not exist before (policies, users, vhosts: 201 vs 204 in the API).
    pub created: bool,
    /// Ready messages a deleted queue held (`queue.delete-ok`), as the home node saw them.
    pub message_count: u32,
    /// Import warnings.
    pub warnings: Vec<String>,
}

/// A change's outcome as it crosses the cluster: an AMQP reply code and text on failure.
pub type MetaResult = Result<MetaReply, (u16, String)>;

pub fn to_amqp(r: MetaResult) -> Result<MetaReply, AmqpError> {
    r.map_err(|(code, text)| AmqpError::new(code, text))
}

/// Where metadata changes go in a cluster.
pub trait Metadata: Send + Sync {
    /// Proposes `op`; resolves once it is committed and applied on this node.
    fn submit(&self, op: MetaOp) -> Pin<Box<dyn Future<Output = MetaResult> + Send>>;

    /// Where `node` accepts AMQP connections (for forwarding to the queues it holds).
    fn node_amqp_address(&self, node: &str) -> Option<(String, u16)>;

    /// Whether `node`'s broker application answered recently.
    fn node_is_up(&self, node: &str) -> bool;

    /// The cluster as this node sees it, for the management API.
    fn view(&self) -> ClusterView;

    /// Whether this node leads the metadata group (and so decides queue placement).
    fn is_leader(&self) -> bool;
}

/// The cluster's name, its members (name, application running) and whom this node cannot
/// reach while it lacks a majority (RabbitMQ's `partitions`).
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub name: String,
    pub members: Vec<(String, bool)>,
    pub partitions: Vec<String>,
}

/// Applies one change to this node's state. Errors are the AMQP errors a client sees.
pub fn apply(b: &Arc<Broker>, op: &MetaOp) -> MetaResult {
    apply_inner(b, op).map_err(|e| (e.code, e.text))
}

fn need_vhost(b: &Broker, name: &str) -> Result<Arc<crate::vhost::Vhost>, AmqpError> {
    b.vhost(name)
        .ok_or_else(|| AmqpError::new(warren_amqp::reply::NOT_FOUND, format!("no vhost '{name}'")))
}

fn created(created: bool) -> Result<MetaReply, AmqpError> {
    Ok(MetaReply {
        created,
        ..MetaReply::default()
    })
}

fn apply_inner(b: &Arc<Broker>, op: &MetaOp) -> Result<MetaReply, AmqpError> {
    match op {
        MetaOp::AddVhost { name } => {
            let existed = b.vhost(name).is_some();
            b.add_vhost(name);
            b.persist_definitions();
            created(!existed)
        }
        MetaOp::DeleteVhost { name } => created(b.delete_vhost(name)),
        MetaOp::PutUser {
            name,
            password_hash,
            tags,
        } => {
            let existed = b.auth.user(name).is_some();
            b.auth.put_user(User {
                name: name.clone(),
                password_hash: password_hash.clone(),
                tags: tags.clone(),
            });
            b.persist_definitions();
            created(!existed)
        }
        MetaOp::DeleteUser { name } => {
            let existed = b.auth.delete_user(name);
            b.persist_definitions();
            created(existed)
        }
        MetaOp::SetPermissions {
            user,
            vhost,
            configure,
            write,
            read,
        } => {
            let perm = Permission::new(configure, write, read)
                .map_err(|e| AmqpError::precondition(e.to_string()))?;
            b.auth.set_permissions(user, vhost, perm);
            b.persist_definitions();
            created(true)
        }
        MetaOp::ClearPermissions { user, vhost } => {
            let existed = b.auth.clear_permissions(user, vhost);
            b.persist_definitions();
            created(existed)
        }
        MetaOp::SetPolicy {
            vhost,
            name,
            pattern,
            apply_to,
            priority,
            definition,
        } => {
            let v = need_vhost(b, vhost)?;
            let p = Policy::new(
                vhost,
                name,
                pattern,
                apply_to,
                *priority,
                definition.clone(),
            )
            .map_err(AmqpError::precondition)?;
            created(v.set_policy(p))
        }
        MetaOp::ClearPolicy { vhost, name } => created(need_vhost(b, vhost)?.clear_policy(name)),
        MetaOp::DeclareExchange {
            vhost,
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
        } => {
            let v = need_vhost(b, vhost)?;
            let existed = v.exchange(name).is_some();
            v.declare_exchange(ExchangeSpec {
                name,
                kind,
                passive: false,
                durable: *durable,
                auto_delete: *auto_delete,
                internal: *internal,
                arguments: json::to_table(arguments),
            })?;
            created(!existed)
        }
        MetaOp::DeleteExchange {
            vhost,
            name,
            if_unused,
        } => {
            need_vhost(b, vhost)?.delete_exchange(name, *if_unused)?;
            created(false)
        }
        MetaOp::DeclareQueue {
            vhost,
            name,
            durable,
            auto_delete,
            exclusive_owner,
            arguments,
            home,
            server_named,
        } => {
            let v = need_vhost(b, vhost)?;
            let existed = v.queue(name).is_some();
            let local = *home == b.config.node_name;
            v.declare_queue(QueueSpec {
                name,
                passive: false,
                durable: *durable,
                exclusive_owner: *exclusive_owner,
                auto_delete: *auto_delete,
                arguments: json::to_table(arguments),
                // Only the home node knows its connections; elsewhere the owner check
                // must not fail a redeclaration that the home node accepted.
                connection_id: if local {
                    exclusive_owner.unwrap_or(0)
                } else {
                    0
                },
                server_named: *server_named,
                home: (!local).then(|| home.clone()),
            })?;
            created(!existed)
        }
        MetaOp::DeleteQueue { vhost, name } => {
            let v = need_vhost(b, vhost)?;
            let Some(q) = v.queue(name) else {
                return created(false);
            };
            let message_count = v.delete_queue(&q);
            Ok(MetaReply {
                created: true,
                message_count,
                warnings: Vec::new(),
            })
        }
        MetaOp::Bind(op) => {
            need_vhost(b, &op.vhost)?.bind(op.binding())?;
            created(true)
        }
        MetaOp::Unbind(op) => {
            need_vhost(b, &op.vhost)?.unbind(&op.binding())?;
            created(false)
        }
        MetaOp::Import { definitions } => {
            let warnings = crate::definitions::import(b, definitions)
                .map_err(|e| AmqpError::new(warren_amqp::reply::COMMAND_INVALID, e))?;
            b.persist_definitions();
            Ok(MetaReply {
                created: true,
                message_count: 0,
                warnings,
            })
        }
        MetaOp::SyncQueue {
            vhost,
            name,
            cancel,
        } => {
            let q = need_vhost(b, vhost)?
                .queue(name)
                .ok_or_else(|| AmqpError::not_found("queue", name, vhost))?;
            if !q.is_standin() {
                if *cancel {
                    q.cancel_sync();
                } else {
                    q.request_sync();
                }
            }
            created(false)
        }
        MetaOp::Promote { .. } | MetaOp::SetMirrors { .. } | MetaOp::MirrorSync { .. } => {
            crate::replication::placement::apply_op(b, op)?;
            created(true)
        }
        MetaOp::DropTransientQueuesOf { node } => {
            for name in b.vhost_names() {
                let Some(v) = b.vhost(&name) else { continue };
                let doomed: Vec<_> = v
                    .read()
                    .queues
                    .values()
                    .filter(|q| {
                        (!q.durable || q.exclusive_owner.is_some()) && q.home_node(b) == *node
                    })
                    .cloned()
                    .collect();
                for q in doomed {
                    v.delete_queue(&q);
                }
            }
            created(false)
        }
    }
}

impl Broker {
    /// Applies a change here (single node) or through the cluster's metadata group.
    pub async fn submit(self: &Arc<Self>, op: MetaOp) -> Result<MetaReply, AmqpError> {
        match self.metadata() {
            Some(m) => to_amqp(m.submit(op).await),
            None => to_amqp(apply(self, &op)),
        }
    }
}
