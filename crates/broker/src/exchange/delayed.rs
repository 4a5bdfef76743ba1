//! The delayed-message exchange (`x-delayed-message`, as RabbitMQ's plugin): messages with an
//! `x-delay` header (milliseconds) are held and routed by the underlying type
//! (`x-delayed-type`) when they fall due.
//!
//! As with the plugin, a delayed message counts as routed when it is accepted, so a
//! mandatory publish is not returned just because it is delayed. Held messages live in
//! memory for now; surviving a restart comes with durable storage.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Exchange;
use crate::message::Message;
use crate::vhost::Vhost;

struct Held {
    due: Instant,
    seq: u64,
    msg: Arc<Message>,
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
}

impl DelayedStore {
    pub fn hold(&self, msg: Arc<Message>, delay_ms: u64) {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let seq = h.1;
        h.1 += 1;
        h.0.push(Reverse(Held {
            due: Instant::now() + Duration::from_millis(delay_ms),
            seq,
            msg,
        }));
        drop(h);
        self.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.heap.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take_due(&self, now: Instant) -> (Vec<Arc<Message>>, Option<Instant>) {
        let mut h = self.heap.lock().unwrap_or_else(|e| e.into_inner());
        let mut due = Vec::new();
        while h.0.peek().is_some_and(|Reverse(x)| x.due <= now) {
            if let Some(Reverse(x)) = h.0.pop() {
                due.push(x.msg);
            }
        }
        (due, h.0.peek().map(|Reverse(x)| x.due))
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
        let (due, next) = store.take_due(Instant::now());
        for msg in due {
            let headers = msg.properties.headers().clone();
            for q in v.route(&x, &msg.routing_key, headers.as_ref()) {
                q.publish(msg.clone());
            }
        }
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
