//! `/api/bindings`: list bindings, bind an exchange to a queue or exchange (what
//! `rabbitmqadmin declare binding` posts) and unbind by properties key; also the binding
//! lists of one queue (`/api/queues/{vhost}/{name}/bindings`) and of one exchange
//! (`/api/exchanges/{vhost}/{name}/bindings/{source,destination}`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_broker::metadata::{BindingOp, MetaOp};
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use super::{all_vhosts, exchange_name, vhost};
use crate::auth::{ApiError, User};
use warren_broker::json;

/// RabbitMQ's `properties_key` for a binding without arguments: the routing key, or `~`
/// when it is empty.
fn properties_key(routing_key: &str) -> String {
    if routing_key.is_empty() {
        "~".to_string()
    } else {
        routing_key.to_string()
    }
}

/// One vhost's bindings, the default exchange's implicit ones first (as RabbitMQ lists them).
fn vhost_bindings(v: &Vhost) -> Vec<Value> {
    let st = v.read();
    let mut names: Vec<&String> = st.queues.keys().collect();
    names.sort();
    let mut out: Vec<Value> = names
        .into_iter()
        .map(|q| {
            json!({"source": "", "vhost": v.name, "destination": q, "destination_type": "queue",
                   "routing_key": q, "arguments": {}, "properties_key": q})
        })
        .collect();
    for b in &st.bindings {
        out.push(json!({
            "source": b.source, "vhost": v.name, "destination": b.destination,
            "destination_type": if b.destination_is_queue { "queue" } else { "exchange" },
            "routing_key": b.routing_key, "arguments": json::table(&b.arguments),
            "properties_key": properties_key(&b.routing_key),
        }));
    }
    out
}

fn list(vhosts: &[Arc<Vhost>]) -> Vec<Value> {
    vhosts.iter().flat_map(|v| vhost_bindings(v)).collect()
}

/// The bindings of `v` whose `field` is `name` and (if given) whose destination type is
/// `kind`.
fn matching(v: &Vhost, field: &str, name: &str, kind: Option<&str>) -> Vec<Value> {
    vhost_bindings(v)
        .into_iter()
        .filter(|b| b[field] == name && kind.is_none_or(|k| b["destination_type"] == k))
        .collect()
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

/// `GET /api/queues/{vhost}/{name}/bindings`.
pub async fn of_queue(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let v = vhost(&b, &vh)?;
    v.queue(&name).ok_or_else(ApiError::not_found)?;
    Ok(Json(matching(&v, "destination", &name, Some("queue"))))
}

/// `GET /api/exchanges/{vhost}/{name}/bindings/{source|destination}`.
pub async fn of_exchange(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name, side)): Path<(String, String, String)>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let v = vhost(&b, &vh)?;
    let name = exchange_name(&name);
    v.exchange(name).ok_or_else(ApiError::not_found)?;
    match side.as_str() {
        "source" => Ok(Json(matching(&v, "source", name, None))),
        "destination" => Ok(Json(matching(&v, "destination", name, Some("exchange")))),
        _ => Err(ApiError::not_found()),
    }
}

fn destination_is_queue(kind: &str) -> Result<bool, ApiError> {
    match kind {
        "q" => Ok(true),
        "e" => Ok(false),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET /api/bindings/{vhost}/e/{source}/{q|e}/{destination}`: the bindings between two.
pub async fn between(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, source, kind, destination)): Path<(String, String, String, String)>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let v = vhost(&b, &vh)?;
    let kind = if destination_is_queue(&kind)? {
        "queue"
    } else {
        "exchange"
    };
    let source = exchange_name(&source);
    Ok(Json(
        matching(&v, "destination", &destination, Some(kind))
            .into_iter()
            .filter(|b| b["source"] == source)
            .collect(),
    ))
}

pub async fn create(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, source, kind, destination)): Path<(String, String, String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    vhost(&b, &vh)?;
    let req = super::json_body(&body)?;
    super::submit(
        &b,
        MetaOp::Bind(BindingOp {
            vhost: vh,
            source: exchange_name(&source).to_string(),
            destination,
            destination_is_queue: destination_is_queue(&kind)?,
            routing_key: req
                .get("routing_key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            arguments: req.get("arguments").cloned().unwrap_or(json!({})),
        }),
    )
    .await?;
    Ok(StatusCode::CREATED)
}

/// `DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{destination}/{props}`: unbinds the
/// binding with that properties key (404 if there is none).
pub async fn delete(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, source, kind, destination, props)): Path<(String, String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let v = vhost(&b, &vh)?;
    let destination_is_queue = destination_is_queue(&kind)?;
    let found = v
        .read()
        .bindings
        .iter()
        .find(|bd| {
            bd.source == source
                && bd.destination == destination
                && bd.destination_is_queue == destination_is_queue
                && properties_key(&bd.routing_key) == props
        })
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    v.unbind(&found)
        .map_err(|e| ApiError::bad_request(e.text))?;
    Ok(StatusCode::NO_CONTENT)
}
