//! `/api/exchanges`: list exchanges.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};
use warren_broker::vhost::Vhost;
use warren_broker::Broker;

use super::{all_vhosts, vhost};
use crate::auth::{ApiError, User};
use warren_broker::json;

fn list(vhosts: &[Arc<Vhost>]) -> Vec<Value> {
    let mut out = Vec::new();
    for v in vhosts {
        let st = v.read();
        let mut xs: Vec<_> = st.exchanges.values().cloned().collect();
        xs.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(xs.iter().map(|x| {
            json!({
                "name": x.name,
                "vhost": v.name,
                "type": x.type_name(),
                "durable": x.durable,
                "auto_delete": x.auto_delete,
                "internal": x.internal,
                "arguments": json::table(&x.arguments),
            })
        }));
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
