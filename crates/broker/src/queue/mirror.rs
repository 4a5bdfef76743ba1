//! A queue's own side of mirroring (the network side is `crate::replication`).
//!
//! On the leader (the home node), `Shipping` keeps every live message (ready or delivered
//! and not yet settled) so that a mirror can be brought up to date at any time, ships each
//! enqueue and settlement to the attached mirrors in order, and holds publisher confirms
//! until every replica that counts has acknowledged them: the committed in-sync set, plus a
//! mirror that finished its catch-up and is waiting for its in-sync mark. A mirror that
//! falls behind is left out only once the metadata Raft group has committed that (the
//! caller's job), never silently.
//!
//! On a mirror, the replica is the leader's messages by id, journalled like any durable
//! queue's. A failover turns a mirror's replica into the ready list (`become_home`); a new
//! leader also starts a new id range (`epoch << EPOCH_SHIFT`), so ids never collide with
//! those a former leader handed out and a returning replica can drop what the new leader
//! never had.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};
use warren_store::Journal;

use super::ready::Ready;
use super::settings::QueueSettings;
use super::{Entry, Queue};
use crate::message::Message;

/// Ids of a leader of epoch `e` start at `e << EPOCH_SHIFT`.
pub const EPOCH_SHIFT: u32 = 44;
/// Operations buffered per mirror link; a mirror this far behind is cut off and resyncs.
const LINK_BUFFER: usize = 65_536;

/// One replicated operation, numbered in the leader's sequence.
pub enum Op {
    Enqueue { seq: u64, entry: Entry },
    Settle { seq: u64, ids: Vec<u64> },
}

/// The leader's end of one mirror's link.
pub struct MirrorLink {
    pub node: String,
    tx: mpsc::Sender<Op>,
    counting: AtomicBool,
    counted_from: AtomicU64,
    pub acked: AtomicU64,
    closed: AtomicBool,
    pub closed_signal: Notify,
    /// Catch-up progress: messages to send, messages sent.
    pub sync_total: AtomicU64,
    pub sync_sent: AtomicU64,
    /// `ha-sync-mode: manual`: the mirror got no catch-up; it is in sync once these (the
    /// messages it lacks) have all left the queue, as in RabbitMQ.
    unsynced: parking_lot::Mutex<Option<HashSet<u64>>>,
}

impl MirrorLink {
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closed_signal.notify_waiters();
        self.closed_signal.notify_one();
    }

    /// Counted for confirms, and has acknowledged everything since it started counting:
    /// it holds every message a confirm was given for.
    pub fn caught_up(&self) -> bool {
        self.counting.load(Ordering::Acquire)
            && self.acked.load(Ordering::Acquire) >= self.counted_from.load(Ordering::Acquire)
            && self.unsynced.lock().as_ref().is_none_or(HashSet::is_empty)
    }

    /// Messages this (manually synchronised) mirror still lacks.
    pub fn unsynced(&self) -> Option<usize> {
        self.unsynced.lock().as_ref().map(HashSet::len)
    }
}

/// What a mirror gets when it attaches: what to drop, what to add, then `rx`'s stream.
pub struct Attached {
    pub link: Arc<MirrorLink>,
    pub rx: mpsc::Receiver<Op>,
    pub drop: Vec<u64>,
    pub snapshot: Vec<Entry>,
    pub seq: u64,
}

#[derive(Default)]
pub struct Shipping {
    seq: u64,
    /// Every message not yet settled, by id.
    pub live: BTreeMap<u64, Entry>,
    links: Vec<Arc<MirrorLink>>,
    /// Confirms waiting for mirrors: (seq, journal ticket, since).
    pending: VecDeque<(u64, u64, Instant)>,
    settled: Vec<u64>,
    /// The committed in-sync set (other than this node).
    in_sync: Vec<String>,
    journal: Option<Arc<Journal>>,
}

impl Shipping {
    pub fn new(journal: Option<Arc<Journal>>) -> Shipping {
        Shipping {
            journal,
            ..Shipping::default()
        }
    }

    fn send(&mut self, op: impl Fn() -> Op) {
        for l in &self.links {
            if l.is_closed() {
                continue;
            }
            if l.tx.try_send(op()).is_err() {
                tracing::warn!("mirror on {} fell too far behind; it will resync", l.node);
                l.close();
            }
        }
    }

