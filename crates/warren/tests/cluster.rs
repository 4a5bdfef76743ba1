//! Clustering through real processes on loopback: `join_cluster`, `cluster_status`,
//! metadata replicated through the Raft group, `kill -9` and restarts, the last node
//! standing, `forget_cluster_node`, and the errors of a bad join.

#[path = "../../broker/tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::Node;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use support::cluster::*;

#[tokio::test(flavor = "multi_thread")]
async fn nodes_join_share_metadata_and_survive_kill_and_stop() {
    let (mut a, b, c) = three_node_cluster();
    let st = status(&c);
    let disk: Vec<&str> = st["disk_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for n in [&a, &b, &c] {
        assert!(disk.contains(&n.name().as_str()), "{st}");
    }
    assert_eq!(st["partitions"], serde_json::json!({}));
    // The management API shows every member and the cluster's name.
    let (code, body) = common::http(&c, "GET", "/api/nodes", None);
    assert_eq!(code, 200, "{body}");
    let nodes: serde_json::Value = serde_json::from_str(&body).unwrap();
    for n in [&a, &b, &c] {
        assert!(
            nodes
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["name"] == n.name().as_str() && x["running"] == true),
            "{body}"
        );
    }
    let (_, body) = common::http(&b, "GET", "/api/overview", None);
    assert!(
        body.contains(&format!("\"cluster_name\":\"{}\"", a.name())),
        "{body}"
    );
    let text = ok(&c, &["cluster_status"]);
    assert!(
        text.contains("Disk Nodes") && text.contains("Running Nodes"),
        "{text}"
    );

    // A policy set on one node is seen by every node.
    ok(
        &b,
        &[
            "set_policy",
            "ha-two",
            "^mirror",
            r#"{"ha-mode":"exactly","ha-params":2}"#,
        ],
    );
    eventually(&c, &["list_policies"], "policy replicated", |o| {
        o.contains("ha-two")
    });
    eventually(&a, &["list_policies"], "policy replicated", |o| {
        o.contains("ha-two")
    });

    // A queue declared through a client on a is listed everywhere with a as its node.
    let (conn, ch) = confirming_channel(&a, "solo_hello").await;
    assert!(publish_confirmed(&ch, "solo_hello", b"one").await);
    eventually(
        &c,
        &["list_queues", "name", "pid"],
        "queue listed with its node",
        |o| {
            o.lines()
                .any(|l| l.starts_with("solo_hello") && l.contains(&a.name()))
        },
    );
    // On another node the queue is known (redeclaring is fine, an inequivalent one is not).
    let (conn_c, ch_c) = confirming_channel(&c, "solo_hello").await;
    let e = ch_c
        .queue_declare(
            "solo_hello".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(common::reply_code(&e), Some(406), "{e}");
    // basic.get on another node's queue fetches from its home node; a reject requeues it
    // there.
    let ch_c = conn_c.create_channel().await.unwrap();
    let got = ch_c
        .basic_get("solo_hello".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("a message from the home node");
    assert_eq!(&got.delivery.data[..], b"one");
    got.delivery
        .reject(lapin::options::BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    eventually(
        &a,
        &["list_queues", "name", "messages"],
        "get then requeue through c",
        |o| o.lines().any(|l| l == "solo_hello\t1"),
    );
    // Publishing through c reaches the queue on a; c confirms once a has confirmed.
    let (_conn_c2, ch_c) = confirming_channel(&c, "solo_hello").await;
    for i in 0..200 {
        let body = format!("via-c-{i}");
        assert!(
            publish_confirmed(&ch_c, "solo_hello", body.as_bytes()).await,
            "message {i} forwarded and confirmed"
        );
    }
    eventually(
        &a,
        &["list_queues", "name", "messages"],
        "forwarded messages on a",
        |o| o.lines().any(|l| l == "solo_hello\t201"),
    );
    // A consumer on b receives them from a, in order; its acks settle them on a.
    let conn_b = b.connect().await;
    let ch_b = conn_b.create_channel().await.unwrap();
    ch_b.basic_qos(20, BasicQosOptions::default())
        .await
        .unwrap();
    let mut consumer = ch_b
        .basic_consume(
            "solo_hello".into(),
            "on-b".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < 201 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("deliveries from the home node")
            .expect("stream open")
            .expect("delivery");
        bodies.push(String::from_utf8_lossy(&d.data).into_owned());
        // Leave the last one unacked: it must go back to a when b's consumer goes away.
        if bodies.len() < 201 {
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    }
    assert_eq!(bodies[0], "one");
    assert_eq!(
        bodies[1..],
        (0..200).map(|i| format!("via-c-{i}")).collect::<Vec<_>>()[..]
    );
    drop(consumer);
    conn_b.close(200, "bye".into()).await.unwrap();
    eventually(
        &a,
        &["list_queues", "name", "messages"],
        "acks settled on a, the unacked one returned",
        |o| o.lines().any(|l| l == "solo_hello\t1"),
    );
    drop(conn);

    // kill -9 of one node of three: the other two accept metadata changes.
    a.kill9();
    // A queue whose home node is down says so, as RabbitMQ does.
    let conn_c = c.connect().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ch = conn_c.create_channel().await.unwrap();
        let r = ch
            .basic_consume(
                "solo_hello".into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await;
        if let Err(e) = r {
            assert_eq!(common::reply_code(&e), Some(404), "{e}");
            let text = common::reply_text(&e);
            assert!(
                text.contains(&format!(
                    "home node '{}' of durable queue 'solo_hello'",
                    a.name()
                )) && text.contains("is down or inaccessible"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consuming from a queue whose home is down kept succeeding"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    drop(conn_c);
    let (_, body) = common::http(&c, "GET", &format!("/api/nodes/{}", a.name()), None);
    assert!(body.contains("\"running\":false"), "{body}");
    ok(&b, &["add_vhost", "after-kill"]);
    eventually(&c, &["list_vhosts"], "vhost replicated", |o| {
        o.contains("after-kill")
    });
    let st = status(&c);
    assert_eq!(st["running_nodes"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(st["disk_nodes"].as_array().unwrap().len(), 3, "{st}");
    // The crashed node comes back and catches up; its queue kept its message.
    a.spawn();
    eventually(&a, &["list_vhosts"], "restarted node caught up", |o| {
        o.contains("after-kill")
    });
    eventually(
        &a,
        &["list_queues", "name", "messages"],
        "queue kept its message",
        |o| {
            o.lines()
                .any(|l| l.starts_with("solo_hello") && l.ends_with("\t1"))
        },
    );

    // Graceful stops leave the voter set: the last node standing keeps serving.
    ok(&a, &["stop_app"]);
    ok(&b, &["stop_app"]);
    ok(&c, &["add_vhost", "last-one"]);
    let st = status(&c);
    assert_eq!(st["voters"], serde_json::json!([c.name()]), "{st}");
    ok(&a, &["start_app"]);
    ok(&b, &["start_app"]);
    eventually(&a, &["list_vhosts"], "stopped nodes catch up", |o| {
        o.contains("last-one")
    });
    eventually(
        &b,
        &["cluster_status", "--formatter", "json"],
        "voters again",
        |o| {
            serde_json::from_str::<serde_json::Value>(o)
                .is_ok_and(|v| v["voters"].as_array().map_or(0, Vec::len) == 3)
        },
    );

    // forget_cluster_node: refused while the target runs, done once it is stopped.
    let (code, out, err) = b.ctl(&["forget_cluster_node", &c.name()]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("is running"), "{err}");
    ok(&c, &["stop_app"]);
    ok(&b, &["forget_cluster_node", &c.name()]);
    eventually(
        &a,
        &["cluster_status", "--formatter", "json"],
        "c forgotten",
        |o| !o.contains(&c.name()),
    );
    assert_eq!(running_nodes(&a), 2);
}

#[test]
fn bad_joins_are_refused_with_a_reason() {
    let a = Node::start_with_cookie(COOKIE);
    let b = Node::start_with_cookie(COOKIE);
    let stranger = Node::start_with_cookie("ANOTHERCOOKIE");
    let seed = format!("{}:{}", a.name(), a.cluster_port);
    // The app must be stopped.
    let (code, _, err) = b.ctl(&["join_cluster", &seed]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("requires the 'warren' app to be stopped"),
        "{err}"
    );
    ok(&b, &["stop_app"]);
    let (code, _, err) = b.ctl(&["join_cluster", "--ram", &seed]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("RAM nodes are not supported"), "{err}");
    let (code, _, err) = b.ctl(&["join_cluster", &format!("{}:{}", b.name(), b.cluster_port)]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("cannot cluster node with itself"), "{err}");
    let unreachable = format!("nobody@localhost:{}", common::free_port());
    let (code, _, err) = b.ctl(&["join_cluster", &unreachable]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    // A seed with another cookie refuses us.
    let (code, _, err) = b.ctl(&[
        "join_cluster",
        &format!("{}:{}", stranger.name(), stranger.cluster_port),
    ]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("cookie"), "{err}");
    // Nothing changed: b starts again as a node of its own.
    ok(&b, &["start_app"]);
    assert_eq!(status(&b)["disk_nodes"], serde_json::json!([b.name()]));
    // A node holding queues must be reset before it joins.
    ok(&b, &["stop_app"]);
    std::fs::write(
        b.dir.join("data/definitions.json"),
        r#"{"queues":[{"name":"q","vhost":"/"}]}"#,
    )
    .unwrap();
    let (code, _, err) = b.ctl(&["join_cluster", &seed]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("run 'warren ctl reset' first"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_survivor_without_majority_stops_serving_until_told_the_others_are_gone() {
    let (a, mut b, mut c) = three_node_cluster();
    let conn = a.connect().await;
    b.kill9();
    c.kill9();
    // The survivor cannot tell crashes from a partition: it closes its clients (320) ...
    let deadline = Instant::now() + Duration::from_secs(15);
    while conn.status().connected() {
        assert!(
            Instant::now() < deadline,
            "connection not closed:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ... refuses new ones, and says why.
    assert!(
        lapin::Connection::connect(&a.uri(), lapin::ConnectionProperties::default())
            .await
            .is_err()
    );
    let text = ok(&a, &["cluster_status"]);
    assert!(text.contains("cannot reach a majority"), "{text}");
    assert!(a.log().contains("stops serving clients"), "{}", a.log());
    let (code, _, err) = a.ctl(&["add_vhost", "split-brain"]);
    assert_ne!(code, 0, "no metadata change without a majority: {err}");
    // The operator knows the others are gone: the survivor serves alone.
    ok(&a, &["stop_app"]);
    ok(&a, &["forget_cluster_node", "--offline", &b.name()]);
    ok(&a, &["start_app"]);
    ok(&a, &["add_vhost", "alone"]);
    assert_eq!(status(&a)["disk_nodes"], serde_json::json!([a.name()]));
    let conn = a.connect().await;
    assert!(conn.status().connected());
}

/// Whole-cluster restarts in three orders, graceful and `kill -9`: the cluster re-forms with
/// its metadata and messages whatever the order.
#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_reforms_after_restarts_in_any_order() {
    let (a, b, c) = three_node_cluster();
    let mut nodes = [a, b, c];
    ok(&nodes[0], &["add_vhost", "kept"]);
    let (conn, ch) = confirming_channel(&nodes[1], "kept_q").await;
    assert!(publish_confirmed(&ch, "kept_q", b"kept").await);
    drop(conn);
    // (stop order, start order, graceful?)
    let rounds: [([usize; 3], [usize; 3], bool); 3] = [
        ([0, 1, 2], [0, 1, 2], true), // the last one stopped starts last
        ([2, 1, 0], [0, 1, 2], true), // the last one stopped starts first
        ([0, 1, 2], [1, 2, 0], false),
    ];
    for (round, (stop, start, graceful)) in rounds.iter().enumerate() {
        for &i in stop {
            if *graceful {
                nodes[i].terminate();
            } else {
                nodes[i].kill9();
            }
        }
        for &i in start {
            nodes[i].spawn();
        }
        for n in &nodes {
            eventually(
                n,
                &["cluster_status", "--formatter", "json"],
                &format!("round {round}: re-formed"),
                |o| {
                    serde_json::from_str::<serde_json::Value>(o).is_ok_and(|v| {
                        v["running_nodes"].as_array().map_or(0, Vec::len) == 3
                            && v["voters"].as_array().map_or(0, Vec::len) == 3
                            && v["partitions"] == serde_json::json!({})
                    })
                },
            );
            eventually(
                n,
                &["list_vhosts"],
                &format!("round {round}: metadata kept"),
                |o| o.contains("kept"),
            );
        }
        eventually(
            &nodes[1],
            &["list_queues", "name", "messages"],
            &format!("round {round}: message kept"),
            |o| o.lines().any(|l| l == "kept_q\t1"),
        );
        // And it serves: a change goes through on every node.
        for (i, n) in nodes.iter().enumerate() {
            ok(n, &["add_vhost", &format!("round-{round}-{i}")]);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_published_on_another_node_arrives_as_the_client_sent_it() {
    use lapin::options::{BasicPublishOptions, QueueBindOptions};
    use lapin::types::AMQPValue;
    let (a, _b, c) = three_node_cluster();
    let (_conn_a, ch_a) = confirming_channel(&a, "topic_q").await;
    ch_a.queue_bind(
        "topic_q".into(),
        "amq.topic".into(),
        "kern.*".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    eventually(&c, &["list_bindings"], "the binding on c", |o| {
        o.contains("kern.*")
    });
    // Published through c, forwarded to a: the consumer still sees the client's exchange,
    // routing key and headers (RabbitMQ's topic tutorial prints the routing key).
    let (_conn_c, ch_c) = confirming_channel(&c, "topic_q").await;
    let mut headers = FieldTable::default();
    headers.insert("h".into(), AMQPValue::LongString("v".into()));
    let props = lapin::BasicProperties::default()
        .with_headers(headers)
        .with_content_type("text/plain".into());
    let confirm = ch_c
        .basic_publish(
            "amq.topic".into(),
            "kern.critical".into(),
            BasicPublishOptions::default(),
            b"disk full",
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    let got = ch_a
        .basic_get("topic_q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .expect("the forwarded message");
    assert_eq!(got.delivery.exchange.as_str(), "amq.topic");
    assert_eq!(got.delivery.routing_key.as_str(), "kern.critical");
    assert!(!got.delivery.redelivered);
    let p = &got.delivery.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    let h = p.headers().as_ref().expect("headers").inner().clone();
    assert_eq!(h.len(), 1, "only the client's header: {h:?}");
    assert!(matches!(h.get("h"), Some(AMQPValue::LongString(v)) if v.to_string() == "v"));
}
