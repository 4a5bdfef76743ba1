//! The part of a channel that queues see: delivery-tag allocation, the unacked ledger and
//! the prefetch limits.
//!
//! Queues deliver straight into the channel's connection (no hop through the channel's
//! task), so the tag counter and the ledger live behind a lock shared with the connection's
//! reader, which settles acks. Lock order everywhere: queue, then link, then wire.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::connection::wire::Wire;
use crate::queue::{Entry, Queue};

/// A consumer as its queue sees it.
pub struct Consumer {
    pub tag: String,
    pub link: Arc<ChannelLink>,
    pub no_ack: bool,
    pub exclusive: bool,
    pub priority: i64,
    /// Per-consumer prefetch (`basic.qos global=false`), 0 = unlimited.
    pub prefetch: u32,
    pub unacked: AtomicU32,
    /// The client announced `consumer_cancel_notify`: tell it when the queue goes away.
    pub notify_cancel: bool,
    /// Registration order (single-active-consumer queues deliver to the earliest).
    pub seq: u64,
    /// `x-cancel-on-ha-failover`: cancel this consumer when its mirrored queue fails over.
    pub cancel_on_failover: bool,
}

impl Consumer {
    /// Tells the client the server cancelled this consumer (`basic.cancel`), if it announced
    /// `consumer_cancel_notify`.
    pub fn notify_cancelled(&self) {
        if !self.notify_cancel {
            return;
        }
        let m = warren_amqp::AMQPClass::Basic(warren_amqp::basic::AMQPMethod::Cancel(
            warren_amqp::basic::Cancel {
                consumer_tag: warren_amqp::ShortString::from(self.tag.clone()),
                nowait: true,
            },
        ));
        self.link.wire.send(|out| out.method(self.link.id, &m));
    }

    fn has_credit(&self) -> bool {
        self.no_ack || self.prefetch == 0 || self.unacked.load(Ordering::Relaxed) < self.prefetch
    }
}

/// A message delivered on this channel and not yet acknowledged.
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub entry: Entry,
    pub consumer: Option<Arc<Consumer>>,
}

pub struct LinkState {
    next_tag: u64,
    /// Ordered by tag (tags are allocated increasing).
    pub unacked: VecDeque<Unacked>,
    /// Channel-wide prefetch (`basic.qos global=true`), 0 = unlimited.
    pub global_prefetch: u32,
    pub open: bool,
    pub flow: bool,
    /// `basic.qos global=false`: the per-consumer prefetch (kept here so listings see it).
    pub prefetch_count: u32,
    /// Publisher confirms are on (`confirm.select`).
    pub confirm: bool,
    /// The channel is transactional (`tx.select`).
    pub transactional: bool,
}

pub struct ChannelLink {
    pub id: u16,
    pub wire: Arc<Wire>,
    state: Mutex<LinkState>,
}

impl ChannelLink {
    pub fn new(id: u16, wire: Arc<Wire>) -> Arc<Self> {
        Arc::new(ChannelLink {
            id,
            wire,
            state: Mutex::new(LinkState {
                next_tag: 1,
                unacked: VecDeque::new(),
                global_prefetch: 0,
                open: true,
                flow: true,
                prefetch_count: 0,
                confirm: false,
                transactional: false,
            }),
        })
    }

    pub fn state(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock()
    }

    /// Delivers `entry` to `consumer` if the channel and the consumer have credit and the
    /// connection has room; otherwise hands the entry back.
    pub fn try_deliver(
        &self,
        queue: &Arc<Queue>,
        consumer: &Arc<Consumer>,
        entry: Entry,
    ) -> Result<(), Entry> {
        let mut st = self.state();
        if !st.open || !st.flow || !consumer.has_credit() {
            return Err(entry);
        }
        if !consumer.no_ack
            && st.global_prefetch != 0
            && st.unacked.len() as u32 >= st.global_prefetch
        {
            return Err(entry);
        }
        if !self.wire.has_room() {
            self.wire.wait_for_room(queue);
            return Err(entry);
        }
        let tag = st.next_tag;
        st.next_tag += 1;
        let frame_max = self.wire.frame_max();
        let redelivered = entry.redelivered;
        let msg = entry.msg.clone();
        self.wire.send(|out| {
            out.deliver(
                self.id,
                &consumer.tag,
                tag,
                redelivered,
                &msg.exchange,
                &msg.routing_key,
            );
            out.content(self.id, &msg.raw_properties, &msg.body, frame_max);
        });
        if !consumer.no_ack {
            consumer.unacked.fetch_add(1, Ordering::Relaxed);
            st.unacked.push_back(Unacked {
                tag,
                queue: queue.clone(),
                entry,
                consumer: Some(consumer.clone()),
            });
        }
        Ok(())
    }

    /// Delivers a direct reply-to message (no queue, no ack, no prefetch).
    pub fn deliver_direct(&self, consumer_tag: &str, msg: &crate::message::Message) -> bool {
        let mut st = self.state();
        if !st.open {
            return false;
        }
        let tag = st.next_tag;
        st.next_tag += 1;
        let frame_max = self.wire.frame_max();
        self.wire.send(|out| {
            out.deliver(
                self.id,
                consumer_tag,
                tag,
                false,
                &msg.exchange,
                &msg.routing_key,
            );
            out.content(self.id, &msg.raw_properties, &msg.body, frame_max);
        });
        true
    }

    /// Records a `basic.get` delivery (always counted as unacked unless `no_ack`); returns
    /// the delivery tag.
    pub fn record_get(&self, queue: &Arc<Queue>, entry: &Entry, no_ack: bool, message_count: u32) {
        let mut st = self.state();
        let tag = st.next_tag;
        st.next_tag += 1;
        let frame_max = self.wire.frame_max();
        let msg = &entry.msg;
        self.wire.send(|out| {
            out.get_ok(
                self.id,
                tag,
                entry.redelivered,
                &msg.exchange,
                &msg.routing_key,
                message_count,
            );
            out.content(self.id, &msg.raw_properties, &msg.body, frame_max);
        });
        if !no_ack {
            st.unacked.push_back(Unacked {
                tag,
                queue: queue.clone(),
                entry: entry.clone(),
                consumer: None,
            });
        }
    }

    /// Removes the unacked deliveries named by an ack/nack/reject. `None` if the tag is
    /// unknown (a channel error, 406). Tag 0 with `multiple` means "everything".
    pub fn take_unacked(&self, tag: u64, multiple: bool) -> Option<Vec<Unacked>> {
        let mut st = self.state();
        let taken: Vec<Unacked> = if multiple {
            if tag != 0 && !st.unacked.iter().any(|u| u.tag <= tag) {
                return None;
            }
            let n = if tag == 0 {
                st.unacked.len()
            } else {
                st.unacked.partition_point(|u| u.tag <= tag)
            };
            st.unacked.drain(..n).collect()
        } else {
            let i = st.unacked.binary_search_by_key(&tag, |u| u.tag).ok()?;
            st.unacked.remove(i).into_iter().collect()
        };
        drop(st);
        for u in &taken {
            if let Some(c) = &u.consumer {
                c.unacked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Some(taken)
    }

    /// Closes the link: no more deliveries; returns everything unacked for requeueing.
    pub fn close(&self) -> Vec<Unacked> {
        let mut st = self.state();
        st.open = false;
        let all: Vec<Unacked> = st.unacked.drain(..).collect();
        drop(st);
        all
    }
}
