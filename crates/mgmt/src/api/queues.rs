//! `/api/queues`: list, show, declare and delete queues, purge them (`/contents`), get
//! messages (`/get`) and the queue actions (`/actions`: `sync`, `cancel_sync`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_broker::metadata::MetaOp;
use warren_broker::queue::remote::{Answer, Request};
use warren_broker::queue::Queue;
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use super::{all_vhosts, vhost};
use crate::auth::{ApiError, User};
use warren_broker::json;

fn to_json(b: &Broker, v: &Vhost, q: &Queue) -> Value {
    let (ready, unacked, consumers) = b.listed_counts(q);
    let policy = q.policy();
    let effective = policy
        .as_ref()
        .and_then(|p| v.policies().into_iter().find(|x| &x.name == p))
        .map_or(json!({}), |p| p.definition);
    let r = warren_broker::replication::status(b, q);
    let mut members = vec![r.leader.clone()];
    members.extend(r.mirrors.iter().cloned());
    let mut item = json!({
        "name": q.name,
        "vhost": q.vhost,
        "type": r.queue_type,
        "durable": q.durable,
        "auto_delete": q.auto_delete,
        "exclusive": q.exclusive_owner.is_some(),
        "arguments": json::table(&q.arguments),
        "node": q.home_node(b),
        "policy": policy,
        "effective_policy_definition": effective,
        "state": if r.syncing { "syncing" } else { "running" },
        "slave_nodes": r.mirrors,
        "synchronised_slave_nodes": r.in_sync,
        "recoverable_slaves": r.mirrors,
        "leader": r.leader,
        "members": members,
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "consumers": consumers,
    });
    if let Some(n) = r.sync_messages {
        item["sync_messages"] = json!(n);
    }
    item
}

fn list(b: &Broker, vhosts: &[Arc<Vhost>]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in vhosts {
        let mut qs: Vec<Arc<Queue>> = v.read().queues.values().cloned().collect();
        qs.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(qs.iter().map(|q| to_json(b, v, q)));
    }
    out
}

pub async fn list_all(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(list(&b, &all_vhosts(&b)))
}

pub async fn list_vhost(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(list(&b, &[vhost(&b, &vh)?])))
}

pub async fn show(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = vhost(&b, &vh)?;
    let q = v.queue(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(to_json(&b, &v, &q)))
}

pub async fn declare(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    vhost(&b, &vh)?;
    let req = super::json_body(&body)?;
    let arguments = req.get("arguments").cloned().unwrap_or(json!({}));
    // RabbitMQ's API takes the leader's node too; otherwise the locator decides.
    let home = req
        .get("node")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            warren_broker::replication::placement::locate(&b, &vh, &name, &arguments, false)
        });
    let reply = super::submit(
        &b,
        MetaOp::DeclareQueue {
            vhost: vh,
            name,
            durable: super::flag(&req, "durable", true),
            auto_delete: super::flag(&req, "auto_delete", false),
            exclusive_owner: None,
            arguments,
            home,
            server_named: false,
        },
    )
    .await?;
    Ok(if reply.created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

pub async fn delete(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    let v = vhost(&b, &vh)?;
    let queue = v.queue(&name).ok_or_else(ApiError::not_found)?;
    if q.get("if-empty").is_some_and(|x| x == "true") && queue.message_count() > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' not empty"
        )));
    }
    if q.get("if-unused").is_some_and(|x| x == "true") && queue.consumer_count() > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{vh}' in use"
        )));
    }
    super::submit(&b, MetaOp::DeleteQueue { vhost: vh, name }).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn purge(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let v = vhost(&b, &vh)?;
    let q = v.queue(&name).ok_or_else(ApiError::not_found)?;
    match q.remote_link() {
        Some(link) => {
            link.request(&q, Request::Purge)
                .await
                .map_err(ApiError::bad_request)?;
        }
        None => {
            q.purge();
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../get`: the UI's "Get messages" and `rabbitmqadmin get`. `ackmode`
/// `ack_requeue_true`/`reject_requeue_true` put the messages back (redelivered), the
/// `..._false` modes remove them.
pub async fn get_messages(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<Json<Vec<Value>>, ApiError> {
    use base64::Engine;
    let v = vhost(&b, &vh)?;
    let q = v.queue(&name).ok_or_else(ApiError::not_found)?;
    let req = super::json_body(&body)?;
    let count = match req.get("count") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(1),
        Some(Value::String(s)) => s.parse().unwrap_or(1),
        _ => 1,
    };
    let ackmode = req
        .get("ackmode")
        .and_then(Value::as_str)
        .unwrap_or("ack_requeue_true");
    let requeue = ackmode.ends_with("requeue_true");
    let encoding = req
        .get("encoding")
        .and_then(Value::as_str)
        .unwrap_or("auto");
    let mut out = Vec::new();
    let mut taken = Vec::new();
    for _ in 0..count {
        let got = match q.remote_link() {
            // Another node's queue: its home node hands over the next message.
            Some(link) => match link.request(&q, Request::Get).await {
                Ok(Answer::Message(e)) => {
                    let left = q.adopt(&e, !requeue);
                    Some((e, left))
                }
                Ok(Answer::Count(_)) => None,
                Err(e) => return Err(ApiError::bad_request(e)),
            },
            None => q.get(!requeue),
        };
        let Some((entry, left)) = got else {
            break;
        };
        let m = &entry.msg;
        let text = std::str::from_utf8(&m.body)
            .ok()
            .filter(|_| encoding == "auto");
        let (payload, payload_encoding) = match text {
            Some(t) => (t.to_string(), "string"),
            None => (
                base64::engine::general_purpose::STANDARD.encode(&m.body),
                "base64",
            ),
        };
        let mut props = serde_json::Map::new();
        if let Some(d) = m.properties.delivery_mode() {
            props.insert("delivery_mode".into(), json!(d));
        }
        if let Some(h) = m.properties.headers() {
            props.insert("headers".into(), json::table(h));
        }
        if let Some(c) = m.properties.content_type() {
            props.insert("content_type".into(), json!(c.as_str()));
        }
        out.push(json!({
            "payload": payload, "payload_bytes": m.body.len(), "payload_encoding": payload_encoding,
            "redelivered": entry.redelivered, "exchange": m.exchange, "routing_key": m.routing_key,
            "message_count": left, "properties": props,
        }));
        taken.push(entry);
    }
    if requeue && !taken.is_empty() {
        q.requeue(taken);
    }
    Ok(Json(out))
}

/// `POST .../actions` with `{"action":"sync"}` or `{"action":"cancel_sync"}` (the queue
/// page's Synchronise / Cancel buttons, `sync_queue` / `cancel_sync_queue`). 204 like
/// RabbitMQ: the leader's node starts (or stops) the catch-up of unsynchronised mirrors in
/// the background.
pub async fn actions(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    let v = vhost(&b, &vh)?;
    v.queue(&name).ok_or_else(ApiError::not_found)?;
    let req = super::json_body(&body)?;
    match req.get("action").and_then(Value::as_str) {
        Some(action @ ("sync" | "cancel_sync")) => {
            let op = warren_broker::metadata::MetaOp::SyncQueue {
                vhost: vh,
                name,
                cancel: action == "cancel_sync",
            };
            super::submit(&b, op).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "{{unknown,<<\"{other}\">>}}"
        ))),
        None => Err(ApiError::bad_request("[{action,not_found}]")),
    }
}
