//! The management HTTP API, RabbitMQ-compatible (the paths and JSON fields that the RabbitMQ
//! UI, `rabbitmqadmin` and monitoring scripts use), served on the management port.
//!
//! Every request is authenticated with HTTP basic auth against the broker's users
//! (`loopback_users` apply, as RabbitMQ); errors use RabbitMQ's `{"error", "reason"}` bodies.

mod api;
mod auth;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use warren_broker::Broker;

pub fn router(broker: Arc<Broker>) -> Router {
    api::routes().with_state(broker)
}

/// Serves the API until the broker shuts down.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let mut shutdown = broker.shutdown_signal();
    let app = router(broker).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!("management listener failed: {e}");
    }
}
