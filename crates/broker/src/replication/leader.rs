//! The leader's end of mirror links: a mirror connects to the queue's home node on the AMQP
//! port with `HEADER`; this side brings it up to date (drop what the leader does not have,
//! send what the mirror lacks), then streams every enqueue and settlement. The catch-up runs
//! in this link's own task from a snapshot of entries (shared messages, no copies), so it
//! never blocks the queue's publishers or consumers.
//!
//! Once the catch-up is on the wire the mirror counts for confirms, and once it has
//! acknowledged everything up to that point the in-sync mark is proposed through the
//! metadata group. When the link breaks, or the mirror holds a confirm up for longer than
//! `LAG`, the mirror is removed from the in-sync set through the group, and only after that
//! commit do confirms go out without it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::wire::{self, Frame};
use crate::broker::Broker;
use crate::metadata::MetaOp;
use crate::queue::mirror::{MirrorLink, Op};
use crate::queue::Queue;

/// A replica that holds a confirm up for this long leaves the in-sync set.
pub const LAG: Duration = Duration::from_secs(1);

/// Serves one mirror link (the caller saw `HEADER`).
pub async fn serve(broker: Arc<Broker>, mut stream: TcpStream) {
    let mut header = [0u8; 8];
    if stream.read_exact(&mut header).await.is_err() || &header != super::HEADER {
        return;
    }
    let mut buf = BytesMut::with_capacity(64 << 10);
    let hello =
        tokio::time::timeout(Duration::from_secs(10), wire::read(&mut stream, &mut buf)).await;
    let Ok(Ok(Some(Frame::Hello {
        vhost,
        queue,
        node,
        secret,
        have,
    }))) = hello
    else {
        return;
    };
    let expected = broker.auth.internal_secret();
    if expected.as_deref() != Some(secret.as_str()) {
        tracing::warn!("refused a mirror link from {node}: wrong cluster secret");
        return refuse(stream, "wrong cluster secret").await;
    }
    let Some(q) = broker.vhost(&vhost).and_then(|v| v.queue(&queue)) else {
        return refuse(stream, &format!("no queue '{queue}' in vhost '{vhost}'")).await;
    };
    let ha = broker.vhost(&vhost).and_then(|v| {
        let policy = v.policy_for(&q.name, true);
        super::placement::ha_policy(&q, policy.as_ref().map(|p| &p.1))
    });
    let catch_up = ha.as_ref().is_some_and(|h| h.automatic_sync) && !q.sync_cancelled(&node);
    let batch = ha.map_or(super::placement::DEFAULT_SYNC_BATCH, |h| {
        h.sync_batch.max(1)
    });
    let attached = match q.attach_mirror(&node, &have, catch_up) {
        Ok(a) => a,
        Err(e) => return refuse(stream, &e).await,
    };
    let link = attached.link.clone();
    tracing::info!(
        "queue '{}' in vhost '{}': mirror on {node} attached; catching it up with {} messages (dropping {})",
        q.name,
        q.vhost,
        attached.snapshot.len(),
        attached.drop.len()
    );
    let (rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(read_acks(
        Arc::downgrade(&broker),
        Arc::downgrade(&q),
        link.clone(),
        rd,
        buf,
    ));
    let result = stream_to(&q, attached, batch, &mut wr).await;
    reader.abort();
    q.detach_mirror(&link);
    if let Err(e) = result {
        tracing::info!("queue '{}': link to mirror on {node} ended: {e}", q.name);
    }
    if !q.is_deleted() && !q.is_standin() && q.placement().in_sync.contains(&node) {
        mark(&broker, &q, &node, false).await;
    }
}

async fn refuse(mut stream: TcpStream, reason: &str) {
    let mut out = BytesMut::new();
    wire::refuse(&mut out, reason);
    let _ = stream.write_all(&out).await;
}

async fn stream_to(
    q: &Arc<Queue>,
    attached: crate::queue::mirror::Attached,
    batch: usize,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), String> {
    let crate::queue::mirror::Attached {
        link,
        mut rx,
        drop,
        snapshot,
        seq,
    } = attached;
    let io = |e: std::io::Error| e.to_string();
    let mut out = BytesMut::with_capacity(256 << 10);
    if !drop.is_empty() {
        wire::settle(&mut out, seq, &drop);
    }
    let journal = q.pager_journal();
    for chunk in snapshot.chunks(batch) {
        for e in chunk {
            // A paged-out message is read back from the journal (outside the queue lock).
            let e = match (&journal, e.paged) {
                (Some(j), Some(_)) => match crate::queue::ready::read_back(j, e.clone()) {
                    Some(e) => std::borrow::Cow::Owned(e),
                    None => continue,
                },
                _ => std::borrow::Cow::Borrowed(e),
            };
            wire::enqueue(&mut out, seq, &e);
        }
        wr.write_all(&out).await.map_err(io)?;
        out.clear();
        let before = link
            .sync_sent
            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        let (sent, total) = (before + chunk.len() as u64, snapshot.len() as u64);
        // Progress of a long catch-up, at each quarter.
        if total >= 10_000 && before * 4 / total != sent * 4 / total {
            tracing::info!(
                "queue '{}': catching up the mirror on {}: {sent} of {total} messages sent",
                q.name,
                link.node
            );
        }
        if link.is_closed() {
            return Err("closed during catch-up".into());
        }
    }
    wire::caught(&mut out, seq);
    wr.write_all(&out).await.map_err(io)?;
    out.clear();
    q.start_counting(&link);
    loop {
        let op = tokio::select! {
            op = rx.recv() => op,
            _ = link.closed_signal.notified() => None,
        };
        let Some(op) = op else {
            return Err("link closed by the leader".into());
        };
        encode(&mut out, &op);
        while out.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(op) => encode(&mut out, &op),
                Err(_) => break,
            }
        }
        wr.write_all(&out).await.map_err(io)?;
        out.clear();
        if link.is_closed() {
            return Err("link closed by the leader".into());
        }
    }
}