    /// Records and ships an enqueue; returns the ticket the publisher's confirm must wait
    /// for when replicas must acknowledge it first.
    pub fn ship_enqueue(&mut self, e: &Entry, journal: Option<&Journal>) -> Option<u64> {
        self.seq += 1;
        let seq = self.seq;
        self.live.insert(e.id, e.clone());
        if !self.links.is_empty() {
            self.send(|| Op::Enqueue {
                seq,
                entry: e.clone(),
            });
        }
        if self.waits_for_nobody() {
            return None;
        }
        let ticket = journal?.reserve_replicated();
        self.pending.push_back((seq, ticket, Instant::now()));
        Some(ticket)
    }

    /// The ready list paged this message out: keep only where it is.
    pub fn paged(&mut self, id: u64, (seg, offset, size): (Option<u32>, u64, u32)) {
        if let Some(e) = self.live.get_mut(&id) {
            e.seg = seg;
            e.offset = offset;
            e.paged = Some(size);
            e.msg = super::ready::placeholder();
        }
    }

    pub fn gone(&mut self, id: u64) {
        if self.live.remove(&id).is_some() {
            self.settled.push(id);
            for l in &self.links {
                if let Some(set) = l.unsynced.lock().as_mut() {
                    set.remove(&id);
                }
            }
        }
    }

    pub fn ship_settles(&mut self) {
        if self.settled.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.settled);
        if self.links.is_empty() {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        self.send(|| Op::Settle {
            seq,
            ids: ids.clone(),
        });
    }

    fn waits_for_nobody(&self) -> bool {
        self.in_sync.is_empty()
            && !self
                .links
                .iter()
                .any(|l| !l.is_closed() && l.counting.load(Ordering::Acquire))
    }

    /// What `node`'s open link has acknowledged (0 without one: an in-sync replica that is
    /// not connected holds confirms up until it is left out).
    fn acked(&self, node: &str) -> u64 {
        self.links
            .iter()
            .find(|l| l.node == node && !l.is_closed())
            .map_or(0, |l| l.acked.load(Ordering::Acquire))
    }

    /// The lowest sequence number every counted replica has acknowledged.
    fn acked_by_all(&self) -> u64 {
        let in_sync = self.in_sync.iter().map(|n| self.acked(n));
        let counting = self
            .links
            .iter()
            .filter(|l| !l.is_closed() && l.counting.load(Ordering::Acquire))
            .map(|l| l.acked.load(Ordering::Acquire));
        in_sync.chain(counting).min().unwrap_or(u64::MAX)
    }

    /// Releases the confirms every counted replica has acknowledged.
    fn complete(&mut self) {
        let upto = self.acked_by_all();
        while let Some(&(seq, ticket, _)) = self.pending.front() {
            if seq > upto {
                break;
            }
            self.pending.pop_front();
            if let Some(j) = &self.journal {
                j.complete_external(ticket);
            }
        }
    }

    pub fn close_all(&mut self) {
        for l in self.links.drain(..) {
            l.close();
        }
        self.in_sync.clear();
        self.complete();
    }

    /// The replicas holding up the oldest confirm for longer than `lag`: (node, whether
    /// it is in the committed in-sync set).
    fn laggards(&self, lag: Duration) -> Vec<(String, bool)> {
        let Some(&(seq, _, since)) = self.pending.front() else {
            return Vec::new();
        };
        if since.elapsed() < lag {
            return Vec::new();
        }
        let mut out: Vec<(String, bool)> = self
            .in_sync
            .iter()
            .filter(|n| self.acked(n) < seq)
            .map(|n| (n.clone(), true))
            .collect();
        for l in &self.links {
            if !l.is_closed()
                && l.counting.load(Ordering::Acquire)
                && !self.in_sync.contains(&l.node)
                && l.acked.load(Ordering::Acquire) < seq
            {
                out.push((l.node.clone(), false));
            }
        }
        out
    }
}

/// Whether `id` falls in one of the sorted, inclusive `ranges`.
fn in_ranges(ranges: &[(u64, u64)], id: u64) -> bool {
    let i = ranges.partition_point(|&(_, end)| end < id);
    ranges.get(i).is_some_and(|&(start, _)| start <= id)
}

/// Sorted ids as inclusive ranges (how a mirror says what it holds).
pub fn to_ranges(ids: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for id in ids {
        match out.last_mut() {
            Some((_, end)) if *end + 1 == id => *end = id,
            _ => out.push((id, id)),
        }
    }
    out
}

