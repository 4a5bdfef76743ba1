//! `/api/overview` (what the UI's Overview page polls: totals, message rates, listeners)
//! and `/api/whoami`.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};
use warren_broker::Broker;

use super::all_vhosts;
use crate::auth::User;
use crate::node::NodeInfo;

pub async fn overview(
    State(b): State<Arc<Broker>>,
    Extension(info): Extension<Arc<NodeInfo>>,
    _u: User,
) -> Json<Value> {
    let vhosts = all_vhosts(&b);
    let (mut queues, mut exchanges, mut ready, mut unacked, mut consumers) = (0, 0, 0, 0, 0);
    for v in &vhosts {
        let st = v.read();
        queues += st.queues.len();
        exchanges += st.exchanges.len();
        for q in st.queues.values() {
            let (r, u, c) = b.listed_counts(q);
            ready += r;
            unacked += u;
            consumers += c;
        }
    }
    let channels: usize = b
        .connections()
        .iter()
        .map(|c| c.live.channels().len())
        .sum();
    Json(json!({
        "cluster_name": b.metadata().map_or_else(|| b.config.node_name.clone(), |m| m.view().name),
        "node": b.config.node_name,
        "product_name": "Warren",
        "product_version": env!("CARGO_PKG_VERSION"),
        "rabbitmq_version": "3.10.8",
        "management_version": "3.10.8",
        "rates_mode": "basic",
        "exchange_types": super::nodes::exchange_types(),
        "listeners": info.listeners_json(&b.config.node_name),
        "message_stats": info.message_stats(),
        "queue_totals": {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked},
        "object_totals": {
            "connections": b.connection_count(), "channels": channels, "queues": queues,
            "exchanges": exchanges, "consumers": consumers,
        },
    }))
}

pub async fn whoami(u: User) -> Json<Value> {
    Json(json!({"name": u.name, "tags": u.tags.join(",")}))
}
