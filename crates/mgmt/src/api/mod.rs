//! Routes of the management API, one module per resource.

mod bindings;
mod exchanges;
mod overview;
mod policies;
mod queues;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use crate::auth::ApiError;

pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/whoami", get(overview::whoami))
        .route("/api/vhosts", get(overview::vhosts))
        .route("/api/health/checks/alarms", get(overview::health_alarms))
        .route(
            "/api/health/checks/local-alarms",
            get(overview::health_alarms),
        )
        .route("/api/queues", get(queues::list_all))
        .route("/api/queues/{vhost}", get(queues::list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queues::show)
                .put(queues::declare)
                .delete(queues::delete),
        )
        .route("/api/exchanges", get(exchanges::list_all))
        .route("/api/exchanges/{vhost}", get(exchanges::list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchanges::show)
                .put(exchanges::declare)
                .delete(exchanges::delete),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(exchanges::publish),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queues::get_messages))
        .route("/api/queues/{vhost}/{name}/contents", delete(queues::purge))
        .route("/api/bindings", get(bindings::list_all))
        .route("/api/bindings/{vhost}", get(bindings::list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            post(bindings::create),
        )
        .route("/api/policies", get(policies::list_all))
        .route("/api/policies/{vhost}", get(policies::list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(policies::show)
                .put(policies::put)
                .delete(policies::delete),
        )
}

/// Parses a JSON request body (an empty body counts as `{}`), or answers RabbitMQ's 400.
fn json_body(body: &str) -> Result<serde_json::Value, ApiError> {
    if body.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_str(body)
        .map_err(|e| ApiError::bad_request(format!("failed to decode JSON: {e}")))
}

/// A JSON flag as the UI sends it (`true`) or as rabbitmqadmin sends it (`"true"`).
fn flag(v: &serde_json::Value, key: &str, default: bool) -> bool {
    match v.get(key) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true",
        _ => default,
    }
}

/// The exchange named in a path (`amq.default` is the default exchange).
fn exchange_name(name: &str) -> &str {
    if name == "amq.default" {
        ""
    } else {
        name
    }
}

/// The vhost named in a path, or RabbitMQ's 404.
fn vhost(broker: &Broker, name: &str) -> Result<Arc<Vhost>, ApiError> {
    broker.vhost(name).ok_or_else(ApiError::not_found)
}

fn all_vhosts(broker: &Broker) -> Vec<Arc<Vhost>> {
    broker
        .vhost_names()
        .iter()
        .filter_map(|n| broker.vhost(n))
        .collect()
}
