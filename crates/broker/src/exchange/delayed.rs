//! The delayed-message exchange (`x-delayed-message`, as RabbitMQ's plugin): messages with an
//! `x-delay` header (milliseconds) are held and routed by the underlying type
//! (`x-delayed-type`) when they fall due.
//!
//! As with the plugin, a delayed message counts as routed when it is accepted, so a
//! mandatory publish is not returned just because it is delayed. Persistent messages held by
//! a durable delayed exchange are written to the journal with their due time (the publisher's
//! confirm waits for it), so they survive a restart and fall due at the same wall-clock time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::Exchange;
use warren_store::{Journal, RecoveredMessage};

use crate::message::Message;
use crate::vhost::Vhost;

struct Held {
    due: Instant,
    seq: u64,
    msg: Arc<Message>,
    /// Journal segment, if persisted.
    seg: Option<u32>,
}

impl PartialEq for Held {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Held {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(o.due, o.seq))
    }
}

#[derive(Default)]
pub struct DelayedStore {
    heap: Mutex<(BinaryHeap<Reverse<Held>>, u64)>,
    wake: Notify,
    /// The journal and this exchange's key in it, for durable exchanges.
    journal: Option<(Arc<Journal>, String)>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl DelayedStore {
    pub fn new(journal: Option<(Arc<Journal>, String)>) -> Self {
        DelayedStore {
            journal,
            ..Default::default()
        }
    }

    /// Holds a message; returns the journal epoch its confirm must wait for (0 = none).
    pub fn hold(&self, msg: Arc<Message>, delay_ms: u64) -> u64 {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let seq = h.1;
        h.1 += 1;
        let (epoch, seg) = match &self.journal {
            Some((j, key)) if msg.persistent() => {
                let at = j.delay(
                    key,
                    seq,
                    now_unix_ms() + delay_ms,
                    &msg.exchange,
                    &msg.routing_key,
                    &msg.raw_properties,
                    &msg.body,
                );
                (at.epoch, Some(at.segment))
            }
            _ => (0, None),
        };
        h.0.push(Reverse(Held {
            due: Instant::now() + Duration::from_millis(delay_ms),
            seq,
            msg,
            seg,
        }));
        drop(h);
        self.wake.notify_one();
        epoch
    }

    /// Puts back messages recovered from the journal, due at their original wall-clock time.
    pub fn restore(&self, items: Vec<(u64, RecoveredMessage)>) {
        let (now, now_ms) = (Instant::now(), now_unix_ms());
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        for (due_ms, m) in items {
            let (id, segment) = (m.id, m.segment);
            let Some(msg) = Message::from_recovered(m) else {
                continue;
            };
            h.1 = h.1.max(id + 1);
            h.0.push(Reverse(Held {
                due: now + Duration::from_millis(due_ms.saturating_sub(now_ms)),
                seq: id,
                msg: Arc::new(msg),
                seg: Some(segment),
            }));
        }
        drop(h);
        self.wake.notify_one();
    }

    /// Forgets everything held (the exchange was deleted).
    pub fn drop_all(&self) {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let ids: Vec<(u64, u32)> =
            h.0.drain()
                .filter_map(|Reverse(x)| x.seg.map(|s| (x.seq, s)))
                .collect();
        drop(h);
        if let Some((j, key)) = &self.journal {
            j.drop_queue(key, &ids);
        }
    }

    pub fn len(&self) -> usize {
        self.heap.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the messages due at `now`, with their journal ids to settle once routed.
    #[allow(clippy::type_complexity)]
    fn take_due(&self, now: Instant) -> (Vec<Arc<Message>>, Vec<(u64, u32)>, Option<Instant>) {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        let mut ids = Vec::new();
        while h.0.peek().is_some_and(|Reverse(x)| x.due <= now) {
            if let Some(Reverse(x)) = h.0.pop() {
                if let Some(seg) = x.seg {
                    ids.push((x.seq, seg));
                }
                due.push(x.msg);
            }
        }
        (due, ids, h.0.peek().map(|Reverse(x)| x.due))
    }

    fn settle(&self, ids: &[(u64, u32)]) {
        if let Some((j, key)) = &self.journal {
            j.settle(key, ids);
        }
    }
}

/// Routes held messages when they fall due; ends when the exchange is gone.
pub async fn run(exchange: Weak<Exchange>, vhost: Weak<Vhost>) {
    loop {
        let (Some(x), Some(v)) = (exchange.upgrade(), vhost.upgrade()) else {
            return;
        };
        let Some(store) = x.delayed.clone() else {
            return;
        };
        let notified = store.wake.notified();
        let (due, settled, next) = store.take_due(Instant::now());
        for msg in due {
            let headers = msg.properties.headers().clone();
            for q in v.route(&x, &msg.routing_key, headers.as_ref()) {
                q.publish(msg.clone());
            }
        }
        // Settled only after routing (the queues journal them first): a crash in between
        // delivers twice rather than never.
        store.settle(&settled);
        if v.exchange(&x.name).is_none_or(|cur| !Arc::ptr_eq(&cur, &x)) {
            return;
        }
        drop((x, v));
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = notified => {}
                }
            }
            // Re-check now and then so a deleted exchange's task ends.
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(30), notified).await;
            }
        }
    }
}
