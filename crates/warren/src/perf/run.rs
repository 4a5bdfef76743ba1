//! Topology setup, producers, consumers and the clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::sync::Semaphore;
use warren_amqp::content::encode_properties;
use warren_amqp::frame::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use warren_amqp::outgoing::Outgoing;
use warren_amqp::{
    basic, confirm, exchange, queue, AMQPClass, AMQPValue, BasicProperties, FieldTable, LongString,
    ShortString,
};

use super::args::PerfArgs;
use super::stats::{Reporter, Stats};
use warren_broker::client::{confirm_tag, deliver_tag, parse_uri, Client, Error, Uri};

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn random_suffix() -> String {
    format!(
        "{:08x}",
        (now_nanos() ^ ((std::process::id() as u64) << 20)) as u32
    )
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

async fn setup(a: &PerfArgs, c: &mut Client) -> Result<Vec<Target>, Error> {
    let builtin = a.exchange.is_empty() || a.exchange.starts_with("amq.");
    if !builtin {
        c.call(AMQPClass::Exchange(exchange::AMQPMethod::Declare(
            exchange::Declare {
                exchange: a.exchange.as_str().into(),
                kind: a.exchange_type.as_str().into(),
                passive: false,
                durable: false,
                auto_delete: false,
                internal: false,
                nowait: false,
                arguments: FieldTable::default(),
            },
        )))
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
        c.call(AMQPClass::Queue(queue::AMQPMethod::Declare(
            queue::Declare {
                queue: queue.as_str().into(),
                passive: false,
                durable: a.persistent(),
                exclusive: false,
                auto_delete,
                nowait: false,
                arguments: parse_queue_args(&a.queue_args),
            },
        )))
        .await?;
        let routing_key = if a.exchange.is_empty() {
            queue.clone()
        } else {
            let key = if a.queue_pattern.is_some() {
                queue.clone()
            } else {
                run_key.clone()
            };
            c.call(AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: queue.as_str().into(),
                exchange: a.exchange.as_str().into(),
                routing_key: key.as_str().into(),
                nowait: false,
                arguments: FieldTable::default(),
            })))
            .await?;
            key
        };
        targets.push(Target { queue, routing_key });
    }
    Ok(targets)
}

pub async fn run(a: PerfArgs) -> Result<(), Error> {
    if a.size < 12 {
        return Err("message size (-s) must be at least 12 bytes (timestamp and sequence)".into());
    }
    let uris: Vec<Uri> = a
        .uri
        .iter()
        .map(|u| parse_uri(u))
        .collect::<Result<_, _>>()?;
    if let Some(n) = a.idle_connections {
        return idle_connections(&uris, n, a.time).await;
    }
    let id =
        a.id.clone()
            .unwrap_or_else(|| format!("test-{}", random_suffix()));
    let mut setup_client = Client::connect(&uris[0]).await?;
    let targets = setup(&a, &mut setup_client).await?;
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let a = Arc::new(a);

    // Consumers first, so no message is published before someone listens.
    let mut tasks = Vec::new();
    for i in 0..a.consumers {
        let c = Client::connect(&uris[i % uris.len()]).await?;
        let target = targets[i % targets.len()].clone();
        tasks.push(tokio::spawn(report(
            consume(c, target, a.clone(), stats.clone(), stop.clone()),
            "consumer",
        )));
    }
    for i in 0..a.producers {
        let c = Client::connect(&uris[i % uris.len()]).await?;
        tasks.push(tokio::spawn(report(
            produce(
                c,
                i,
                targets.clone(),
                a.clone(),
                stats.clone(),
                stop.clone(),
            ),
            "producer",
        )));
    }

    let started = Instant::now();
    let mut reporter = Reporter::new(id, a.quiet);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        reporter.tick(&stats);
        let timed_out = a.time > 0 && started.elapsed() >= Duration::from_secs(a.time);
        if timed_out || tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    reporter.summary(&stats, started.elapsed());
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    if a.queue.is_none() && a.queue_pattern.is_none() {
        for t in &targets {
            let _ = setup_client
                .call(AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                    queue: t.queue.as_str().into(),
                    if_unused: false,
                    if_empty: false,
                    nowait: false,
                })))
                .await;
        }
    }
    Ok(())
}

