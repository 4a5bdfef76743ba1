//! Queues: the ready list, the consumers, dispatch between them (`consumers`), and the queue
//! features (TTL, expiry, length limits, dead-lettering, priorities, single active consumer).
//!
//! A queue is a lock-protected state machine rather than a task with a mailbox: a publish
//! enqueues and dispatches in the publisher's own task, and an ack settles in the acker's, so
//! the common path has no task hop and no extra queueing. Dispatch is fair round-robin among
//! the highest-priority consumers that have credit (prefetch) and whose connection has room;
//! a consumer without room registers with its connection and the queue is kicked when the
//! connection drains, so nothing waits on an unbounded buffer. One timer task per queue
//! expires messages at the head (per-queue and per-message TTL) and the queue itself
//! (`x-expires`).

mod consumers;
pub mod dead_letter;
pub mod mirror;
mod persistence;
pub mod ready;
pub mod remote;
pub mod settings;
mod timer;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

// parking_lot's mutex is eventually fair: a publisher that re-locks the queue in a tight loop
// cannot starve the consumer's acks (std's futex mutex let it, stalling prefetch windows).
use parking_lot::{Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use warren_amqp::FieldTable;
use warren_store::Journal;

use crate::channel::link::Consumer;
use crate::message::Message;
use crate::replication::Placement;
use crate::vhost::Vhost;
use dead_letter::{DeadLetter, Reason};
use ready::Ready;
use settings::{Overflow, QueueSettings};

/// Ready messages above which a queue with consumers is "in flow" (publishers paused).
const FLOW_HIGH: u64 = 20_000;
/// Backlog at which paused publishers resume.
const FLOW_LOW: u64 = 10_000;

/// A message in a queue. Cheap to clone (the message is shared).
#[derive(Clone)]
pub struct Entry {
    /// Position in the queue: requeued messages go back to where they were.
    pub id: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
    pub priority: u8,
    /// When the message expires (queue TTL or per-message `expiration`, whichever is first).
    pub expires_at: Option<Instant>,
    /// The journal segment holding this message, if it is persisted.
    pub seg: Option<u32>,
    /// Where in `seg` the message's record starts.
    pub offset: u64,
    /// Set while the message is paged out (`msg` is then a placeholder): its body size.
    pub paged: Option<u32>,
    /// The queue's incarnation when this entry was handed out: a failover starts a new one,
    /// and settlements of deliveries from an older one mean nothing any more (the new
    /// leader has requeued those messages, marked redelivered).
    pub incarnation: u32,
}

impl Entry {
    /// The body size, also while paged out.
    pub fn body_size(&self) -> usize {
        self.paged
            .map_or_else(|| self.msg.body_size(), |n| n as usize)
    }
}

/// What happened to a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Taken; `sync` is the journal epoch that must be durable before the publisher may be
    /// confirmed (0 = nothing to wait for).
    Accepted { sync: u64 },
    /// Refused by `x-overflow: reject-publish(-dlx)`: the publisher gets a `basic.nack`.
    Rejected,
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
    vhost_ref: Weak<Vhost>,
    timer: Arc<Notify>,
    next_consumer_seq: AtomicU64,
    /// Messages delivered (consume and get), for metrics.
    delivered: AtomicU64,
    /// Ready messages, mirrored outside the lock for the flow check on the publish path.
    ready_len: AtomicU64,
    /// Whether consumers are attached, mirrored outside the lock.
    has_consumers: AtomicBool,
    /// Set for durable queues on a node with durable storage: persistent messages go here.
    journal: Option<Arc<Journal>>,
    /// The journal that holds this queue's paged-out and persisted messages (settlements go
    /// here): the node's journal for every local queue.
    pager: Option<Arc<Journal>>,
    /// Where the messages are served from: here, or (a stand-in) another node. A failover
    /// changes it.
    role: RwLock<Role>,
    /// The queue's copies in a cluster (mirrors, in-sync set, leader epoch), as the metadata
    /// Raft group last committed them.
    placement: Mutex<Placement>,
    /// Bumped whenever the role changes (see `Entry::incarnation`).
    incarnation: AtomicU32,
    /// A mirror task runs for this queue here (see `replication::follower`).
    pub(crate) following: AtomicBool,
    /// Mirrors to catch up in full on their next link (`sync_queue`).
    sync_requested: Mutex<std::collections::HashSet<String>>,
    /// Mirrors whose catch-up was cancelled (`cancel_sync_queue`).
    sync_cancelled: Mutex<std::collections::HashSet<String>>,
    /// The queue's name in the journal (`vhost NUL name`).
    key: String,
    state: Mutex<QueueState>,
}

