//! Errors as RabbitMQ reports them: channel errors close the channel, connection errors the
//! connection, bad input never the node. Driven through lapin and through a raw socket for
//! what client libraries never send.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{reply_code, reply_text, Node, RawClient};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren_amqp::{basic, channel, AMQPClass};

#[tokio::test]
async fn channel_errors_carry_rabbitmq_codes_and_texts() {
    let node = Node::start();
    let conn = node.connect().await;

    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "missing".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(404));
    assert_eq!(
        reply_text(&e),
        "NOT_FOUND - no queue 'missing' in vhost '/'"
    );

    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "hello".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let e = ch
        .queue_declare(
            "hello".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(406));
    assert_eq!(
        reply_text(&e),
        "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'hello' in vhost '/': received 'true' but current is 'false'"
    );

    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
    ch.queue_declare("ttl".into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    let mut other = FieldTable::default();
    other.insert("x-message-ttl".into(), AMQPValue::LongInt(2000));
    let e = ch
        .queue_declare("ttl".into(), QueueDeclareOptions::default(), other)
        .await
        .unwrap_err();
    assert_eq!(
        reply_text(&e),
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'ttl' in vhost '/': received the value '2000' of type 'signedint' but current is the value '1000' of type 'signedint'"
    );

    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "amq.mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(403));
    assert_eq!(
        reply_text(&e),
        "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'"
    );

    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "ex".into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let e = ch
        .exchange_declare(
            "ex".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_text(&e),
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'ex' in vhost '/': received 'fanout' but current is 'direct'"
    );

    let ch = conn.create_channel().await.unwrap();
    let msg = ch
        .basic_get("hello".into(), BasicGetOptions::default())
        .await
        .unwrap();
    assert!(msg.is_none());
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_bind(
            "hello".into(),
            "nope".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_text(&e),
        "NOT_FOUND - no exchange 'nope' in vhost '/'"
    );

    let ch = conn.create_channel().await.unwrap();
    let _consumer = ch
        .basic_consume(
            "hello".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let e = ch
        .queue_delete(
            "hello".into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        reply_text(&e),
        "PRECONDITION_FAILED - queue 'hello' in vhost '/' in use"
    );

    // The connection survived every channel error.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "still-works".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_closes_the_channel_with_404() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let r = ch
        .basic_publish(
            "nowhere".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await;
    let e = match r {
        Err(e) => e,
        Ok(confirm) => confirm.await.unwrap_err(),
    };
    assert_eq!(reply_code(&e), Some(404), "{e}");
    assert_eq!(
        reply_text(&e),
        "NOT_FOUND - no exchange 'nowhere' in vhost '/'"
    );
}

#[tokio::test]
async fn exclusive_queues_are_locked_to_their_connection() {
    let node = Node::start();
    let owner = node.connect().await;
    let ch = owner.create_channel().await.unwrap();
    ch.queue_declare(
        "mine".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let other = node.connect().await;
    let ch2 = other.create_channel().await.unwrap();
    let e = ch2
        .basic_consume(
            "mine".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(405));
    assert!(reply_text(&e).starts_with(
        "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue 'mine' in vhost '/'"
    ));
    // An exclusive consumer keeps others out (403).
    ch.queue_declare(
        "shared".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // lapin cancels a consumer when its handle is dropped: keep it.
    let _exclusive = ch
        .basic_consume(
            "shared".into(),
            "only".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let ch3 = other.create_channel().await.unwrap();
    let e = ch3
        .basic_consume(
            "shared".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(403));
    assert_eq!(
        reply_text(&e),
        "ACCESS_REFUSED - queue 'shared' in vhost '/' in exclusive use"
    );
}

#[tokio::test]
async fn wrong_credentials_and_unknown_vhost_are_refused() {
    let node = Node::start();
    let bad = format!("amqp://guest:wrong@127.0.0.1:{}/%2f", node.port);
    let e = Connection::connect(&bad, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(403), "{e}");
    assert!(reply_text(&e)
        .starts_with("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN"));
    let novhost = format!("amqp://guest:guest@127.0.0.1:{}/nope", node.port);
    let e = Connection::connect(&novhost, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(reply_code(&e), Some(530), "{e}");
    assert_eq!(reply_text(&e), "NOT_ALLOWED - vhost nope not found");
    // The node keeps serving.
    node.connect().await;
}

#[test]
fn unsupported_protocol_header_is_answered_with_0_9_1() {
    let node = Node::start();
    let mut c = RawClient::connect(node.port);
    c.send(b"AMQP\x01\x01\x00\x0a");
    let mut reply = [0u8; 8];
    c.stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, warren_amqp::PROTOCOL_HEADER);
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "server must close after the header");
}

#[test]
fn oversized_frame_is_refused_before_buffering_and_node_keeps_serving() {
    let node = Node::start();
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    // A body frame claiming 1 GiB: refused from its header alone.
    c.send(&[3, 0, 1, 0x40, 0, 0, 0]);
    let (code, text) = c.expect_connection_close();
    assert_eq!(code, 501);
    assert!(text.starts_with("FRAME_ERROR - frame size"), "{text}");
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    // Garbage: an unknown frame type.
    c.send(&[9, 0, 0, 0, 0, 0, 0, 0xce]);
    let (code, _) = c.expect_connection_close();
    assert_eq!(code, 501);
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    // A method frame with an unknown class.
    c.send(&[1, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, 0xce]);
    let (code, _) = c.expect_connection_close();
    assert_eq!(code, 540);
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    // queue.declare whose arguments run past the end of the frame.
    c.send(&[1, 0, 1, 0, 0, 0, 8, 0, 50, 0, 10, 0, 0, 200, b'a', 0xce]);
    let (code, _) = c.expect_connection_close();
    assert_eq!(code, 501);
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    c.send_method(
        1,
        &AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    );
    let (code, text) = c.expect_connection_close();
    assert_eq!(
        (code, text.as_str()),
        (504, "CHANNEL_ERROR - expected 'channel.open' on channel 1")
    );
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    c.send_method(
        4000,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    let (code, _) = c.expect_connection_close();
    assert_eq!(code, 504);
    // Content header without a publish.
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    c.send_method(
        1,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    c.send(&[
        2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xce,
    ]);
    let (code, _) = c.expect_connection_close();
    assert_eq!(code, 505);
    // After all that, a normal client still works.
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    c.send_method(
        1,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    let (ch, m) = c.read_method().unwrap();
    assert_eq!(ch, 1);
    assert!(matches!(
        m,
        AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))
    ));
}

#[test]
fn silent_peer_is_dropped_after_two_heartbeat_intervals() {
    let node = Node::start();
    let mut c = RawClient::connect(node.port);
    c.handshake(1);
    let started = Instant::now();
    // Say nothing; the server sends heartbeats and then gives up on us.
    let mut buf = [0u8; 1024];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "server never dropped a silent peer"
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "dropped too early: {waited:?}"
    );
}

#[test]
fn sigterm_closes_clients_with_connection_forced() {
    let mut node = Node::start();
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    let pid = node.pid();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    });
    let (code, text) = c.expect_connection_close();
    closer.join().unwrap();
    assert_eq!(code, 320);
    assert_eq!(
        text,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    );
    c.send_method(
        0,
        &AMQPClass::Connection(warren_amqp::connection::AMQPMethod::CloseOk(
            warren_amqp::connection::CloseOk {},
        )),
    );
    assert_eq!(node.terminate(), Some(0));
}

#[test]
fn acking_an_unknown_delivery_tag_closes_the_channel_with_406() {
    // lapin refuses unknown tags before sending them, so this speaks the protocol directly.
    let node = Node::start();
    let mut c = RawClient::connect(node.port);
    c.handshake(0);
    c.send_method(
        1,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    let (_, ok) = c.read_method().unwrap();
    assert!(matches!(
        ok,
        AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))
    ));
    c.send_method(
        1,
        &AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
            delivery_tag: 42,
            multiple: false,
        })),
    );
    match c.read_method() {
        Some((1, AMQPClass::Channel(channel::AMQPMethod::Close(close)))) => {
            assert_eq!(close.reply_code, 406);
            assert_eq!(
                close.reply_text.as_str(),
                "PRECONDITION_FAILED - unknown delivery tag 42"
            );
            assert_eq!((close.class_id, close.method_id), (60, 80));
        }
        other => panic!("expected channel.close, got {other:?}"),
    }
}
