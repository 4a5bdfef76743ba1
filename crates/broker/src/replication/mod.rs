//! Mirrored queues across the cluster: RabbitMQ's `ha-*` policy surface on log shipping
//! with an in-sync set kept in the metadata Raft group (DESIGN §5).
//!
//! - `placement`: which nodes hold a queue (from the policy), and failover; decided by the
//!   metadata leader and committed as `MetaOp`s, so every node sees the same placement.
//! - `leader`: the home node's end of each mirror's link (catch-up, live stream, acks,
//!   dropping a lagging mirror from the in-sync set before confirming without it).
//! - `follower`: a mirror's end: connects to the leader, stores what it ships, acknowledges
//!   once it is on disk.
//! - `wire`: the link's framing.
//!
//! Guarantee: a publisher confirm for a mirrored queue means the message is on the disk of
//! every replica in the committed in-sync set, and only an in-sync replica is promoted
//! (unless the policy says `always`), so a failover loses no confirmed message.

pub mod follower;
pub mod leader;
pub mod placement;
pub mod wire;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::queue::Queue;

/// The first bytes of a replication link on the AMQP port (where an AMQP client sends
/// `AMQP\0\0\9\1`).
pub const HEADER: &[u8; 8] = b"WRPL\0\0\0\x01";

/// A queue's copies, as committed in the metadata group.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Placement {
    /// Nodes holding a mirror (not the leader).
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Mirrors that hold every confirmed message (confirms wait for them).
    #[serde(default)]
    pub in_sync: Vec<String>,
    /// Bumped at each promotion; changes proposed for an older epoch are refused.
    #[serde(default)]
    pub epoch: u64,
}

/// Puts a committed placement into effect on this node: promotion or demotion, the leader's
/// in-sync set, starting or stopping this node's mirror.
pub fn apply(b: &Arc<Broker>, q: &Arc<Queue>, home: &str, p: Placement) {
    let me = b.config.node_name.clone();
    let was_home = !q.is_standin();
    let mirror_here = p.mirrors.contains(&me);
    let failover = q.placement().epoch != p.epoch && p.epoch > 0;
    q.set_placement(p.clone());
    if failover {
        q.cancel_failover_consumers();
    }
    if home == me {
        if !was_home {
            let policy = b.vhost(&q.vhost).and_then(|v| v.policy_for(&q.name, true));
            tracing::info!(
                "queue '{}' in vhost '{}': promoted on this node (epoch {}), {} messages",
                q.name,
                q.vhost,
                p.epoch,
                q.replica_len()
            );
            q.become_home(p.epoch, policy);
        }
        q.set_in_sync(&p.in_sync);
        return;
    }
    if q.home().as_deref() != Some(home) {
        q.become_standin(home, mirror_here);
    }
    if mirror_here {
        follower::ensure(b, q);
    } else {
        q.drop_replica();
    }
}

/// A queue's replication as listings show it (`slave_nodes`, `synchronised_slave_nodes`,
/// `state`).
pub struct Status {
    pub leader: String,
    pub mirrors: Vec<String>,
    pub in_sync: Vec<String>,
    /// A catch-up is running (known on the leader's node).
    pub syncing: bool,
    /// On the leader's node: messages sent so far in the running catch-ups.
    pub sync_messages: Option<u64>,
    pub queue_type: &'static str,
}

pub fn status(b: &Broker, q: &Queue) -> Status {
    let p = q.placement();
    let progress: Vec<_> = q
        .mirror_links()
        .into_iter()
        .filter(|(_, _, _, caught_up)| !caught_up)
        .collect();
    let quorum = crate::args::get(&q.arguments, "x-queue-type")
        .and_then(crate::args::as_str)
        .as_deref()
        == Some("quorum");
    Status {
        leader: q.home_node(b),
        mirrors: p.mirrors,
        in_sync: p.in_sync,
        syncing: !progress.is_empty(),
        sync_messages: (!progress.is_empty()).then(|| progress.iter().map(|p| p.1).sum()),
        queue_type: if quorum { "quorum" } else { "classic" },
    }
}
