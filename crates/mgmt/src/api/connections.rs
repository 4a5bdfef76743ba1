//! `/api/connections`, `/api/channels` and `/api/consumers` (and their per-vhost variants):
//! what clients are doing on this node right now, with RabbitMQ's object names and fields,
//! and `DELETE /api/connections/{name}`, which closes a connection with 320
//! CONNECTION_FORCED and the `X-Reason` header as reply text.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};
use warren_broker::activity::{host, ChannelInfo, ConsumerInfo};
use warren_broker::broker::ConnectionInfo;
use warren_broker::{json, Broker};

use super::vhost;
use crate::auth::{ApiError, User};

/// The reply text when `X-Reason` is not given, as RabbitMQ's management plugin words it.
const DEFAULT_REASON: &str = "Closed via management plugin";

fn connection_json(b: &Broker, c: &ConnectionInfo) -> Value {
    let connected_at = c
        .connected_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    json!({
        "name": c.name(),
        "node": b.config.node_name,
        "vhost": c.vhost,
        "user": c.user,
        "user_who_performed_action": c.user,
        "state": "running",
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "ssl": false,
        "peer_host": host(&c.peer).to_string(),
        "peer_port": c.peer.port(),
        "host": host(&c.local).to_string(),
        "port": c.local.port(),
        "channels": c.live.channels().len(),
        "channel_max": c.channel_max,
        "frame_max": c.frame_max,
        "timeout": c.heartbeat,
        "connected_at": connected_at,
        "client_properties": json::table(&c.client_properties),
    })
}

fn channel_json(b: &Broker, ch: &ChannelInfo) -> Value {
    let c = &ch.connection;
    json!({
        "name": ch.name(),
        "number": ch.number,
        "node": b.config.node_name,
        "vhost": c.vhost,
        "user": c.user,
        "state": "running",
        "consumer_count": ch.consumer_count,
        "messages_unacknowledged": ch.messages_unacknowledged,
        "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "confirm": ch.confirm,
        "transactional": ch.transactional,
        "connection_details": {
            "name": c.name(),
            "peer_host": host(&c.peer).to_string(),
            "peer_port": c.peer.port(),
        },
    })
}

fn consumer_json(b: &Broker, co: &ConsumerInfo) -> Value {
    let c = &co.connection;
    let arguments = if co.priority != 0 {
        json!({"x-priority": co.priority})
    } else {
        json!({})
    };
    json!({
        "consumer_tag": co.tag,
        "queue": {"name": co.queue, "vhost": co.vhost},
        "channel_details": {
            "name": co.channel_name(),
            "number": co.channel,
            "connection_name": c.name(),
            "peer_host": host(&c.peer).to_string(),
            "peer_port": c.peer.port(),
            "user": c.user,
            "node": b.config.node_name,
        },
        "ack_required": co.ack_required,
        "exclusive": co.exclusive,
        "prefetch_count": co.prefetch_count,
        "active": true,
        "activity_status": "up",
        "arguments": arguments,
    })
}

fn connections(b: &Broker, vh: Option<&str>) -> Vec<Value> {
    b.connections()
        .iter()
        .filter(|c| vh.is_none_or(|v| c.vhost == v))
        .map(|c| connection_json(b, c))
        .collect()
}

fn channels(b: &Broker, pick: impl Fn(&ChannelInfo) -> bool) -> Vec<Value> {
    b.channels()
        .iter()
        .filter(|c| pick(c))
        .map(|c| channel_json(b, c))
        .collect()
}

fn consumers(b: &Broker, vh: Option<&str>) -> Vec<Value> {
    b.consumers()
        .iter()
        .filter(|c| vh.is_none_or(|v| c.vhost == v))
        .map(|c| consumer_json(b, c))
        .collect()
}

pub async fn list_connections(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(connections(&b, None))
}

pub async fn list_vhost_connections(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    vhost(&b, &vh)?;
    Ok(Json(connections(&b, Some(&vh))))
}

pub async fn show_connection(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let c = b.connection_named(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(connection_json(&b, &c)))
}

/// Closes the connection: the client gets `connection.close` with 320 CONNECTION_FORCED and
/// `X-Reason` (or RabbitMQ's default text) as the reason.
pub async fn close_connection(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let c = b.connection_named(&name).ok_or_else(ApiError::not_found)?;
    let reason = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .filter(|r| !r.is_empty())
        .unwrap_or(DEFAULT_REASON);
    tracing::info!(
        "closing connection {name} at the request of user '{}': {reason}",
        u.name
    );
    c.live.close(reason);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn connection_channels(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(name): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let c = b.connection_named(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(channels(&b, |ch| ch.connection.id == c.id)))
}

pub async fn list_channels(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(channels(&b, |_| true))
}

pub async fn list_vhost_channels(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    vhost(&b, &vh)?;
    Ok(Json(channels(&b, |ch| ch.connection.vhost == vh)))
}

pub async fn show_channel(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    channels(&b, |ch| ch.name() == name)
        .pop()
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

pub async fn list_consumers(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(consumers(&b, None))
}

pub async fn list_vhost_consumers(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    vhost(&b, &vh)?;
    Ok(Json(consumers(&b, Some(&vh))))
}
