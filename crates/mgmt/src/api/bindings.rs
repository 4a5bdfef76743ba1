//! `/api/bindings`: list bindings, and bind an exchange to a queue or exchange (what
//! `rabbitmqadmin declare binding` posts).

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
use warren_broker::json;

fn list(vhosts: &[Arc<Vhost>]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in vhosts {
        let st = v.read();
        let mut names: Vec<&String> = st.queues.keys().collect();
        names.sort();
        for q in names {
            out.push(
                json!({"source": "", "vhost": v.name, "destination": q, "destination_type": "queue",
                            "routing_key": q, "arguments": {}, "properties_key": q}),
            );
        }
        for b in &st.bindings {
            out.push(json!({
                "source": b.source, "vhost": v.name, "destination": b.destination,
                "destination_type": if b.destination_is_queue { "queue" } else { "exchange" },
                "routing_key": b.routing_key, "arguments": json::table(&b.arguments),
                "properties_key": if b.routing_key.is_empty() { "~".to_string() } else { b.routing_key.clone() },
            }));
        }
    }
    out
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

pub async fn create(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path((vh, source, kind, destination)): Path<(String, String, String, String)>,
    body: String,
) -> Result<StatusCode, ApiError> {
    vhost(&b, &vh)?;
    let req = super::json_body(&body)?;
    let destination_is_queue = match kind.as_str() {
        "q" => true,
        "e" => false,
        _ => return Err(ApiError::not_found()),
    };
    b.submit(MetaOp::Bind {
        vhost: vh,
        source: if source == "amq.default" {
            String::new()
        } else {
            source
        },
        destination,
        destination_is_queue,
        routing_key: req
            .get("routing_key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        arguments: req.get("arguments").cloned().unwrap_or(json!({})),
    })
    .await
    .map_err(|e| ApiError::bad_request(e.text))?;
    Ok(StatusCode::CREATED)
}
