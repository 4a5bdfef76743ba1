//! Queue features through lapin against a real node: TTL, dead-lettering with `x-death`,
//! length limits, priorities, single active consumer, queue expiry, policies (through the
//! management API), direct reply-to and the delayed-message exchange.

mod common;

use std::time::Duration;

use common::{http, reply_code, reply_text, Node};
use futures::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ExchangeKind};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

async fn declare(ch: &Channel, name: &str, a: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), a)
        .await
        .unwrap();
}

async fn publish_props(ch: &Channel, ex: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        ex.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap();
}

async fn get(ch: &Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    ch.basic_get(q.into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
}

async fn count(ch: &Channel, q: &str) -> u32 {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap()
    .message_count()
}

/// Polls until `f` is true or 5 s pass.
async fn eventually<F: std::future::Future<Output = bool>>(mut f: impl FnMut() -> F) -> bool {
    for _ in 0..100 {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn header<'a>(m: &'a lapin::message::BasicGetMessage, key: &str) -> Option<&'a AMQPValue> {
    m.delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(key))
}

fn text(v: Option<&AMQPValue>) -> String {
    match v {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.to_string(),
        other => format!("{other:?}"),
    }
}

async fn dlx_setup(ch: &Channel) {
    ch.exchange_declare(
        "dlx".into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(ch, "dlq", FieldTable::default()).await;
    ch.queue_bind(
        "dlq".into(),
        "dlx".into(),
        "dead".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn ttl_dead_letters_with_x_death_even_without_consumers() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    dlx_setup(&ch).await;
    declare(
        &ch,
        "work",
        args(&[
            ("x-message-ttl", AMQPValue::LongInt(200)),
            ("x-dead-letter-exchange", s("dlx")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    publish_props(&ch, "", "work", b"late", BasicProperties::default()).await;
    assert!(
        eventually(|| async { count(&ch, "dlq").await == 1 }).await,
        "message never dead-lettered"
    );
    assert_eq!(count(&ch, "work").await, 0);
    let m = get(&ch, "dlq").await.unwrap();
    assert_eq!(m.delivery.data, b"late");
    assert_eq!(m.delivery.exchange.as_str(), "dlx");
    assert_eq!(m.delivery.routing_key.as_str(), "dead");
    let Some(AMQPValue::FieldArray(deaths)) = header(&m, "x-death") else {
        panic!("no x-death: {:?}", m.delivery.properties.headers());
    };
    let AMQPValue::FieldTable(d) = &deaths.as_slice()[0] else {
        panic!()
    };
    let get = |k: &str| d.inner().get(k);
    assert_eq!(text(get("reason")), "expired");
    assert_eq!(text(get("queue")), "work");
    assert_eq!(text(get("exchange")), "");
    assert!(
        matches!(get("count"), Some(AMQPValue::LongLongInt(1))),
        "{:?}",
        get("count")
    );
    assert!(matches!(get("time"), Some(AMQPValue::Timestamp(_))));
    match get("routing-keys") {
        Some(AMQPValue::FieldArray(a)) => assert_eq!(text(a.as_slice().first()), "work"),
        other => panic!("routing-keys: {other:?}"),
    }
    assert_eq!(text(header(&m, "x-first-death-reason")), "expired");
    assert_eq!(text(header(&m, "x-first-death-queue")), "work");
    assert_eq!(text(header(&m, "x-last-death-reason")), "expired");
}

#[tokio::test]
async fn per_message_expiration_only_expires_at_the_head() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    dlx_setup(&ch).await;
    declare(
        &ch,
        "delay",
        args(&[
            ("x-dead-letter-exchange", s("dlx")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    publish_props(
        &ch,
        "",
        "delay",
        b"long",
        BasicProperties::default().with_expiration("60000".into()),
    )
    .await;
    publish_props(
        &ch,
        "",
        "delay",
        b"short",
        BasicProperties::default().with_expiration("100".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // "short" waits behind "long", as the tutorial's caveat says.
    assert_eq!(count(&ch, "delay").await, 2);
    assert_eq!(count(&ch, "dlq").await, 0);
    let m = get(&ch, "delay").await.unwrap();
    assert_eq!(m.delivery.data, b"long");
    // Now "short" is at the head and long past its expiration.
    assert!(eventually(|| async { count(&ch, "dlq").await == 1 }).await);
    let m = get(&ch, "dlq").await.unwrap();
    assert_eq!(m.delivery.data, b"short");
    assert!(
        m.delivery.properties.expiration().is_none(),
        "expiration is removed when dead-lettered"
    );
    let Some(AMQPValue::FieldArray(deaths)) = header(&m, "x-death") else {
        panic!()
    };
    let AMQPValue::FieldTable(d) = &deaths.as_slice()[0] else {
        panic!()
    };
    assert_eq!(text(d.inner().get("original-expiration")), "100");
}

#[tokio::test]
async fn max_length_overflow_modes() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    dlx_setup(&ch).await;
    declare(
        &ch,
        "drop",
        args(&[
            ("x-max-length", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", s("dlx")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    for b in ["1", "2", "3"] {
        publish_props(&ch, "", "drop", b.as_bytes(), BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, "drop").await, 2);
    let m = get(&ch, "dlq").await.expect("head dropped to the DLX");
    assert_eq!(m.delivery.data, b"1");
    let Some(AMQPValue::FieldArray(deaths)) = header(&m, "x-death") else {
        panic!()
    };
    let AMQPValue::FieldTable(d) = &deaths.as_slice()[0] else {
        panic!()
    };
    assert_eq!(text(d.inner().get("reason")), "maxlen");
    assert_eq!(get(&ch, "drop").await.unwrap().delivery.data, b"2");

    // reject-publish: the publisher is told with a nack; nothing is dropped.
    declare(
        &ch,
        "full",
        args(&[
            ("x-max-length", AMQPValue::LongInt(1)),
            ("x-overflow", s("reject-publish")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let ok = ch
        .basic_publish(
            "".into(),
            "full".into(),
            BasicPublishOptions::default(),
            b"a",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(ok, Confirmation::Ack(None)));
    let refused = ch
        .basic_publish(
            "".into(),
            "full".into(),
            BasicPublishOptions::default(),
            b"b",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(matches!(refused, Confirmation::Nack(_)), "{refused:?}");
    assert_eq!(get(&ch, "full").await.unwrap().delivery.data, b"a");
}

#[tokio::test]
async fn rejected_messages_are_dead_lettered() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    dlx_setup(&ch).await;
    declare(
        &ch,
        "rej",
        args(&[
            ("x-dead-letter-exchange", s("dlx")),
            ("x-dead-letter-routing-key", s("dead")),
        ]),
    )
    .await;
    publish_props(&ch, "", "rej", b"bad", BasicProperties::default()).await;
    let m = ch
        .basic_get("rej".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    m.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    assert!(eventually(|| async { count(&ch, "dlq").await == 1 }).await);
    let m = get(&ch, "dlq").await.unwrap();
    assert_eq!(text(header(&m, "x-first-death-reason")), "rejected");
}

#[tokio::test]
async fn priority_queue_delivers_highest_first() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(
        &ch,
        "prio",
        args(&[("x-max-priority", AMQPValue::LongInt(10))]),
    )
    .await;
    for (body, p) in [("p1", 1u8), ("p5", 5), ("p9", 9), ("p0", 0), ("p200", 200)] {
        publish_props(
            &ch,
            "",
            "prio",
            body.as_bytes(),
            BasicProperties::default().with_priority(p),
        )
        .await;
    }
    let mut order = Vec::new();
    while let Some(m) = get(&ch, "prio").await {
        order.push(String::from_utf8(m.delivery.data.clone()).unwrap());
    }
    // Priorities above x-max-priority count as the maximum.
    assert_eq!(order, ["p200", "p9", "p5", "p1", "p0"]);
    let e = ch
        .queue_declare(
            "prio2".into(),
            QueueDeclareOptions::default(),
            args(&[("x-max-priority", AMQPValue::LongInt(300))]),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_text(&e),
        "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'prio2' in vhost '/': {value_too_large,300,255}"
    );
}

#[tokio::test]
async fn single_active_consumer_and_queue_expiry_and_queue_types() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(
        &ch,
        "sac",
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let c1 = conn.create_channel().await.unwrap();
    let c2 = conn.create_channel().await.unwrap();
    let mut first = c1
        .basic_consume(
            "sac".into(),
            "first".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut second = c2
        .basic_consume(
            "sac".into(),
            "second".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for _ in 0..4 {
        publish_props(&ch, "", "sac", b"m", BasicProperties::default()).await;
    }
    for _ in 0..4 {
        tokio::time::timeout(Duration::from_secs(5), first.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), second.next())
            .await
            .is_err()
    );
    c1.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish_props(&ch, "", "sac", b"m", BasicProperties::default()).await;
    tokio::time::timeout(Duration::from_secs(5), second.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    declare(&ch, "temp", args(&[("x-expires", AMQPValue::LongInt(300))])).await;
    // Polled through the management API: a passive declare would renew the lease.
    let gone =
        eventually(|| async { http(&node, "GET", "/api/queues/%2F/temp", None).0 == 404 }).await;
    assert!(gone, "x-expires queue was not deleted");

    // Quorum queues are accepted as RabbitMQ accepts them (durable, not exclusive or
    // auto-delete); on one node they behave as a classic queue.
    let e = ch
        .queue_declare(
            "qq".into(),
            QueueDeclareOptions::default(),
            args(&[("x-queue-type", s("quorum"))]),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(406));
    assert!(
        reply_text(&e).contains("invalid property 'non-durable' for queue 'qq'"),
        "{}",
        reply_text(&e)
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "qq".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args(&[("x-queue-type", s("quorum"))]),
    )
    .await
    .unwrap();
    publish_props(&ch, "", "qq", b"q", BasicProperties::default()).await;
    assert_eq!(count(&ch, "qq").await, 1);
    let e = ch
        .queue_declare(
            "sq".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args(&[("x-queue-type", s("stream"))]),
        )
        .await
        .unwrap_err();
    assert!(
        reply_text(&e).contains("queue type 'stream' is not supported"),
        "{}",
        reply_text(&e)
    );
}

#[tokio::test]
async fn a_policy_added_later_changes_an_existing_queue() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, "pol.q", FieldTable::default()).await;
    for _ in 0..3 {
        publish_props(&ch, "", "pol.q", b"x", BasicProperties::default()).await;
    }
    assert_eq!(count(&ch, "pol.q").await, 3);
    let (status, body) = http(
        &node,
        "PUT",
        "/api/policies/%2F/limits",
        Some(
            r#"{"pattern":"^pol\\.","definition":{"message-ttl":100,"max-length":10},"apply-to":"queues"}"#,
        ),
    );
    assert_eq!(status, 201, "{body}");
    // New messages now expire after 100 ms; the old ones had no TTL but the limit applies.
    publish_props(&ch, "", "pol.q", b"y", BasicProperties::default()).await;
    let (status, body) = http(&node, "GET", "/api/queues/%2F/pol.q", None);
    assert_eq!(status, 200);
    assert!(body.contains(r#""policy":"limits""#), "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies = Vec::new();
    while let Some(m) = get(&ch, "pol.q").await {
        bodies.push(m.delivery.data.clone());
    }
    assert_eq!(
        bodies,
        vec![b"x".to_vec(); 3],
        "the message published under the policy expired"
    );
    // A policy that lowers max-length trims the queue at once.
    for _ in 0..5 {
        publish_props(
            &ch,
            "",
            "pol.q",
            b"z",
            BasicProperties::default().with_expiration("60000".into()),
        )
        .await;
    }
    let (status, _) = http(
        &node,
        "PUT",
        "/api/policies/%2F/limits",
        Some(r#"{"pattern":"^pol\\.","definition":{"max-length":2},"priority":1}"#),
    );
    assert_eq!(status, 204);
    assert!(eventually(|| async { count(&ch, "pol.q").await == 2 }).await);
    // Bad definitions are refused with RabbitMQ's validation text.
    let (status, body) = http(
        &node,
        "PUT",
        "/api/policies/%2F/bad",
        Some(r#"{"pattern":".*","definition":{"ha-mode":"exactly","ha-params":"two"}}"#),
    );
    assert_eq!(status, 400);
    assert!(
        body.contains(r#"ha-mode=\"exactly\" takes an integer, <<\"two\">> given"#),
        "{body}"
    );
    let (status, _) = http(&node, "DELETE", "/api/policies/%2F/limits", None);
    assert_eq!(status, 204);
    let (status, body) = http(&node, "GET", "/api/policies", None);
    assert_eq!((status, body.as_str()), (200, "[]"));
}

#[tokio::test]
async fn direct_reply_to_round_trip() {
    let node = Node::start();
    let conn = node.connect().await;
    let client = conn.create_channel().await.unwrap();
    let server = conn.create_channel().await.unwrap();
    declare(&server, "rpc", FieldTable::default()).await;
    let mut replies = client
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    publish_props(
        &client,
        "",
        "rpc",
        b"21",
        BasicProperties::default()
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id("c1".into()),
    )
    .await;
    let req = get(&server, "rpc").await.unwrap();
    let reply_to = req.delivery.properties.reply_to().clone().unwrap();
    assert!(
        reply_to.as_str().starts_with("amq.rabbitmq.reply-to."),
        "{reply_to}"
    );
    publish_props(
        &server,
        "",
        reply_to.as_str(),
        b"42",
        BasicProperties::default().with_correlation_id("c1".into()),
    )
    .await;
    let d = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.data, b"42");
    assert_eq!(
        d.properties.correlation_id().as_ref().unwrap().as_str(),
        "c1"
    );
    // Without a reply consumer the pseudo reply-to is refused.
    let lone = conn.create_channel().await.unwrap();
    lone.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let r = lone
        .basic_publish(
            "".into(),
            "rpc".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
        )
        .await
        .unwrap()
        .await;
    let e = r.unwrap_err();
    assert_eq!(
        reply_text(&e),
        "PRECONDITION_FAILED - fast reply consumer does not exist"
    );
}

#[tokio::test]
async fn delayed_message_exchange_holds_then_routes() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "delayed".into(),
        ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions::default(),
        args(&[("x-delayed-type", s("direct"))]),
    )
    .await
    .unwrap();
    declare(&ch, "later", FieldTable::default()).await;
    ch.queue_bind(
        "later".into(),
        "delayed".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut h = FieldTable::default();
    h.insert("x-delay".into(), AMQPValue::LongInt(600));
    let c = ch
        .basic_publish(
            "delayed".into(),
            "k".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"soon",
            BasicProperties::default().with_headers(h),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(c, Confirmation::Ack(None)),
        "a delayed mandatory message is not returned: {c:?}"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(count(&ch, "later").await, 0, "delivered too early");
    assert!(eventually(|| async { count(&ch, "later").await == 1 }).await);
    // Without x-delay it routes at once.
    publish_props(&ch, "delayed", "k", b"now", BasicProperties::default()).await;
    assert!(eventually(|| async { count(&ch, "later").await == 2 }).await);
}
