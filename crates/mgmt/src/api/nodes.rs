//! `/api/nodes` and `/api/nodes/{name}`: this node as RabbitMQ's node object (memory, disk,
//! file descriptors, sockets, uptime, partitions, listeners), and every other cluster member,
//! running or not, with what this node knows of it (name, type, running).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use warren_broker::alarm;
use warren_broker::Broker;

use crate::auth::{ApiError, User};
use crate::node::{NodeInfo, ProcessStats};

/// The exchange types this node routes, as `exchange_types` lists them.
pub const EXCHANGE_TYPES: [(&str, &str); 5] = [
    (
        "direct",
        "AMQP direct exchange, as per the AMQP specification",
    ),
    (
        "fanout",
        "AMQP fanout exchange, as per the AMQP specification",
    ),
    (
        "topic",
        "AMQP topic exchange, as per the AMQP specification",
    ),
    (
        "headers",
        "AMQP headers exchange, as per the AMQP specification",
    ),
    ("x-delayed-message", "Delayed Message Exchange"),
];

pub fn exchange_types() -> Vec<Value> {
    EXCHANGE_TYPES
        .iter()
        .map(|(name, description)| json!({"name": name, "description": description, "enabled": true}))
        .collect()
}

fn node_json(b: &Broker, info: &NodeInfo) -> Value {
    let name = &b.config.node_name;
    let alarms = b.alarms().borrow().clone();
    let ps = ProcessStats::read();
    let disk_free = b
        .config
        .data_dir
        .as_deref()
        .and_then(alarm::disk_free_bytes)
        .or_else(|| alarm::disk_free_bytes(std::path::Path::new("/")));
    json!({
        "name": name,
        "type": "disc",
        "running": true,
        "os_pid": std::process::id().to_string(),
        "mem_used": alarm::resident_bytes(),
        "mem_limit": b.config.alarms.memory_limit(),
        "mem_alarm": alarms.contains(&alarm::MEMORY),
        "disk_free": disk_free,
        "disk_free_limit": b.config.alarms.disk_free_limit,
        "disk_free_alarm": alarms.contains(&alarm::DISK),
        "fd_used": ps.fd_used,
        "fd_total": ps.fd_total,
        "sockets_used": ps.sockets_used,
        "sockets_total": ps.fd_total,
        "proc_used": ps.threads,
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "uptime": info.started.elapsed().as_millis() as u64,
        "partitions": b.metadata().map_or_else(Vec::new, |m| m.view().partitions),
        "cluster_links": [],
        "being_drained": false,
        "rates_mode": "basic",
        "net_ticktime": 60,
        "exchange_types": exchange_types(),
        "listeners": info.listeners_json(name),
        "db_dir": b.config.data_dir.as_ref().map(|d| d.display().to_string()),
        "enabled_plugins": ["rabbitmq_management", "rabbitmq_prometheus"],
    })
}

pub async fn list(
    State(b): State<Arc<Broker>>,
    Extension(info): Extension<Arc<NodeInfo>>,
    _u: User,
) -> Json<Vec<Value>> {
    let mut nodes = vec![node_json(&b, &info)];
    if let Some(m) = b.metadata() {
        for (name, running) in m.view().members {
            if name != b.config.node_name {
                nodes.push(peer_json(&name, running));
            }
        }
    }
    nodes.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
    Json(nodes)
}

/// Another cluster member: what this node knows without asking it.
fn peer_json(name: &str, running: bool) -> Value {
    json!({"name": name, "type": "disc", "running": running, "partitions": [],
           "exchange_types": exchange_types(), "rates_mode": "basic"})
}

pub async fn show(
    State(b): State<Arc<Broker>>,
    Extension(info): Extension<Arc<NodeInfo>>,
    _u: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if name == b.config.node_name {
        return Ok(Json(node_json(&b, &info)));
    }
    let peer = b
        .metadata()
        .and_then(|m| m.view().members.into_iter().find(|(n, _)| *n == name));
    match peer {
        Some((n, running)) => Ok(Json(peer_json(&n, running))),
        None => Err(ApiError::not_found()),
    }
}
