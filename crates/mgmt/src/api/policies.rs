//! `/api/policies`: list, show, create/update (201/204) and delete policies.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_broker::metadata::MetaOp;
use warren_broker::policy::Policy;
use warren_broker::Broker;

use super::{all_vhosts, vhost};
use crate::auth::{ApiError, User};

fn to_json(p: &Policy) -> Value {
    json!({
        "vhost": p.vhost,
        "name": p.name,
        "pattern": p.pattern,
        "apply-to": p.apply_to.as_str(),
        "definition": p.definition,
        "priority": p.priority,
    })
}

pub async fn list_all(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(
        all_vhosts(&b)
            .iter()
            .flat_map(|v| v.policies())
            .map(|p| to_json(&p))
            .collect(),
    )
}

pub async fn list_vhost(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Json<Vec<Value>>, ApiError> {
    Ok(Json(
        vhost(&b, &vh)?.policies().iter().map(to_json).collect(),
    ))
}

pub async fn show(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    vhost(&b, &vh)?
        .policies()
        .iter()
        .find(|p| p.name == name)
        .map(|p| Json(to_json(p)))
        .ok_or_else(ApiError::not_found)
}

pub async fn put(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, name)): Path<(String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    let req = super::json_body(&body)?;
    let pattern = req
        .get("pattern")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("[{pattern,not_found}]"))?;
    let definition = req
        .get("definition")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("[{definition,not_found}]"))?;
    let apply_to = req.get("apply-to").and_then(Value::as_str).unwrap_or("all");
    let priority = req.get("priority").and_then(Value::as_i64).unwrap_or(0);
    vhost(&b, &vh)?;
    Policy::new(&vh, &name, pattern, apply_to, priority, definition.clone())
        .map_err(|m| ApiError::bad_request(format!("Validation failed\n\n{m}\n")))?;
    let reply = super::submit(
        &b,
        MetaOp::SetPolicy {
            vhost: vh.clone(),
            name: name.clone(),
            pattern: pattern.to_string(),
            apply_to: apply_to.to_string(),
            priority,
            definition,
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
    vhost(&b, &vh)?;
    let reply = super::submit(&b, MetaOp::ClearPolicy { vhost: vh, name }).await?;
    if reply.created {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