impl Queue {
    /// A mirror on `node` attaches, holding `have`: registers its link and works out what
    /// it must drop and receive to match this leader. Without `catch_up` (`ha-sync-mode:
    /// manual`, and no `sync_queue` asked for) it receives only what arrives from now on.
    pub fn attach_mirror(
        &self,
        node: &str,
        have: &[(u64, u64)],
        catch_up: bool,
    ) -> Result<Attached, String> {
        let catch_up = catch_up || self.sync_requested.lock().remove(node);
        let mut st = self.state();
        if self.is_standin() {
            return Err(format!("queue '{}' is not led by this node", self.name));
        }
        if !self.placement.lock().mirrors.iter().any(|m| m == node) {
            return Err(format!("{node} is not a mirror of queue '{}'", self.name));
        }
        let Some(s) = st.shipping.as_mut() else {
            return Err(format!("queue '{}' is not replicated", self.name));
        };
        let (tx, rx) = mpsc::channel(LINK_BUFFER);
        let link = Arc::new(MirrorLink {
            node: node.to_string(),
            tx,
            counting: AtomicBool::new(false),
            counted_from: AtomicU64::new(u64::MAX),
            acked: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            closed_signal: Notify::new(),
            sync_total: AtomicU64::new(0),
            sync_sent: AtomicU64::new(0),
            unsynced: parking_lot::Mutex::new(None),
        });
        for old in s.links.iter().filter(|l| l.node == node) {
            old.close();
        }
        s.links.retain(|l| l.node != node);
        let mut drop = Vec::new();
        for &(start, end) in have {
            drop.extend((start..=end).filter(|id| !s.live.contains_key(id)));
        }
        let mut snapshot: Vec<Entry> = s
            .live
            .values()
            .filter(|e| !in_ranges(have, e.id))
            .cloned()
            .collect();
        if !catch_up {
            *link.unsynced.lock() = Some(snapshot.drain(..).map(|e| e.id).collect());
        }
        link.sync_total
            .store(snapshot.len() as u64, Ordering::Relaxed);
        s.links.push(link.clone());
        Ok(Attached {
            link,
            rx,
            drop,
            snapshot,
            seq: s.seq,
        })
    }

    /// The mirror has everything up to the current sequence queued on its link: from now
    /// on confirms wait for it too (before its in-sync mark is committed, so nothing is
    /// confirmed in between that it might miss).
    pub fn start_counting(&self, link: &MirrorLink) {
        let st = self.state();
        if let Some(s) = st.shipping.as_ref() {
            link.counted_from.store(s.seq, Ordering::Release);
            link.counting.store(true, Ordering::Release);
        }
    }

    pub fn mirror_acked(&self, link: &MirrorLink, seq: u64) {
        link.acked.fetch_max(seq, Ordering::AcqRel);
        if let Some(s) = self.state().shipping.as_mut() {
            s.complete();
        }
    }

    /// The link is gone (closed, or its node left the in-sync set).
    pub fn detach_mirror(&self, link: &Arc<MirrorLink>) {
        link.close();
        if let Some(s) = self.state().shipping.as_mut() {
            s.links.retain(|l| !Arc::ptr_eq(l, link));
            s.complete();
        }
    }

    /// Replicas that hold up a confirm for longer than `lag`; those not yet in the
    /// committed in-sync set are cut off here (they resync), the others are returned for the
    /// caller to remove from the in-sync set through the metadata group.
    pub fn laggards(&self, lag: Duration) -> Vec<String> {
        let mut st = self.state();
        let Some(s) = st.shipping.as_mut() else {
            return Vec::new();
        };
        let mut committed = Vec::new();
        for (node, in_sync) in s.laggards(lag) {
            if in_sync {
                committed.push(node);
            } else {
                tracing::warn!(
                    "queue '{}': mirror on {node} is too slow to count for confirms; it resyncs",
                    self.name
                );
                for l in s.links.iter().filter(|l| l.node == node) {
                    l.close();
                }
                s.links.retain(|l| l.node != node);
            }
        }
        s.complete();
        committed
    }

    /// The attached mirrors and their catch-up progress: (node, sent, total, caught up).
    pub fn mirror_links(&self) -> Vec<(String, u64, u64, bool)> {
        let st = self.state();
        st.shipping.as_ref().map_or_else(Vec::new, |s| {
            s.links
                .iter()
                .filter(|l| !l.is_closed())
                .map(|l| {
                    (
                        l.node.clone(),
                        l.sync_sent.load(Ordering::Relaxed),
                        l.sync_total.load(Ordering::Relaxed),
                        l.caught_up(),
                    )
                })
                .collect()
        })
    }

