//! Messaging through a real `warren server` with lapin: publishing, consuming, routing,
//! acknowledgements, prefetch, confirms, returns and transactions.

mod common;

use std::time::Duration;

use common::Node;
use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, ExchangeKind};

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish");
}

async fn declare(ch: &Channel, name: &str) -> String {
    ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare")
    .name()
    .to_string()
}

async fn get_body(ch: &Channel, queue: &str) -> Option<Vec<u8>> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .map(|m| m.delivery.data.clone())
}

/// Drains a queue with basic.get and returns the bodies as strings.
async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut v = Vec::new();
    while let Some(b) = get_body(ch, queue).await {
        v.push(String::from_utf8(b).unwrap());
    }
    v
}

#[tokio::test]
async fn hello_world_round_trip_keeps_body_and_properties() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "hello").await;
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_correlation_id("c-1".into())
        .with_delivery_mode(2);
    ch.basic_publish(
        "".into(),
        "hello".into(),
        BasicPublishOptions::default(),
        b"Hello World!",
        props,
    )
    .await
    .unwrap();
    let mut consumer = ch
        .basic_consume(
            "hello".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("delivery in time")
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"Hello World!");
    assert_eq!(d.routing_key.as_str(), "hello");
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    assert_eq!(
        d.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("c-1")
    );
    assert_eq!(*d.properties.delivery_mode(), Some(2));
    // A large body crosses several frames both ways and arrives intact.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    publish(&ch, "", "hello", &big).await;
    let d = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.data, big);
}

#[tokio::test]
async fn work_queue_prefetch_one_and_requeue_on_channel_close() {
    let node = Node::start();
    let conn = node.connect().await;
    let pubch = conn.create_channel().await.unwrap();
    declare(&pubch, "tasks").await;
    for i in 0..4 {
        publish(&pubch, "", "tasks", format!("task{i}").as_bytes()).await;
    }
    // Worker A takes one message with prefetch 1 and never acks it.
    let a = conn.create_channel().await.unwrap();
    a.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut ca = a
        .basic_consume(
            "tasks".into(),
            "a".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), ca.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.data, b"task0");
    // With prefetch 1 nothing more arrives for A.
    assert!(tokio::time::timeout(Duration::from_millis(300), ca.next())
        .await
        .is_err());
    // Worker B gets the rest in order while A holds task0.
    let b = conn.create_channel().await.unwrap();
    b.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut cb = b
        .basic_consume(
            "tasks".into(),
            "b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for want in ["task1", "task2", "task3"] {
        let d = tokio::time::timeout(Duration::from_secs(5), cb.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(d.data, want.as_bytes());
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // A dies: task0 goes back to the queue, redelivered, and B receives it.
    a.close(200, "bye".into()).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(5), cb.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"task0");
    assert!(d.redelivered);
    d.ack(BasicAckOptions::default()).await.unwrap();
    let q = pubch
        .queue_declare(
            "tasks".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 0);
}

