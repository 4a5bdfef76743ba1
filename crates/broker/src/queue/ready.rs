//! The ready list: messages waiting for a consumer, in delivery order.
//!
//! A plain queue has one level; a priority queue (`x-max-priority`) has one FIFO per
//! priority and always delivers from the highest non-empty one, as RabbitMQ does. Requeued
//! messages go back to their original position within their level.
//!
//! Memory stays bounded (RabbitMQ's lazy-queue behaviour): beyond `IN_MEMORY` entries in a
//! level, a message is paged out as it arrives — a persistent one is already in the
//! journal, a transient one is written there as a record that recovery ignores. The entry
//! keeps its place, its id, priority and expiry, and where its record is; the message itself
//! is read back from the journal when it reaches the head.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use warren_store::record::Record;
use warren_store::Journal;

use super::Entry;
use crate::message::Message;

/// Entries per level kept with their messages in memory.
pub const IN_MEMORY: usize = 20_000;

pub struct Ready {
    levels: Vec<VecDeque<Entry>>,
    len: usize,
    bytes: usize,
    /// The journal that paged-out messages go to and are read back from, and the queue's
    /// key there.
    pager: Option<(Arc<Journal>, String)>,
}

/// What a paged-out entry holds instead of its message (one shared empty message).
pub(super) fn placeholder() -> Arc<Message> {
    static EMPTY: OnceLock<Arc<Message>> = OnceLock::new();
    EMPTY
        .get_or_init(|| {
            Arc::new(Message {
                exchange: String::new(),
                routing_key: String::new(),
                raw_properties: bytes::Bytes::new(),
                properties: Default::default(),
                body: bytes::Bytes::new(),
            })
        })
        .clone()
}

impl Ready {
    /// `max_priority` 0 = not a priority queue.
    pub fn new(max_priority: u8) -> Self {
        Ready {
            levels: (0..=max_priority).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
            pager: None,
        }
    }

    /// Lets this list page persistent messages out to `journal`.
    pub fn set_pager(&mut self, journal: Arc<Journal>, key: String) {
        self.pager = Some((journal, key));
    }

    /// Reads a paged-out message back; `None` (logged) if its record cannot be read.
    fn page_in(&self, e: Entry) -> Option<Entry> {
        if e.paged.is_none() {
            return Some(e);
        }
        read_back(&self.pager.as_ref()?.0, e)
    }

    pub fn max_priority(&self) -> u8 {
        (self.levels.len() - 1) as u8
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sum of body sizes (what `x-max-length-bytes` limits).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn level_of(&self, e: &Entry) -> usize {
        (e.priority as usize).min(self.levels.len() - 1)
    }

    /// Appends an entry; returns where it went if it was paged out on the way (the caller
    /// may hold the message elsewhere and drop it too).
    pub fn push_back(&mut self, mut e: Entry) -> Option<(Option<u32>, u64, u32)> {
        self.len += 1;
        self.bytes += e.body_size();
        let l = self.level_of(&e);
        if let Some((journal, key)) = &self.pager {
            if e.paged.is_none() && self.levels[l].len() >= IN_MEMORY {
                let size = page_out(journal, key, &mut e);
                let paged = (e.seg, e.offset, size);
                self.levels[l].push_back(e);
                return Some(paged);
            }
        }
        self.levels[l].push_back(e);
        None
    }

    /// Puts an entry back where its id says it belongs (requeue).
    pub fn insert_by_id(&mut self, e: Entry) {
        self.len += 1;
        self.bytes += e.body_size();
        let l = self.level_of(&e);
        let level = &mut self.levels[l];
        let at = level.partition_point(|x| x.id < e.id);
        level.insert(at, e);
    }

    /// Returns an entry to the head (a delivery attempt that found no taker).
    pub fn push_front(&mut self, e: Entry) {
        self.len += 1;
        self.bytes += e.body_size();
        let l = self.level_of(&e);
        self.levels[l].push_front(e);
    }

    /// The next entry to deliver.
    pub fn front(&self) -> Option<&Entry> {
        self.levels.iter().rev().find_map(|l| l.front())
    }

    pub fn pop_front(&mut self) -> Option<Entry> {
        loop {
            let e = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
            self.len -= 1;
            self.bytes -= e.body_size();
            if let Some(e) = self.page_in(e) {
                return Some(e);
            }
        }
    }

    /// The oldest entry (what overflow `drop-head` drops): lowest priority first, as RabbitMQ.
    pub fn pop_oldest(&mut self) -> Option<Entry> {
        loop {
            let e = self.levels.iter_mut().find_map(|l| l.pop_front())?;
            self.len -= 1;
            self.bytes -= e.body_size();
            if let Some(e) = self.page_in(e) {
                return Some(e);
            }
        }
    }

    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.len = 0;
        self.bytes = 0;
        n
    }

    /// Every entry, in no particular order (paged-out ones with their placeholder).
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.levels.iter().flat_map(|l| l.iter())
    }

    /// Changes the number of levels (policy cannot, but a redeclare after delete can).
    pub fn drain_all(&mut self) -> Vec<Entry> {
        let mut v = Vec::with_capacity(self.len);
        for l in self.levels.iter_mut() {
            v.extend(l.drain(..));
        }
        self.len = 0;
        self.bytes = 0;
        v
    }
}

/// Pages an entry out to `journal` (where a persistent message already is; a transient one
/// as a record that recovery ignores) and leaves the placeholder in its place; returns its
/// body size.
pub fn page_out(journal: &Journal, key: &str, e: &mut Entry) -> u32 {
    if e.seg.is_none() {
        let m = &e.msg;
        let at = journal.page_out(
            key,
            e.id,
            &m.exchange,
            &m.routing_key,
            &m.raw_properties,
            &m.body,
        );
        e.seg = Some(at.segment);
        e.offset = at.offset;
    }
    let size = e.msg.body_size() as u32;
    e.paged = Some(size);
    e.msg = placeholder();
    size
}

/// Reads a paged-out entry's message back from `journal`; `None` (logged) if its record
/// cannot be read.
pub fn read_back(journal: &Journal, mut e: Entry) -> Option<Entry> {
    if e.paged.is_none() {
        return Some(e);
    }
    let seg = e.seg?;
    match journal.read_message(seg, e.offset) {
        Ok(
            Record::Enqueue {
                exchange,
                routing_key,
                properties,
                body,
                ..
            }
            | Record::Paged {
                exchange,
                routing_key,
                properties,
                body,
                ..
            },
        ) => {
            e.msg = Arc::new(Message::from_parts(
                exchange,
                routing_key,
                properties,
                body,
            )?);
            e.paged = None;
            Some(e)
        }
        other => {
            tracing::error!(
                "cannot read back message {} from journal segment {seg} at {}: {other:?}",
                e.id,
                e.offset
            );
            None
        }
    }
}
