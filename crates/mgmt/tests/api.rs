//! The management API against a real node over real HTTP: nodes, connections / channels /
//! consumers (and closing a connection), users and permissions, definitions, vhosts, health
//! checks, queue bindings and actions, the UI's assets — status codes and bodies, including
//! RabbitMQ's 400 / 401 / 404 error bodies.

#[path = "../../broker/tests/common/mod.rs"]
mod common;

use base64::Engine;
use common::{http, http_with, Node, RawClient};
use lapin::options::*;
use lapin::types::FieldTable;
use serde_json::{json, Value};

fn get(node: &Node, path: &str) -> (u16, Value) {
    let (code, body) = http(node, "GET", path, None);
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn basic(user: &str, pass: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {token}")
}

/// A request as `user`; returns the status and the parsed body (`Null` if not JSON).
fn as_user(node: &Node, user: &str, pass: &str, method: &str, path: &str) -> (u16, Value) {
    let auth = basic(user, pass);
    let (code, body) = http_with(
        node.mgmt_port,
        method,
        path,
        &[("Authorization", &auth)],
        None,
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Path segment encoding, as the UI and rabbitmqadmin encode names.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn not_found() -> Value {
    json!({"error": "Object Not Found", "reason": "Not Found"})
}

#[test]
fn bad_credentials_missing_objects_and_bad_json() {
    let node = Node::start();
    let (code, body) = as_user(&node, "guest", "wrong", "GET", "/api/overview");
    assert_eq!(code, 401);
    assert_eq!(
        body,
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    let (code, body) = as_user(&node, "nobody", "x", "GET", "/api/queues");
    assert_eq!((code, &body["reason"]), (401, &json!("Login failed")));
    let (code, _) = http_with(
        node.mgmt_port,
        "GET",
        "/api/nodes",
        &[("Authorization", "")],
        None,
    );
    assert_eq!(code, 401, "no credentials");
    for path in [
        "/api/queues/nope",
        "/api/queues/%2F/nope",
        "/api/queues/%2F/nope/bindings",
        "/api/exchanges/%2F/nope",
        "/api/vhosts/nope",
        "/api/users/nope",
        "/api/permissions/%2F/nope",
        "/api/connections/nope",
        "/api/channels/nope",
        "/api/consumers/nope",
        "/api/nodes/nope@nowhere",
        "/api/aliveness-test/nope",
        "/api/definitions/nope",
    ] {
        let (code, body) = get(&node, path);
        assert_eq!((code, body), (404, not_found()), "{path}");
    }
    let (code, body) = http(&node, "PUT", "/api/users/x", Some("{not json"));
    assert_eq!(code, 400, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], "bad_request");
}

#[test]
fn nodes_report_this_node() {
    let node = Node::start();
    let (code, nodes) = get(&node, "/api/nodes");
    assert_eq!(code, 200);
    let nodes = nodes.as_array().expect("a list");
    assert_eq!(nodes.len(), 1);
    let n = &nodes[0];
    assert_eq!(n["name"], node.name().as_str());
    assert_eq!(n["type"], "disc");
    assert_eq!(n["running"], true);
    assert_eq!(n["partitions"], json!([]));
    assert!(n["mem_used"].as_u64().unwrap() > 0, "{n}");
    assert!(n["fd_used"].as_u64().unwrap() > 0, "{n}");
    assert!(n["fd_total"].as_u64().unwrap() >= n["fd_used"].as_u64().unwrap());
    assert!(n["uptime"].as_u64().is_some());
    assert!(n["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["protocol"] == "amqp" && l["port"] == node.port));
    let (code, one) = get(&node, &format!("/api/nodes/{}", enc(&node.name())));
    assert_eq!(code, 200);
    assert_eq!(one["name"], node.name().as_str());
    let (_, ov) = get(&node, "/api/overview");
    assert!(ov["message_stats"].is_object(), "{ov}");
    assert_eq!(ov["object_totals"]["channels"], 0);
}

#[tokio::test]
async fn connections_channels_consumers_and_forced_close() {
    let node = Node::start();
    let conn = node.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.basic_qos(7, BasicQosOptions::default()).await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.queue_declare("work".into(), Default::default(), FieldTable::default())
        .await
        .unwrap();
    let _consumer = ch
        .basic_consume(
            "work".into(),
            "ctag-1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let (code, conns) = get(&node, "/api/connections");
    assert_eq!(code, 200);
    let c = &conns[0];
    assert_eq!(conns.as_array().unwrap().len(), 1, "{conns}");
    assert_eq!(c["user"], "guest");
    assert_eq!(c["vhost"], "/");
    assert_eq!(c["state"], "running");
    assert_eq!(c["channels"], 1);
    assert_eq!(c["peer_host"], "127.0.0.1");
    assert_eq!(c["port"], node.port);
    assert_eq!(c["protocol"], "AMQP 0-9-1");
    let name = c["name"].as_str().unwrap().to_string();
    assert_eq!(
        name,
        format!("127.0.0.1:{} -> 127.0.0.1:{}", c["peer_port"], node.port)
    );
    assert!(c["client_properties"]["capabilities"].is_object(), "{c}");
    let (code, one) = get(&node, &format!("/api/connections/{}", enc(&name)));
    assert_eq!((code, &one["name"]), (200, &json!(name)));
    let (_, in_vhost) = get(&node, "/api/vhosts/%2F/connections");
    assert_eq!(in_vhost.as_array().unwrap().len(), 1);

    let (code, chans) = get(&node, "/api/channels");
    assert_eq!(code, 200);
    let chan = &chans[0];
    assert_eq!(chan["name"], format!("{name} (1)"));
    assert_eq!(chan["number"], 1);
    assert_eq!(chan["consumer_count"], 1);
    assert_eq!(chan["prefetch_count"], 7);
    assert_eq!(chan["confirm"], true);
    assert_eq!(chan["transactional"], false);
    assert_eq!(chan["connection_details"]["name"], name.as_str());
    let (_, per_conn) = get(&node, &format!("/api/connections/{}/channels", enc(&name)));
    assert_eq!(per_conn.as_array().unwrap().len(), 1);
    let (code, _) = get(
        &node,
        &format!("/api/channels/{}", enc(&format!("{name} (1)"))),
    );
    assert_eq!(code, 200);

    for path in ["/api/consumers", "/api/consumers/%2F"] {
        let (code, consumers) = get(&node, path);
        assert_eq!(code, 200);
        let co = &consumers[0];
        assert_eq!(co["consumer_tag"], "ctag-1", "{consumers}");
        assert_eq!(co["queue"], json!({"name": "work", "vhost": "/"}));
        assert_eq!(co["ack_required"], true);
        assert_eq!(co["prefetch_count"], 7);
        assert_eq!(co["channel_details"]["connection_name"], name.as_str());
    }
    let (_, ov) = get(&node, "/api/overview");
    assert_eq!(ov["object_totals"]["channels"], 1);
    assert_eq!(ov["object_totals"]["consumers"], 1);

    // A raw client sees the forced close: 320 with X-Reason as the text.
    let mut raw = RawClient::connect(node.port);
    raw.handshake(0);
    let (_, conns) = get(&node, "/api/connections");
    let raw_name = conns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .find(|n| *n != name)
        .expect("the raw client's connection");
    let (code, body) = http_with(
        node.mgmt_port,
        "DELETE",
        &format!("/api/connections/{}", enc(&raw_name)),
        &[("X-Reason", "maintenance window")],
        None,
    );
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        raw.expect_connection_close(),
        (320, "CONNECTION_FORCED - maintenance window".to_string())
    );
    let (code, _) = http(
        &node,
        "DELETE",
        &format!("/api/connections/{}", enc(&name)),
        None,
    );
    assert_eq!(code, 204);
    for _ in 0..100 {
        if !conn.status().connected() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!conn.status().connected(), "lapin connection still open");
    // The raw client never answers close-ok: the node gives up on it after a second.
    drop(raw);
    let mut conns = json!(null);
    for _ in 0..100 {
        conns = get(&node, "/api/connections").1;
        if conns == json!([]) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(conns, json!([]));
}

#[test]
fn users_and_permissions() {
    let node = Node::start();
    let (code, body) = http(
        &node,
        "PUT",
        "/api/users/ops",
        Some(r#"{"password":"s3cret","tags":"administrator"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let (code, _) = http(
        &node,
        "PUT",
        "/api/users/ops",
        Some(r#"{"password":"s3cret2","tags":"administrator,monitoring"}"#),
    );
    assert_eq!(code, 204);
    let (code, u) = get(&node, "/api/users/ops");
    assert_eq!(code, 200);
    assert_eq!(u["tags"], json!(["administrator", "monitoring"]));
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");
    let (code, me) = as_user(&node, "ops", "s3cret2", "GET", "/api/whoami");
    assert_eq!((code, &me["name"]), (200, &json!("ops")));
    let (code, _) = as_user(&node, "ops", "s3cret", "GET", "/api/whoami");
    assert_eq!(code, 401, "the old password no longer works");

    // RabbitMQ's password_hash is accepted as is: a copy of guest's hash logs in as "guest".
    let (_, guest) = get(&node, "/api/users/guest");
    let hash = guest["password_hash"].as_str().unwrap();
    let (code, _) = http(
        &node,
        "PUT",
        "/api/users/copy",
        Some(&json!({"password_hash": hash, "tags": ["management"]}).to_string()),
    );
    assert_eq!(code, 201);
    let (code, _) = as_user(&node, "copy", "guest", "GET", "/api/whoami");
    assert_eq!(code, 200);
    // ...but a management-only user is not an administrator.
    let (code, body) = as_user(&node, "copy", "guest", "GET", "/api/users");
    assert_eq!(code, 401);
    assert_eq!(
        body,
        json!({"error": "not_authorised", "reason": "Not administrator user"})
    );
    // A user without management tags cannot use the API at all.
    let (code, _) = http(&node, "PUT", "/api/users/app", Some(r#"{"password":"p"}"#));
    assert_eq!(code, 201);
    let (code, body) = as_user(&node, "app", "p", "GET", "/api/overview");
    assert_eq!(
        (code, &body["reason"]),
        (401, &json!("Not management user"))
    );
    let (code, body) = http(&node, "PUT", "/api/users/nopass", Some(r#"{"tags":""}"#));
    assert_eq!(code, 400, "{body}");

    let (code, body) = http(
        &node,
        "PUT",
        "/api/permissions/%2F/app",
        Some(r#"{"configure":"^app\\.","write":".*","read":".*"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let (code, p) = get(&node, "/api/permissions/%2F/app");
    assert_eq!(code, 200);
    assert_eq!(
        p,
        json!({"user": "app", "vhost": "/", "configure": "^app\\.", "write": ".*", "read": ".*"})
    );
    let (_, all) = get(&node, "/api/permissions");
    assert!(all.as_array().unwrap().iter().any(|p| p["user"] == "app"));
    let (_, of_user) = get(&node, "/api/users/app/permissions");
    assert_eq!(of_user.as_array().unwrap().len(), 1);
    let (code, _) = http(
        &node,
        "PUT",
        "/api/permissions/%2F/app",
        Some(r#"{"configure":"(","write":".*","read":".*"}"#),
    );
    assert_eq!(code, 400, "a bad regex");
    let (code, _) = http(
        &node,
        "PUT",
        "/api/permissions/nope/app",
        Some(r#"{"configure":".*","write":".*","read":".*"}"#),
    );
    assert_eq!(code, 404);
    let (code, _) = http(&node, "DELETE", "/api/permissions/%2F/app", None);
    assert_eq!(code, 204);
    let (code, _) = http(&node, "DELETE", "/api/users/app", None);
    assert_eq!(code, 204);
    let (code, body) = http(&node, "DELETE", "/api/users/app", None);
    assert_eq!(code, 404);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), not_found());
}

#[test]
fn definitions_export_and_import() {
    let node = Node::start();
    let (code, _) = http(
        &node,
        "PUT",
        "/api/queues/%2F/kept",
        Some(r#"{"durable":true}"#),
    );
    assert_eq!(code, 201);
    let (code, doc) = get(&node, "/api/definitions");
    assert_eq!(code, 200);
    assert!(doc["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == "kept"));
    assert!(doc["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["name"] == "guest"));
    let import = json!({
        "vhosts": [{"name": "imported"}],
        "users": [],
        "queues": [{"name": "iq", "vhost": "imported", "durable": true, "auto_delete": false, "arguments": {}}],
        "exchanges": [{"name": "ix", "vhost": "imported", "type": "fanout", "durable": true,
                        "auto_delete": false, "internal": false, "arguments": {}}],
        "bindings": [{"source": "ix", "vhost": "imported", "destination": "iq",
                       "destination_type": "queue", "routing_key": "", "arguments": {}}],
        "policies": [{"vhost": "imported", "name": "cap", "pattern": "^i", "apply-to": "queues",
                       "definition": {"max-length": 10}, "priority": 0}],
    });
    let (code, body) = http(&node, "POST", "/api/definitions", Some(&import.to_string()));
    assert_eq!(code, 204, "{body}");
    let (code, q) = get(&node, "/api/queues/imported/iq");
    assert_eq!(code, 200);
    assert_eq!(q["policy"], "cap");
    let (_, b) = get(&node, "/api/queues/imported/iq/bindings");
    assert!(
        b.as_array().unwrap().iter().any(|b| b["source"] == "ix"),
        "{b}"
    );

    let (code, vdoc) = get(&node, "/api/definitions/imported");
    assert_eq!(code, 200);
    assert_eq!(
        vdoc["queues"],
        json!([{"name": "iq", "durable": true, "auto_delete": false, "arguments": {}}])
    );
    assert!(vdoc.get("users").is_none());
    let (code, _) = http(&node, "PUT", "/api/vhosts/copy", None);
    assert_eq!(code, 201);
    let (code, body) = http(
        &node,
        "POST",
        "/api/definitions/copy",
        Some(&vdoc.to_string()),
    );
    assert_eq!(code, 204, "{body}");
    let (code, _) = get(&node, "/api/exchanges/copy/ix");
    assert_eq!(code, 200, "the vhost export imports into another vhost");

    let bad = json!({"policies": [{"vhost": "/", "name": "bad", "pattern": ".*",
                                    "definition": {"ha-mode": "sometimes"}}]});
    let (code, body) = http(&node, "POST", "/api/definitions", Some(&bad.to_string()));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad"), "{body}");
    let (code, _) = http(&node, "POST", "/api/definitions", Some("[1,2"));
    assert_eq!(code, 400);
}

#[test]
fn vhosts_health_checks_and_aliveness() {
    let node = Node::start();
    let (code, _) = http(&node, "PUT", "/api/vhosts/staging", None);
    assert_eq!(code, 201);
    let (code, _) = http(&node, "PUT", "/api/vhosts/staging", None);
    assert_eq!(code, 204);
    let (code, v) = get(&node, "/api/vhosts/staging");
    assert_eq!((code, &v["name"]), (200, &json!("staging")));
    assert_eq!(v["messages"], 0);

    let (code, body) = get(&node, "/api/aliveness-test/staging");
    assert_eq!((code, body), (200, json!({"status": "ok"})));
    let (code, q) = get(&node, "/api/queues/staging/aliveness-test");
    assert_eq!(code, 200);
    assert_eq!(q["messages"], 0, "the test message was consumed");

    let (code, _) = http(&node, "DELETE", "/api/vhosts/staging", None);
    assert_eq!(code, 204);
    let (code, _) = http(&node, "DELETE", "/api/vhosts/staging", None);
    assert_eq!(code, 404);

    for path in [
        "/api/health/checks/alarms",
        "/api/health/checks/local-alarms",
        "/api/health/checks/virtual-hosts",
    ] {
        let (code, body) = get(&node, path);
        assert_eq!((code, body), (200, json!({"status": "ok"})), "{path}");
    }
    let (code, body) = get(
        &node,
        &format!("/api/health/checks/port-listener/{}", node.port),
    );
    assert_eq!(
        (code, body),
        (200, json!({"status": "ok", "port": node.port}))
    );
    let (code, body) = get(
        &node,
        &format!("/api/health/checks/port-listener/{}", node.mgmt_port),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = get(&node, "/api/health/checks/port-listener/1");
    assert_eq!(code, 503);
    assert_eq!(body["status"], "failed");
    assert_eq!(body["reason"], "No active listener");
    assert_eq!(body["missing"], 1);
    assert!(body["ports"]
        .as_array()
        .unwrap()
        .contains(&json!(node.port)));
    let (code, _) = get(&node, "/api/health/checks/port-listener/http");
    assert_eq!(code, 400);
    let (code, _) = get(&node, "/api/health/checks/protocol-listener/amqp");
    assert_eq!(code, 200);
    let (code, _) = get(&node, "/api/health/checks/protocol-listener/stomp");
    assert_eq!(code, 503);
}

#[test]
fn queue_bindings_and_actions() {
    let node = Node::start();
    http(
        &node,
        "PUT",
        "/api/queues/%2F/jobs",
        Some(r#"{"durable":false}"#),
    );
    http(
        &node,
        "PUT",
        "/api/exchanges/%2F/events",
        Some(r#"{"type":"topic"}"#),
    );
    let (code, _) = http(
        &node,
        "POST",
        "/api/bindings/%2F/e/events/q/jobs",
        Some(r#"{"routing_key":"job.*"}"#),
    );
    assert_eq!(code, 201);
    let (code, b) = get(&node, "/api/queues/%2F/jobs/bindings");
    assert_eq!(code, 200);
    let b = b.as_array().unwrap();
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(
        b[0]["source"], "",
        "the default exchange's binding comes first"
    );
    assert_eq!(b[1]["source"], "events");
    assert_eq!(b[1]["routing_key"], "job.*");
    let (_, between) = get(&node, "/api/bindings/%2F/e/events/q/jobs");
    assert_eq!(between.as_array().unwrap().len(), 1);
    let (_, src) = get(&node, "/api/exchanges/%2F/events/bindings/source");
    assert_eq!(src.as_array().unwrap().len(), 1);
    let (code, _) = http(
        &node,
        "DELETE",
        "/api/bindings/%2F/e/events/q/jobs/job.*",
        None,
    );
    assert_eq!(code, 204);
    let (_, b) = get(&node, "/api/queues/%2F/jobs/bindings");
    assert_eq!(b.as_array().unwrap().len(), 1);

    let (code, _) = http(
        &node,
        "POST",
        "/api/queues/%2F/jobs/actions",
        Some(r#"{"action":"sync"}"#),
    );
    assert_eq!(code, 204);
    let (code, body) = http(
        &node,
        "POST",
        "/api/queues/%2F/jobs/actions",
        Some(r#"{"action":"explode"}"#),
    );
    assert_eq!(code, 400, "{body}");
    let (code, _) = http(
        &node,
        "POST",
        "/api/queues/%2F/nope/actions",
        Some(r#"{"action":"sync"}"#),
    );
    assert_eq!(code, 404);
}

#[test]
fn the_ui_is_served_from_the_binary() {
    let node = Node::start();
    // The assets need no credentials: the page asks for them itself.
    let fetch = |path: &str| http_with(node.mgmt_port, "GET", path, &[("Authorization", "")], None);
    let (code, html) = fetch("/");
    assert_eq!(code, 200);
    assert!(html.contains("<script src=\"app.js\""), "{html}");
    let (code, js) = fetch("/app.js");
    assert_eq!(code, 200);
    assert!(js.contains("/whoami"), "the script calls the API");
    assert_eq!(fetch("/style.css").0, 200);
    // Without X-Requested-With the API challenges (rabbitmqadmin, curl); the UI's requests
    // carry it and get no challenge, so the browser shows no login dialog of its own.
    let raw = |headers: &[(&str, &str)]| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", node.mgmt_port)).unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req =
            format!("GET /api/whoami HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        let mut resp = String::new();
        std::io::Read::read_to_string(&mut s, &mut resp).unwrap();
        resp.to_ascii_lowercase()
    };
    let plain = raw(&[]);
    assert!(plain.starts_with("http/1.1 401"), "{plain}");
    assert!(plain.contains("www-authenticate: basic"), "{plain}");
    let xhr = raw(&[("X-Requested-With", "XMLHttpRequest")]);
    assert!(xhr.starts_with("http/1.1 401"), "{xhr}");
    assert!(!xhr.contains("www-authenticate"), "{xhr}");
}
