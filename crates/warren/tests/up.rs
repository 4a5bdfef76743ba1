//! `warren up` as a newcomer runs it: three clustered nodes, the load balancer and the stats
//! page come up, a client through the load balancer publishes and consumes, and Ctrl-C stops
//! everything and removes the data.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;

/// Below the ephemeral port range, away from the defaults.
const OFFSET: u16 = 1300;

#[tokio::test(flavor = "multi_thread")]
async fn up_starts_a_cluster_behind_the_load_balancer_and_ctrl_c_stops_it() {
    let dir = std::env::temp_dir().join(format!("warren-up-test-{}", std::process::id()));
    let mut child = Command::new(common::warren_bin())
        .args(["up", "--port-offset", &OFFSET.to_string(), "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !banner.contains("Ctrl-C stops everything") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("warren up ended early:\n{banner}\n{err}");
        }
        banner.push_str(&line);
        assert!(Instant::now() < deadline, "no banner:\n{banner}");
    }
    let lb = 5672 + OFFSET;
    assert!(banner.contains("3 nodes clustered"), "{banner}");
    assert!(
        banner.contains(&format!("amqp://guest:guest@localhost:{lb}/")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!("http://localhost:{}/stats", 8888 + OFFSET)),
        "{banner}"
    );

    // A client of the load balancer: declare, publish with confirms, consume.
    let uri = format!("amqp://guest:guest@127.0.0.1:{lb}/%2f");
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("mirror_hello".into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..50 {
        let c = ch
            .basic_publish(
                "".into(),
                "mirror_hello".into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(c.is_ack());
    }
    // Consume through another connection (the load balancer may pick another node).
    let conn2 = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch2 = conn2.create_channel().await.unwrap();
    let mut consumer = ch2
        .basic_consume(
            "mirror_hello".into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..50 {
        let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("delivery")
            .unwrap()
            .unwrap();
        assert_eq!(d.data, format!("m{i}").into_bytes());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    drop(conn);
    drop(conn2);

    // The stats page lists the three nodes as servers.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", 8888 + OFFSET)).unwrap();
    s.write_all(b"GET /stats;csv HTTP/1.0\r\n\r\n").unwrap();
    let mut csv = String::new();
    s.read_to_string(&mut csv).unwrap();
    for n in ["warren1", "warren2", "warren3"] {
        assert!(csv.contains(&format!("rabbitmq,{n},")), "{csv}");
    }

    // Ctrl-C: everything stops, the data folder is removed.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "warren up did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "data folder left behind");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", lb)).is_err(),
        "load balancer still up"
    );
}
