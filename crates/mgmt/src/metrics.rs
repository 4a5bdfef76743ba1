//! Prometheus metrics on the Prometheus port (RabbitMQ's 15692), with rabbitmq_prometheus's
//! metric names so existing dashboards and alerts keep working: `/metrics` has node totals,
//! `/metrics/per-object` adds one series per queue (labels `vhost`, `queue`).

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use warren_broker::Broker;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# TYPE {name} {kind}\n# HELP {name} {help}\n{name} {value}"
    );
}

fn render(b: &Broker, per_object: bool) -> String {
    let mut out = String::new();
    let (mut queues, mut ready, mut unacked, mut consumers, mut delivered) =
        (0usize, 0usize, 0usize, 0usize, 0u64);
    let mut per_queue = String::new();
    for vh in b.vhost_names() {
        let Some(v) = b.vhost(&vh) else { continue };
        for q in v.read().queues.values() {
            queues += 1;
            let (r, u, c) = (q.message_count(), q.unacked_count(), q.consumer_count());
            ready += r;
            unacked += u;
            consumers += c;
            delivered += q.delivered_count();
            if per_object {
                let labels = format!(
                    "vhost=\"{}\",queue=\"{}\"",
                    vh.replace('"', "\\\""),
                    q.name.replace('"', "\\\"")
                );
                let _ = writeln!(per_queue, "rabbitmq_queue_messages_ready{{{labels}}} {r}");
                let _ = writeln!(per_queue, "rabbitmq_queue_messages_unacked{{{labels}}} {u}");
                let _ = writeln!(per_queue, "rabbitmq_queue_messages{{{labels}}} {}", r + u);
                let _ = writeln!(per_queue, "rabbitmq_queue_consumers{{{labels}}} {c}");
            }
        }
    }
    let s = &b.stats;
    metric(
        &mut out,
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        b.connection_count(),
    );
    metric(
        &mut out,
        "rabbitmq_queues",
        "gauge",
        "Queues available",
        queues,
    );
    metric(
        &mut out,
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        consumers,
    );
    metric(
        &mut out,
        "rabbitmq_queue_messages_ready",
        "gauge",
        "Messages ready to be delivered to consumers",
        ready,
    );
    metric(
        &mut out,
        "rabbitmq_queue_messages_unacked",
        "gauge",
        "Messages delivered to consumers but not yet acknowledged",
        unacked,
    );
    metric(
        &mut out,
        "rabbitmq_queue_messages",
        "gauge",
        "Sum of ready and unacknowledged messages",
        ready + unacked,
    );
    metric(
        &mut out,
        "rabbitmq_global_messages_received_total",
        "counter",
        "Total number of messages received from publishers",
        s.published.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "rabbitmq_global_messages_unroutable_dropped_total",
        "counter",
        "Total number of messages published that could not be routed",
        s.unroutable.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "rabbitmq_global_messages_delivered_total",
        "counter",
        "Total number of messages delivered to consumers",
        delivered,
    );
    metric(
        &mut out,
        "rabbitmq_global_messages_acknowledged_total",
        "counter",
        "Total number of messages acknowledged by consumers",
        s.acknowledged.load(Ordering::Relaxed),
    );
    metric(
        &mut out,
        "rabbitmq_process_resident_memory_bytes",
        "gauge",
        "Memory used in bytes",
        warren_broker::alarm::resident_bytes(),
    );
    metric(
        &mut out,
        "rabbitmq_resident_memory_limit_bytes",
        "gauge",
        "Memory high watermark in bytes",
        b.config.alarms.memory_limit(),
    );
    let alarms = b.alarms().borrow().clone();
    metric(
        &mut out,
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "1 if the memory alarm is in effect",
        u8::from(alarms.contains(&warren_broker::alarm::MEMORY)),
    );
    metric(
        &mut out,
        "rabbitmq_alarms_free_disk_space_watermark",
        "gauge",
        "1 if the free disk space alarm is in effect",
        u8::from(alarms.contains(&warren_broker::alarm::DISK)),
    );
    if let Some(j) = b.journal() {
        let (fsyncs, enqueues) = j.stats();
        metric(
            &mut out,
            "warren_journal_fsyncs_total",
            "counter",
            "Journal fsyncs (group commits)",
            fsyncs,
        );
        metric(
            &mut out,
            "warren_journal_messages_total",
            "counter",
            "Persistent messages written to the journal",
            enqueues,
        );
    }
    if per_object {
        out.push_str("# TYPE rabbitmq_queue_messages_ready gauge\n");
        out.push_str(&per_queue);
    }
    out
}

async fn totals(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&b, false),
    )
}

async fn per_object(State(b): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&b, true),
    )
}

/// Serves `/metrics` until the broker shuts down. No authentication, as rabbitmq_prometheus.
pub async fn serve(broker: Arc<Broker>, listener: TcpListener) {
    let mut shutdown = broker.shutdown_signal();
    let app = Router::new()
        .route("/metrics", get(totals))
        .route("/metrics/per-object", get(per_object))
        .with_state(broker);
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = r {
        tracing::error!("prometheus listener failed: {e}");
    }
}
