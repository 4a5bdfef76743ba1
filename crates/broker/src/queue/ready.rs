//! The ready list: messages waiting for a consumer, in delivery order.
//!
//! A plain queue has one level; a priority queue (`x-max-priority`) has one FIFO per
//! priority and always delivers from the highest non-empty one, as RabbitMQ does. Requeued
//! messages go back to their original position within their level.

use std::collections::VecDeque;

use super::Entry;

pub struct Ready {
    levels: Vec<VecDeque<Entry>>,
    len: usize,
    bytes: usize,
}

impl Ready {
    /// `max_priority` 0 = not a priority queue.
    pub fn new(max_priority: u8) -> Self {
        Ready {
            levels: (0..=max_priority).map(|_| VecDeque::new()).collect(),
            len: 0,
            bytes: 0,
        }
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

    pub fn push_back(&mut self, e: Entry) {
        self.len += 1;
        self.bytes += e.msg.body_size();
        let l = self.level_of(&e);
        self.levels[l].push_back(e);
    }

    /// Puts an entry back where its id says it belongs (requeue).
    pub fn insert_by_id(&mut self, e: Entry) {
        self.len += 1;
        self.bytes += e.msg.body_size();
        let l = self.level_of(&e);
        let level = &mut self.levels[l];
        let at = level.partition_point(|x| x.id < e.id);
        level.insert(at, e);
    }

    /// Returns an entry to the head (a delivery attempt that found no taker).
    pub fn push_front(&mut self, e: Entry) {
        self.len += 1;
        self.bytes += e.msg.body_size();
        let l = self.level_of(&e);
        self.levels[l].push_front(e);
    }

    /// The next entry to deliver.
    pub fn front(&self) -> Option<&Entry> {
        self.levels.iter().rev().find_map(|l| l.front())
    }

    pub fn pop_front(&mut self) -> Option<Entry> {
        let e = self.levels.iter_mut().rev().find_map(|l| l.pop_front())?;
        self.len -= 1;
        self.bytes -= e.msg.body_size();
        Some(e)
    }

    /// The oldest entry (what overflow `drop-head` drops): lowest priority first, as RabbitMQ.
    pub fn pop_oldest(&mut self) -> Option<Entry> {
        let e = self.levels.iter_mut().find_map(|l| l.pop_front())?;
        self.len -= 1;
        self.bytes -= e.msg.body_size();
        Some(e)
    }

    pub fn clear(&mut self) -> usize {
        let n = self.len;
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.len = 0;
        self.bytes = 0;
        n
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
