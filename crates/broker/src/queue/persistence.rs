//! What a queue keeps in the node's journal: persistent messages of durable queues as they
//! are enqueued, and the messages recovered after a restart (a mirror's copy goes back to its
//! replica, a leader's to its ready list).

use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_store::RecoveredMessage;

use super::{Entry, Queue};
use crate::message::Message;

impl Queue {
    /// Journals a persistent message of a durable queue: (epoch to wait for, segment,
    /// offset), or nothing to wait for.
    pub(super) fn journal_enqueue(&self, id: u64, msg: &Message) -> (u64, Option<u32>, u64) {
        match &self.journal {
            Some(j) if msg.persistent() => {
                let at = j.enqueue(
                    &self.key,
                    id,
                    &msg.exchange,
                    &msg.routing_key,
                    &msg.raw_properties,
                    &msg.body,
                );
                (at.epoch, Some(at.segment), at.offset)
            }
            _ => (0, None, 0),
        }
    }

    /// Puts messages recovered from the journal back (marked redelivered: they may have been
    /// delivered before the restart). TTLs count again from now.
    pub fn restore(self: &Arc<Self>, msgs: Vec<RecoveredMessage>) {
        let now = Instant::now();
        let mut st = self.state();
        for m in msgs {
            let (id, segment, offset) = (m.id, m.segment, m.offset);
            let Some(msg) = Message::from_recovered(m) else {
                tracing::warn!(
                    "queue '{}': skipped a recovered message with unreadable properties",
                    self.name
                );
                continue;
            };
            let ttl = st
                .settings
                .message_ttl
                .into_iter()
                .chain(
                    msg.properties
                        .expiration()
                        .as_ref()
                        .and_then(|e| e.as_str().parse::<u64>().ok()),
                )
                .min();
            let priority = msg.properties.priority().unwrap_or(0);
            st.next_id = st.next_id.max(id + 1);
            let entry = Entry {
                id,
                msg: Arc::new(msg),
                redelivered: true,
                priority,
                expires_at: ttl.map(|ms| now + Duration::from_millis(ms)),
                seg: Some(segment),
                offset,
                paged: None,
                incarnation: self.incarnation(),
            };
            if self.is_standin() {
                // A mirror's copy: it waits for a failover, or catches up from the leader.
                st.replica.insert(id, entry);
                continue;
            }
            if let Some(s) = st.shipping.as_mut() {
                s.live.insert(id, entry.clone());
            }
            if let Some(paged) = st.ready.push_back(entry) {
                if let Some(s) = st.shipping.as_mut() {
                    s.paged(id, paged);
                }
            }
        }
        drop(st);
        self.timer.notify_one();
    }
}
