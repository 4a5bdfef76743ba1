//! Chaos test of mirrored queues through real processes on loopback: three clustered nodes,
//! a durable `^mirror` queue under `{"ha-mode":"exactly","ha-params":2,
//! "ha-sync-mode":"automatic"}`, publishers with confirms and consumers with manual acks
//! running throughout, while the queue's leader is `kill -9`ed, restarted, and stopped
//! gracefully (`stop_app` / `start_app`), and a mirror's node is killed too.
//!
//! It fails if a confirmed message is never consumed (message ids travel in the bodies), if a
//! message is delivered twice without `redelivered` set on the repeat, or if the queue takes
//! more than `MAX_FAILOVER` to confirm a new publish after losing its leader. It prints the
//! counts and every failover time it saw.
//!
//! Clients prefer different nodes, so some sit on the node that goes down and must reconnect
//! to a running one, while the others keep their connections (their publishes are forwarded
//! to whichever node leads the queue).
//!
//! Not covered here: cutting links. On loopback every node shares 127.0.0.1, so isolating one
//! node would need firewall rules keyed on socket owners in the host's own namespace; the
//! partition cases live in cluster_netns.rs, where each node has its own namespace.

#[path = "../../broker/tests/common/mod.rs"]
mod common;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Node;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::Confirmation;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use support::cluster::{join, ok};

const COOKIE: &str = "CHAOSTESTCOOKIE";
const QUEUE: &str = "mirror_chaos";
const POLICY: &str = r#"{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}"#;
/// The design promises promotion within ~1-2 s; a debug build on a busy 2-core CI machine
/// gets headroom, but a queue that stays unavailable fails the test.
const MAX_FAILOVER: Duration = Duration::from_secs(10);
/// Deadline for the cluster to settle after a step (a node rejoining, a mirror syncing).
const SETTLE: Duration = Duration::from_secs(40);
const PUBLISHERS: usize = 2;
const CONSUMERS: usize = 2;
/// Confirms outstanding per publisher while confirms flow.
const WINDOW: usize = 20;

/// What the clients and the driver share.
struct Shared {
    /// AMQP port of each node (a restarted node keeps its ports).
    ports: Vec<u16>,
    /// Which nodes clients may connect to; the driver clears a node's flag before taking it
    /// down and sets it once the node is back.
    up: Mutex<Vec<bool>>,
    stop_publishing: AtomicBool,
    stop_consuming: AtomicBool,
    published: AtomicU64,
    nacked: AtomicU64,
    returned: AtomicU64,
    /// Publishes whose fate is unknown (connection lost, or no confirm in time).
    unknown: AtomicU64,
    reconnects: AtomicU64,
    confirmed: Mutex<HashSet<u64>>,
    /// The instant of the chaos event being timed, and the first confirm of a message
    /// published after it.
    event: Mutex<Option<Instant>>,
    first_confirm_after_event: Mutex<Option<Instant>>,
    /// Deliveries per message id.
    consumed: Mutex<HashMap<u64, u32>>,
    redelivered_repeats: AtomicU64,
    /// Ids delivered again without `redelivered`: must stay empty.
    bad_repeats: Mutex<Vec<u64>>,
}

impl Shared {
    fn confirmed_count(&self) -> usize {
        self.confirmed.lock().unwrap().len()
    }

    /// The running node to use next, starting from `preferred`.
    fn pick(&self, preferred: usize, attempt: usize) -> Option<u16> {
        let up = self.up.lock().unwrap();
        let n = up.len();
        (0..n)
            .map(|k| (preferred + attempt + k) % n)
            .find(|&i| up[i])
            .map(|i| self.ports[i])
    }
}

