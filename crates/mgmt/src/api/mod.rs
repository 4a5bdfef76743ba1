//! Routes of the management API, one module per resource.

mod exchanges;
mod overview;
mod policies;
mod queues;

use std::sync::Arc;

use axum::routing::get;
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
        .route("/api/policies", get(policies::list_all))
        .route("/api/policies/{vhost}", get(policies::list_vhost))
        .route(
            "/api/policies/{vhost}/{name}",
            get(policies::show)
                .put(policies::put)
                .delete(policies::delete),
        )
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
