//! Routes of the management API, one module per resource, and the helpers they share
//! (JSON bodies, vhost lookup, message construction).

mod bindings;
mod connections;
mod definitions;
mod exchanges;
mod health;
mod nodes;
mod overview;
mod policies;
mod queues;
mod users;
mod vhosts;

use std::sync::Arc;

use axum::routing::{delete, get, post};
use axum::Router;
use warren_amqp::BasicProperties;
use warren_broker::message::Message;
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use crate::auth::ApiError;

pub fn routes() -> Router<Arc<Broker>> {
    Router::new()
        .merge(overview_routes())
        .merge(queue_routes())
        .merge(exchange_routes())
        .merge(access_routes())
        .merge(activity_routes())
        .merge(health_routes())
}

fn overview_routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/whoami", get(overview::whoami))
        .route("/api/nodes", get(nodes::list))
        .route("/api/nodes/{name}", get(nodes::show))
        .route(
            "/api/definitions",
            get(definitions::export_all).post(definitions::import_all),
        )
        .route(
            "/api/definitions/{vhost}",
            get(definitions::export_vhost).post(definitions::import_vhost),
        )
}

fn queue_routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/queues", get(queues::list_all))
        .route("/api/queues/{vhost}", get(queues::list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queues::show)
                .put(queues::declare)
                .delete(queues::delete),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queues::get_messages))
        .route("/api/queues/{vhost}/{name}/contents", delete(queues::purge))
        .route("/api/queues/{vhost}/{name}/actions", post(queues::actions))
        .route(
            "/api/queues/{vhost}/{name}/bindings",
            get(bindings::of_queue),
        )
        .route("/api/bindings", get(bindings::list_all))
        .route("/api/bindings/{vhost}", get(bindings::list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(bindings::between).post(bindings::create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            delete(bindings::delete),
        )
}

fn exchange_routes() -> Router<Arc<Broker>> {
    Router::new()
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
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/{side}",
            get(bindings::of_exchange),
        )
}

/// Vhosts, users, permissions and policies (the UI's Admin tab).
fn access_routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/vhosts", get(vhosts::list))
        .route(
            "/api/vhosts/{name}",
            get(vhosts::show).put(vhosts::put).delete(vhosts::delete),
        )
        .route("/api/users", get(users::list_users))
        .route(
            "/api/users/{name}",
            get(users::show_user)
                .put(users::put_user)
                .delete(users::delete_user),
        )
        .route(
            "/api/users/{name}/permissions",
            get(users::user_permissions),
        )
        .route("/api/permissions", get(users::list_permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(users::show_permission)
                .put(users::put_permission)
                .delete(users::delete_permission),
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

/// Connections, channels and consumers.
fn activity_routes() -> Router<Arc<Broker>> {
    use connections as c;
    Router::new()
        .route("/api/connections", get(c::list_connections))
        .route(
            "/api/connections/{name}",
            get(c::show_connection).delete(c::close_connection),
        )
        .route(
            "/api/connections/{name}/channels",
            get(c::connection_channels),
        )
        .route(
            "/api/vhosts/{vhost}/connections",
            get(c::list_vhost_connections),
        )
        .route("/api/channels", get(c::list_channels))
        .route("/api/channels/{name}", get(c::show_channel))
        .route("/api/vhosts/{vhost}/channels", get(c::list_vhost_channels))
        .route("/api/consumers", get(c::list_consumers))
        .route("/api/consumers/{vhost}", get(c::list_vhost_consumers))
}

fn health_routes() -> Router<Arc<Broker>> {
    Router::new()
        .route("/api/aliveness-test/{vhost}", get(health::aliveness))
        .route("/api/health/checks/alarms", get(health::alarms))
        .route(
            "/api/health/checks/node-is-mirror-sync-critical",
            get(health::mirror_sync_critical),
        )
        .route("/api/health/checks/local-alarms", get(health::alarms))
        .route(
            "/api/health/checks/virtual-hosts",
            get(health::virtual_hosts),
        )
        .route(
            "/api/health/checks/port-listener/{port}",
            get(health::port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(health::protocol_listener),
        )
}

/// Parses a JSON request body (an empty body counts as `{}`), or answers RabbitMQ's 400.
/// Applies a metadata change (through the cluster when clustered); a refusal is a 400 with
/// the broker's text.
async fn submit(
    b: &Arc<Broker>,
    op: warren_broker::metadata::MetaOp,
) -> Result<warren_broker::metadata::MetaReply, ApiError> {
    b.submit(op)
        .await
        .map_err(|e| ApiError::bad_request(e.text))
}

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

/// A message published through the API (publish endpoint, aliveness test).
fn message(
    exchange: &str,
    routing_key: &str,
    properties: BasicProperties,
    body: Vec<u8>,
) -> Arc<Message> {
    Arc::new(Message {
        exchange: exchange.to_string(),
        routing_key: routing_key.to_string(),
        raw_properties: warren_amqp::content::encode_properties(&properties),
        properties,
        body: body.into(),
    })
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