#[tokio::test]
async fn nack_requeue_and_reject_drop_and_multiple_ack() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "q").await;
    for i in 0..3 {
        publish(&ch, "", "q", format!("m{i}").as_bytes()).await;
    }
    let m0 = ch
        .basic_get("q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    let m1 = ch
        .basic_get("q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m1.message_count, 1);
    // nack with requeue puts m0 back at the head, redelivered.
    m0.nack(BasicNackOptions {
        requeue: true,
        multiple: false,
    })
    .await
    .unwrap();
    let again = ch
        .basic_get("q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery.data, b"m0");
    assert!(again.delivery.redelivered);
    // reject without requeue drops m1; multiple ack settles the rest.
    m1.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let m2 = ch
        .basic_get("q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    ch.basic_ack(m2.delivery.delivery_tag, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    assert!(get_body(&ch, "q").await.is_none());
    conn.close(200, "".into()).await.unwrap();
    // Nothing came back after the connection closed: everything was settled.
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert!(get_body(&ch, "q").await.is_none());
}

#[tokio::test]
async fn fanout_direct_topic_and_headers_route_as_rabbitmq() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let ex = |n: &'static str, k: ExchangeKind| {
        let ch = ch.clone();
        async move {
            ch.exchange_declare(
                n.into(),
                k,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap()
        }
    };
    ex("logs", ExchangeKind::Fanout).await;
    ex("direct_logs", ExchangeKind::Direct).await;
    ex("topic_logs", ExchangeKind::Topic).await;
    ex("hdrs", ExchangeKind::Headers).await;
    for q in ["f1", "f2", "d_err", "t_orange", "t_lazy", "h_all", "h_any"] {
        declare(&ch, q).await;
    }
    let bind = |q: &'static str, x: &'static str, k: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            ch.queue_bind(
                q.into(),
                x.into(),
                k.into(),
                QueueBindOptions::default(),
                args,
            )
            .await
            .unwrap()
        }
    };
    bind("f1", "logs", "", FieldTable::default()).await;
    bind("f2", "logs", "", FieldTable::default()).await;
    bind("d_err", "direct_logs", "error", FieldTable::default()).await;
    bind(
        "t_orange",
        "topic_logs",
        "*.orange.*",
        FieldTable::default(),
    )
    .await;
    bind("t_lazy", "topic_logs", "lazy.#", FieldTable::default()).await;
    let table = |pairs: &[(&str, &str)]| {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(
                ShortString::from(*k),
                AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())),
            );
        }
        t
    };
    bind(
        "h_all",
        "hdrs",
        "",
        table(&[("x-match", "all"), ("format", "pdf"), ("type", "report")]),
    )
    .await;
    bind(
        "h_any",
        "hdrs",
        "",
        table(&[("x-match", "any"), ("format", "pdf"), ("type", "report")]),
    )
    .await;

    publish(&ch, "logs", "ignored", b"broadcast").await;
    publish(&ch, "direct_logs", "error", b"E").await;
    publish(&ch, "direct_logs", "info", b"I").await;
    for k in [
        "quick.orange.rabbit",
        "lazy.pink.rabbit",
        "lazy.orange.elephant",
        "quick.orange.male.rabbit",
        "lazy",
    ] {
        publish(&ch, "topic_logs", k, k.as_bytes()).await;
    }
    for (body, hs) in [
        (
            "pdf-report",
            table(&[("format", "pdf"), ("type", "report")]),
        ),
        ("pdf-only", table(&[("format", "pdf")])),
    ] {
        ch.basic_publish(
            "hdrs".into(),
            "".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_headers(hs),
        )
        .await
        .unwrap();
    }
    assert_eq!(drain(&ch, "f1").await, ["broadcast"]);
    assert_eq!(drain(&ch, "f2").await, ["broadcast"]);
    assert_eq!(drain(&ch, "d_err").await, ["E"]);
    assert_eq!(
        drain(&ch, "t_orange").await,
        ["quick.orange.rabbit", "lazy.orange.elephant"]
    );
    assert_eq!(
        drain(&ch, "t_lazy").await,
        ["lazy.pink.rabbit", "lazy.orange.elephant", "lazy"]
    );
    assert_eq!(drain(&ch, "h_all").await, ["pdf-report"]);
    assert_eq!(drain(&ch, "h_any").await, ["pdf-report", "pdf-only"]);
}

