//! Consumers and delivery: adding and removing consumers, and dispatch, which hands the
//! ready list's head to the highest-priority consumer with credit (round-robin within a
//! priority, or only the earliest one for single-active-consumer), and re-runs when credit
//! or connection room comes back (`kick`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{ConsumeError, Queue, QueueState};
use crate::channel::link::{ChannelLink, Consumer};

impl Queue {
    /// Re-runs dispatch (credit freed elsewhere, connection drained).
    pub fn kick(self: &Arc<Self>) {
        let dead = {
            let mut st = self.state();
            self.dispatch(&mut st);
            self.flush(&mut st);
            std::mem::take(&mut st.dead)
        };
        self.republish(dead);
    }

    pub(super) fn dispatch(self: &Arc<Self>, st: &mut QueueState) {
        self.dispatch_ready(st);
        if st.ready.front().is_some_and(|e| e.expires_at.is_some()) {
            // Deliveries moved the head: the timer must re-arm for the new one.
            self.timer.notify_one();
        }
    }

    fn dispatch_ready(self: &Arc<Self>, st: &mut QueueState) {
        let now = Instant::now();
        // Consumers are kept sorted by priority, highest first: only the first group with
        // credit receives; within a group, round-robin. A single-active-consumer queue only
        // ever delivers to its earliest consumer.
        'messages: while !st.ready.is_empty() && !st.consumers.is_empty() {
            if st
                .ready
                .front()
                .and_then(|e| e.expires_at)
                .is_some_and(|t| t <= now)
            {
                self.expire_head(st, now);
                continue;
            }
            let n = st.consumers.len();
            if st.settings.single_active_consumer {
                let Some(active) = st.consumers.iter().min_by_key(|c| c.seq).cloned() else {
                    return;
                };
                let Some(entry) = st.ready.pop_front() else {
                    return;
                };
                let (id, seg) = (entry.id, entry.seg);
                match active.link.try_deliver(self, &active, entry) {
                    Ok(()) => {
                        self.delivered.fetch_add(1, Ordering::Relaxed);
                        if !active.no_ack {
                            st.unacked += 1;
                        } else {
                            self.gone_id(st, id, seg);
                        }
                        continue 'messages;
                    }
                    Err(entry) => {
                        st.ready.push_front(entry);
                        return;
                    }
                }
            }
            let mut start = 0;
            while start < n {
                let level = st.consumers[start].priority;
                let len = st.consumers[start..]
                    .iter()
                    .take_while(|c| c.priority == level)
                    .count();
                for i in 0..len {
                    let idx = start + (st.next_consumer + i) % len;
                    let consumer = st.consumers[idx].clone();
                    let Some(entry) = st.ready.pop_front() else {
                        return;
                    };
                    let (id, seg) = (entry.id, entry.seg);
                    match consumer.link.try_deliver(self, &consumer, entry) {
                        Ok(()) => {
                            self.delivered.fetch_add(1, Ordering::Relaxed);
                            if !consumer.no_ack {
                                st.unacked += 1;
                            } else {
                                self.gone_id(st, id, seg);
                            }
                            st.next_consumer = idx - start + 1;
                            continue 'messages;
                        }
                        Err(entry) => st.ready.push_front(entry),
                    }
                }
                start += len;
            }
            break;
        }
    }

    /// A sequence number for a new consumer (single-active-consumer picks the earliest).
    pub fn next_consumer_seq(&self) -> u64 {
        self.next_consumer_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// `on_added` runs under the queue's lock after the consumer is accepted and before any
    /// delivery to it, so `consume-ok` precedes the first `deliver` on the wire.
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
        let dead = {
            let mut st = self.state();
            if st.consumers.iter().any(|c| c.exclusive)
                || (consumer.exclusive && !st.consumers.is_empty())
            {
                return Err(ConsumeError::ExclusiveUse);
            }
            let at = st
                .consumers
                .partition_point(|c| c.priority >= consumer.priority);
            st.consumers.insert(at, consumer);
            st.had_consumers = true;
            st.last_used = Instant::now();
            on_added();
            self.dispatch(&mut st);
            self.flush(&mut st);
            std::mem::take(&mut st.dead)
        };
        self.republish(dead);
        if let Some(r) = self.remote_link() {
            r.start_pulling(self);
        }
        Ok(())
    }

    /// The consumers attached now (highest priority first), for listings.
    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        self.state().consumers.clone()
    }

    /// Removes a consumer; returns true when an auto-delete queue just lost its last one.
    pub fn remove_consumer(&self, link: &Arc<ChannelLink>, tag: &str) -> bool {
        let mut st = self.state();
        st.consumers
            .retain(|c| !(Arc::ptr_eq(&c.link, link) && c.tag == tag));
        if st.next_consumer >= st.consumers.len() {
            st.next_consumer = 0;
        }
        st.last_used = Instant::now();
        self.timer.notify_one();
        self.mirror(&st);
        if let Some(r) = self.remote_link() {
            // The link stops consuming (and hands back what it holds) without consumers.
            r.wake();
        }
        self.auto_delete && st.had_consumers && st.consumers.is_empty()
    }
}
