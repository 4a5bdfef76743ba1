//! The tutorial's HAProxy configuration in front of three real `warren server` nodes:
//! AMQP connections are spread round-robin (each node names itself in `connection.start`),
//! and a killed node goes DOWN and stops receiving connections.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, status, temp_dir, wait_until, warren_bin, Lb};

struct Node {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Node {
    fn start(name: &str) -> Node {
        let dir = temp_dir(name);
        let port = free_port();
        let child = Command::new(warren_bin())
            .args(["server", "--port", &port.to_string()])
            .args(["--mgmt-port", &free_port().to_string()])
            .args(["--cluster-port", &free_port().to_string()])
            .args(["--prometheus-port", &free_port().to_string()])
            .args(["--node-name", &format!("{name}@localhost")])
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--cookie-file")
            .arg(dir.join("cookie"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warren server");
        wait_until("the node listens", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Node {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Opens an AMQP connection through `port` and returns the node name the broker announces
/// in `connection.start` (its `cluster_name` server property).
fn node_behind(port: u16) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect through the lb");
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let mut buf = bytes::BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = warren_amqp::frame::decode(&mut buf, 0) {
            let Ok(warren_amqp::AMQPClass::Connection(warren_amqp::connection::AMQPMethod::Start(
                s,
            ))) = warren_amqp::method::decode(&f.payload)
            else {
                panic!("expected connection.start");
            };
            return match s.server_properties.inner().get("cluster_name") {
                Some(warren_amqp::AMQPValue::LongString(n)) => {
                    String::from_utf8_lossy(n.as_bytes()).into_owned()
                }
                other => panic!("no cluster_name: {other:?}"),
            };
        }
        let n = c.read(&mut chunk).expect("read connection.start");
        assert!(n > 0, "connection closed before connection.start");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn tutorial_config_spreads_amqp_over_three_warren_nodes_and_drops_a_dead_one() {
    let nodes: Vec<Node> = ["rmq1", "rmq2", "rmq3"]
        .iter()
        .map(|n| Node::start(n))
        .collect();
    let (lb_port, stats_port) = (free_port(), free_port());
    // The tutorial's file with loopback addresses; `inter` shortened from 5000 so that the
    // test waits 1.5 s rather than 15 s for `fall 3`.
    let cfg = include_str!("data/haproxy-tutorial.cfg")
        .replace("    daemon\n", "")
        .replace("    pidfile /var/run/haproxy.pid\n", "")
        .replace("0.0.0.0:5670", &format!("127.0.0.1:{lb_port}"))
        .replace("0.0.0.0:8888", &format!("127.0.0.1:{stats_port}"))
        .replace("10.211.55.74:5672", &format!("127.0.0.1:{}", nodes[0].port))
        .replace("10.211.55.75:5672", &format!("127.0.0.1:{}", nodes[1].port))
        .replace("10.211.55.76:5672", &format!("127.0.0.1:{}", nodes[2].port))
        .replace("inter 5000", "inter 500");
    let _lb = Lb::start(&cfg, stats_port, &[]);
    let mut seen: Vec<String> = (0..6).map(|_| node_behind(lb_port)).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "rmq1@localhost",
            "rmq1@localhost",
            "rmq2@localhost",
            "rmq2@localhost",
            "rmq3@localhost",
            "rmq3@localhost"
        ]
    );

    let mut nodes = nodes;
    let dead = nodes.remove(1);
    drop(dead);
    wait_until("rmq_node2 goes DOWN", Duration::from_secs(15), || {
        status(stats_port, "/stats", "rabbitmq_cluster", "rmq_node2").starts_with("DOWN")
    });
    for _ in 0..6 {
        let n = node_behind(lb_port);
        assert_ne!(n, "rmq2@localhost", "a connection went to the dead node");
    }
}