fn encode(out: &mut BytesMut, op: &Op) {
    match op {
        Op::Enqueue { seq, entry } => wire::enqueue(out, *seq, entry),
        Op::Settle { seq, ids } => wire::settle(out, *seq, ids),
    }
}

async fn read_acks(
    broker: Weak<Broker>,
    q: Weak<Queue>,
    link: Arc<MirrorLink>,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut buf: BytesMut,
) {
    let mut marked = false;
    loop {
        match wire::read(&mut rd, &mut buf).await {
            Ok(Some(Frame::Ack { seq })) => {
                let Some(q) = q.upgrade() else { break };
                q.mirror_acked(&link, seq);
                if !marked && link.caught_up() {
                    marked = true;
                    if q.placement().in_sync.contains(&link.node) {
                        continue;
                    }
                    tracing::info!(
                        "queue '{}' in vhost '{}': mirror on {} is synchronised",
                        q.name,
                        q.vhost,
                        link.node
                    );
                    let Some(b) = broker.upgrade() else { break };
                    let node = link.node.clone();
                    tokio::spawn(async move { mark(&b, &q, &node, true).await });
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    link.close();
}

/// Proposes `node` into (or out of) the queue's in-sync set; a refusal (the placement
/// moved on, e.g. a failover) is only logged.
pub async fn mark(b: &Arc<Broker>, q: &Queue, node: &str, in_sync: bool) {
    let op = MetaOp::MirrorSync {
        vhost: q.vhost.clone(),
        name: q.name.clone(),
        node: node.to_string(),
        in_sync,
        epoch: q.placement().epoch,
    };
    if let Err(e) = b.submit(op).await {
        tracing::info!(
            "queue '{}': could not mark mirror on {node} {}: {}",
            q.name,
            if in_sync { "in sync" } else { "out of sync" },
            e.text
        );
    }
}

/// Drops lagging mirrors from the in-sync set of the queues led here (one task per node).
pub async fn watch_lag(broker: Weak<Broker>) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Some(b) = broker.upgrade() else { return };
        for q in b.all_queues() {
            if q.is_standin() {
                continue;
            }
            for node in q.laggards(LAG) {
                tracing::warn!(
                    "queue '{}': mirror on {node} has not acknowledged for {LAG:?}; leaving it out of the in-sync set",
                    q.name
                );
                // Inline: without a majority nothing can be marked anyway, and confirms wait.
                mark(&b, &q, &node, false).await;
            }
        }
    }
}
