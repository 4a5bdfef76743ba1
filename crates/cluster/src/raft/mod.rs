//! The metadata Raft group (openraft): its type configuration and the pieces openraft asks
//! an application for — log storage (`log_store`, in redb), the state machine (`state_machine`,
//! the broker's metadata) and the network (`network`, the cookie-authenticated cluster port).

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warren_broker::metadata::{MetaOp, MetaResult};

/// One entry of the metadata log.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub enum Command {
    /// A broker metadata change, applied by every node.
    Meta(MetaOp),
    /// `warren ctl set_cluster_name`.
    SetClusterName(String),
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Meta(op) => write!(f, "{op:?}"),
            Command::SetClusterName(n) => write!(f, "set_cluster_name {n}"),
        }
    }
}

/// A cluster member: its node name and the address of its cluster port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub name: String,
    pub addr: String,
    /// The node's AMQP port (its host is the one in `addr`).
    #[serde(default)]
    pub amqp_port: u16,
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = MetaResult,
        NodeId = u64,
        Node = Peer,
);

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// A node's Raft id: stable for its name, so a restarted or re-joining node keeps it.
pub fn node_id(name: &str) -> u64 {
    let d = Sha256::digest(name.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")) >> 1
}

pub fn io_err(e: impl fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}
