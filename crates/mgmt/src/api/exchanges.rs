//! `/api/exchanges`: list, show, declare and delete exchanges, and publish through one.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_amqp::{BasicProperties, ShortString};
use warren_broker::exchange::Exchange;
use warren_broker::metadata::MetaOp;
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use super::{all_vhosts, vhost};
use crate::auth::{ApiError, User};
use warren_broker::json;

fn to_json(v: &Vhost, x: &Exchange) -> Value {
    json!({
        "name": x.name,
        "vhost": v.name,
        "type": x.type_name(),
        "durable": x.durable,
        "auto_delete": x.auto_delete,
        "internal": x.internal,
        "arguments": json::table(&x.arguments),
    })
}

fn list(vhosts: &[Arc<Vhost>]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in vhosts {
        let st = v.read();
        let mut xs: Vec<_> = st.exchanges.values().cloned().collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(xs.iter().map(|x| to_json(v, x)));
    }
    out
}

pub async fn show(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let v = vhost(&b, &vh)?;
    let x = v
        .exchange(super::exchange_name(&name))
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(to_json(&v, &x)))
}

pub async fn declare(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    vhost(&b, &vh)?;
    let req = super::json_body(&body)?;
    let reply = super::submit(
        &b,
        MetaOp::DeclareExchange {
            vhost: vh,
            kind: req
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("direct")
                .to_string(),
            name,
            durable: super::flag(&req, "durable", true),
            auto_delete: super::flag(&req, "auto_delete", false),
            internal: super::flag(&req, "internal", false),
            arguments: req.get("arguments").cloned().unwrap_or(json!({})),
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
) -> Result<StatusCode, ApiError> {
    let v = vhost(&b, &vh)?;
    v.exchange(&name).ok_or_else(ApiError::not_found)?;
    super::submit(
        &b,
        MetaOp::DeleteExchange {
            vhost: vh,
            name,
            if_unused: false,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../publish` (the UI's "Publish message", `rabbitmqadmin publish`): routes one
/// message and answers whether it reached a queue.
pub async fn publish(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<Json<Value>, ApiError> {
    use base64::Engine;
    let v = vhost(&b, &vh)?;
    let x = v
        .exchange(super::exchange_name(&name))
        .ok_or_else(ApiError::not_found)?;
    let req = super::json_body(&body)?;
    let payload = req.get("payload").and_then(Value::as_str).unwrap_or("");
    let body = match req.get("payload_encoding").and_then(Value::as_str) {
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|e| ApiError::bad_request(format!("payload is not base64: {e}")))?,
        _ => payload.as_bytes().to_vec(),
    };
    let p = req.get("properties").cloned().unwrap_or(json!({}));
    let mut props = BasicProperties::default();
    if let Some(d) = p.get("delivery_mode").and_then(|d| {
        d.as_u64()
            .or_else(|| d.as_str().and_then(|s| s.parse().ok()))
    }) {
        props = props.with_delivery_mode(d as u8);
    }
    if let Some(c) = p.get("content_type").and_then(Value::as_str) {
        props = props.with_content_type(ShortString::from(c));
    }
    if let Some(h) = p.get("headers").filter(|h| h.is_object()) {
        props = props.with_headers(json::to_table(h));
    }
    let routing_key = req
        .get("routing_key")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let msg = super::message(&x.name, &routing_key, props, body);
    let queues = v.route(&x, &msg.routing_key, msg.properties.headers().as_ref());
    for q in &queues {
        q.publish(msg.clone());
    }
    Ok(Json(json!({"routed": !queues.is_empty()})))
}

pub async fn list_all(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(list(&all_vhosts(&b)))
}

pub async fn list_vhost(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(list(&[vhost(&b, &vh)?])))
}
