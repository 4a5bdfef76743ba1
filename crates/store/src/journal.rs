//! The node-wide message journal with group commit.
//!
//! Appenders encode records into a shared buffer under a mutex (no syscall on the publish
//! path). The journal thread takes the whole buffer, writes it to the current segment and
//! `fdatasync`s it, then publishes the durable epoch through a `watch` channel; confirms
//! wait for the epoch their record was given. Segments rotate at `SEGMENT_BYTES`; the oldest
//! segments are deleted once every message in them is settled (oldest first, so a settle
//! record is never deleted before the enqueue it cancels).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::record;

pub const SEGMENT_BYTES: u64 = 64 << 20;

struct Inner {
    buf: Vec<u8>,
    /// The segment that the next record goes to.
    segment: u32,
    /// Bytes given to `segment` so far (written and buffered).
    seg_bytes: u64,
    /// Positions in `buf` where a new segment starts: a record is labelled with the segment
    /// it will physically be written to, so a segment's live count covers exactly its file.
    boundaries: Vec<usize>,
    /// Size at which a segment is full (`SEGMENT_BYTES`; small in tests).
    segment_bytes: u64,
    /// Epoch of the last append; the journal thread makes epochs durable in order.
    appended: u64,
    closed: bool,
}

pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
    wake: Condvar,
    synced: watch::Sender<u64>,
    /// Unsettled messages per segment.
    live: Mutex<BTreeMap<u32, u64>>,
    fsyncs: AtomicU64,
    enqueues: AtomicU64,
    /// Epochs handed out by `reserve_external` and not completed yet: the published durable
    /// epoch stays below the lowest of them.
    external: Mutex<std::collections::BTreeSet<u64>>,
    /// The same for `reserve_replicated`; these also hold back `synced_for_peers`.
    replicated: Mutex<std::collections::BTreeSet<u64>>,
    /// The durable epoch as other cluster nodes may be told it: below open replication
    /// tickets, but not below forwarding tickets. A forwarding ticket waits for another
    /// node's confirm; if that node's answers to us waited for our forwarding tickets in
    /// turn, two nodes forwarding to each other could wait for each other forever.
    synced_for_peers: watch::Sender<u64>,
    /// What the journal thread has written and fsynced, tickets aside (mirrors acknowledge
    /// on this: their answer depends on nothing else).
    written_watch: watch::Sender<u64>,
    /// The highest epoch the journal thread has made durable (its writes, and the empty
    /// epochs of external tickets).
    written: AtomicU64,
    /// Open segment files for reading paged-out messages back.
    readers: Mutex<BTreeMap<u32, Arc<File>>>,
}

/// Assigns the record just encoded at `buf[start..]` to a segment: the current one, or the
/// next when the current one is full.
/// Returns the record's offset in its segment.
fn place(g: &mut Inner, start: usize) -> u64 {
    if g.seg_bytes >= g.segment_bytes {
        g.segment += 1;
        g.seg_bytes = 0;
        g.boundaries.push(start);
    }
    let offset = g.seg_bytes;
    g.seg_bytes += (g.buf.len() - start) as u64;
    offset
}

/// Where an appended message is: wait for `epoch` before confirming; read it back at
/// (`segment`, `offset`).
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    pub epoch: u64,
    pub segment: u32,
    pub offset: u64,
}

