//! `warren ctl list_connections`, `list_channels`, `list_consumers` and `close_connection`
//! against a real node with real clients: rabbitmqctl's default columns, chosen columns,
//! `--formatter json`, exit codes, and the forced close the client sees.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use common::{Node, RawClient};
use lapin::options::*;
use lapin::types::FieldTable;
use serde_json::Value;

fn json_rows(out: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(out.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
        .as_array()
        .cloned()
        .expect("a JSON list")
}

#[tokio::test]
async fn channels_and_consumers_are_listed() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(3, BasicQosOptions::default()).await.unwrap();
    ch.queue_declare("tasks".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    let _c = ch
        .basic_consume(
            "tasks".into(),
            "worker-1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let (code, out, err) = node.ctl(&["list_channels"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Listing channels ...");
    assert_eq!(
        lines[1],
        "pid\tuser\tconsumer_count\tmessages_unacknowledged"
    );
    let cells: Vec<&str> = lines[2].split('\t').collect();
    assert!(cells[0].starts_with(&format!("<{}.", node.name())), "{out}");
    assert_eq!(&cells[1..], ["guest", "1", "0"], "{out}");

    let (code, out, _) = node.ctl(&[
        "--formatter",
        "json",
        "list_channels",
        "name",
        "number",
        "prefetch_count",
        "confirm",
    ]);
    assert_eq!(code, 0);
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["number"], 1);
    assert_eq!(rows[0]["prefetch_count"], 3);
    assert_eq!(rows[0]["confirm"], false);
    assert!(rows[0]["name"].as_str().unwrap().ends_with(" (1)"), "{out}");

    let (code, out, err) = node.ctl(&["list_consumers"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Listing consumers in vhost / ...");
    assert_eq!(
        lines[1],
        "queue_name\tchannel_pid\tconsumer_tag\tack_required\tprefetch_count\tactive\targuments"
    );
    let cells: Vec<&str> = lines[2].split('\t').collect();
    assert_eq!(cells[0], "tasks");
    assert_eq!(
        &cells[2..],
        ["worker-1", "true", "3", "true", "[]"],
        "{out}"
    );

    let (code, out, _) = node.ctl(&["--formatter", "json", "list_consumers", "-p", "/"]);
    assert_eq!(code, 0);
    assert_eq!(json_rows(&out)[0]["consumer_tag"], "worker-1");

    let (code, _, err) = node.ctl(&["list_consumers", "-p", "nope"]);
    assert_eq!(code, 65, "unknown vhost: {err}");
    assert!(err.contains("Virtual host 'nope' does not exist"), "{err}");
    let (code, _, err) = node.ctl(&["list_channels", "bogus"]);
    assert_eq!(code, 64);
    assert!(err.contains("Invalid channel info item: bogus"), "{err}");
}

#[test]
fn close_connection_by_name_and_by_pid() {
    let node = Node::start();
    let mut raw = RawClient::connect(node.port);
    raw.handshake(0);
    let (code, out, _) = node.ctl(&[
        "--formatter",
        "json",
        "list_connections",
        "name",
        "pid",
        "user",
    ]);
    assert_eq!(code, 0);
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 1, "{out}");
    let name = rows[0]["name"].as_str().unwrap().to_string();
    assert!(
        name.starts_with("127.0.0.1:") && name.ends_with(&format!(" -> 127.0.0.1:{}", node.port)),
        "{name}"
    );
    assert_eq!(rows[0]["user"], "guest");

    let (code, out, err) = node.ctl(&["close_connection", &name, "go away"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Closing connection <"), "{out}");
    assert!(out.contains("reason: go away"), "{out}");
    assert_eq!(
        raw.expect_connection_close(),
        (320, "CONNECTION_FORCED - go away".to_string())
    );

    let mut second = RawClient::connect(node.port);
    second.handshake(0);
    let (_, out, _) = node.ctl(&["--formatter", "json", "list_connections", "pid", "name"]);
    let pid = json_rows(&out)
        .into_iter()
        .find(|r| r["name"] != name.as_str())
        .map(|r| r["pid"].as_str().unwrap().to_string())
        .expect("the second connection");
    let (code, _, err) = node.ctl(&["close_connection", &pid, "by pid"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        second.expect_connection_close(),
        (320, "CONNECTION_FORCED - by pid".to_string())
    );

    let (code, _, err) = node.ctl(&["close_connection", "no such connection", "x"]);
    assert_eq!(code, 65);
    assert!(err.contains("no connection 'no such connection'"), "{err}");
    let (code, _, _) = node.ctl(&["close_connection", &pid]);
    assert_eq!(code, 64, "the reason is required");
}
