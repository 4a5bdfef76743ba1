//! Resource alarms: publishers are blocked with `connection.blocked` and RabbitMQ's reason,
//! the health check reports the alarm, and consumers keep draining.

mod common;

use common::{http, Node, RawClient};
use warren_amqp::{basic, channel, connection, AMQPClass};

fn node_with_config(conf: &str) -> Node {
    let path = std::env::temp_dir().join(format!(
        "warren-alarm-{}-{}.conf",
        std::process::id(),
        conf.len()
    ));
    std::fs::write(&path, conf).unwrap();
    Node::start_with(&["--config", path.to_str().unwrap()])
}

fn publish(c: &mut RawClient) {
    c.send_method(
        1,
        &AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: "q".into(),
            mandatory: false,
            immediate: false,
        })),
    );
    let mut out = warren_amqp::outgoing::Outgoing::new();
    out.content(1, &[0, 0], &bytes::Bytes::from_static(b"x"), 131072);
    for chunk in out.take() {
        c.send(&chunk);
    }
}

fn blocked_reason(c: &mut RawClient) -> String {
    loop {
        match c.read_method() {
            Some((0, AMQPClass::Connection(connection::AMQPMethod::Blocked(b)))) => {
                return b.reason.to_string()
            }
            Some(_) => continue,
            None => panic!("connection closed without connection.blocked"),
        }
    }
}

#[test]
fn memory_alarm_blocks_publishers_and_fails_the_health_check() {
    let node = node_with_config("vm_memory_high_watermark.absolute = 1\n");
    let mut c = RawClient::connect(node.port);
    c.handshake_with(0, &["connection.blocked"]);
    c.send_method(
        1,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    publish(&mut c);
    assert_eq!(blocked_reason(&mut c), "low on memory");
    let (status, body) = http(&node, "GET", "/api/health/checks/alarms", None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"resource\":\"memory\""), "{body}");
    assert!(node.log().contains("resource alarm set: low on memory"));
}

#[test]
fn disk_alarm_blocks_publishers() {
    let node = node_with_config("disk_free_limit.absolute = 1000000TB\n");
    let mut c = RawClient::connect(node.port);
    c.handshake_with(0, &["connection.blocked"]);
    c.send_method(
        1,
        &AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
    );
    publish(&mut c);
    assert_eq!(blocked_reason(&mut c), "low on disk");
}

#[test]
fn no_alarm_by_default() {
    let node = Node::start();
    let (status, body) = http(&node, "GET", "/api/health/checks/alarms", None);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
}