struct QueueState {
    ready: Ready,
    next_id: u64,
    unacked: usize,
    /// Sorted by priority, highest first.
    consumers: Vec<Arc<Consumer>>,
    next_consumer: usize,
    had_consumers: bool,
    settings: QueueSettings,
    policy: Option<String>,
    last_used: Instant,
    /// Dead letters produced under the lock, republished after it is released.
    dead: Vec<DeadLetter>,
    /// Persisted messages that left the queue for good, to record in the journal.
    to_settle: Vec<(u64, u32)>,
    /// A stand-in's settlements to pass to the home node.
    remote_settles: Vec<(u64, remote::Settle)>,
    /// On a mirror: the leader's messages, by id, as replicated here.
    replica: BTreeMap<u64, Entry>,
    /// On a clustered home node: what mirrors need (live messages, links, pending confirms).
    shipping: Option<mirror::Shipping>,
}

/// Who serves the queue.
#[derive(Clone, Default)]
struct Role {
    /// The node holding the messages when it is not this one.
    home: Option<String>,
    /// For a stand-in: the link to the home node (forwarding, pulling, settling).
    remote: Option<Arc<remote::StandIn>>,
}

/// A queue's declared attributes.
pub struct QueueAttrs {
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The node holding the messages, when not this one (see `Queue::home`).
    pub home: Option<String>,
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
        vhost: &Arc<Vhost>,
        attrs: QueueAttrs,
        policy: Option<(String, serde_json::Value)>,
        journal: Option<Arc<Journal>>,
    ) -> Arc<Self> {
        let QueueAttrs {
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            home,
        } = attrs;
        // A stand-in applies no TTL, limit or dead-lettering of its own: the home node does.
        let settings = if home.is_some() {
            QueueSettings::effective(&FieldTable::default(), None)
        } else {
            QueueSettings::effective(&arguments, policy.as_ref().map(|p| &p.1))
        };
        let remote = home.as_ref().map(|h| Arc::new(remote::StandIn::new(h)));
        // Every queue pages through the node's journal (transient messages as records that
        // recovery ignores), and a mirror keeps its copy there.
        let broker = vhost.broker();
        let pager = journal
            .clone()
            .or_else(|| broker.as_ref().and_then(|b| b.journal().cloned()));
        let clustered = broker.as_ref().is_some_and(|b| b.metadata().is_some());
        drop(broker);
        let q = Arc::new(Queue {
            name: name.to_string(),
            vhost: vhost.name.clone(),
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            deleted: AtomicBool::new(false),
            vhost_ref: Arc::downgrade(vhost),
            timer: Arc::new(Notify::new()),
            next_consumer_seq: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            ready_len: AtomicU64::new(0),
            has_consumers: AtomicBool::new(false),
            journal,
            pager: pager.clone(),
            role: RwLock::new(Role { home, remote }),
            placement: Mutex::new(Placement::default()),
            incarnation: AtomicU32::new(0),
            following: AtomicBool::new(false),
            sync_requested: Mutex::new(Default::default()),
            sync_cancelled: Mutex::new(Default::default()),
            key: format!("{}\0{name}", vhost.name),
            state: Mutex::new(QueueState {
                ready: {
                    let mut r = Ready::new(settings.max_priority);
                    if let Some(j) = &pager {
                        r.set_pager(j.clone(), format!("{}\0{name}", vhost.name));
                    }
                    r
                },
                next_id: 0,
                unacked: 0,
                consumers: Vec::new(),
                next_consumer: 0,
                had_consumers: false,
                settings,
                policy: policy.map(|p| p.0),
                last_used: Instant::now(),
                dead: Vec::new(),
                to_settle: Vec::new(),
                remote_settles: Vec::new(),
                replica: BTreeMap::new(),
                shipping: None,
            }),
        });
        if clustered {
            q.enable_shipping();
        }
        // A stand-in runs the timer too: it has nothing to expire, but may become the home.
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(timer::run(Arc::downgrade(&q), q.timer.clone()));
        }
        q
    }

    /// The node holding this queue's messages.
    pub fn home_node(&self, b: &crate::Broker) -> String {
        self.home().unwrap_or_else(|| b.config.node_name.clone())
    }

    /// The node holding this queue's messages when it is not this one.
    pub fn home(&self) -> Option<String> {
        self.role.read().home.clone()
    }

    /// Whether another node serves this queue (this one is a stand-in).
    pub fn is_standin(&self) -> bool {
        self.role.read().home.is_some()
    }

    /// The queue's copies as last committed.
    pub fn placement(&self) -> Placement {
        self.placement.lock().clone()
    }

    fn incarnation(&self) -> u32 {
        self.incarnation.load(Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock()
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

    /// Flow: the queue has consumers and a backlog above `FLOW_HIGH` ready messages, i.e. its
    /// consumers are not keeping up; publishers into it are paused (see the connection).
    pub fn in_flow(&self) -> bool {
        self.has_consumers.load(Ordering::Relaxed)
            && self.ready_len.load(Ordering::Relaxed) > FLOW_HIGH
    }

    /// Waits (polling, at most `max`) until the backlog is down to `FLOW_LOW` or the
    /// consumers are gone.
    pub async fn wait_for_flow_to_clear(&self, max: Duration) {
        let until = Instant::now() + max;
        while Instant::now() < until
            && self.has_consumers.load(Ordering::Relaxed)
            && self.ready_len.load(Ordering::Relaxed) > FLOW_LOW
            && !self.is_deleted()
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Refreshes the lock-free mirrors (called at the end of every locked operation).
    fn mirror(&self, st: &QueueState) {
        self.ready_len
            .store(st.ready.len() as u64, Ordering::Relaxed);
        self.has_consumers
            .store(!st.consumers.is_empty(), Ordering::Relaxed);
    }

    pub fn delivered_count(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn consumer_count(&self) -> usize {
        self.state().consumers.len()
    }

    pub fn settings(&self) -> QueueSettings {
        self.state().settings.clone()
    }

    pub fn policy(&self) -> Option<String> {
        self.state().policy.clone()
    }

    /// Marks the queue used (declare, get, consume): restarts the `x-expires` clock.
    pub fn touch(&self) {
        self.state().last_used = Instant::now();
        self.timer.notify_one();
    }

    /// Applies a (new, changed or removed) policy: settings are recomputed and enforced now.
    pub fn apply_policy(self: &Arc<Self>, policy: Option<(String, serde_json::Value)>) {
        let dead = {
            let mut st = self.state();
            let settings = if self.is_standin() {
                st.settings.clone()
            } else {
                QueueSettings::effective(&self.arguments, policy.as_ref().map(|p| &p.1))
            };
            if st.settings == settings && st.policy == policy.as_ref().map(|p| p.0.clone()) {
                return;
            }
            st.settings = settings;
            st.policy = policy.map(|p| p.0);
            self.enforce_limits(&mut st);
            self.expire_head(&mut st, Instant::now());
            self.dispatch(&mut st);
            self.flush(&mut st);
            std::mem::take(&mut st.dead)
        };
        self.timer.notify_one();
        self.republish(dead);
    }

    /// Notes that a message left the queue for good (the journal, or for a stand-in the
    /// home node, is told at `flush`).
    fn gone(&self, st: &mut QueueState, e: &Entry) {
        self.gone_id(st, e.id, e.seg);
    }

    fn gone_id(&self, st: &mut QueueState, id: u64, seg: Option<u32>) {
        if self.is_standin() {
            st.remote_settles.push((id, remote::Settle::Ack));
            return;
        }
        if let Some(seg) = seg {
            st.to_settle.push((id, seg));
        }
        if let Some(s) = st.shipping.as_mut() {
            s.gone(id);
        }
    }

    /// Writes pending settlements to the journal and refreshes the lock-free mirrors.
    fn flush(&self, st: &mut QueueState) {
        self.mirror(st);
        if let Some(s) = st.shipping.as_mut() {
            s.ship_settles();
        }
        if let Some(r) = self.remote_link() {
            if !st.remote_settles.is_empty() {
                r.settle(std::mem::take(&mut st.remote_settles));
            } else if st.consumers.is_empty() && !st.ready.is_empty() {
                // Requeued with nobody here to take it: the link hands it back.
                r.wake();
            }
        }
        if let Some(j) = &self.pager {
            if !st.to_settle.is_empty() {
                j.settle(&self.key, &std::mem::take(&mut st.to_settle));
            }
        }
    }

    fn dead_letter(&self, st: &mut QueueState, msg: Arc<Message>, reason: Reason) {
        if let Some(exchange) = st.settings.dead_letter_exchange.clone() {
            st.dead.push(DeadLetter {
                msg,
                reason,
                exchange,
                routing_key: st.settings.dead_letter_routing_key.clone(),
            });
        }
    }

    /// Drops (dead-letters) expired messages at the head.
    fn expire_head(&self, st: &mut QueueState, now: Instant) {
        while let Some(at) = st.ready.front().and_then(|e| e.expires_at) {
            if at > now {
                break;
            }
            if let Some(e) = st.ready.pop_front() {
                self.gone(st, &e);
                self.dead_letter(st, e.msg, Reason::Expired);
            }
        }
    }

    /// Enforces `x-max-length(-bytes)` by dropping from the head (the `drop-head` overflow,
    /// and what any overflow mode does when a policy lowers the limit).
    fn enforce_limits(&self, st: &mut QueueState) {
        while over_limit(st, 0, 0) {
            match st.ready.pop_oldest() {
                Some(e) => {
                    self.gone(st, &e);
                    self.dead_letter(st, e.msg, Reason::Maxlen)
                }
                None => break,
            }
        }
    }

    /// Appends a routed message and delivers what it can.
    pub fn publish(self: &Arc<Self>, msg: Arc<Message>) -> Enqueued {
        self.publish_with(msg, false)
    }

    /// `publish`, with the message marked redelivered (a forwarded message sent again after
    /// a link failure: it may be in the queue already).
    pub fn publish_with(self: &Arc<Self>, msg: Arc<Message>, redelivered: bool) -> Enqueued {
        if let Some(r) = self.remote_link() {
            return r.forward(self, msg);
        }
        let now = Instant::now();
        let (outcome, dead, timed) = {
            let mut st = self.state();
            self.expire_head(&mut st, now);
            let outcome = if over_limit(&st, 1, msg.body_size()) {
                match st.settings.overflow {
                    Overflow::DropHead => {
                        let sync = self.push(&mut st, msg, now, redelivered);
                        self.enforce_limits(&mut st);
                        Enqueued::Accepted { sync }
                    }
                    Overflow::RejectPublish => Enqueued::Rejected,
                    Overflow::RejectPublishDlx => {
                        self.dead_letter(&mut st, msg, Reason::Maxlen);
                        Enqueued::Rejected
                    }
                }
            } else {
                Enqueued::Accepted {
                    sync: self.push(&mut st, msg, now, redelivered),
                }
            };
            self.dispatch(&mut st);
            // A TTL of 0 means "deliver now or never".
            self.expire_head(&mut st, now);
            self.flush(&mut st);
            let timed = st.ready.front().is_some_and(|e| e.expires_at.is_some());
            (outcome, std::mem::take(&mut st.dead), timed)
        };
        if timed {
            self.timer.notify_one();
        }
        self.republish(dead);
        outcome
    }

    /// Appends to the ready list (and, if persistent on a durable queue, to the journal);
    /// returns the journal epoch to wait for before confirming (0 = none).
    fn push(&self, st: &mut QueueState, msg: Arc<Message>, now: Instant, redelivered: bool) -> u64 {
        let id = st.next_id;
        st.next_id += 1;
        let (sync, seg, offset) = self.journal_enqueue(id, &msg);
        let per_message = msg
            .properties
            .expiration()
            .as_ref()
            .and_then(|e| e.as_str().parse::<u64>().ok());
        let ttl = match (st.settings.message_ttl, per_message) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let priority = msg.properties.priority().unwrap_or(0);
        let entry = Entry {
            id,
            msg,
            redelivered,
            priority,
            expires_at: ttl.map(|ms| now + Duration::from_millis(ms)),
            seg,
            offset,
            paged: None,
            incarnation: self.incarnation(),
        };
        let id = entry.id;
        let replicated = match st.shipping.as_mut() {
            Some(s) => s.ship_enqueue(&entry, self.pager.as_deref()),
            None => None,
        };
        if let Some(paged) = st.ready.push_back(entry) {
            // Paged out: the list of live messages must not keep it in memory either.
            if let Some(s) = st.shipping.as_mut() {
                s.paged(id, paged);
            }
        }
        replicated.unwrap_or(sync)
    }

    /// A stand-in receives a message from its home node (`id` carries the home node's
    /// delivery tag).
    pub(crate) fn push_remote(
        self: &Arc<Self>,
        from: &remote::StandIn,
        id: u64,
        redelivered: bool,
        msg: Arc<Message>,
    ) {
        let mut st = self.state();
        // Checked under the state lock, which a failover holds while it changes the role: a
        // late delivery from a former home never lands in the new one.
        let current = self
            .role
            .read()
            .remote
            .as_ref()
            .is_some_and(|r| std::ptr::eq(Arc::as_ptr(r), from));
        if !current {
            return;
        }
        st.ready.insert_by_id(Entry {
            id,
            msg,
            redelivered,
            priority: 0,
            expires_at: None,
            seg: None,
            offset: 0,
            paged: None,
            incarnation: self.incarnation(),
        });
        self.dispatch(&mut st);
        self.flush(&mut st);
    }

    /// Takes every ready message (a stand-in hands them back to its home node).
    pub(crate) fn take_ready(&self) -> Vec<Entry> {
        let mut st = self.state();
        let all = st.ready.drain_all();
        self.flush(&mut st);
        all
    }

    /// A message a stand-in fetched for `basic.get` becomes this client's, as `get` would
    /// have made it; returns the ready count left here.
    pub fn adopt(&self, e: &Entry, no_ack: bool) -> u32 {
        let mut st = self.state();
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if no_ack {
            self.gone(&mut st, e);
        } else {
            st.unacked += 1;
        }
        self.flush(&mut st);
        st.ready.len() as u32
    }

    /// A stand-in's link to its home node.
    pub fn remote_link(&self) -> Option<Arc<remote::StandIn>> {
        self.role.read().remote.clone()
    }

    /// Keeps only the entries handed out by the current incarnation (older deliveries were
    /// requeued by a failover); returns how many were dropped.
    fn current(&self, entries: &mut Vec<Entry>) -> usize {
        let now = self.incarnation();
        let before = entries.len();
        entries.retain(|e| e.incarnation == now);
        before - entries.len()
    }

    pub fn has_consumers(&self) -> bool {
        self.has_consumers.load(Ordering::Relaxed)
    }

    /// Takes the head message for `basic.get`; returns it with the count left behind.
    pub fn get(&self, no_ack: bool) -> Option<(Entry, u32)> {
        let (got, dead) = {
            let mut st = self.state();
            st.last_used = Instant::now();
            self.expire_head(&mut st, Instant::now());
            let got = st.ready.pop_front().map(|e| {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if !no_ack {
                    st.unacked += 1;
                } else {
                    self.gone(&mut st, &e);
                }
                (e, st.ready.len() as u32)
            });
            self.flush(&mut st);
            if st.ready.front().is_some_and(|e| e.expires_at.is_some()) {
                // A new head may already be past its TTL: let the timer look.
                self.timer.notify_one();
            }
            (got, std::mem::take(&mut st.dead))
        };
        self.republish(dead);
        got
    }

    /// Acknowledged: forget these.
    pub fn settle(self: &Arc<Self>, mut entries: Vec<Entry>) {
        self.current(&mut entries);
        let mut st = self.state();
        st.unacked = st.unacked.saturating_sub(entries.len());
        for e in &entries {
            self.gone(&mut st, e);
        }
        // The settling consumer regained credit.
        self.dispatch(&mut st);
        self.flush(&mut st);
    }

    /// Rejected without requeue: forget these, dead-lettering them if configured.
    pub fn reject(self: &Arc<Self>, mut entries: Vec<Entry>) {
        self.current(&mut entries);
        let dead = {
            let mut st = self.state();
            st.unacked = st.unacked.saturating_sub(entries.len());
            let standin = self.is_standin();
            for e in entries {
                if standin {
                    // The home node dead-letters it, with its own settings.
                    st.remote_settles.push((e.id, remote::Settle::Reject));
                    continue;
                }
                self.gone(&mut st, &e);
                self.dead_letter(&mut st, e.msg, Reason::Rejected);
            }
            self.dispatch(&mut st);
            self.flush(&mut st);
            std::mem::take(&mut st.dead)
        };
        self.republish(dead);
    }

    /// Puts messages back at their original positions, marked redelivered.
    pub fn requeue(self: &Arc<Self>, entries: impl IntoIterator<Item = Entry>) {
        let mut entries: Vec<Entry> = entries.into_iter().collect();
        self.current(&mut entries);
        let dead = {
            let mut st = self.state();
            for mut e in entries {
                e.redelivered = true;
                st.unacked = st.unacked.saturating_sub(1);
                st.ready.insert_by_id(e);
            }
            self.dispatch(&mut st);
            self.flush(&mut st);
            std::mem::take(&mut st.dead)
        };
        self.republish(dead);
    }

    pub fn purge(&self) -> u32 {
        let mut st = self.state();
        let all = st.ready.drain_all();
        for e in &all {
            self.gone(&mut st, e);
        }
        self.flush(&mut st);
        all.len() as u32
    }

    /// Marks the queue deleted and returns its consumers (to be told with `basic.cancel`) and
    /// the number of ready messages it held.
    pub fn delete(&self) -> (Vec<Arc<Consumer>>, u32) {
        self.deleted.store(true, Ordering::Relaxed);
        self.timer.notify_one();
        let mut st = self.state();
        let all = st.ready.drain_all();
        let replica = std::mem::take(&mut st.replica);
        if let Some(s) = st.shipping.as_mut() {
            s.close_all();
        }
        if let Some(j) = &self.pager {
            let ids: Vec<(u64, u32)> = all
                .iter()
                .chain(replica.values())
                .filter_map(|e| e.seg.map(|s| (e.id, s)))
                .collect();
            // A transient queue that never paged has nothing in the journal to drop.
            if self.journal.is_some() || !ids.is_empty() {
                j.drop_queue(&self.key, &ids);
            }
        }
        (std::mem::take(&mut st.consumers), all.len() as u32)
    }

    /// Runs expiry (called by the timer task); returns the next instant it must run again,
    /// and whether the queue itself expired (`x-expires`).
    fn on_timer(self: &Arc<Self>) -> (Option<Instant>, bool) {
        let now = Instant::now();
        let (next, expired, dead) = {
            let mut st = self.state();
            self.expire_head(&mut st, now);
            let head = st.ready.front().and_then(|e| e.expires_at);
            let unused_deadline = match st.settings.expires {
                Some(ms) if st.consumers.is_empty() => {
                    Some(st.last_used + Duration::from_millis(ms))
                }
                _ => None,
            };
            let expired = unused_deadline.is_some_and(|t| t <= now);
            let next = match (head, unused_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            self.flush(&mut st);
            (next, expired, std::mem::take(&mut st.dead))
        };
        self.republish(dead);
        (next, expired)
    }

    /// Republishes dead letters through their dead-letter exchanges.
    fn republish(&self, dead: Vec<DeadLetter>) {
        if dead.is_empty() {
            return;
        }
        let Some(vhost) = self.vhost_ref.upgrade() else {
            return;
        };
        for d in dead {
            let Some(exchange) = vhost.exchange(&d.exchange) else {
                continue;
            };
            let msg = Arc::new(dead_letter::dead_lettered_message(&d, &self.name));
            let headers = msg.properties.headers().clone();
            for q in vhost.route(&exchange, &msg.routing_key, headers.as_ref()) {
                if !dead_letter::is_cycle(&msg, &q.name) || d.reason == Reason::Rejected {
                    q.publish(msg.clone());
                }
            }
        }
    }
}

fn over_limit(st: &QueueState, extra: usize, extra_bytes: usize) -> bool {
    st.settings
        .max_length
        .is_some_and(|m| (st.ready.len() + extra) as u64 > m)
        || st
            .settings
            .max_length_bytes
            .is_some_and(|m| (st.ready.bytes() + extra_bytes) as u64 > m)
}
