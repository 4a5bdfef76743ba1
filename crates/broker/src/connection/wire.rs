//! The outgoing side of one connection: an ordered buffer of encoded frames and the writer
//! task that drains it with vectored writes.
//!
//! Every producer (the connection's reader answering methods, queues delivering messages)
//! appends whole frame sequences under one lock, so a delivery's method, header and body
//! frames are never interleaved with anything else. The writer takes everything queued in one
//! swap and writes it with `writev`, which coalesces many small deliveries into few syscalls.
//!
//! Backpressure: queues check `has_room` before delivering; when the buffer is above the high
//! water mark they register to be kicked, and the writer kicks them once it drains below the
//! low water mark. The buffer is therefore bounded by the high water mark plus one delivery
//! per producer.

use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use warren_amqp::outgoing::Outgoing;

use crate::queue::Queue;

const HIGH_WATER: usize = 4 << 20;
const LOW_WATER: usize = 1 << 20;
const MAX_IOVECS: usize = 64;

pub struct Wire {
    out: Mutex<Outgoing>,
    queued: AtomicUsize,
    wake_writer: Notify,
    /// Wakes whoever waits for the buffer to drain (graceful close).
    drained: Notify,
    frame_max: AtomicU32,
    closed: AtomicBool,
    waiting_queues: Mutex<Vec<Weak<Queue>>>,
}

impl Wire {
    pub fn new(frame_max: u32) -> Arc<Self> {
        Arc::new(Wire {
            out: Mutex::new(Outgoing::new()),
            queued: AtomicUsize::new(0),
            wake_writer: Notify::new(),
            drained: Notify::new(),
            frame_max: AtomicU32::new(frame_max),
            closed: AtomicBool::new(false),
            waiting_queues: Mutex::new(Vec::new()),
        })
    }

    pub fn frame_max(&self) -> u32 {
        self.frame_max.load(Ordering::Relaxed)
    }

    pub fn set_frame_max(&self, v: u32) {
        self.frame_max.store(v, Ordering::Relaxed)
    }

    /// Encodes frames with `f` and wakes the writer. Whatever `f` appends is written
    /// contiguously.
    pub fn send<R>(&self, f: impl FnOnce(&mut Outgoing) -> R) -> R {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut out);
        self.queued.store(out.len(), Ordering::Relaxed);
        drop(out);
        self.wake_writer.notify_one();
        r
    }

    pub fn has_room(&self) -> bool {
        self.queued.load(Ordering::Relaxed) < HIGH_WATER && !self.is_closed()
    }

    /// A queue that found no room registers here to be kicked when the buffer drains.
    pub fn wait_for_room(&self, queue: &Arc<Queue>) {
        let mut w = self
            .waiting_queues
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if !w.iter().any(|q| q.as_ptr() == Arc::as_ptr(queue)) {
            w.push(Arc::downgrade(queue));
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Stops accepting new frames for delivery decisions; the writer still flushes what is
    /// queued and then exits.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake_writer.notify_one();
    }

    /// Waits until everything queued so far has been written (or the writer died).
    pub async fn flushed(&self) {
        loop {
            let notified = self.drained.notified();
            if self.queued.load(Ordering::Relaxed) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn kick_waiting_queues(&self) {
        let waiting = std::mem::take(
            &mut *self
                .waiting_queues
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for q in waiting.iter().filter_map(Weak::upgrade) {
            q.kick();
        }
    }

    /// The writer task: drains the buffer into `sink` until the wire is closed and empty or a
    /// write fails.
    pub async fn run_writer<W: tokio::io::AsyncWrite + Unpin>(self: Arc<Self>, mut sink: W) {
        loop {
            let notified = self.wake_writer.notified();
            let chunks = {
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                out.take()
            };
            if chunks.is_empty() {
                self.queued.store(0, Ordering::Relaxed);
                self.drained.notify_waiters();
                if self.is_closed() {
                    break;
                }
                notified.await;
                continue;
            }
            if write_chunks(&mut sink, chunks).await.is_err() {
                self.closed.store(true, Ordering::Relaxed);
                self.queued.store(0, Ordering::Relaxed);
                self.drained.notify_waiters();
                break;
            }
            let left = self.out.lock().unwrap_or_else(|e| e.into_inner()).len();
            self.queued.store(left, Ordering::Relaxed);
            if left < LOW_WATER {
                self.kick_waiting_queues();
            }
        }
        let _ = sink.shutdown().await;
    }
}

/// Writes every chunk with as few `writev` calls as the socket allows (at most `MAX_IOVECS`
/// chunks per call); the broker's writer and the client library (`warren perf`) share it.
pub(crate) async fn write_chunks<W: tokio::io::AsyncWrite + Unpin>(
    sink: &mut W,
    mut chunks: std::collections::VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !chunks.is_empty() {
        let slices: Vec<IoSlice<'_>> = chunks
            .iter()
            .take(MAX_IOVECS)
            .map(|c| IoSlice::new(c))
            .collect();
        let mut written = sink.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while written > 0 {
            let front = chunks.front_mut().expect("written bytes belong to a chunk");
            if written >= front.len() {
                written -= front.len();
                chunks.pop_front();
            } else {
                bytes::Buf::advance(front, written);
                written = 0;
            }
        }
    }
    Ok(())
}