#[tokio::test]
async fn exchange_to_exchange_bindings_and_alternate_exchange() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString("backup".into()),
    );
    ch.exchange_declare(
        "backup".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "confirm.ex".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args,
    )
    .await
    .unwrap();
    ch.exchange_declare(
        "upstream".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for q in ["routed", "backup_q", "via_e2e"] {
        declare(&ch, q).await;
    }
    ch.queue_bind(
        "routed".into(),
        "confirm.ex".into(),
        "key1".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "backup_q".into(),
        "backup".into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.exchange_bind(
        "confirm.ex".into(),
        "upstream".into(),
        "a.#".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "via_e2e".into(),
        "upstream".into(),
        "a.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();

    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    // Unroutable on confirm.ex goes to the alternate exchange, and mandatory does not return it.
    let confirm = ch
        .basic_publish(
            "confirm.ex".into(),
            "nokey".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"to-backup",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    publish(&ch, "confirm.ex", "key1", b"direct").await;
    // upstream -> (a.#) confirm.ex: key a.b does not match key1 there, so confirm.ex's AE gets it;
    // the direct queue binding a.* on upstream also matches.
    publish(&ch, "upstream", "a.b", b"e2e").await;
    assert_eq!(drain(&ch, "backup_q").await, ["to-backup", "e2e"]);
    assert_eq!(drain(&ch, "routed").await, ["direct"]);
    assert_eq!(drain(&ch, "via_e2e").await, ["e2e"]);
}

#[tokio::test]
async fn confirms_ack_everything_and_mandatory_returns_come_first() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "c").await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..500u32 {
        pending.push(
            ch.basic_publish(
                "".into(),
                "c".into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for p in pending {
        assert!(matches!(p.await.unwrap(), Confirmation::Ack(None)));
    }
    let q = ch
        .queue_declare(
            "c".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 500);
    let returned = ch
        .basic_publish(
            "".into(),
            "no-such-queue".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"lost",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    match returned {
        Confirmation::Ack(Some(r)) => {
            assert_eq!(r.reply_code, 312);
            assert_eq!(r.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(r.delivery.data, b"lost");
        }
        other => panic!("expected ack with returned message, got {other:?}"),
    }
}

#[tokio::test]
async fn transactions_commit_and_rollback() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "tx").await;
    ch.tx_select().await.unwrap();
    publish(&ch, "", "tx", b"rolled-back").await;
    ch.tx_rollback().await.unwrap();
    publish(&ch, "", "tx", b"committed").await;
    let other = conn.create_channel().await.unwrap();
    assert!(
        get_body(&other, "tx").await.is_none(),
        "uncommitted publish is invisible"
    );
    ch.tx_commit().await.unwrap();
    assert_eq!(drain(&other, "tx").await, ["committed"]);
}

#[tokio::test]
async fn get_purge_delete_and_cancel_notification() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "p").await;
    for _ in 0..3 {
        publish(&ch, "", "p", b"x").await;
    }
    let n = ch
        .queue_purge("p".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert!(get_body(&ch, "p").await.is_none());
    // Server-named exclusive queue.
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"), "{}", q.name());
    // A consumer is told with basic.cancel when its queue is deleted.
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "p".into(),
            "watcher".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let deleted = ch
        .queue_delete("p".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    let end = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .expect("stream ends");
    assert!(
        end.is_none(),
        "consumer stream should end after basic.cancel"
    );
}

#[tokio::test]
async fn auto_delete_queue_goes_with_its_last_consumer_and_exclusive_with_its_connection() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "ad".into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_consume(
        "ad".into(),
        "t".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.basic_cancel("t".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    ch.queue_declare(
        "ex".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "".into()).await.unwrap();
    let conn = node.connect().await;
    for q in ["ad", "ex"] {
        let ch = conn.create_channel().await.unwrap();
        let e = ch
            .queue_declare(
                q.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(common::reply_code(&e), Some(404), "{q}: {e}");
    }
}

#[tokio::test]
async fn consumer_priorities_and_global_prefetch() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "prio").await;
    let low = conn.create_channel().await.unwrap();
    let high = conn.create_channel().await.unwrap();
    let mut hi_args = FieldTable::default();
    hi_args.insert("x-priority".into(), AMQPValue::LongInt(10));
    let mut lc = low
        .basic_consume(
            "prio".into(),
            "low".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut hc = high
        .basic_consume(
            "prio".into(),
            "high".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            hi_args,
        )
        .await
        .unwrap();
    for _ in 0..5 {
        publish(&ch, "", "prio", b"p").await;
    }
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), hc.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert!(tokio::time::timeout(Duration::from_millis(200), lc.next())
        .await
        .is_err());

    // global prefetch 2 across two consumers on one channel.
    declare(&ch, "g1").await;
    declare(&ch, "g2").await;
    for q in ["g1", "g2"] {
        for _ in 0..3 {
            publish(&ch, "", q, b"g").await;
        }
    }
    let gch = conn.create_channel().await.unwrap();
    gch.basic_qos(2, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut c1 = gch
        .basic_consume(
            "g1".into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut c2 = gch
        .basic_consume(
            "g2".into(),
            "c2".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = 0;
    loop {
        tokio::select! {
            Some(Ok(_)) = c1.next() => got += 1,
            Some(Ok(_)) = c2.next() => got += 1,
            _ = tokio::time::sleep(Duration::from_millis(400)) => break,
        }
    }
    assert_eq!(got, 2, "global prefetch 2 limits the whole channel");
}

#[tokio::test]
async fn basic_recover_redelivers_unacked_messages_and_amqplain_logs_in() {
    let node = Node::start();
    let uri = format!("{}?auth_mechanism=amqplain", node.uri());
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .expect("AMQPLAIN login");
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "rec").await;
    publish(&ch, "", "rec", b"again").await;
    let first = ch
        .basic_get("rec".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert!(!first.delivery.redelivered);
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .unwrap();
    let again = ch
        .basic_get("rec".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery.data, b"again");
    assert!(
        again.delivery.redelivered,
        "recovered messages come back redelivered"
    );
}
