//! Prometheus metrics from a real node, under rabbitmq_prometheus's names.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use common::{http_to, Node};
use lapin::options::*;
use lapin::types::FieldTable;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn metrics_count_queues_messages_and_deliveries() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "m".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for _ in 0..5 {
        ch.basic_publish(
            "".into(),
            "m".into(),
            BasicPublishOptions::default(),
            b"x",
            Default::default(),
        )
        .await
        .unwrap();
    }
    let got = ch
        .basic_get("m".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    got.ack(BasicAckOptions::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, text) = http_to(node.prometheus_port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert_eq!(value(&text, "rabbitmq_queues"), 1.0);
    assert_eq!(value(&text, "rabbitmq_connections"), 1.0);
    assert_eq!(value(&text, "rabbitmq_queue_messages_ready"), 4.0);
    assert_eq!(value(&text, "rabbitmq_global_messages_received_total"), 5.0);
    assert_eq!(
        value(&text, "rabbitmq_global_messages_delivered_total"),
        1.0
    );
    assert_eq!(
        value(&text, "rabbitmq_global_messages_acknowledged_total"),
        1.0
    );
    assert_eq!(value(&text, "rabbitmq_alarms_memory_used_watermark"), 0.0);
    let (_, per) = http_to(node.prometheus_port, "GET", "/metrics/per-object", None);
    assert_eq!(
        value(
            &per,
            "rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"m\"}"
        ),
        4.0
    );
}