/// Writes and fsyncs; a failure (full disk) is retried: confirms wait rather than lie.
fn write_durably(file: &File, bytes: &[u8]) {
    let mut f = file;
    loop {
        match f.write_all(bytes).and_then(|_| fdatasync(file)) {
            Ok(()) => return,
            Err(e) => {
                tracing::error!("journal write failed ({e}); retrying, confirms are held");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

pub fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("journal.{n:08}"))
}

impl Journal {
    /// Opens a journal that appends to a new segment `first_segment` in `dir`, with live
    /// counts of the segments recovery kept.
    pub fn open(
        dir: &Path,
        first_segment: u32,
        live: BTreeMap<u32, u64>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, first_segment))?;
        let j = Arc::new(Journal {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                buf: Vec::with_capacity(1 << 20),
                segment: first_segment,
                seg_bytes: 0,
                boundaries: Vec::new(),
                segment_bytes: SEGMENT_BYTES,
                appended: 0,
                closed: false,
            }),
            wake: Condvar::new(),
            synced: watch::channel(0).0,
            live: Mutex::new(live),
            fsyncs: AtomicU64::new(0),
            enqueues: AtomicU64::new(0),
            external: Mutex::new(std::collections::BTreeSet::new()),
            replicated: Mutex::new(std::collections::BTreeSet::new()),
            synced_for_peers: watch::channel(0).0,
            written_watch: watch::channel(0).0,
            written: AtomicU64::new(0),
            readers: Mutex::new(BTreeMap::new()),
        });
        let worker = j.clone();
        std::thread::Builder::new()
            .name("warren-journal".into())
            .spawn(move || worker.run(file, first_segment))?;
        Ok(j)
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a record that holds a message (counted live in its segment until settled);
    /// returns where it is.
    fn append_message(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Appended {
        let mut g = self.inner();
        let start = g.buf.len();
        encode(&mut g.buf);
        let offset = place(&mut g, start);
        g.appended += 1;
        let (epoch, seg) = (g.appended, g.segment);
        *self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(seg)
            .or_insert(0) += 1;
        drop(g);
        self.wake.notify_one();
        Appended {
            epoch,
            segment: seg,
            offset,
        }
    }

    fn reader(&self, segment: u32) -> std::io::Result<Arc<File>> {
        let mut files = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&segment) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(segment_path(&self.dir, segment))?);
        files.insert(segment, f.clone());
        Ok(f)
    }

    /// Reads back the message record at (`segment`, `offset`) (a paged-out message). The
    /// record may still be on its way to the file: then this waits for the journal thread.
    pub fn read_message(&self, segment: u32, offset: u64) -> std::io::Result<record::Record> {
        use std::os::unix::fs::FileExt;
        // A record appended moments ago may not be in its file (or the file may not exist)
        // yet: wait for the journal thread, a second at most.
        let mut header = [0u8; record::HEADER];
        let mut attempt = 0;
        let file = loop {
            let r = self.reader(segment).and_then(|f| {
                f.read_exact_at(&mut header, offset)?;
                Ok(f)
            });
            match r {
                Ok(f) => break f,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::NotFound
                    ) && attempt < 1000 =>
                {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(e),
            }
        };
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; record::HEADER + len];
        data[..record::HEADER].copy_from_slice(&header);
        file.read_exact_at(&mut data[record::HEADER..], offset + record::HEADER as u64)?;
        record::scan(bytes::Bytes::from(data))
            .records
            .into_iter()
            .next()
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "no valid record at segment {segment} offset {offset}"
                ))
            })
    }

    #[cfg(test)]
    pub(crate) fn set_segment_bytes(&self, n: u64) {
        self.inner().segment_bytes = n;
    }

    /// Writes a transient message out of memory (a deep queue's paging); returns where it is.
    /// Settled like an enqueued message; never recovered after a restart.
    pub fn page_out(
        &self,
        queue: &str,
        id: u64,
        exchange: &str,
        routing_key: &str,
        properties: &[u8],
        body: &[u8],
    ) -> Appended {
        self.append_message(|buf| {
            record::encode_paged(buf, queue, id, exchange, routing_key, properties, body)
        })
    }

    /// An epoch that is durable only once `complete_external` is called for it: lets
    /// something outside this journal (a message forwarded to another node, confirmed there)
    /// take part in the same publisher-confirm ordering as local writes.
    pub fn reserve_external(&self) -> u64 {
        self.reserve(&self.external)
    }

    /// Like `reserve_external`, for a message that waits for this node's mirrors (whose
    /// acknowledgements depend on nothing but their own disks): it holds back the durable
    /// epoch told to other nodes too (`synced_for_peers`).
    pub fn reserve_replicated(&self) -> u64 {
        self.reserve(&self.replicated)
    }

    fn reserve(&self, set: &Mutex<std::collections::BTreeSet<u64>>) -> u64 {
        let mut g = self.inner();
        g.appended += 1;
        let t = g.appended;
        set.lock().unwrap_or_else(|e| e.into_inner()).insert(t);
        drop(g);
        self.wake.notify_one();
        t
    }

    /// The outside party is done with `ticket` (from either kind of reservation).
    pub fn complete_external(&self, ticket: u64) {
        let removed = self
            .external
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ticket);
        if !removed {
            self.replicated
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ticket);
        }
        self.publish_synced();
    }

    /// Publishes the durable epochs: what the thread wrote, but below any open ticket.
    fn publish_synced(&self) {
        let written = self.written.load(Ordering::Acquire);
        let below = |set: &Mutex<std::collections::BTreeSet<u64>>| {
            set.lock()
                .unwrap_or_else(|e| e.into_inner())
                .first()
                .map_or(u64::MAX, |t| t - 1)
        };
        let for_peers = written.min(below(&self.replicated));
        let durable = for_peers.min(below(&self.external));
        for (w, v) in [
            (&self.synced, durable),
            (&self.synced_for_peers, for_peers),
            (&self.written_watch, written),
        ] {
            w.send_if_modified(|s| {
                let advanced = v > *s;
                if advanced {
                    *s = v;
                }
                advanced
            });
        }
    }

    /// Appends an enqueue record; returns (epoch to wait for, segment holding it).
    pub fn enqueue(
        &self,
        queue: &str,
        id: u64,
        exchange: &str,
        routing_key: &str,
        properties: &[u8],
        body: &[u8],
    ) -> Appended {
        self.enqueues.fetch_add(1, Ordering::Relaxed);
        self.append_message(|buf| {
            record::encode_enqueue(buf, queue, id, exchange, routing_key, properties, body)
        })
    }

    /// Appends a message held by a delayed exchange; returns (epoch, segment) like `enqueue`.
    #[allow(clippy::too_many_arguments)]
    pub fn delay(
        &self,
        key: &str,
        id: u64,
        due_ms: u64,
        exchange: &str,
        routing_key: &str,
        properties: &[u8],
        body: &[u8],
    ) -> Appended {
        self.append_message(|buf| {
            record::encode_delayed(
                buf,
                key,
                id,
                due_ms,
                exchange,
                routing_key,
                properties,
                body,
            )
        })
    }

    /// Records that messages left a queue for good. Not waited for: losing a settle in a
    /// crash only means the message is delivered again (at-least-once), as in RabbitMQ.
    pub fn settle(&self, queue: &str, ids: &[(u64, u32)]) {
        if ids.is_empty() {
            return;
        }
        let plain: Vec<u64> = ids.iter().map(|(id, _)| *id).collect();
        let mut g = self.inner();
        let start = g.buf.len();
        record::encode_settle(&mut g.buf, queue, &plain);
        place(&mut g, start);
        g.appended += 1;
        drop(g);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (_, seg) in ids {
            if let Some(n) = live.get_mut(seg) {
                *n = n.saturating_sub(1);
            }
        }
        drop(live);
        self.wake.notify_one();
    }

    /// Records that a queue and all its messages are gone.
    pub fn drop_queue(&self, queue: &str, ids: &[(u64, u32)]) {
        let mut g = self.inner();
        let start = g.buf.len();
        record::encode_drop_queue(&mut g.buf, queue);
        place(&mut g, start);
        g.appended += 1;
        drop(g);
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        for (_, seg) in ids {
            if let Some(n) = live.get_mut(seg) {
                *n = n.saturating_sub(1);
            }
        }
        drop(live);
        self.wake.notify_one();
    }

    /// The durable epoch, as it advances.
    pub fn synced(&self) -> watch::Receiver<u64> {
        self.synced.subscribe()
    }

    /// The durable epoch for confirms to other cluster nodes (see `synced_for_peers`).
    pub fn synced_for_peers(&self) -> watch::Receiver<u64> {
        self.synced_for_peers.subscribe()
    }

    pub fn synced_for_peers_epoch(&self) -> u64 {
        *self.synced_for_peers.borrow()
    }

    /// What is written and fsynced, tickets aside.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.written_watch.subscribe()
    }

    pub fn synced_epoch(&self) -> u64 {
        *self.synced.borrow()
    }

    /// (fsyncs done, enqueue records appended) since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.fsyncs.load(Ordering::Relaxed),
            self.enqueues.load(Ordering::Relaxed),
        )
    }

    /// Waits until everything appended so far is durable (used at shutdown).
    pub fn close(&self) {
        let target = {
            let mut g = self.inner();
            g.closed = true;
            g.appended
        };
        self.wake.notify_one();
        for _ in 0..500 {
            if self.synced_epoch() >= target {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `file` is segment `file_segment`, which records may already be labelled past: the
    /// segment counter moves at append time, this thread follows it.
    fn run(self: Arc<Self>, mut file: File, mut file_segment: u32) {
        let mut pending: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut boundaries: Vec<usize> = Vec::new();
        loop {
            let (epoch, closed) = {
                let mut g = self.inner();
                // Wake for bytes, or for epochs reserved by external tickets.
                while g.buf.is_empty()
                    && !g.closed
                    && g.appended == self.written.load(Ordering::Acquire)
                {
                    g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
                }
                std::mem::swap(&mut g.buf, &mut pending);
                std::mem::swap(&mut g.boundaries, &mut boundaries);
                (g.appended, g.closed && pending.is_empty())
            };
            if closed {
                self.written.store(epoch, Ordering::Release);
                self.publish_synced();
                return;
            }
            if pending.is_empty() {
                // Only external tickets were reserved: nothing to write.
                self.written.store(epoch, Ordering::Release);
                self.publish_synced();
                continue;
            }
            // Each piece goes to the segment its records were labelled with.
            let mut from = 0;
            for at in boundaries.drain(..).chain(std::iter::once(pending.len())) {
                if at > from {
                    write_durably(&file, &pending[from..at]);
                }
                if at < pending.len() {
                    file = self.rotate_to(file_segment + 1);
                    file_segment += 1;
                }
                from = at;
            }
            pending.clear();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.written.store(epoch, Ordering::Release);
            self.publish_synced();
        }
    }

    /// Opens segment `next` (retrying while that fails: records wait, never go elsewhere) and
    /// deletes fully settled older segments.
    fn rotate_to(&self, next: u32) -> File {
        loop {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(segment_path(&self.dir, next))
            {
                Ok(f) => {
                    self.delete_settled_segments(next);
                    return f;
                }
                Err(e) => {
                    tracing::error!("cannot start journal segment {next}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    fn delete_settled_segments(&self, current: u32) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let oldest_on_disk = list_segments(&self.dir).into_iter().next();
        let Some(mut seg) = oldest_on_disk else {
            return;
        };
        while seg < current && live.get(&seg).copied().unwrap_or(0) == 0 {
            if std::fs::remove_file(segment_path(&self.dir, seg)).is_err() {
                break;
            }
            live.remove(&seg);
            self.readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&seg);
            seg += 1;
        }
    }
}

fn fdatasync(f: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fdatasync on a file descriptor we own.
    if unsafe { libc::fdatasync(f.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("journal."))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    v.sort_unstable();
    v
}
