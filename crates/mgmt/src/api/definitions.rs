//! `/api/definitions` and `/api/definitions/{vhost}`: export and import RabbitMQ's
//! definitions document through the broker's own `definitions` module (the code that also
//! persists the node's metadata and serves `warren ctl export_definitions`), so the UI,
//! `rabbitmqadmin export/import` and a RabbitMQ export all see one format.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};
use warren_broker::metadata::MetaOp;
use warren_broker::{definitions, Broker};

use super::vhost;
use crate::auth::{ApiError, User};

/// The per-vhost parts of a definitions document (a vhost export has only these).
const VHOST_KEYS: [&str; 5] = ["parameters", "policies", "queues", "exchanges", "bindings"];

/// `?download=name.json` (the UI's "Download broker definitions") asks for an attachment.
fn respond(doc: Value, q: &HashMap<String, String>) -> Response {
    let mut r = Json(doc).into_response();
    if let Some(file) = q.get("download").filter(|f| !f.contains('"')) {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    r
}

/// Imports and persists; anything the broker refused is a 400 with its messages (the rest
/// of the document is applied, as RabbitMQ's import applies what precedes an error).
async fn import(b: &Arc<Broker>, doc: Value) -> Result<StatusCode, ApiError> {
    if !doc.is_object() {
        return Err(ApiError::bad_request("definitions must be a JSON object"));
    }
    let warnings = super::submit(b, MetaOp::Import { definitions: doc })
        .await?
        .warnings;
    if warnings.is_empty() {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::bad_request(warnings.join("; ")))
    }
}

pub async fn export_all(
    State(b): State<Arc<Broker>>,
    u: User,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    u.require_admin()?;
    Ok(respond(definitions::export(&b), &q))
}

pub async fn import_all(
    State(b): State<Arc<Broker>>,
    u: User,
    body: String,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    import(&b, super::json_body(&body)?).await
}

/// One vhost's policies, queues, exchanges and bindings, without their `vhost` field (so
/// the document can be imported into another vhost).
pub async fn export_vhost(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(vh): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    u.require_admin()?;
    vhost(&b, &vh)?;
    let all = definitions::export(&b);
    let mut doc = Map::new();
    for k in [
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "product_version",
    ] {
        doc.insert(k.into(), all[k].clone());
    }
    for k in VHOST_KEYS {
        let items: Vec<Value> = all[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| i["vhost"] == vh.as_str())
            .map(|i| {
                let mut i = i.clone();
                if let Some(o) = i.as_object_mut() {
                    o.remove("vhost");
                }
                i
            })
            .collect();
        doc.insert(k.into(), Value::Array(items));
    }
    Ok(respond(Value::Object(doc), &q))
}

/// Imports a vhost export (or any document's per-vhost parts) into the vhost in the path.
pub async fn import_vhost(
    State(b): State<Arc<Broker>>,
    u: User,
    Path(vh): Path<String>,
    body: String,
) -> Result<StatusCode, ApiError> {
    u.require_admin()?;
    vhost(&b, &vh)?;
    let req = super::json_body(&body)?;
    let mut doc = Map::new();
    for k in VHOST_KEYS {
        let items: Vec<Value> = req
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|i| {
                let mut i = i.clone();
                if let Some(o) = i.as_object_mut() {
                    o.insert("vhost".into(), Value::String(vh.clone()));
                }
                i
            })
            .collect();
        doc.insert(k.into(), Value::Array(items));
    }
    import(&b, Value::Object(doc)).await
}
