//! `warren ctl` against real nodes: rabbitmqctl's commands, outputs and exit codes, the
//! cookie check, and the stop_app / reset / start_app lifecycle.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use std::os::unix::fs::PermissionsExt;

use common::Node;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};

#[tokio::test]
async fn list_queues_in_text_and_json() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "hello".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        ch.basic_publish(
            "".into(),
            "hello".into(),
            BasicPublishOptions::default(),
            b"x",
            Default::default(),
        )
        .await
        .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (code, out, err) = node.ctl(&["list_queues"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Listing queues for vhost / ..."), "{out}");
    assert!(out.contains("name\tmessages\n"), "{out}");
    assert!(out.contains("hello\t3\n"), "{out}");
    let (code, out, _) = node.ctl(&[
        "list_queues",
        "name",
        "durable",
        "consumers",
        "--formatter",
        "json",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        r#"[{"consumers":0,"durable":true,"name":"hello"}]"#
    );
    let (code, _, err) = node.ctl(&["list_queues", "nonsense"]);
    assert_eq!(code, 64, "{err}");
    let (code, out, _) = node.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("Application running: true"), "{out}");
}

#[tokio::test]
async fn users_permissions_and_policies() {
    let node = Node::start();
    assert_eq!(node.ctl(&["add_user", "admin", "123"]).0, 0);
    assert_eq!(node.ctl(&["set_user_tags", "admin", "administrator"]).0, 0);
    assert_eq!(
        node.ctl(&["set_permissions", "-p", "/", "admin", ".*", ".*", ".*"])
            .0,
        0
    );
    let (_, out, _) = node.ctl(&["list_users"]);
    assert!(out.contains("admin\t[\"administrator\"]"), "{out}");
    assert_eq!(node.ctl(&["authenticate_user", "admin", "123"]).0, 0);
    assert_eq!(node.ctl(&["authenticate_user", "admin", "nope"]).0, 65);
    let uri = format!("amqp://admin:123@127.0.0.1:{}/%2f", node.port);
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .expect("new user logs in");
    assert_eq!(node.ctl(&["add_user", "admin", "again"]).0, 70);

    let (code, out, err) = node.ctl(&[
        "set_policy",
        "ha-two",
        "^two\\.",
        r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}"#,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#"Setting policy "ha-two" for pattern "^two\." to "{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}" with priority "0" for vhost "/" ..."#), "{out}");
    let (code, _, err) = node.ctl(&[
        "set_policy",
        "bad",
        ".*",
        r#"{"ha-mode":"exactly","ha-params":"two"}"#,
    ]);
    assert_eq!(code, 65);
    assert!(
        err.contains("Validation failed")
            && err.contains(r#"ha-mode="exactly" takes an integer, <<"two">> given"#),
        "{err}"
    );
    let (_, out, _) = node.ctl(&["list_policies", "--formatter", "json"]);
    assert!(out.contains(r#""name":"ha-two""#), "{out}");
    assert_eq!(node.ctl(&["clear_policy", "ha-two"]).0, 0);
    assert_eq!(node.ctl(&["delete_user", "admin"]).0, 0);
    assert!(Connection::connect(&uri, ConnectionProperties::default())
        .await
        .is_err());
}

#[test]
fn wrong_cookie_and_unreachable_node_exit_69_with_diagnostics() {
    let node = Node::start();
    let bad = node.dir.join("bad.cookie");
    std::fs::write(&bad, "NOTTHECOOKIE").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = std::process::Command::new(common::warren_bin())
        .args([
            "ctl",
            "-n",
            &node.name(),
            "--cookie-file",
            bad.to_str().unwrap(),
            "list_queues",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "Error: unable to perform an operation on node '{}'",
            node.name()
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "Authentication failed (rejected by the remote node), please check the cookie"
        ),
        "{err}"
    );
    assert!(
        node.log().contains("Invalid challenge reply"),
        "the node logs the refusal"
    );
    let (code, _, err) = node.ctl(&["-n", "nobody@localhost:1", "status"]);
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("unable to connect"), "{err}");
}

#[test]
fn server_refuses_a_cookie_readable_by_others() {
    let dir = std::env::temp_dir().join(format!("warren-cookie-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cookie = dir.join("open.cookie");
    std::fs::write(&cookie, "SECRET").unwrap();
    std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(common::warren_bin())
        .args([
            "server",
            "--port",
            &common::free_port().to_string(),
            "--cookie-file",
            cookie.to_str().unwrap(),
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must be accessible by owner only") && err.contains("chmod 600"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn stop_app_reset_start_app_and_definitions_round_trip() {
    let node = Node::start();
    {
        let conn = node.connect().await;
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            "keep".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let export = node.dir.join("defs.json");
    assert_eq!(
        node.ctl(&["export_definitions", export.to_str().unwrap()])
            .0,
        0
    );
    let doc = std::fs::read_to_string(&export).unwrap();
    assert!(doc.contains(r#""name": "keep""#), "{doc}");

    let (code, _, err) = node.ctl(&["reset"]);
    assert_eq!(code, 64, "reset needs a stopped app");
    assert!(err.contains("stop_app"), "{err}");
    let (code, out, _) = node.ctl(&["stop_app"]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "Stopping warren application on node {}",
            node.name()
        )),
        "{out}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err(),
        "AMQP listener is closed"
    );
    assert_eq!(node.ctl(&["reset"]).0, 0);
    assert_eq!(node.ctl(&["start_app"]).0, 0);
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "keep".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(common::reply_code(&e), Some(404), "reset wiped the queue");
    assert_eq!(
        node.ctl(&["import_definitions", export.to_str().unwrap()])
            .0,
        0
    );
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "keep".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("imported back");
}

#[tokio::test]
async fn permissions_are_enforced_per_vhost_and_resource() {
    let node = Node::start();
    assert_eq!(node.ctl(&["add_user", "reader", "pw"]).0, 0);
    assert_eq!(
        node.ctl(&[
            "set_permissions",
            "-p",
            "/",
            "reader",
            "^$",
            "^$",
            "^reader-"
        ])
        .0,
        0
    );
    assert_eq!(node.ctl(&["add_vhost", "other"]).0, 0);
    let admin = node.connect().await;
    let ach = admin.create_channel().await.unwrap();
    for q in ["reader-q", "secret"] {
        ach.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let uri = format!("amqp://reader:pw@127.0.0.1:{}/%2f", node.port);
    let conn = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    assert!(ch
        .basic_get("reader-q".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .is_none());
    let e = ch
        .basic_get("secret".into(), BasicGetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(common::reply_code(&e), Some(403));
    assert_eq!(
        common::reply_text(&e),
        "ACCESS_REFUSED - read access to queue 'secret' in vhost '/' refused for user 'reader'"
    );
    let ch = conn.create_channel().await.unwrap();
    let e = ch
        .queue_declare(
            "mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        common::reply_text(&e),
        "ACCESS_REFUSED - configure access to queue 'mine' in vhost '/' refused for user 'reader'"
    );
    let other = format!("amqp://reader:pw@127.0.0.1:{}/other", node.port);
    let e = Connection::connect(&other, ConnectionProperties::default())
        .await
        .unwrap_err();
    assert_eq!(common::reply_code(&e), Some(530));
    assert_eq!(
        common::reply_text(&e),
        "NOT_ALLOWED - access to vhost 'other' refused for user 'reader'"
    );
}

#[test]
fn detached_node_writes_pid_and_log_and_stops_with_ctl() {
    let dir = std::env::temp_dir().join(format!("warren-detached-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (port, cluster) = (common::free_port(), common::free_port());
    let node = format!("detached{port}@localhost");
    let cookie = dir.join("cookie");
    let status = std::process::Command::new(common::warren_bin())
        .args([
            "server",
            "-detached",
            "--port",
            &port.to_string(),
            "--node-name",
            &node,
        ])
        .args(["--mgmt-port", &common::free_port().to_string()])
        .args(["--cluster-port", &cluster.to_string()])
        .args(["--prometheus-port", &common::free_port().to_string()])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--cookie-file")
        .arg(&cookie)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the foreground process returns at once with 0"
    );
    let pid_file = dir.join("data/warren.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the detached node never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(std::fs::read_to_string(dir.join("data/warren.log"))
        .unwrap()
        .contains("started"));
    let out = std::process::Command::new(common::warren_bin())
        .args(["ctl", "-n", &node, "--cookie-file"])
        .arg(&cookie)
        .arg("stop")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // Exited means gone, or a zombie waiting for whatever init this machine runs to reap it.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
    };
    while alive(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "warren ctl stop did not stop the node"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
