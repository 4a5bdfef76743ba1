//! Topology setup, producers, consumers and the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, Semaphore};

use super::args::PerfArgs;
use super::stats::{Reporter, Stats};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn random_suffix() -> String {
    format!("{:08x}", (now_nanos() ^ (std::process::id() as u64) << 20) as u32)
}

async fn connect(uri: &str) -> Result<Connection, Error> {
    Connection::connect(uri, ConnectionProperties::default())
        .await
        .map_err(|e| format!("cannot connect to {uri}: {e}").into())
}

fn parse_queue_args(spec: &Option<String>) -> FieldTable {
    let mut t = FieldTable::default();
    for kv in spec.iter().flat_map(|s| s.split(',')) {
        if let Some((k, v)) = kv.split_once('=') {
            let value = match v.parse::<i64>() {
                Ok(n) => AMQPValue::LongLongInt(n),
                Err(_) => AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
            };
            t.insert(ShortString::from(k.trim()), value);
        }
    }
    t
}

/// One queue to feed and drain: its name and the routing key bound to it.
#[derive(Clone)]
struct Target {
    queue: String,
    routing_key: String,
}

async fn setup(a: &PerfArgs, ch: &Channel) -> Result<Vec<Target>, Error> {
    let builtin = a.exchange.is_empty() || a.exchange.starts_with("amq.");
    if !builtin {
        let kind = match a.exchange_type.as_str() {
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => ExchangeKind::Direct,
        };
        ch.exchange_declare(
            a.exchange.as_str().into(),
            kind,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let run_key = a
        .routing_key
        .clone()
        .unwrap_or_else(|| format!("perf-{}", random_suffix()));
    let mut targets = Vec::new();
    for name in a.queue_names() {
        let (queue, auto_delete) = match name {
            Some(n) => (n, false),
            None => (format!("perf-test-{}", random_suffix()), true),
        };
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                auto_delete,
                ..Default::default()
            },
            parse_queue_args(&a.queue_args),
        )
        .await?;
        let routing_key = if a.queue_pattern.is_some() {
            queue.clone()
        } else {
            run_key.clone()
        };
        let routing_key = if a.exchange.is_empty() {
            queue.clone()
        } else {
            ch.queue_bind(
                queue.as_str().into(),
                a.exchange.as_str().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
            routing_key
        };
        targets.push(Target { queue, routing_key });
    }
    Ok(targets)
}

pub async fn run(a: PerfArgs) -> Result<(), Error> {
    if a.size < 12 {
        return Err("message size (-s) must be at least 12 bytes (timestamp and sequence)".into());
    }
    let id = a
        .id
        .clone()
        .unwrap_or_else(|| format!("test-{}", random_suffix()));
    let setup_conn = connect(&a.uri[0]).await?;
    let setup_ch = setup_conn.create_channel().await?;
    let targets = setup(&a, &setup_ch).await?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let a = Arc::new(a);

    // Consumers first, so no message is published before someone listens. Many consumers
    // share connections (one channel each) to keep the load generator itself light.
    let mut consumer_conns: Vec<Connection> = Vec::new();
    let conns_for_consumers = a.consumers.min(16);
    for i in 0..conns_for_consumers {
        consumer_conns.push(connect(&a.uri[i % a.uri.len()]).await?);
    }
    let mut tasks = Vec::new();
    let consumers = if a.consumers == 0 { 0 } else { a.consumers.max(targets.len().min(a.consumers)) };
    for i in 0..consumers {
        let ch = consumer_conns[i % conns_for_consumers].create_channel().await?;
        let target = targets[i % targets.len()].clone();
        tasks.push(tokio::spawn(consume(ch, target, a.clone(), stats.clone(), stop.clone())));
    }
    let mut producer_conns = Vec::new();
    for i in 0..a.producers {
        let conn = connect(&a.uri[i % a.uri.len()]).await?;
        let ch = conn.create_channel().await?;
        producer_conns.push(conn);
        tasks.push(tokio::spawn(produce(ch, i, targets.clone(), a.clone(), stats.clone(), stop.clone())));
    }

    let started = Instant::now();
    let mut reporter = Reporter::new(id, a.quiet);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        reporter.tick(&stats);
        let timed_out = a.time > 0 && started.elapsed() >= Duration::from_secs(a.time);
        let done = tasks.iter().all(|t| t.is_finished());
        if timed_out || done {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    reporter.summary(&stats, elapsed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    for t in &targets {
        if a.queue.is_none() && a.queue_pattern.is_none() {
            let _ = setup_ch
                .queue_delete(t.queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    let _ = setup_conn.close(200, "perf done".into()).await;
    for c in consumer_conns.iter().chain(producer_conns.iter()) {
        let _ = c.close(200, "perf done".into()).await;
    }
    Ok(())
}

async fn produce(
    ch: Channel,
    index: usize,
    targets: Vec<Target>,
    a: Arc<PerfArgs>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    if let Err(e) = produce_inner(ch, index, targets, a, stats, stop).await {
        eprintln!("producer: {e}");
    }
}

async fn produce_inner(
    ch: Channel,
    index: usize,
    targets: Vec<Target>,
    a: Arc<PerfArgs>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    let props = if a.persistent() {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let opts = BasicPublishOptions {
        mandatory: a.mandatory(),
        ..Default::default()
    };
    // Outstanding confirms are bounded by a semaphore; a waiter task settles them in order.
    let window = a.confirm.map(|n| Arc::new(Semaphore::new(n.max(1))));
    let (confirm_tx, mut confirm_rx) =
        mpsc::channel::<(lapin::PublisherConfirm, tokio::sync::OwnedSemaphorePermit)>(a.confirm.unwrap_or(1).max(1));
    let waiter_stats = stats.clone();
    let waiter = tokio::spawn(async move {
        while let Some((c, permit)) = confirm_rx.recv().await {
            match c.await {
                Ok(lapin::Confirmation::Ack(None)) => waiter_stats.confirmed.fetch_add(1, Ordering::Relaxed),
                Ok(lapin::Confirmation::Ack(Some(_))) => waiter_stats.returned.fetch_add(1, Ordering::Relaxed),
                _ => waiter_stats.nacked.fetch_add(1, Ordering::Relaxed),
            };
            drop(permit);
        }
    });
    if window.is_some() {
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
    }
    let mut body = vec![0u8; a.size];
    let started = Instant::now();
    let mut seq: u64 = 0;
    let exchange: ShortString = a.exchange.as_str().into();
    while !stop.load(Ordering::Relaxed) && (a.pmessages == 0 || seq < a.pmessages) {
        if a.rate > 0 {
            let due = started + Duration::from_secs_f64(seq as f64 / a.rate as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        let permit = match &window {
            Some(w) => Some(w.clone().acquire_owned().await?),
            None => None,
        };
        body[..8].copy_from_slice(&now_nanos().to_be_bytes());
        body[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
        let t = &targets[(seq as usize + index) % targets.len()];
        let confirm = ch
            .basic_publish(exchange.clone(), t.routing_key.as_str().into(), opts, &body, props.clone())
            .await?;
        if let Some(p) = permit {
            if confirm_tx.send((confirm, p)).await.is_err() {
                break;
            }
        }
        seq += 1;
        stats.sent.fetch_add(1, Ordering::Relaxed);
    }
    drop(confirm_tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    Ok(())
}

async fn consume(ch: Channel, target: Target, a: Arc<PerfArgs>, stats: Arc<Stats>, stop: Arc<AtomicBool>) {
    if let Err(e) = consume_inner(ch, target, a, stats, stop).await {
        eprintln!("consumer: {e}");
    }
}

async fn consume_inner(
    ch: Channel,
    target: Target,
    a: Arc<PerfArgs>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    if a.qos > 0 {
        ch.basic_qos(a.qos, BasicQosOptions::default()).await?;
    }
    let mut consumer = ch
        .basic_consume(
            target.queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: a.autoack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let started = Instant::now();
    let mut count: u64 = 0;
    while !stop.load(Ordering::Relaxed) && (a.cmessages == 0 || count < a.cmessages) {
        let next = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await;
        let delivery = match next {
            Err(_) => continue,
            Ok(None) => break,
            Ok(Some(d)) => d?,
        };
        count += 1;
        if delivery.data.len() >= 8 {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&delivery.data[..8]);
            let sent = u64::from_be_bytes(ts);
            stats.record_latency(now_nanos().saturating_sub(sent) / 1000);
        }
        stats.received.fetch_add(1, Ordering::Relaxed);
        if !a.autoack {
            if a.multi_ack_every > 0 {
                if count % a.multi_ack_every == 0 {
                    ch.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: true })
                        .await?;
                }
            } else {
                ch.basic_ack(delivery.delivery_tag, BasicAckOptions::default())
                    .await?;
            }
        }
        if a.consumer_rate > 0 {
            let due = started + Duration::from_secs_f64(count as f64 / a.consumer_rate as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
    }
    Ok(())
}