    /// A mirror stores a message the leader shipped; returns the journal epoch that makes it
    /// durable here (0 = nothing to wait for).
    pub fn replica_enqueue(&self, id: u64, msg: Arc<Message>) -> u64 {
        let mut st = self.state();
        if st.replica.contains_key(&id) {
            return 0;
        }
        let (epoch, seg, offset) = self.journal_enqueue(id, &msg);
        let priority = msg.properties.priority().unwrap_or(0);
        let mut e = Entry {
            id,
            msg,
            redelivered: false,
            priority,
            expires_at: None,
            seg,
            offset,
            paged: None,
            incarnation: 0,
        };
        // A mirror needs the body only if it is promoted: a journalled message is read back
        // then, and beyond `IN_MEMORY` a transient one is paged out as the leader would.
        let beyond_memory = st.replica.len() >= super::ready::IN_MEMORY;
        if let (Some(j), true) = (&self.pager, seg.is_some() || beyond_memory) {
            super::ready::page_out(j, &self.key, &mut e);
        }
        st.replica.insert(id, e);
        epoch
    }

    /// A mirror forgets messages the leader settled (or never had).
    pub fn replica_remove(&self, ids: &[u64]) {
        let mut st = self.state();
        let mut gone = Vec::new();
        for id in ids {
            if let Some(e) = st.replica.remove(id) {
                if let Some(seg) = e.seg {
                    gone.push((e.id, seg));
                }
            }
        }
        if let (Some(j), false) = (&self.pager, gone.is_empty()) {
            j.settle(&self.key, &gone);
        }
    }

    /// What this mirror holds, as id ranges.
    pub fn replica_ranges(&self) -> Vec<(u64, u64)> {
        to_ranges(self.state().replica.keys().copied())
    }

    pub fn replica_len(&self) -> usize {
        self.state().replica.len()
    }

    /// This node is no longer a mirror: its copy goes.
    pub fn drop_replica(&self) {
        let ids: Vec<u64> = self.state().replica.keys().copied().collect();
        if !ids.is_empty() {
            self.replica_remove(&ids);
        }
    }

    /// The journal holding this queue's paged-out and persisted messages.
    pub fn pager_journal(&self) -> Option<Arc<Journal>> {
        self.pager.clone()
    }

    /// On a clustered node, a queue led here keeps its live messages listed (from now on,
    /// and those it holds already) so that mirrors can be brought up to date at any time.
    pub fn enable_shipping(&self) {
        let mut st = self.state();
        if self.is_standin() || st.shipping.is_some() {
            return;
        }
        let mut s = Shipping::new(self.pager.clone());
        for e in st.ready.entries() {
            s.live.insert(e.id, e.clone());
        }
        st.shipping = Some(s);
    }

    /// `sync_queue`: mirrors not in sync reconnect and get a full catch-up.
    pub fn request_sync(&self) {
        let p = self.placement();
        let waiting: Vec<String> = p
            .mirrors
            .iter()
            .filter(|m| !p.in_sync.contains(m))
            .cloned()
            .collect();
        self.sync_requested.lock().extend(waiting.iter().cloned());
        if let Some(s) = self.state().shipping.as_mut() {
            for l in s.links.iter().filter(|l| waiting.contains(&l.node)) {
                l.close();
            }
        }
    }

    /// `cancel_sync_queue`: catch-ups in progress stop; those mirrors reconnect without one.
    pub fn cancel_sync(&self) {
        self.sync_requested.lock().clear();
        if let Some(s) = self.state().shipping.as_mut() {
            for l in s.links.iter() {
                let sent = l.sync_sent.load(Ordering::Relaxed);
                if sent < l.sync_total.load(Ordering::Relaxed) {
                    l.close();
                    self.sync_cancelled.lock().insert(l.node.clone());
                }
            }
        }
    }

    /// Whether a cancelled catch-up means this mirror's next link gets none.
    pub fn sync_cancelled(&self, node: &str) -> bool {
        self.sync_cancelled.lock().remove(node)
    }

    /// The committed in-sync set changed (the leader's confirms now wait for these).
    pub fn set_in_sync(&self, nodes: &[String]) {
        let mut st = self.state();
        if let Some(s) = st.shipping.as_mut() {
            s.in_sync = nodes.to_vec();
            for l in s.links.iter() {
                if !self.placement.lock().mirrors.contains(&l.node) {
                    l.close();
                }
            }
            s.links.retain(|l| !l.is_closed());
            s.complete();
        }
    }

    pub(crate) fn set_placement(&self, p: crate::replication::Placement) {
        *self.placement.lock() = p;
    }