fn uri(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

async fn connect(port: u16) -> Option<Connection> {
    tokio::time::timeout(
        Duration::from_secs(3),
        Connection::connect(&uri(port), ConnectionProperties::default()),
    )
    .await
    .ok()?
    .ok()
}

/// What one publish came to.
enum Outcome {
    Confirmed,
    /// Acked but returned (mandatory, no queue took it): not a confirm of anything.
    Returned,
    Nacked,
    /// Connection lost, or no confirm within `MAX_FAILOVER`: its fate is unknown.
    Unknown,
}

type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = (u64, Instant, Outcome)> + Send>>;

/// Publishes persistent, mandatory messages with up to `WINDOW` confirms outstanding, each
/// body carrying its id; records which ids were confirmed (acked and not returned).
///
/// Publishes stuck at a dead leader do not stop it: once nothing has completed for 200 ms it
/// keeps sending one more every 50 ms, so the moment the new leader answers shows.
async fn publisher(sh: Arc<Shared>, me: usize, preferred: usize) {
    let mut seq = 0u64;
    let mut attempt = 0usize;
    let props = BasicProperties::default().with_delivery_mode(2);
    while !sh.stop_publishing.load(Ordering::Relaxed) {
        let Some(port) = sh.pick(preferred, attempt) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        attempt += 1;
        let Some(conn) = connect(port).await else {
            // A node going down or not yet serving: back off, then try the next one.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(ch) = conn.create_channel().await else {
            continue;
        };
        if ch
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .is_err()
        {
            continue;
        }
        let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
        let mut last_done = Instant::now();
        let mut last_publish = Instant::now();
        loop {
            let stopping = sh.stop_publishing.load(Ordering::Relaxed);
            if stopping && in_flight.is_empty() {
                break;
            }
            let stuck = last_done.elapsed() > Duration::from_millis(200)
                && last_publish.elapsed() > Duration::from_millis(50);
            if !stopping && (in_flight.len() < WINDOW || stuck) && in_flight.len() < 2000 {
                let id = ((me as u64) << 40) | seq;
                seq += 1;
                let body = format!("{id:020} chaos");
                sh.published.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                last_publish = sent;
                let publish = ch.basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body.as_bytes(),
                    props.clone(),
                );
                match tokio::time::timeout(Duration::from_secs(5), publish).await {
                    Ok(Ok(c)) => in_flight.push(Box::pin(async move {
                        let outcome = match tokio::time::timeout(MAX_FAILOVER, c).await {
                            Ok(Ok(Confirmation::Ack(None))) => Outcome::Confirmed,
                            Ok(Ok(Confirmation::Ack(Some(_)))) => Outcome::Returned,
                            Ok(Ok(_)) => Outcome::Nacked,
                            _ => Outcome::Unknown,
                        };
                        (id, sent, outcome)
                    })),
                    _ => {
                        sh.unknown.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            // About 1,000 publishes a second per publisher at most: the consumers keep up
            // and the final drain stays short.
            let done = tokio::time::timeout(Duration::from_millis(1), in_flight.next()).await;
            let Ok(Some((id, sent, outcome))) = done else {
                continue;
            };
            last_done = Instant::now();
            match outcome {
                Outcome::Confirmed => {
                    sh.confirmed.lock().unwrap().insert(id);
                    let event = *sh.event.lock().unwrap();
                    if event.is_some_and(|e| sent >= e) {
                        sh.first_confirm_after_event
                            .lock()
                            .unwrap()
                            .get_or_insert(last_done);
                    }
                }
                Outcome::Returned => {
                    sh.returned.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Nacked => {
                    sh.nacked.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Unknown => {
                    sh.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
            if !conn.status().connected() || !ch.status().connected() {
                break;
            }
        }
        // Whatever is still in flight on a lost link is neither confirmed nor refused.
        sh.unknown
            .fetch_add(in_flight.len() as u64, Ordering::Relaxed);
        if !sh.stop_publishing.load(Ordering::Relaxed) {
            sh.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
    }
}

/// Consumes with manual acks (prefetch 50) from whichever running node it can reach,
/// recording every delivery; re-consumes after a cancel or a lost connection.
async fn consumer(sh: Arc<Shared>, preferred: usize) {
    let mut attempt = 0usize;
    while !sh.stop_consuming.load(Ordering::Relaxed) {
        let Some(port) = sh.pick(preferred, attempt) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        attempt += 1;
        let Some(conn) = connect(port).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // One connection, new channels while it lives: a consume refused while the queue
        // has no leader (404) closes only the channel.
        // Every call is bounded: a node going down mid-call must not hang the consumer.
        let bounded = Duration::from_secs(5);
        while conn.status().connected() && !sh.stop_consuming.load(Ordering::Relaxed) {
            let Ok(Ok(ch)) = tokio::time::timeout(bounded, conn.create_channel()).await else {
                break;
            };
            let qos = ch.basic_qos(50, BasicQosOptions::default());
            if !matches!(tokio::time::timeout(bounded, qos).await, Ok(Ok(()))) {
                continue;
            }
            let consume = ch.basic_consume(
                QUEUE.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            );
            let Ok(Ok(mut stream)) = tokio::time::timeout(bounded, consume).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            loop {
                if sh.stop_consuming.load(Ordering::Relaxed) {
                    break;
                }
                let next = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
                let d = match next {
                    Err(_) => continue, // idle: look at the stop flag again
                    Ok(Some(Ok(d))) => d,
                    Ok(_) => break, // cancelled, channel or connection gone
                };
                let id = std::str::from_utf8(&d.data)
                    .ok()
                    .and_then(|s| s.split_whitespace().next())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("a body this test never sent: {:?}", d.data));
                {
                    let mut seen = sh.consumed.lock().unwrap();
                    let n = seen.entry(id).or_insert(0);
                    if *n > 0 {
                        if d.redelivered {
                            sh.redelivered_repeats.fetch_add(1, Ordering::Relaxed);
                        } else {
                            sh.bad_repeats.lock().unwrap().push(id);
                        }
                    }
                    *n += 1;
                }
                if !matches!(
                    tokio::time::timeout(bounded, d.ack(BasicAckOptions::default())).await,
                    Ok(Ok(_))
                ) {
                    break;
                }
            }
            sh.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics with `what` after `limit`.
async fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn running_nodes(n: &Node) -> usize {
    let (code, out, _) = n.ctl(&["cluster_status", "--formatter", "json"]);
    if code != 0 {
        return 0;
    }
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["running_nodes"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// The queue as a running node's management API shows it: (leader, in-sync mirrors).
fn queue_nodes(n: &Node) -> Option<(String, Vec<String>)> {
    let (code, body) = common::http(n, "GET", &format!("/api/queues/%2F/{QUEUE}"), None);
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    let leader = v["node"].as_str()?.to_string();
    let synced = v["synchronised_slave_nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Some((leader, synced))
}

struct Cluster {
    nodes: Vec<Node>,
    sh: Arc<Shared>,
    /// (what happened, kill/stop to first confirm of a new publish)
    failovers: Vec<(String, Duration)>,
}

impl Cluster {
    fn index_of(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name() == name)
            .unwrap_or_else(|| panic!("leader {name} is none of this cluster's nodes"))
    }

    /// Waits until the queue has a leader on a running node and an in-sync mirror; returns
    /// (leader index, mirror indices).
    async fn mirrored(&self, what: &str) -> (usize, Vec<usize>) {
        let up = self.sh.up.lock().unwrap().clone();
        let deadline = Instant::now() + SETTLE;
        loop {
            // Every running node must agree: one that just restarted may still be catching
            // up with the cluster, and its listing would name a former leader.
            let views: Vec<_> = (0..self.nodes.len())
                .filter(|&i| up[i])
                .map(|i| queue_nodes(&self.nodes[i]))
                .collect();
            let agreed = views.windows(2).all(|w| w[0] == w[1]);
            let seen = if agreed {
                views.first().cloned().flatten()
            } else {
                None
            };
            if let Some((leader, synced)) = &seen {
                let li = self.index_of(leader);
                let mirrors: Vec<usize> = synced.iter().map(|m| self.index_of(m)).collect();
                if up[li] && mirrors.iter().any(|&m| up[m] && m != li) {
                    return (li, mirrors);
                }
            }
            let last = format!("{seen:?}");
            assert!(
                Instant::now() < deadline,
                "{what}: no leader with an in-sync mirror on running nodes after {SETTLE:?} \
                 (last seen (leader, in-sync mirrors): {last}). Are mirrored queues (the \
                 ha-mode policy) implemented in this build?"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Lets traffic flow until `n` more messages are confirmed.
    async fn progress(&self, n: usize, what: &str) {
        let target = self.sh.confirmed_count() + n;
        wait_for(Duration::from_secs(60), what, || {
            (self.sh.confirmed_count() >= target).then_some(())
        })
        .await;
    }

    fn start_timing(&self) {
        *self.sh.first_confirm_after_event.lock().unwrap() = None;
        *self.sh.event.lock().unwrap() = Some(Instant::now());
    }

    /// Waits for the first confirm of a message published after the timed event.
    async fn failover_time(&mut self, what: &str) {
        let at = self.sh.event.lock().unwrap().expect("timing started");
        let first = wait_for(MAX_FAILOVER, &format!("a confirm after {what}"), || {
            *self.sh.first_confirm_after_event.lock().unwrap()
        })
        .await;
        let took = first.saturating_duration_since(at);
        println!("chaos: {what}: first confirm after {took:?}");
        self.failovers.push((what.to_string(), took));
        *self.sh.event.lock().unwrap() = None;
    }

    fn set_up(&self, i: usize, up: bool) {
        self.sh.up.lock().unwrap()[i] = up;
    }

    /// Waits until node `i` is back in a 3-node cluster, then lets clients use it again.
    async fn rejoined(&self, i: usize) {
        let n = &self.nodes[i];
        wait_for(SETTLE, &format!("{} to rejoin", n.name()), || {
            (running_nodes(n) == 3).then_some(())
        })
        .await;
        self.set_up(i, true);
    }

    async fn kill_leader(&mut self, round: usize) {
        let (li, _) = self.mirrored("before killing the leader").await;
        let name = self.nodes[li].name();
        self.set_up(li, false);
        self.start_timing();
        self.nodes[li].kill9();
        self.failover_time(&format!("kill -9 of leader {name} (round {round})"))
            .await;
        let (new, _) = self.mirrored("after killing the leader").await;
        assert_ne!(new, li, "the dead node still leads the queue");
        self.progress(200, "traffic after the leader's kill").await;
        self.nodes[li].spawn();
        self.rejoined(li).await;
    }

    async fn stop_leader_gracefully(&mut self) {
        let (li, _) = self.mirrored("before stopping the leader").await;
        let name = self.nodes[li].name();
        self.set_up(li, false);
        self.start_timing();
        ok(&self.nodes[li], &["stop_app"]);
        self.failover_time(&format!("stop_app of leader {name}"))
            .await;
        let (new, _) = self.mirrored("after stopping the leader").await;
        assert_ne!(new, li, "the stopped node still leads the queue");
        self.progress(200, "traffic after stop_app").await;
        ok(&self.nodes[li], &["start_app"]);
        self.rejoined(li).await;
    }

    async fn kill_mirror(&mut self) {
        let (li, mirrors) = self.mirrored("before killing a mirror").await;
        let mi = *mirrors.iter().find(|&&m| m != li).expect("a mirror");
        self.set_up(mi, false);
        self.nodes[mi].kill9();
        // The leader keeps confirming (the dead mirror leaves the in-sync set) ...
        self.progress(200, "traffic after a mirror's kill").await;
        // ... and `exactly 2` finds another copy on the third node.
        self.mirrored("a new mirror after the old one died").await;
        self.nodes[mi].spawn();
        self.rejoined(mi).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirrored_queue_keeps_every_confirmed_message_through_kills_and_restarts() {
    let started = Instant::now();
    let nodes: Vec<Node> = (0..3).map(|_| Node::start_with_cookie(COOKIE)).collect();
    for n in &nodes[1..] {
        join(n, &nodes[0]);
    }
    wait_for(SETTLE, "three running nodes", || {
        (running_nodes(&nodes[0]) == 3).then_some(())
    })
    .await;
    ok(
        &nodes[0],
        &[
            "set_policy",
            "ha-chaos",
            "^mirror",
            POLICY,
            "--apply-to",
            "queues",
        ],
    );
    // Declared through node 0, so (client-local) the first leader is there.
    let conn = nodes[0].connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        QUEUE.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    conn.close(200, "declared".into()).await.unwrap();

    let sh = Arc::new(Shared {
        ports: nodes.iter().map(|n| n.port).collect(),
        up: Mutex::new(vec![true; 3]),
        stop_publishing: AtomicBool::new(false),
        stop_consuming: AtomicBool::new(false),
        published: AtomicU64::new(0),
        nacked: AtomicU64::new(0),
        returned: AtomicU64::new(0),
        unknown: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        confirmed: Mutex::new(HashSet::new()),
        event: Mutex::new(None),
        first_confirm_after_event: Mutex::new(None),
        consumed: Mutex::new(HashMap::new()),
        redelivered_repeats: AtomicU64::new(0),
        bad_repeats: Mutex::new(Vec::new()),
    });
    let mut cluster = Cluster {
        nodes,
        sh: sh.clone(),
        failovers: Vec::new(),
    };
    cluster.mirrored("after declaring the queue").await;

    // Publishers start on nodes 1 and 2, consumers on 2 and 0: the first kill (of node 0,
    // the leader) takes a consumer's connection, and the rotating leader takes others later.
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| tokio::spawn(publisher(sh.clone(), p, 1 + p)))
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| tokio::spawn(consumer(sh.clone(), (2 + c) % 3)))
        .collect();
    cluster.progress(500, "traffic before any chaos").await;

    cluster.kill_leader(1).await;
    cluster.stop_leader_gracefully().await;
    cluster.kill_leader(2).await;
    cluster.kill_mirror().await;
    cluster.progress(200, "traffic after the last step").await;

    sh.stop_publishing.store(true, Ordering::Relaxed);
    for p in publishers {
        tokio::time::timeout(Duration::from_secs(30), p)
            .await
            .expect("publishers stop")
            .expect("publisher task");
    }
    // Every confirmed message must come out; give the consumers a deadline to drain.
    let confirmed: HashSet<u64> = sh.confirmed.lock().unwrap().clone();
    let drain = Instant::now() + Duration::from_secs(60);
    let missing: Vec<u64> = loop {
        let missing: Vec<u64> = {
            let seen = sh.consumed.lock().unwrap();
            confirmed
                .iter()
                .filter(|id| !seen.contains_key(id))
                .copied()
                .collect()
        };
        if missing.is_empty() || Instant::now() > drain {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    sh.stop_consuming.store(true, Ordering::Relaxed);
    for c in consumers {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("consumers stop")
            .expect("consumer task");
    }

    let consumed = sh.consumed.lock().unwrap();
    let deliveries: u64 = consumed.values().map(|&n| u64::from(n)).sum();
    let bad = sh.bad_repeats.lock().unwrap().clone();
    println!(
        "chaos: published {}, confirmed {}, nacked {}, returned {}, unknown {}; consumed {} \
         distinct in {} deliveries ({} repeats with redelivered, {} without); {} reconnects; \
         {:?} in all",
        sh.published.load(Ordering::Relaxed),
        confirmed.len(),
        sh.nacked.load(Ordering::Relaxed),
        sh.returned.load(Ordering::Relaxed),
        sh.unknown.load(Ordering::Relaxed),
        consumed.len(),
        deliveries,
        sh.redelivered_repeats.load(Ordering::Relaxed),
        bad.len(),
        sh.reconnects.load(Ordering::Relaxed),
        started.elapsed(),
    );
    for (what, took) in &cluster.failovers {
        println!("chaos: failover: {what}: {} ms", took.as_millis());
    }
    assert!(
        missing.is_empty(),
        "{} confirmed messages were never consumed, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(
        bad.is_empty(),
        "{} messages were delivered again without redelivered=true, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
}
