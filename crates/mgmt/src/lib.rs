//! The management HTTP API, RabbitMQ-compatible (the paths and JSON fields that the RabbitMQ
//! UI, `rabbitmqadmin` and monitoring scripts use), and the web UI that calls it, both served
//! on the management port.
//!
//! Every API request is authenticated with HTTP basic auth against the broker's users
//! (`loopback_users` apply, as RabbitMQ); errors use RabbitMQ's `{"error", "reason"}` bodies.

mod api;
mod auth;
pub mod metrics;
mod node;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Extension, Router};
use tokio::net::TcpListener;
use warren_broker::Broker;

pub use node::{Listener, NodeInfo};

pub fn router(broker: Arc<Broker>, node: Arc<NodeInfo>) -> Router {
    api::routes()
        .merge(ui::routes())
        .layer(Extension(node))
        .with_state(broker)
}

/// Serves the API and the UI until the broker shuts down. `node` lists every listener of
/// the node (the management one included) for `/api/overview`, `/api/nodes` and the
/// port-listener health check.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener, node: NodeInfo) {
    let node = Arc::new(node);
    tokio::spawn(node::sampler(node.clone(), broker.clone()));
    let mut shutdown = broker.shutdown_signal();
    let app = router(broker, node).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!("management listener failed: {e}");
    }
}
