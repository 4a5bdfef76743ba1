//! Queues: the ready list, the consumers, and dispatch between them.
//!
//! A queue is a lock-protected state machine rather than a task with a mailbox: a publish
//! enqueues and dispatches in the publisher's own task, and an ack settles in the acker's, so
//! the common path has no task hop and no extra queueing. Dispatch is fair round-robin among
//! the highest-priority consumers that have credit (prefetch) and whose connection has room;
//! a consumer without room registers with its connection and the queue is kicked when the
//! connection drains, so nothing waits on an unbounded buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use warren_amqp::FieldTable;

use crate::channel::link::{ChannelLink, Consumer};
use crate::message::Message;

/// A message in a queue. Cheap to clone (the message is shared).
#[derive(Clone)]
pub struct Entry {
    /// Position in the queue: requeued messages go back to where they were.
    pub id: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
}

pub struct Queue {
    pub name: String,
    pub vhost: String,
    pub durable: bool,
    /// The id of the connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    deleted: AtomicBool,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Entry>,
    next_id: u64,
    unacked: usize,
    consumers: Vec<Arc<Consumer>>,
    next_consumer: usize,
    had_consumers: bool,
}

/// Why a consumer could not be added.
pub enum ConsumeError {
    /// The queue has an exclusive consumer, or an exclusive consumer was asked for while
    /// others exist (403 ACCESS_REFUSED).
    ExclusiveUse,
}

impl Queue {
    pub fn new(
        name: &str,
        vhost: &str,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Arc<Self> {
        Arc::new(Queue {
            name: name.to_string(),
            vhost: vhost.to_string(),
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            deleted: AtomicBool::new(false),
            state: Mutex::new(QueueState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Relaxed)
    }

    pub fn message_count(&self) -> usize {
        self.state().ready.len()
    }

    pub fn unacked_count(&self) -> usize {
        self.state().unacked
    }

    pub fn consumer_count(&self) -> usize {
        self.state().consumers.len()
    }

    /// Appends a routed message and delivers what it can.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) {
        let mut st = self.state();
        let id = st.next_id;
        st.next_id += 1;
        st.ready.push_back(Entry {
            id,
            msg,
            redelivered: false,
        });
        self.dispatch(&mut st);
    }

    /// Re-runs dispatch (credit freed elsewhere, connection drained).
    pub fn kick(self: &Arc<Self>) {
        let mut st = self.state();
        self.dispatch(&mut st);
    }

    fn dispatch(self: &Arc<Self>, st: &mut QueueState) {
        // Consumers are kept sorted by priority, highest first: only the first group with
        // credit receives; within a group, round-robin.
        'messages: while !st.ready.is_empty() {
            let n = st.consumers.len();
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
                    match consumer.link.try_deliver(self, &consumer, entry) {
                        Ok(()) => {
                            if !consumer.no_ack {
                                st.unacked += 1;
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

    /// Adds a consumer and starts delivering to it.
    /// `on_added` runs under the queue's lock after the consumer is accepted and before any
    /// delivery to it, so `consume-ok` precedes the first `deliver` on the wire.
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: Arc<Consumer>,
        on_added: impl FnOnce(),
    ) -> Result<(), ConsumeError> {
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
        on_added();
        self.dispatch(&mut st);
        Ok(())
    }

    /// Removes a consumer; returns true when an auto-delete queue just lost its last one.
    pub fn remove_consumer(&self, link: &Arc<ChannelLink>, tag: &str) -> bool {
        let mut st = self.state();
        st.consumers
            .retain(|c| !(Arc::ptr_eq(&c.link, link) && c.tag == tag));
        if st.next_consumer >= st.consumers.len() {
            st.next_consumer = 0;
        }
        self.auto_delete && st.had_consumers && st.consumers.is_empty()
    }

    /// Takes the head message for `basic.get`; returns it with the count left behind.
    pub fn get(&self, no_ack: bool) -> Option<(Entry, u32)> {
        let mut st = self.state();
        let e = st.ready.pop_front()?;
        if !no_ack {
            st.unacked += 1;
        }
        Some((e, st.ready.len() as u32))
    }

    /// Acknowledged (or rejected without requeue): forget these.
    pub fn settle(self: &Arc<Self>, count: usize) {
        let mut st = self.state();
        st.unacked = st.unacked.saturating_sub(count);
        // The settling consumer regained credit.
        self.dispatch(&mut st);
    }

    /// Puts messages back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, entries: impl IntoIterator<Item = Entry>) {
        let mut st = self.state();
        for mut e in entries {
            e.redelivered = true;
            st.unacked = st.unacked.saturating_sub(1);
            let at = st.ready.partition_point(|x| x.id < e.id);
            st.ready.insert(at, e);
        }
        self.dispatch(&mut st);
    }

    pub fn purge(&self) -> u32 {
        let mut st = self.state();
        let n = st.ready.len() as u32;
        st.ready.clear();
        n
    }

    /// Marks the queue deleted and returns its consumers (to be told with `basic.cancel`) and
    /// the number of ready messages it held.
    pub fn delete(&self) -> (Vec<Arc<Consumer>>, u32) {
        self.deleted.store(true, Ordering::Relaxed);
        let mut st = self.state();
        let n = st.ready.len() as u32;
        st.ready.clear();
        (std::mem::take(&mut st.consumers), n)
    }
}
