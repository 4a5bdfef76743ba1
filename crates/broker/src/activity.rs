//! What is live on this node right now — connections, channels and consumers — as plain
//! snapshots, named the way RabbitMQ names them (connection `"peer -> local"`, channel
//! `"peer -> local (N)"`, pids `<node.id.channel>`), so that `warren ctl list_*` and the
//! management API show the same objects under the same names.
//!
//! Snapshots are taken without stopping anything: a connection that closes while a listing
//! is built may still appear in it, as in RabbitMQ.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::broker::{Broker, ConnectionInfo};
use crate::channel::link::ChannelLink;

/// An address as RabbitMQ shows it: IPv4 clients of a dual-stack listener appear as IPv4.
pub fn host(addr: &SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

impl ConnectionInfo {
    /// RabbitMQ's connection name, e.g. `127.0.0.1:50412 -> 127.0.0.1:5672`.
    pub fn name(&self) -> String {
        let show = |a: &SocketAddr| SocketAddr::new(host(a), a.port()).to_string();
        format!("{} -> {}", show(&self.peer), show(&self.local))
    }

    /// A pid-like identifier (`<node.id>`), what rabbitmqctl prints in `pid` columns.
    pub fn pid(&self, node: &str) -> String {
        format!("<{node}.{}>", self.id)
    }
}

/// One open channel.
pub struct ChannelInfo {
    pub connection: ConnectionInfo,
    pub number: u16,
    pub consumer_count: usize,
    pub messages_unacknowledged: usize,
    /// Per-consumer prefetch (`basic.qos global=false`).
    pub prefetch_count: u32,
    /// Channel-wide prefetch (`basic.qos global=true`).
    pub global_prefetch_count: u32,
    pub confirm: bool,
    pub transactional: bool,
}

/// RabbitMQ's channel name, e.g. `127.0.0.1:50412 -> 127.0.0.1:5672 (1)`.
fn channel_name(c: &ConnectionInfo, number: u16) -> String {
    format!("{} ({number})", c.name())
}

fn channel_pid(c: &ConnectionInfo, node: &str, number: u16) -> String {
    format!("<{node}.{}.{number}>", c.id)
}

impl ChannelInfo {
    pub fn name(&self) -> String {
        channel_name(&self.connection, self.number)
    }

    pub fn pid(&self, node: &str) -> String {
        channel_pid(&self.connection, node, self.number)
    }
}

/// One consumer, with the channel it consumes on.
pub struct ConsumerInfo {
    pub vhost: String,
    pub queue: String,
    pub tag: String,
    pub ack_required: bool,
    pub exclusive: bool,
    pub prefetch_count: u32,
    /// `x-priority` (0 when not given).
    pub priority: i64,
    pub connection: ConnectionInfo,
    pub channel: u16,
}

impl ConsumerInfo {
    pub fn channel_name(&self) -> String {
        channel_name(&self.connection, self.channel)
    }

    pub fn channel_pid(&self, node: &str) -> String {
        channel_pid(&self.connection, node, self.channel)
    }
}

/// Channel links by address, with their connection: how a queue's consumer is traced back
/// to the channel and connection it belongs to.
fn links(b: &Broker) -> HashMap<*const ChannelLink, (ConnectionInfo, Arc<ChannelLink>)> {
    let mut out = HashMap::new();
    for c in b.connections() {
        for l in c.live.channels() {
            out.insert(Arc::as_ptr(&l), (c.clone(), l));
        }
    }
    out
}

impl Broker {
    /// The connection with this name (as `ConnectionInfo::name`) or pid.
    pub fn connection_named(&self, name: &str) -> Option<ConnectionInfo> {
        let node = &self.config.node_name;
        self.connections()
            .into_iter()
            .find(|c| c.name() == name || c.pid(node) == name)
    }

    /// Every open channel, by connection then channel number.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let mut consumers: HashMap<*const ChannelLink, usize> = HashMap::new();
        for vh in self.vhost_names() {
            let Some(v) = self.vhost(&vh) else { continue };
            for q in v.read().queues.values() {
                for c in q.consumers() {
                    *consumers.entry(Arc::as_ptr(&c.link)).or_default() += 1;
                }
            }
        }
        let mut out = Vec::new();
        for c in self.connections() {
            for l in c.live.channels() {
                let st = l.state();
                out.push(ChannelInfo {
                    connection: c.clone(),
                    number: l.id,
                    consumer_count: consumers.get(&Arc::as_ptr(&l)).copied().unwrap_or(0),
                    messages_unacknowledged: st.unacked.len(),
                    prefetch_count: st.prefetch_count,
                    global_prefetch_count: st.global_prefetch,
                    confirm: st.confirm,
                    transactional: st.transactional,
                });
            }
        }
        out
    }

    /// Every consumer, by vhost, queue and registration order. Consumers whose channel has
    /// just closed are left out.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        let links = links(self);
        let mut out = Vec::new();
        for vh in self.vhost_names() {
            let Some(v) = self.vhost(&vh) else { continue };
            let mut queues: Vec<_> = v.read().queues.values().cloned().collect();
            queues.sort_by(|a, b| a.name.cmp(&b.name));
            for q in queues {
                let mut cs = q.consumers();
                cs.sort_by_key(|c| c.seq);
                for c in cs {
                    let Some((conn, link)) = links.get(&Arc::as_ptr(&c.link)) else {
                        continue;
                    };
                    out.push(ConsumerInfo {
                        vhost: vh.clone(),
                        queue: q.name.clone(),
                        tag: c.tag.clone(),
                        ack_required: !c.no_ack,
                        exclusive: c.exclusive,
                        prefetch_count: c.prefetch,
                        priority: c.priority,
                        connection: conn.clone(),
                        channel: link.id,
                    });
                }
            }
        }
        out
    }
}
