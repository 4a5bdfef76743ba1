//! `/api/overview`, `/api/whoami`, `/api/vhosts` and the health checks.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use warren_broker::Broker;

use super::all_vhosts;
use crate::auth::User;

pub async fn overview(State(b): State<Arc<Broker>>, _u: User) -> Json<Value> {
    let vhosts = all_vhosts(&b);
    let (mut queues, mut exchanges, mut ready, mut unacked) = (0, 0, 0, 0);
    for v in &vhosts {
        let st = v.read();
        queues += st.queues.len();
        exchanges += st.exchanges.len();
        for q in st.queues.values() {
            ready += q.message_count();
            unacked += q.unacked_count();
        }
    }
    Json(json!({
        "cluster_name": b.config.node_name,
        "node": b.config.node_name,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rabbitmq_version": "3.10.8",
        "management_version": "3.10.8",
        "queue_totals": {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked},
        "object_totals": {"connections": b.connection_count(), "queues": queues, "exchanges": exchanges},
    }))
}

pub async fn whoami(u: User) -> Json<Value> {
    Json(json!({"name": u.name, "tags": u.tags.join(",")}))
}

pub async fn vhosts(State(b): State<Arc<Broker>>, _u: User) -> Json<Vec<Value>> {
    Json(
        b.vhost_names()
            .into_iter()
            .map(|n| json!({"name": n}))
            .collect(),
    )
}

/// 200 `{"status":"ok"}`, or 503 with the alarms in effect (what load balancers probe).
pub async fn health_alarms(State(b): State<Arc<Broker>>, _u: User) -> (StatusCode, Json<Value>) {
    let alarms = b.alarms().borrow().clone();
    if alarms.is_empty() {
        return (StatusCode::OK, Json(json!({"status": "ok"})));
    }
    let list: Vec<Value> = alarms
        .iter()
        .map(|a| {
            let resource = if *a == warren_broker::alarm::MEMORY {
                "memory"
            } else {
                "disk"
            };
            json!({"node": b.config.node_name, "resource": resource})
        })
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(
            json!({"status": "failed", "reason": "resource alarm(s) in effect in the cluster", "alarms": list}),
        ),
    )
}