async fn report(f: impl std::future::Future<Output = Result<(), Error>>, role: &str) {
    if let Err(e) = f.await {
        eprintln!("{role}: {e}");
    }
}

async fn produce(
    c: Client,
    index: usize,
    targets: Vec<Target>,
    a: Arc<PerfArgs>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    let Client {
        mut reader,
        mut writer,
        frame_max,
    } = c;
    let props = if a.persistent() {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let raw_props = encode_properties(&props);
    // Outstanding confirms are bounded by a semaphore refilled by the reader as acks arrive.
    let window = a.confirm.map(|n| n.max(1));
    let permits = Arc::new(Semaphore::new(window.unwrap_or(0)));
    if window.is_some() {
        let mut out = Outgoing::new();
        out.method(
            1,
            &AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        );
        writer.write(&mut out).await?;
        loop {
            let f = reader.frame().await?;
            if f.kind == FRAME_METHOD {
                break;
            }
        }
    }
    let reader_permits = permits.clone();
    let reader_stats = stats.clone();
    let confirms = tokio::spawn(async move {
        let mut last_settled = 0u64;
        loop {
            let Ok(f) = reader.frame().await else { return };
            if f.kind != FRAME_METHOD || f.payload.len() < 4 {
                continue;
            }
            match (f.payload[2], f.payload[3]) {
                (0, 80) | (0, 120) => {
                    let Some((tag, multiple)) = confirm_tag(&f.payload) else {
                        continue;
                    };
                    let n = if multiple {
                        tag.saturating_sub(last_settled)
                    } else {
                        1
                    };
                    last_settled = last_settled.max(tag);
                    let counter = if f.payload[3] == 80 {
                        &reader_stats.confirmed
                    } else {
                        &reader_stats.nacked
                    };
                    counter.fetch_add(n, Ordering::Relaxed);
                    reader_permits.add_permits(n as usize);
                }
                (0, 50) => {
                    reader_stats.returned.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    });
    let body_template = vec![0u8; a.size];
    // Bodies are reused once written (only the 12-byte header changes), so the load
    // generator does not pay a body-sized allocation and copy per message: with large
    // bodies that, not the broker, would set the rate.
    let mut spare: Vec<Bytes> = Vec::new();
    let mut written: Vec<Bytes> = Vec::new();
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut out = Outgoing::new();
    // At most 256 messages and about 256 KiB per write: the few bodies a batch reuses then stay
    // in the core's cache, and copying them into the socket is most of a large message's cost.
    let by_bytes = (256 * 1024 / a.size.max(1) as u64).clamp(1, 256);
    let batch_max: u64 = match window {
        Some(w) => (w as u64).clamp(1, by_bytes),
        None => by_bytes,
    };
    while !stop.load(Ordering::Relaxed) && (a.pmessages == 0 || seq < a.pmessages) {
        let mut batch = batch_max;
        if a.pmessages > 0 {
            batch = batch.min(a.pmessages - seq);
        }
        if a.rate > 0 {
            let due = started + Duration::from_secs_f64(seq as f64 / a.rate as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
            let allowed = (started.elapsed().as_secs_f64() * a.rate as f64) as u64 + 1;
            batch = batch.min(allowed.saturating_sub(seq).max(1));
        }
        if window.is_some() {
            // Take what is free now (at least one), so a small window still pipelines.
            let p = permits.acquire().await?;
            p.forget();
            let extra = (permits.available_permits() as u64).min(batch - 1);
            if extra > 0 {
                permits.acquire_many(extra as u32).await?.forget();
            }
            batch = extra + 1;
        }
        for _ in 0..batch {
            let mut body = spare
                .pop()
                .and_then(|b| b.try_into_mut().ok())
                .unwrap_or_else(|| BytesMut::from(&body_template[..]));
            body[..8].copy_from_slice(&now_nanos().to_be_bytes());
            body[8..12].copy_from_slice(&(seq as u32).to_be_bytes());
            let body = body.freeze();
            let t = &targets[(seq as usize + index) % targets.len()];
            out.publish(1, &a.exchange, &t.routing_key, a.mandatory());
            out.content(1, &raw_props, &body, frame_max);
            written.push(body);
            seq += 1;
        }
        writer.write(&mut out).await?;
        spare.append(&mut written);
        stats.sent.fetch_add(batch, Ordering::Relaxed);
    }
    if window.is_some() {
        let deadline = Instant::now() + Duration::from_secs(5);
        while stats.confirmed.load(Ordering::Relaxed) + stats.nacked.load(Ordering::Relaxed)
            < stats.sent.load(Ordering::Relaxed)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    confirms.abort();
    Ok(())
}

async fn consume(
    c: Client,
    target: Target,
    a: Arc<PerfArgs>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<(), Error> {
    let mut c = c;
    if a.qos > 0 {
        c.call(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: a.qos,
            global: false,
        })))
        .await?;
    }
    c.call(AMQPClass::Basic(basic::AMQPMethod::Consume(
        basic::Consume {
            queue: target.queue.as_str().into(),
            consumer_tag: "".into(),
            no_local: false,
            no_ack: a.autoack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        },
    )))
    .await?;
    let Client {
        mut reader,
        mut writer,
        ..
    } = c;
    let started = Instant::now();
    let mut count: u64 = 0;
    let mut tag = 0u64;
    let mut want_body_start = false;
    let mut out = Outgoing::new();
    while !stop.load(Ordering::Relaxed) && (a.cmessages == 0 || count < a.cmessages) {
        let f = match tokio::time::timeout(Duration::from_millis(200), reader.frame()).await {
            Err(_) => continue,
            Ok(f) => f?,
        };
        match f.kind {
            FRAME_METHOD if f.payload.len() >= 4 && f.payload[3] == 60 => {
                tag = deliver_tag(&f.payload).unwrap_or(0);
                want_body_start = true;
            }
            FRAME_HEADER => {}
            FRAME_BODY if want_body_start => {
                want_body_start = false;
                count += 1;
                if f.payload.len() >= 8 {
                    let sent = u64::from_be_bytes(f.payload[..8].try_into().unwrap_or([0; 8]));
                    stats.record_latency(now_nanos().saturating_sub(sent) / 1000);
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                if !a.autoack {
                    if a.multi_ack_every > 0 {
                        if count.is_multiple_of(a.multi_ack_every) {
                            out.confirm(1, tag, true, true);
                        }
                    } else {
                        out.confirm(1, tag, false, true);
                    }
                }
                if a.consumer_rate > 0 {
                    let due =
                        started + Duration::from_secs_f64(count as f64 / a.consumer_rate as f64);
                    let now = Instant::now();
                    if due > now {
                        writer.write(&mut out).await?;
                        tokio::time::sleep(due - now).await;
                    }
                }
            }
            _ => {}
        }
        // Acks for everything already read go out in one write.
        if !out.is_empty() && !reader.has_buffered_frame() {
            writer.write(&mut out).await?;
        }
    }
    Ok(())
}

/// Opens `n` connections (16 at a time), reports when all are open, holds them `secs`.
async fn idle_connections(uris: &[Uri], n: usize, secs: u64) -> Result<(), Error> {
    let started = Instant::now();
    let mut held = Vec::with_capacity(n);
    let mut pending = Vec::new();
    for i in 0..n {
        let uri = uris[i % uris.len()].clone();
        pending.push(tokio::spawn(async move { Client::connect(&uri).await }));
        if pending.len() == 16 || i + 1 == n {
            for p in pending.drain(..) {
                held.push(p.await??);
            }
        }
    }
    println!(
        "opened {} idle connections in {:.3}s; holding them for {secs}s",
        held.len(),
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    Ok(())
}
