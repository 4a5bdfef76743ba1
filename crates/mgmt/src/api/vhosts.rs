//! `/api/vhosts` and `/api/vhosts/{name}`: list, show, create (PUT) and delete virtual
//! hosts, with their message totals and RabbitMQ's `cluster_state`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_broker::metadata::MetaOp;
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use super::{all_vhosts, vhost};
use crate::auth::{ApiError, User};

fn to_json(b: &Broker, v: &Vhost) -> Value {
    let (mut ready, mut unacked) = (0, 0);
    for q in v.read().queues.values() {
        let (r, u, _) = b.listed_counts(q);
        ready += r;
        unacked += u;
    }
    json!({
        "name": v.name,
        "description": "",
        "tags": [],
        "metadata": {"description": "", "tags": []},
        "tracing": false,
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "cluster_state": {b.config.node_name.as_str(): "running"},
    })
}

pub async fn list(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(all_vhosts(&b).iter().map(|v| to_json(&b, v)).collect())
}

pub async fn show(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let v = vhost(&b, &name)?;
    Ok(Json(to_json(&b, &v)))
}

/// 201 when created, 204 when it already existed (its contents are left alone).
pub async fn put(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    if name.is_empty() {
        return Err(ApiError::bad_request("vhost name must not be empty"));
    }
    if b.vhost(&name).is_some() {
        return Ok(StatusCode::NO_CONTENT);
    }
    super::submit(&b, MetaOp::AddVhost { name }).await?;
    Ok(StatusCode::CREATED)
}

/// Deletes the vhost with its queues (their messages), exchanges, bindings, policies and
/// permissions.
pub async fn delete(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    let reply = super::submit(&b, MetaOp::DeleteVhost { name: name.clone() }).await?;
    if reply.created {
        // Clients of a deleted vhost are told why, as RabbitMQ tells them.
        for c in b.connections().iter().filter(|c| c.vhost == name) {
            c.live.close(&format!("vhost '{name}' is deleted"));
        }
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