    /// A failover happened: consumers that asked for `x-cancel-on-ha-failover` are
    /// cancelled (the others carry on).
    pub fn cancel_failover_consumers(&self) {
        let cancelled: Vec<_> = {
            let mut st = self.state();
            let (gone, stay) = std::mem::take(&mut st.consumers)
                .into_iter()
                .partition(|c| c.cancel_on_failover);
            st.consumers = stay;
            st.next_consumer = 0;
            self.mirror(&st);
            gone
        };
        for c in cancelled {
            c.notify_cancelled();
        }
    }

    /// Failover: this node's copy becomes the queue. Every message in it is marked
    /// redelivered (the former leader may have delivered it), ids continue in the new
    /// epoch's range, and local consumers are served from here on.
    pub fn become_home(self: &Arc<Self>, epoch: u64, policy: Option<(String, serde_json::Value)>) {
        let dead = {
            let mut st = self.state();
            let old = {
                let mut role = self.role.write();
                if role.home.is_none() {
                    return;
                }
                role.home = None;
                role.remote.take()
            };
            if let Some(r) = old {
                r.retire();
            }
            let incarnation = self.incarnation.fetch_add(1, Ordering::AcqRel) + 1;
            st.unacked = 0;
            st.remote_settles.clear();
            let settings = QueueSettings::effective(&self.arguments, policy.as_ref().map(|p| &p.1));
            // What the stand-in had pulled are copies of messages the replica holds too.
            drop(st.ready.drain_all());
            let mut ready = Ready::new(settings.max_priority);
            if let Some(j) = &self.pager {
                ready.set_pager(j.clone(), self.key.clone());
            }
            st.ready = ready;
            st.settings = settings;
            st.policy = policy.map(|p| p.0);
            let mut shipping = Shipping::new(self.pager.clone());
            let replica = std::mem::take(&mut st.replica);
            let mut next = st.next_id.max(epoch << EPOCH_SHIFT);
            for (id, mut e) in replica {
                e.redelivered = true;
                e.incarnation = incarnation;
                next = next.max(id + 1);
                shipping.live.insert(id, e.clone());
                if let Some(paged) = st.ready.push_back(e) {
                    shipping.paged(id, paged);
                }
            }
            st.next_id = next;
            st.shipping = Some(shipping);
            self.dispatch(&mut st);
            self.flush(&mut st);
            std::mem::take(&mut st.dead)
        };
        self.timer.notify_one();
        self.republish(dead);
    }

    /// Another node now serves the queue: this one becomes a stand-in for `home`. A former
    /// leader keeps its messages as its replica when it is to stay a mirror (the new leader
    /// tells it what to drop); otherwise they go.
    pub fn become_standin(self: &Arc<Self>, home: &str, keep_copy: bool) {
        let consumers = {
            let mut st = self.state();
            let standin = Arc::new(super::remote::StandIn::new(home));
            let old = {
                let mut role = self.role.write();
                if role.home.as_deref() == Some(home) {
                    return;
                }
                role.home = Some(home.to_string());
                role.remote.replace(standin)
            };
            if let Some(r) = old {
                r.retire();
            }
            self.incarnation.fetch_add(1, Ordering::AcqRel);
            st.unacked = 0;
            st.remote_settles.clear();
            drop(st.ready.drain_all());
            if let Some(mut s) = st.shipping.take() {
                s.close_all();
                let live = std::mem::take(&mut s.live);
                if keep_copy {
                    st.replica.extend(live);
                } else if let Some(j) = &self.pager {
                    let ids: Vec<(u64, u32)> = live
                        .values()
                        .filter_map(|e| e.seg.map(|s| (e.id, s)))
                        .collect();
                    if !ids.is_empty() {
                        j.settle(&self.key, &ids);
                    }
                }
            }
            st.settings = QueueSettings::effective(&Default::default(), None);
            self.mirror(&st);
            !st.consumers.is_empty()
        };
        if consumers {
            if let Some(r) = self.remote_link() {
                r.start_pulling(self);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        let r = to_ranges([1, 2, 3, 7, 9, 10].into_iter());
        assert_eq!(r, vec![(1, 3), (7, 7), (9, 10)]);
        assert!(in_ranges(&r, 2) && in_ranges(&r, 7) && in_ranges(&r, 10));
        assert!(!in_ranges(&r, 0) && !in_ranges(&r, 5) && !in_ranges(&r, 8) && !in_ranges(&r, 11));
    }
}
