//! Mirrored queues through real processes on loopback: the `ha-*` policy set through the
//! HTTP API, the leader and its synchronised mirror as listings show them, failover on a
//! graceful `stop_app` and on `kill -9`, re-mirroring to the node that held no copy, a
//! mirror that crashes and catches up by delta when it returns, and every confirmed message
//! consumed at the end (duplicates only with `redelivered`).

#[path = "../../broker/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::Node;
use lapin::options::BasicGetOptions;
use support::cluster::*;

fn set_policy(n: &Node, name: &str, pattern: &str, definition: &str) {
    let body =
        format!(r#"{{"pattern":"{pattern}","definition":{definition},"apply-to":"queues"}}"#);
    let (code, out) = common::http(n, "PUT", &format!("/api/policies/%2F/{name}"), Some(&body));
    assert!(code == 201 || code == 204, "PUT policy: {code} {out}");
}

async fn publish_range(ch: &lapin::Channel, queue: &str, range: std::ops::Range<u32>) {
    for i in range {
        assert!(
            publish_confirmed(ch, queue, format!("m{i}").as_bytes()).await,
            "message m{i} was not confirmed"
        );
    }
}

/// Takes every message with `basic.get` on `n`: body -> deliveries (redelivered flags).
async fn drain(n: &Node, queue: &str) -> BTreeMap<String, Vec<bool>> {
    let conn = n.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let mut seen: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let no_ack = BasicGetOptions { no_ack: true };
    while let Some(m) = ch.basic_get(queue.into(), no_ack).await.unwrap() {
        let body = String::from_utf8_lossy(&m.delivery.data).into_owned();
        seen.entry(body).or_default().push(m.delivery.redelivered);
    }
    seen
}

fn assert_all_there(seen: &BTreeMap<String, Vec<bool>>, count: u32) {
    for i in 0..count {
        assert!(
            seen.contains_key(&format!("m{i}")),
            "confirmed message m{i} was lost"
        );
    }
    for (body, flags) in seen {
        assert!(
            flags.len() == 1 || flags.iter().skip(1).all(|r| *r),
            "{body} was delivered again without redelivered: {flags:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_story_stop_the_leader_twice_and_consume_everything_from_the_last_node() {
    let (a, b, c) = three_node_cluster();
    set_policy(
        &b,
        "ha-two",
        "^mirror",
        r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}"#,
    );
    let (conn, ch) = confirming_channel(&a, "mirror_hello").await;
    publish_range(&ch, "mirror_hello", 0..300).await;
    let q = wait_queue(
        &c,
        "mirror_hello",
        "a leader and one synchronised mirror",
        |q| q["node"] == a.name() && names(q, "synchronised_slave_nodes").len() == 1,
    );
    let first_mirror = names(&q, "synchronised_slave_nodes")[0].clone();
    assert_eq!(names(&q, "slave_nodes"), vec![first_mirror.clone()]);
    assert_eq!(q["policy"], "ha-two");
    let listed = ok(
        &c,
        &[
            "list_queues",
            "name",
            "pid",
            "slave_pids",
            "synchronised_slave_pids",
        ],
    );
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("mirror_hello") && l.contains(&first_mirror)),
        "{listed}"
    );
    drop((ch, conn));

    // The leader's node stops: the synchronised mirror leads, and the node that held no
    // copy gets the new mirror.
    let started = Instant::now();
    ok(&a, &["stop_app"]);
    let (new_leader, spare) = if first_mirror == b.name() {
        (&b, &c)
    } else {
        (&c, &b)
    };
    wait_queue(
        spare,
        "mirror_hello",
        "a new leader and a new synchronised mirror",
        |q| {
            q["node"] == new_leader.name() && names(q, "synchronised_slave_nodes") == [spare.name()]
        },
    );
    println!("failover after stop_app: {:?}", started.elapsed());

    // Clients through the spare node carry on (forwarded to the new leader).
    let (_conn, ch) = confirming_channel(spare, "mirror_hello").await;
    publish_range(&ch, "mirror_hello", 300..400).await;

    // The new leader stops too: the last running node serves every message.
    ok(new_leader, &["stop_app"]);
    wait_queue(spare, "mirror_hello", "the last node leads", |q| {
        q["node"] == spare.name()
    });
    let seen = drain(spare, "mirror_hello").await;
    assert_all_there(&seen, 400);
    assert!(
        seen["m0"][0],
        "a message from before the failover is marked redelivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_fails_over_and_a_returning_mirror_catches_up_by_delta() {
    let (mut a, mut b, c) = three_node_cluster();
    let nodes = format!(
        r#"{{"ha-mode":"nodes","ha-params":["{}","{}"],"ha-sync-mode":"automatic"}}"#,
        a.name(),
        b.name()
    );
    set_policy(&c, "ab", "^delta", &nodes);
    let (_conn, ch) = confirming_channel(&a, "delta").await;
    publish_range(&ch, "delta", 0..200).await;
    wait_queue(&c, "delta", "b in sync", |q| {
        names(q, "synchronised_slave_nodes") == [b.name()]
    });

    // The mirror crashes: the leader leaves it out of the in-sync set (through the metadata
    // group) and confirms without it.
    b.kill9();
    let started = Instant::now();
    publish_range(&ch, "delta", 200..300).await;
    println!(
        "300 confirmed with the mirror down after {:?}",
        started.elapsed()
    );
    wait_queue(&c, "delta", "b out of sync", |q| {
        names(q, "synchronised_slave_nodes").is_empty()
    });

    // It returns with its log and receives only what it missed.
    b.spawn();
    wait_queue(&c, "delta", "b in sync again", |q| {
        names(q, "synchronised_slave_nodes") == [b.name()]
    });
    let log = a.log();
    assert!(
        log.contains(&format!(
            "mirror on {} attached; catching it up with 100 messages",
            b.name()
        )),
        "the returning mirror was not caught up by delta:\n{log}"
    );

    // The leader is killed: the in-sync mirror takes over with every confirmed message.
    a.kill9();
    let started = Instant::now();
    wait_queue(&c, "delta", "b leads", |q| q["node"] == b.name());
    println!("failover after kill -9: {:?}", started.elapsed());
    // The former leader restarts believing it leads: its clients wait until it has caught up
    // with the cluster, so what they publish goes to the new leader, not to a stale copy.
    a.spawn();
    let (_conn, ch) = confirming_channel(&a, "delta").await;
    publish_range(&ch, "delta", 300..320).await;
    let seen = drain(&c, "delta").await;
    assert_all_there(&seen, 320);
    assert!(
        (0..300).all(|i| seen[&format!("m{i}")][0]),
        "messages of a failed-over queue are marked redelivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_sync_the_locator_health_and_cancel_on_failover() {
    use futures::StreamExt;
    use lapin::options::BasicConsumeOptions;
    use lapin::types::{AMQPValue, FieldTable};

    let (a, b, c) = three_node_cluster();
    set_policy(
        &a,
        "man",
        "^manual",
        r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"manual"}"#,
    );
    let (_conn, ch) = confirming_channel(&a, "manual_q").await;
    publish_range(&ch, "manual_q", 0..50).await;
    // Manual: the new mirror gets what arrives from now on, not the 50 already there.
    wait_queue(&c, "manual_q", "a mirror", |q| {
        names(q, "slave_nodes").len() == 1
    });
    std::thread::sleep(Duration::from_millis(800));
    let q = queue_info(&c, "manual_q");
    assert!(names(&q, "synchronised_slave_nodes").is_empty(), "{q}");
    let (code, body) = common::http(
        &a,
        "GET",
        "/api/health/checks/node-is-mirror-sync-critical",
        None,
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("manual_q"), "{body}");
    // Every node lists the leader's numbers.
    eventually(
        &c,
        &["list_queues", "name", "messages"],
        "counts on a non-leader",
        |o| o.lines().any(|l| l == "manual_q\t50"),
    );

    let out = ok(&b, &["sync_queue", "manual_q"]);
    assert!(
        out.contains("Synchronising queue 'manual_q' in vhost '/'"),
        "{out}"
    );
    wait_queue(&c, "manual_q", "synchronised after sync_queue", |q| {
        names(q, "synchronised_slave_nodes").len() == 1
    });
    let (code, body) = common::http(
        &a,
        "GET",
        "/api/health/checks/node-is-mirror-sync-critical",
        None,
    );
    assert_eq!(code, 200, "{body}");

    // queue-master-locator: min-masters puts a new queue on a node leading none.
    let conn = a.connect().await;
    let located = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-master-locator".into(),
        AMQPValue::LongString("min-masters".into()),
    );
    located
        .queue_declare("located".into(), Default::default(), args)
        .await
        .unwrap();
    let q = wait_queue(&a, "located", "declared", |q| !q.is_null());
    assert_ne!(
        q["node"],
        a.name(),
        "min-masters chose the node that leads a queue already"
    );

    // Consumers on another node: the one that asked for x-cancel-on-ha-failover is
    // cancelled by the failover, the other receives the messages from the new leader.
    let conn_c = c.connect().await;
    let ch_c = conn_c.create_channel().await.unwrap();
    let mut cancel = FieldTable::default();
    cancel.insert("x-cancel-on-ha-failover".into(), AMQPValue::Boolean(true));
    let mut cancelled = ch_c
        .basic_consume(
            "manual_q".into(),
            "cancel-me".into(),
            BasicConsumeOptions::default(),
            cancel,
        )
        .await
        .unwrap();
    ok(&a, &["stop_app"]);
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(d) = cancelled.next().await {
            if let Ok(d) = d {
                let _ = d
                    .nack(lapin::options::BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the x-cancel-on-ha-failover consumer was not cancelled"
    );
    let stays = conn_c.create_channel().await.unwrap();
    let mut consumer = stays
        .basic_consume(
            "manual_q".into(),
            "stays".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = 0;
    while got < 50 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("deliveries after the failover")
            .expect("stream open")
            .expect("delivery");
        assert!(
            d.redelivered,
            "a message that was on the old leader comes redelivered"
        );
        got += 1;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deep_queue_is_mirrored_from_paged_messages_and_fails_over_whole() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
    use lapin::types::FieldTable;
    use lapin::BasicProperties;

    const N: u32 = 30_000;
    let (mut a, _b, c) = three_node_cluster();
    // The queue fills up before it is mirrored: beyond 20,000 messages the leader pages
    // them out, and the mirror's catch-up reads those back from the journal.
    let (_conn, ch) = confirming_channel(&a, "deep").await;
    let mut confirms = Vec::with_capacity(N as usize);
    for i in 0..N {
        // Half persistent, half transient: both kinds are replicated.
        let props = BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 });
        let body = format!("m{i}");
        let c = ch
            .basic_publish(
                "".into(),
                "deep".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await
            .unwrap();
        confirms.push(c);
    }
    for c in confirms {
        assert!(c.await.unwrap().is_ack());
    }
    set_policy(
        &c,
        "deep",
        "^deep$",
        r#"{"ha-mode":"all","ha-sync-mode":"automatic"}"#,
    );
    wait_queue(&c, "deep", "both mirrors in sync", |q| {
        names(q, "synchronised_slave_nodes").len() == 2
    });
    a.kill9();
    wait_queue(&c, "deep", "a mirror leads", |q| {
        q["node"] != a.name() && !q["node"].is_null()
    });
    let conn = c.connect().await;
    let consumer_ch = conn.create_channel().await.unwrap();
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = consumer_ch
        .basic_consume("deep".into(), "all".into(), no_ack, FieldTable::default())
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < N as usize {
        let d = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {N} messages after the failover", seen.len()))
            .expect("stream open")
            .expect("delivery");
        seen.insert(String::from_utf8_lossy(&d.data).into_owned());
    }
    for i in 0..N {
        assert!(seen.contains(&format!("m{i}")), "m{i} lost");
    }
}
