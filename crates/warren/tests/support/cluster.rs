//! Helpers for tests that drive a cluster of real `warren server` processes on loopback:
//! `warren ctl` calls, joining, polling, confirming channels.

use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

use crate::common::{self, Node};

pub const COOKIE: &str = "CLUSTERTESTCOOKIE";

/// `warren ctl ARGS` on `n`, which must succeed.
pub fn ok(n: &Node, args: &[&str]) -> String {
    let (code, out, err) = n.ctl(args);
    assert_eq!(code, 0, "ctl {args:?} on {}: {out}{err}", n.name());
    out
}

/// Polls `ctl args` on `n` until its output satisfies `pred`.
pub fn eventually(n: &Node, args: &[&str], what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (code, out, err) = n.ctl(args);
        if code == 0 && pred(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: ctl {args:?} on {} never satisfied: {out}{err}\n--- log:\n{}",
            n.name(),
            n.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The README's steps: `stop_app; join_cluster SEED; start_app`.
pub fn join(n: &Node, seed: &Node) {
    ok(n, &["stop_app"]);
    let seed_addr = format!("{}:{}", seed.name(), seed.cluster_port);
    let out = ok(n, &["join_cluster", &seed_addr]);
    assert!(
        out.contains(&format!("Clustering node {}", n.name())),
        "{out}"
    );
    ok(n, &["start_app"]);
}

pub fn status(n: &Node) -> serde_json::Value {
    let out = ok(n, &["cluster_status", "--formatter", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

pub fn running_nodes(n: &Node) -> usize {
    status(n)["running_nodes"].as_array().map_or(0, Vec::len)
}

/// A confirming channel on `n` with the durable queue `queue` declared.
pub async fn confirming_channel(n: &Node, queue: &str) -> (lapin::Connection, lapin::Channel) {
    let conn = n.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, ch)
}

/// Publishes a persistent message through the default exchange; true when it is confirmed.
pub async fn publish_confirmed(ch: &lapin::Channel, queue: &str, body: &[u8]) -> bool {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .is_ack()
}

/// Three nodes joined into one cluster, all running voters.
pub fn three_node_cluster() -> (Node, Node, Node) {
    let a = Node::start_with_cookie(COOKIE);
    let b = Node::start_with_cookie(COOKIE);
    let c = Node::start_with_cookie(COOKIE);
    join(&b, &a);
    join(&c, &b);
    eventually(
        &a,
        &["cluster_status", "--formatter", "json"],
        "three running nodes",
        |o| {
            o.contains(&c.name())
                && serde_json::from_str::<serde_json::Value>(o).is_ok_and(|v| {
                    v["running_nodes"].as_array().map_or(0, Vec::len) == 3
                        && v["voters"].as_array().map_or(0, Vec::len) == 3
                })
        },
    );
    (a, b, c)
}

/// GET /api/queues/%2F/NAME on `n`, as JSON (`null` when it answers otherwise).
pub fn queue_info(n: &Node, name: &str) -> serde_json::Value {
    let (code, body) = common::http(n, "GET", &format!("/api/queues/%2F/{name}"), None);
    if code != 200 {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// Polls the queue's listing on `n` until `pred` holds; returns it.
pub fn wait_queue(
    n: &Node,
    name: &str,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = queue_info(n, name);
        if pred(&q) {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: queue '{name}' on {} never got there: {q}\n--- log:\n{}",
            n.name(),
            n.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node names in a listing's array field.
pub fn names(q: &serde_json::Value, field: &str) -> Vec<String> {
    q[field]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
