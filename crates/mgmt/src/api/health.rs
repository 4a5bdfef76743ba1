//! Health checks for monitoring and load balancers: `/api/health/checks/{alarms,
//! local-alarms, node-is-mirror-sync-critical, virtual-hosts, port-listener/{port},
//! protocol-listener/{protocol}}` and the
//! older `/api/aliveness-test/{vhost}`. Each answers 200 `{"status":"ok"}` or 503
//! `{"status":"failed","reason":...}` with RabbitMQ's fields, so probes written for
//! RabbitMQ read them unchanged.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use warren_amqp::BasicProperties;
use warren_broker::vhost::QueueSpec;
use warren_broker::Broker;

use super::vhost;
use crate::auth::{ApiError, User};
use crate::node::NodeInfo;

type Check = (StatusCode, Json<Value>);

/// `body` with the fields of `extra` added.
fn answer(code: StatusCode, mut body: Value, extra: Value) -> Check {
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    (code, Json(body))
}

fn ok(extra: Value) -> Check {
    answer(StatusCode::OK, json!({"status": "ok"}), extra)
}

fn failed(reason: &str, extra: Value) -> Check {
    let body = json!({"status": "failed", "reason": reason});
    answer(StatusCode::SERVICE_UNAVAILABLE, body, extra)
}

/// Alarms in effect anywhere (this node is the whole cluster for now, so `alarms` and
/// `local-alarms` agree).
pub async fn alarms(State(b): State<Arc<Broker>>, _u: User) -> Check {
    let alarms = b.alarms().borrow().clone();
    if alarms.is_empty() {
        return ok(json!({}));
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
    failed(
        "resource alarm(s) in effect in the cluster",
        json!({"alarms": list}),
    )
}

/// `node-is-mirror-sync-critical`: fails when a mirrored queue led by this node has no
/// synchronised mirror, i.e. stopping this node now would leave that queue without an
/// up-to-date copy (RabbitMQ's check before a rolling restart).
pub async fn mirror_sync_critical(State(b): State<Arc<Broker>>, _u: User) -> Check {
    let me = &b.config.node_name;
    let critical: Vec<Value> = b
        .all_queues()
        .iter()
        .filter(|q| !q.is_standin())
        .filter_map(|q| {
            let p = q.placement();
            (!p.mirrors.is_empty() && p.in_sync.is_empty())
                .then(|| json!({"name": q.name, "vhost": q.vhost, "node": me}))
        })
        .collect();
    if critical.is_empty() {
        return ok(json!({}));
    }
    failed(
        "there are queues led by this node with no synchronised mirror",
        json!({"queues": critical}),
    )
}

/// Always ok while the app runs: unlike RabbitMQ, where each vhost has its own supervision
/// tree that can crash alone, a Warren vhost that exists is served by the node's runtime,
/// and this endpoint only answers while the management listener (part of the app) is up.
pub async fn virtual_hosts(_u: User) -> Check {
    ok(json!({}))
}

pub async fn port_listener(
    Extension(info): Extension<Arc<NodeInfo>>,
    _u: User,
    Path(port): Path<String>,
) -> Result<Check, ApiError> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid port: {port}")))?;
    let ports: Vec<u16> = info.listeners.iter().map(|l| l.port).collect();
    Ok(listener_check(
        ports.contains(&port),
        "port",
        json!(port),
        json!(ports),
    ))
}

/// RabbitMQ's listener check answers: `{"status":"ok","port":P}`, or 503 naming the
/// missing one and listing those that exist (`ports` / `protocols`).
fn listener_check(found: bool, what: &str, wanted: Value, existing: Value) -> Check {
    if found {
        ok(json!({ what: wanted }))
    } else {
        failed(
            "No active listener",
            json!({"missing": wanted, format!("{what}s"): existing}),
        )
    }
}

pub async fn protocol_listener(
    Extension(info): Extension<Arc<NodeInfo>>,
    _u: User,
    Path(protocol): Path<String>,
) -> Check {
    let protocols: Vec<&str> = info.listeners.iter().map(|l| l.protocol).collect();
    // RabbitMQ accepts `amqp091` and `amqp0.9.1` for AMQP 0-9-1.
    let wanted = match protocol.as_str() {
        "amqp091" | "amqp0.9.1" | "amqp0-9-1" => "amqp",
        other => other,
    };
    listener_check(
        protocols.contains(&wanted),
        "protocol",
        json!(protocol),
        json!(protocols),
    )
}

/// Declares `aliveness-test` in the vhost, publishes a message to it through the default
/// exchange and gets it back, as RabbitMQ's aliveness test does.
pub async fn aliveness(
    State(b): State<Arc<Broker>>,
    _u: User,
    Path(vh): Path<String>,
) -> Result<Check, ApiError> {
    const QUEUE: &str = "aliveness-test";
    let v = vhost(&b, &vh)?;
    let q = match v.declare_queue(QueueSpec {
        name: QUEUE,
        passive: false,
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: Default::default(),
        connection_id: 0,
        server_named: false,
        home: None,
    }) {
        Ok(q) => q,
        Err(e) => return Ok(failed(&e.text, json!({}))),
    };
    let default = v.exchange("").ok_or_else(ApiError::not_found)?;
    let msg = super::message(
        "",
        QUEUE,
        BasicProperties::default(),
        b"test_message".to_vec(),
    );
    let routed = v.route(&default, QUEUE, None);
    for r in &routed {
        r.publish(msg.clone());
    }
    Ok(match q.get(true) {
        Some(_) => ok(json!({})),
        None => failed(
            "aliveness-test queue did not return the test message",
            json!({}),
        ),
    })
}
