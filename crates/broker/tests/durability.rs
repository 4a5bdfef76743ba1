//! Durability through real `kill -9`s: durable definitions and persistent messages survive,
//! transient ones do not, every confirmed message is there after a crash, and a torn journal
//! tail does not stop the node.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{http, reply_code, Node};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn passive(ch: &Channel, q: &str) -> Result<u32, lapin::Error> {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map(|q| q.message_count())
}

#[tokio::test]
async fn durable_definitions_survive_kill9_and_transient_ones_do_not() {
    let mut node = Node::start();
    {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(100));
        ch.queue_declare("orders".into(), durable, args)
            .await
            .unwrap();
        ch.queue_declare(
            "scratch".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_declare(
            "mine".into(),
            QueueDeclareOptions {
                durable: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.exchange_declare(
            "shop".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "orders".into(),
            "shop".into(),
            "order.*".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let (status, body) = http(
            &node,
            "PUT",
            "/api/policies/%2F/ttl",
            Some(r#"{"pattern":"^orders$","definition":{"message-ttl":60000}}"#),
        );
        assert_eq!(status, 201, "{body}");
        node.kill9();
    }
    node.spawn();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(passive(&ch, "orders").await.unwrap(), 0);
    for gone in ["scratch", "mine"] {
        let ch = conn.create_channel().await.unwrap();
        let e = passive(&ch, gone).await.unwrap_err();
        assert_eq!(reply_code(&e), Some(404), "{gone} should not survive");
    }
    // The binding survived: the exchange still routes to the queue.
    ch.basic_publish(
        "shop".into(),
        "order.new".into(),
        BasicPublishOptions::default(),
        b"o1",
        persistent(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(passive(&ch, "orders").await.unwrap(), 1);
    let (_, body) = http(&node, "GET", "/api/queues/%2F/orders", None);
    assert!(
        body.contains(r#""policy":"ttl""#),
        "policy survived: {body}"
    );
    assert!(
        body.contains(r#""x-max-length":100"#),
        "arguments survived: {body}"
    );
}

#[tokio::test]
async fn confirmed_persistent_messages_survive_kill9() {
    let mut node = Node::start();
    {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "jobs".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut confirms = Vec::new();
        for i in 0..1000u32 {
            let props = if i % 10 == 9 {
                BasicProperties::default()
            } else {
                persistent()
            };
            confirms.push(
                ch.basic_publish(
                    "".into(),
                    "jobs".into(),
                    BasicPublishOptions::default(),
                    &i.to_be_bytes(),
                    props,
                )
                .await
                .unwrap(),
            );
        }
        for c in confirms {
            assert!(matches!(c.await.unwrap(), Confirmation::Ack(None)));
        }
        // Consume and ack the first 100, leave 5 delivered but unacked.
        for _ in 0..100 {
            let m = ch
                .basic_get("jobs".into(), BasicGetOptions::default())
                .await
                .unwrap()
                .unwrap();
            m.ack(BasicAckOptions::default()).await.unwrap();
        }
        for _ in 0..5 {
            ch.basic_get("jobs".into(), BasicGetOptions::default())
                .await
                .unwrap()
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        node.kill9();
    }
    node.spawn();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut seen = HashSet::new();
    while let Some(m) = ch
        .basic_get("jobs".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let i = u32::from_be_bytes(m.delivery.data[..4].try_into().unwrap());
        assert!(
            m.delivery.redelivered,
            "recovered messages are marked redelivered"
        );
        assert_ne!(i % 10, 9, "transient message {i} survived a restart");
        seen.insert(i);
    }
    for i in (100..1000).filter(|i| i % 10 != 9) {
        assert!(
            seen.contains(&i),
            "confirmed persistent message {i} was lost"
        );
    }
    assert!(
        node.log().contains("recovered"),
        "start-up reports recovery: {}",
        node.log()
    );
}

#[tokio::test]
async fn crash_at_random_instants_loses_no_confirmed_message() {
    let mut node = Node::start();
    let confirmed: Arc<Mutex<HashSet<u32>>> = Arc::default();
    let mut next = 0u32;
    {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "crash".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    for round in 0..4u64 {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let confirmed_in = confirmed.clone();
        let start = next;
        let publisher = tokio::spawn(async move {
            let mut i = start;
            loop {
                let Ok(c) = ch
                    .basic_publish(
                        "".into(),
                        "crash".into(),
                        BasicPublishOptions::default(),
                        &i.to_be_bytes(),
                        persistent(),
                    )
                    .await
                else {
                    return i;
                };
                let confirmed_in = confirmed_in.clone();
                let id = i;
                tokio::spawn(async move {
                    if let Ok(Confirmation::Ack(_)) = c.await {
                        confirmed_in.lock().unwrap().insert(id);
                    }
                });
                i += 1;
                if i.is_multiple_of(50) {
                    tokio::task::yield_now().await;
                }
            }
        });
        // A pseudo-random instant between 150 and 450 ms.
        let wait = 150 + (round * 7919 + u64::from(next)) % 300;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        node.kill9();
        next = tokio::time::timeout(Duration::from_secs(10), publisher)
            .await
            .unwrap()
            .unwrap()
            + 1;
        drop(conn);
        node.spawn();
    }
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut seen = HashSet::new();
    while let Some(m) = ch
        .basic_get("crash".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let i = u32::from_be_bytes(m.delivery.data[..4].try_into().unwrap());
        if !seen.insert(i) {
            assert!(m.delivery.redelivered, "duplicate {i} without redelivered");
        }
    }
    let confirmed = confirmed.lock().unwrap();
    assert!(
        confirmed.len() > 100,
        "the test published too little to mean anything: {}",
        confirmed.len()
    );
    let lost: Vec<u32> = confirmed
        .iter()
        .filter(|i| !seen.contains(i))
        .copied()
        .collect();
    println!(
        "crash test: {} confirmed, {} consumed after 4 kill -9s, {} lost",
        confirmed.len(),
        seen.len(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} confirmed messages lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[tokio::test]
async fn torn_or_corrupt_journal_is_repaired_at_start() {
    let mut node = Node::start();
    {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "j".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        for i in 0..10u8 {
            ch.basic_publish(
                "".into(),
                "j".into(),
                BasicPublishOptions::default(),
                &[i; 100],
                persistent(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        node.kill9();
    }
    let journal_dir = node.dir.join("data/journal");
    let seg = std::fs::read_dir(&journal_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .max()
        .expect("a journal segment");
    let mut data = std::fs::read(&seg).unwrap();
    // Flip a bit inside the third record's body, and append a torn half-record.
    let third = data
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"WRN1")
        .nth(2)
        .unwrap()
        .0;
    data[third + 60] ^= 0x01;
    data.extend_from_slice(b"WRN1\x00\x00\x10\x00garbage");
    std::fs::write(&seg, &data).unwrap();
    node.spawn();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        passive(&ch, "j").await.unwrap(),
        9,
        "only the corrupt record is lost"
    );
    let log = node.log();
    assert!(log.contains("skipped 1 corrupt record"), "{log}");
    assert!(log.contains("truncated a torn tail"), "{log}");
}

#[tokio::test]
async fn delayed_messages_of_a_durable_exchange_survive_kill9() {
    let mut node = Node::start();
    {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-delayed-type".into(),
            AMQPValue::LongString("direct".into()),
        );
        ch.exchange_declare(
            "later".into(),
            ExchangeKind::Custom("x-delayed-message".into()),
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
        ch.queue_declare(
            "due".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            "due".into(),
            "later".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut headers = FieldTable::default();
        headers.insert("x-delay".into(), AMQPValue::LongInt(2500));
        let c = ch
            .basic_publish(
                "later".into(),
                "k".into(),
                BasicPublishOptions::default(),
                b"wake up",
                persistent().with_headers(headers),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(matches!(c, Confirmation::Ack(_)));
        node.kill9();
    }
    node.spawn();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        passive(&ch, "due").await.unwrap(),
        0,
        "not due yet after the restart"
    );
    let mut arrived = false;
    for _ in 0..100 {
        if passive(&ch, "due").await.unwrap() == 1 {
            arrived = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(arrived, "the held message was lost in the crash");
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Publishes `n` bodies of 1 KiB numbered in their first 8 bytes, with confirms (awaited in
/// windows of 2,000); every one must be acked.
async fn publish_numbered(ch: &Channel, queue: &str, n: usize, props: BasicProperties) {
    let mut body = vec![b'x'; 1024];
    let mut pending = Vec::new();
    for i in 0..n {
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let c = ch
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await
            .unwrap();
        pending.push(c);
        if pending.len() == 2000 || i == n - 1 {
            for c in pending.drain(..) {
                assert!(c.await.unwrap().is_ack());
            }
        }
    }
}

/// Consumes `n` messages from `queue` and checks they are `publish_numbered`'s, in order.
/// With `ack_every`, acks (multiple) every that many and at the end; else consumes no-ack.
async fn drain_numbered(ch: &Channel, queue: &str, n: usize, ack_every: Option<usize>) {
    use futures::StreamExt;
    let options = BasicConsumeOptions {
        no_ack: ack_every.is_none(),
        ..Default::default()
    };
    let mut consumer = ch
        .basic_consume(queue.into(), "drain".into(), options, FieldTable::default())
        .await
        .unwrap();
    for i in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("delivery")
            .unwrap()
            .unwrap();
        let seq = u64::from_be_bytes(d.data[..8].try_into().unwrap());
        assert_eq!((seq as usize, d.data.len()), (i, 1024), "message {i}");
        if ack_every.is_some_and(|k| i % k == k - 1 || i == n - 1) {
            d.ack(BasicAckOptions { multiple: true }).await.unwrap();
        }
    }
}

/// A deep queue does not hold its messages in memory: 200,000 × 1 KiB persistent messages
/// (about 200 MB of bodies, more than 400 MB in memory without paging) leave the node under
/// 400 MB, and all of them come back, in order, when it is drained.
#[tokio::test(flavor = "multi_thread")]
async fn a_deep_queue_pages_to_disk_and_drains_completely() {
    const N: usize = 200_000;
    let mut node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("deep".into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_numbered(&ch, "deep", N, persistent()).await;
    let full = rss_mb(node.pid());
    println!("RSS with {N} x 1 KiB persistent messages queued: {full:.0} MB");
    assert!(full < 400.0, "RSS {full:.0} MB with a deep queue");
    // After a crash the recovered queue is paged the same way.
    drop(conn);
    node.kill9();
    node.spawn();
    let recovered = rss_mb(node.pid());
    println!("RSS after recovering them: {recovered:.0} MB");
    assert!(recovered < 400.0, "RSS {recovered:.0} MB after recovery");
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(passive(&ch, "deep").await.unwrap() as usize, N);
    ch.basic_qos(1000, BasicQosOptions::default())
        .await
        .unwrap();
    drain_numbered(&ch, "deep", N, Some(500)).await;
    println!(
        "drained {N} messages; RSS after draining: {:.0} MB",
        rss_mb(node.pid())
    );
}

/// Transient messages page too (written out as records that recovery ignores): a deep
/// non-durable queue stays small in memory and drains completely; after a restart neither
/// it nor the transient messages paged out of a durable queue come back.
#[tokio::test(flavor = "multi_thread")]
async fn a_deep_transient_queue_pages_too_and_is_gone_after_a_restart() {
    const N: usize = 200_000;
    let mut node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "deep-transient".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    publish_numbered(&ch, "deep-transient", N, BasicProperties::default()).await;
    let full = rss_mb(node.pid());
    println!("RSS with {N} x 1 KiB transient messages queued: {full:.0} MB");
    assert!(full < 400.0, "RSS {full:.0} MB with a deep transient queue");
    drain_numbered(&ch, "deep-transient", N, None).await;
    // Refill it, and a durable queue, with transient messages (beyond the in-memory window,
    // so most are paged out to the journal), then restart: none of them comes back.
    publish_numbered(&ch, "deep-transient", 50_000, BasicProperties::default()).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("durable-transient".into(), durable, FieldTable::default())
        .await
        .unwrap();
    publish_numbered(&ch, "durable-transient", 50_000, BasicProperties::default()).await;
    drop(conn);
    node.terminate();
    node.spawn();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        reply_code(&passive(&ch, "deep-transient").await.unwrap_err()),
        Some(404),
        "a non-durable queue does not survive a restart"
    );
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(
        passive(&ch, "durable-transient").await.unwrap(),
        0,
        "paged-out transient messages were recovered"
    );
    let log = node.log();
    let last = log
        .lines()
        .rfind(|l| l.contains("recovered "))
        .unwrap_or_default();
    assert!(last.contains("recovered 0 messages"), "{last}");
}
