//! Journal records: `MAGIC | len u32 | crc32c u32 | payload`.
//!
//! The magic lets recovery find the next record after a corrupt one (a bit flip in a length
//! field would otherwise lose everything after it); the CRC covers the payload.

use bytes::{Buf, BufMut, Bytes};

pub const MAGIC: [u8; 4] = *b"WRN1";
pub const HEADER: usize = 12;

const ENQUEUE: u8 = 1;
const SETTLE: u8 = 2;
const DROP_QUEUE: u8 = 3;
const DELAYED: u8 = 4;
const PAGED: u8 = 5;

#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Enqueue {
        queue: String,
        id: u64,
        exchange: String,
        routing_key: String,
        properties: Bytes,
        body: Bytes,
    },
    Settle {
        queue: String,
        ids: Vec<u64>,
    },
    DropQueue {
        queue: String,
    },
    /// A transient message written out only to free memory (a deep queue's lazy paging):
    /// readable while the node runs, never recovered after a restart.
    Paged {
        queue: String,
        id: u64,
        exchange: String,
        routing_key: String,
        properties: Bytes,
        body: Bytes,
    },
    /// A message held by a delayed-message exchange until `due_ms` (Unix milliseconds).
    Delayed {
        queue: String,
        id: u64,
        due_ms: u64,
        exchange: String,
        routing_key: String,
        properties: Bytes,
        body: Bytes,
    },
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.put_u16(s.len().min(u16::MAX as usize) as u16);
    out.put_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

fn begin(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.put_slice(&MAGIC);
    out.put_u32(0);
    out.put_u32(0);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let payload = &out[at + HEADER..];
    let len = payload.len() as u32;
    let crc = crc32c::crc32c(payload);
    out[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
    out[at + 8..at + 12].copy_from_slice(&crc.to_be_bytes());
}

/// Appends an enqueue record (the one write of a persistent message's body to disk).
pub fn encode_enqueue(
    out: &mut Vec<u8>,
    queue: &str,
    id: u64,
    exchange: &str,
    routing_key: &str,
    properties: &[u8],
    body: &[u8],
) {
    encode_message(
        out,
        ENQUEUE,
        queue,
        id,
        None,
        exchange,
        routing_key,
        properties,
        body,
    );
}

/// Appends a paged-out transient message (see `Record::Paged`).
pub fn encode_paged(
    out: &mut Vec<u8>,
    queue: &str,
    id: u64,
    exchange: &str,
    routing_key: &str,
    properties: &[u8],
    body: &[u8],
) {
    encode_message(
        out,
        PAGED,
        queue,
        id,
        None,
        exchange,
        routing_key,
        properties,
        body,
    );
}

/// The layout every message-holding record shares; a delayed message also has its due time.
#[allow(clippy::too_many_arguments)]
fn encode_message(
    out: &mut Vec<u8>,
    kind: u8,
    queue: &str,
    id: u64,
    due_ms: Option<u64>,
    exchange: &str,
    routing_key: &str,
    properties: &[u8],
    body: &[u8],
) {
    let at = begin(out);
    out.put_u8(kind);
    put_str(out, queue);
    out.put_u64(id);
    if let Some(due) = due_ms {
        out.put_u64(due);
    }
    put_str(out, exchange);
    put_str(out, routing_key);
    out.put_u32(properties.len() as u32);
    out.put_slice(properties);
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    finish(out, at);
}

/// Appends a delayed-message record (held until `due_ms`).
#[allow(clippy::too_many_arguments)]
pub fn encode_delayed(
    out: &mut Vec<u8>,
    queue: &str,
    id: u64,
    due_ms: u64,
    exchange: &str,
    routing_key: &str,
    properties: &[u8],
    body: &[u8],
) {
    encode_message(
        out,
        DELAYED,
        queue,
        id,
        Some(due_ms),
        exchange,
        routing_key,
        properties,
        body,
    );
}

pub fn encode_settle(out: &mut Vec<u8>, queue: &str, ids: &[u64]) {
    let at = begin(out);
    out.put_u8(SETTLE);
    put_str(out, queue);
    out.put_u32(ids.len() as u32);
    for id in ids {
        out.put_u64(*id);
    }
    finish(out, at);
}

pub fn encode_drop_queue(out: &mut Vec<u8>, queue: &str) {
    let at = begin(out);
    out.put_u8(DROP_QUEUE);
    put_str(out, queue);
    finish(out, at);
}

fn get_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = b.get_u16() as usize;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

fn get_blob(b: &mut Bytes) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_u32() as usize;
    (b.remaining() >= n).then(|| b.split_to(n))
}

