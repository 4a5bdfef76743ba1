//! RabbitMQ's own `rabbitmqadmin` (Debian package `rabbitmq-server`) against Warren's
//! management API: declare, bind, publish, list, get, policies, delete.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::Node;

const ADMIN: &str = "/usr/bin/rabbitmqadmin";

fn admin(node: &Node, args: &[&str]) -> (i32, String) {
    let out = Command::new(ADMIN)
        .args([
            "-H",
            "127.0.0.1",
            "-P",
            &node.mgmt_port.to_string(),
            "-u",
            "guest",
            "-p",
            "guest",
        ])
        .args(args)
        .output()
        .expect("run rabbitmqadmin");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn rabbitmqadmin_works_unchanged() {
    if !std::path::Path::new(ADMIN).exists() {
        println!("skipping: {ADMIN} is missing (install the Debian package rabbitmq-server)");
        return;
    }
    let node = Node::start();
    for args in [
        &["declare", "queue", "name=adm", "durable=false"][..],
        &["declare", "exchange", "name=adm.x", "type=fanout"],
        &["declare", "binding", "source=adm.x", "destination=adm"],
    ] {
        let (code, out) = admin(&node, args);
        assert_eq!(code, 0, "{args:?}: {out}");
    }
    let (code, out) = admin(
        &node,
        &[
            "publish",
            "exchange=adm.x",
            "routing_key=any",
            "payload=hello",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Message published") && !out.contains("NOT routed"),
        "{out}"
    );
    let (_, out) = admin(&node, &["list", "queues"]);
    assert!(
        out.lines()
            .any(|l| l.contains("| adm ") && l.contains("| 1 ")),
        "{out}"
    );
    let (_, out) = admin(&node, &["list", "bindings"]);
    assert!(out.contains("adm.x"), "{out}");
    let (code, out) = admin(&node, &["get", "queue=adm", "ackmode=ack_requeue_false"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hello"), "{out}");
    let (code, out) = admin(
        &node,
        &[
            "declare",
            "policy",
            "name=cap",
            "pattern=^adm",
            r#"definition={"max-length":5}"#,
        ],
    );
    assert_eq!(code, 0, "{out}");
    let (_, out) = admin(&node, &["list", "policies"]);
    assert!(out.contains("cap") && out.contains("max-length"), "{out}");
    let (code, out) = admin(&node, &["delete", "queue", "name=adm"]);
    assert_eq!(code, 0, "{out}");
    let (_, out) = admin(&node, &["list", "queues"]);
    assert!(!out.contains("| adm "), "{out}");
}
