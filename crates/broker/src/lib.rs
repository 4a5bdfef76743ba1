//! One Warren node's messaging model: vhosts, users and permissions, exchanges and routing,
//! queues and consumers, and AMQP 0-9-1 connections and channels as state machines over the
//! `warren-amqp` codec.
//!
//! Data flow: a connection's reader splits frames and drives its channels; a publish is
//! routed through the exchange's routing snapshot to queues, which dispatch straight into the
//! consumers' connections (`connection::wire`), whose writer tasks batch frames into
//! vectored writes.

pub mod activity;
pub mod alarm;
pub mod args;
pub mod auth;
pub mod broker;
pub mod channel;
pub mod client;
pub mod connection;
pub mod definitions;
pub mod exchange;
pub mod json;
pub mod message;
pub mod metadata;
pub mod policy;
pub mod queue;
pub mod replication;
pub mod server;
pub mod vhost;

pub use broker::{Broker, BrokerConfig};
