//! A mirror's end of its link: while this node is a mirror of a queue led elsewhere, keep a
//! link to the leader, store what it ships (journalled like a durable queue's messages) and
//! acknowledge each batch once it is on disk. A returning mirror says which ids it still
//! holds, so it catches up by delta: the leader tells it what to drop and sends only what
//! it lacks.
//!
//! Acknowledgements wait for this node's own fsync only (`Journal::written`), never for its
//! confirms to clients: those may wait on other nodes, and two nodes mirroring each other's
//! queues must not wait for each other.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, Frame};
use crate::broker::Broker;
use crate::message::Message;
use crate::queue::Queue;

const RETRY: Duration = Duration::from_millis(200);

/// Starts this node's mirror of `q` unless it runs.
pub fn ensure(b: &Arc<Broker>, q: &Arc<Queue>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    if !q.following.swap(true, Ordering::AcqRel) {
        tokio::spawn(run(Arc::downgrade(b), Arc::downgrade(q)));
    }
}

/// Whether this node should mirror `q` now, and from which leader.
fn leader_to_follow(b: &Broker, q: &Queue) -> Option<String> {
    let home = q.home()?;
    (!q.is_deleted() && q.placement().mirrors.contains(&b.config.node_name)).then_some(home)
}

async fn run(broker: Weak<Broker>, queue: Weak<Queue>) {
    loop {
        let (Some(b), Some(q)) = (broker.upgrade(), queue.upgrade()) else {
            return;
        };
        let Some(home) = leader_to_follow(&b, &q) else {
            q.following.store(false, Ordering::Release);
            // The placement may have changed between the check and the flag.
            if leader_to_follow(&b, &q).is_some() && !q.following.swap(true, Ordering::AcqRel) {
                continue;
            }
            return;
        };
        if let Err(e) = follow(&b, &q, &home).await {
            tracing::debug!("mirror of queue '{}' from {home}: {e}", q.name);
            drop((b, q));
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// One link's worth of mirroring; returns when the leader moved or the link broke.
async fn follow(b: &Arc<Broker>, q: &Arc<Queue>, home: &str) -> Result<(), String> {
    let (host, port) = b
        .metadata()
        .and_then(|m| m.node_amqp_address(home))
        .ok_or_else(|| format!("no address known for {home}"))?;
    let secret = b
        .auth
        .internal_secret()
        .ok_or("this node has no cluster secret")?;
    let journal = b.journal().cloned();
    let stream = tokio::time::timeout(
        Duration::from_secs(2),
        TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut out = BytesMut::with_capacity(1024);
    out.extend_from_slice(super::HEADER);
    let have = q.replica_ranges();
    wire::hello(
        &mut out,
        &q.vhost,
        &q.name,
        &b.config.node_name,
        &secret,
        &have,
    );
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    out.clear();
    let mut buf = BytesMut::with_capacity(256 << 10);
    let (mut last_seq, mut acked, mut epoch) = (0u64, None::<u64>, 0u64);
    let mut caught = false;
    let mut check = tokio::time::interval(Duration::from_millis(250));
    loop {
        // Everything received is applied, then acknowledged as one batch once on disk.
        while let Some(frame) = wire::decode(&mut buf)? {
            match frame {
                Frame::Enqueue {
                    seq,
                    id,
                    exchange,
                    routing_key,
                    properties,
                    body,
                } => {
                    let Some(msg) = Message::from_parts(exchange, routing_key, properties, body)
                    else {
                        return Err(format!("unreadable properties for message {id}"));
                    };
                    let msg = Arc::new(msg);
                    epoch = epoch.max(q.replica_enqueue(id, msg));
                    last_seq = last_seq.max(seq);
                }
                Frame::Settle { seq, ids } => {
                    q.replica_remove(&ids);
                    last_seq = last_seq.max(seq);
                }
                Frame::Caught { seq } => {
                    last_seq = last_seq.max(seq);
                    if !caught {
                        caught = true;
                        tracing::info!(
                            "queue '{}' in vhost '{}': mirror caught up with {home} ({} messages)",
                            q.name,
                            q.vhost,
                            q.replica_len()
                        );
                    }
                }
                Frame::Refuse { reason } => return Err(format!("refused: {reason}")),
                Frame::Hello { .. } | Frame::Ack { .. } => {
                    return Err("unexpected frame from the leader".into())
                }
            }
        }
        // The first acknowledgement goes out right after the catch-up, even with nothing
        // new since: it is what tells the leader this mirror is in sync.
        if caught && acked != Some(last_seq) {
            if let (Some(j), true) = (&journal, epoch > 0) {
                j.written()
                    .wait_for(|w| *w >= epoch)
                    .await
                    .map_err(|_| "journal closed".to_string())?;
            }
            wire::ack(&mut out, last_seq);
            wr.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
            acked = Some(last_seq);
        }
        if buf.capacity() - buf.len() < 64 << 10 {
            buf.reserve(64 << 10);
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => {
                if n.map_err(|e| e.to_string())? == 0 {
                    return Err("the leader closed the link".into());
                }
            }
            _ = check.tick() => {
                if q.home().as_deref() != Some(home) || leader_to_follow(b, q).is_none() {
                    return Ok(());
                }
            }
        }
    }
}