fn decode_payload(mut b: Bytes) -> Option<Record> {
    if !b.has_remaining() {
        return None;
    }
    match b.get_u8() {
        kind @ (ENQUEUE | PAGED) => {
            let queue = get_str(&mut b)?;
            if b.remaining() < 8 {
                return None;
            }
            let id = b.get_u64();
            let exchange = get_str(&mut b)?;
            let routing_key = get_str(&mut b)?;
            let properties = get_blob(&mut b)?;
            let body = get_blob(&mut b)?;
            Some(if kind == ENQUEUE {
                Record::Enqueue {
                    queue,
                    id,
                    exchange,
                    routing_key,
                    properties,
                    body,
                }
            } else {
                Record::Paged {
                    queue,
                    id,
                    exchange,
                    routing_key,
                    properties,
                    body,
                }
            })
        }
        SETTLE => {
            let queue = get_str(&mut b)?;
            if b.remaining() < 4 {
                return None;
            }
            let n = b.get_u32() as usize;
            if b.remaining() < n * 8 {
                return None;
            }
            Some(Record::Settle {
                queue,
                ids: (0..n).map(|_| b.get_u64()).collect(),
            })
        }
        DROP_QUEUE => Some(Record::DropQueue {
            queue: get_str(&mut b)?,
        }),
        DELAYED => {
            let queue = get_str(&mut b)?;
            if b.remaining() < 16 {
                return None;
            }
            let id = b.get_u64();
            let due_ms = b.get_u64();
            let exchange = get_str(&mut b)?;
            let routing_key = get_str(&mut b)?;
            let properties = get_blob(&mut b)?;
            let body = get_blob(&mut b)?;
            Some(Record::Delayed {
                queue,
                id,
                due_ms,
                exchange,
                routing_key,
                properties,
                body,
            })
        }
        _ => None,
    }
}

/// What scanning a segment found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Where each record starts in the segment (to read it back later).
    pub offsets: Vec<u64>,
    /// Offset just past the last good record: everything after it is a torn or corrupt tail.
    pub good_end: usize,
    /// Corrupt records skipped before the tail (the scan resynchronised on the next magic).
    pub skipped: usize,
}

/// Decodes every valid record of a segment.
pub fn scan(data: Bytes) -> Scan {
    let mut s = Scan::default();
    let mut at = 0;
    while at + HEADER <= data.len() {
        let ok = data[at..at + 4] == MAGIC && {
            let len =
                u32::from_be_bytes(data[at + 4..at + 8].try_into().unwrap_or([0; 4])) as usize;
            let crc = u32::from_be_bytes(data[at + 8..at + 12].try_into().unwrap_or([0; 4]));
            let end = at + HEADER + len;
            end <= data.len() && crc32c::crc32c(&data[at + HEADER..end]) == crc && {
                match decode_payload(data.slice(at + HEADER..end)) {
                    Some(r) => {
                        s.records.push(r);
                        s.offsets.push(at as u64);
                        at = end;
                        s.good_end = end;
                        true
                    }
                    None => false,
                }
            }
        };
        if !ok {
            // Find the next record start; if there is none, the rest is the torn tail.
            match data[at + 1..].windows(4).position(|w| w == MAGIC) {
                Some(p) => {
                    s.skipped += 1;
                    at = at + 1 + p;
                }
                None => break,
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut v = Vec::new();
        encode_enqueue(&mut v, "/\0q", 1, "ex", "rk", &[0, 0], b"hello");
        encode_enqueue(&mut v, "/\0q", 2, "ex", "rk", &[0, 0], b"world");
        encode_settle(&mut v, "/\0q", &[1]);
        v
    }

    #[test]
    fn round_trips() {
        let s = scan(Bytes::from(sample()));
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.skipped, 0);
        assert!(matches!(&s.records[2], Record::Settle { ids, .. } if ids == &[1]));
    }

    #[test]
    fn torn_tail_and_bit_flips_lose_only_the_bad_records() {
        let full = sample();
        // Torn: the last record cut in half.
        let torn = Bytes::from(full[..full.len() - 5].to_vec());
        let s = scan(torn.clone());
        assert_eq!(s.records.len(), 2);
        assert!(s.good_end < torn.len());
        // A flipped bit in the first record's body: it is skipped, the others kept.
        let mut flipped = full.clone();
        flipped[HEADER + 20] ^= 0x40;
        let s = scan(Bytes::from(flipped));
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.skipped, 1);
        // Zero-filled tail (preallocated or a crash during extension).
        let mut zeroed = full.clone();
        zeroed.extend_from_slice(&[0u8; 4096]);
        let s = scan(Bytes::from(zeroed));
        assert_eq!((s.records.len(), s.good_end), (3, full.len()));
    }
}
