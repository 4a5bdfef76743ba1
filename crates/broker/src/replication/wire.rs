//! The replication link's framing, written by hand: a mirror link carries every message body
//! of a mirrored queue, so it must neither re-encode bodies (as the JSON cluster port would)
//! nor pay for AMQP's method/header/body split. A frame is `u32 length, u8 kind, payload`;
//! strings and byte strings are `u32 length, bytes`; numbers are big-endian.
//!
//! The mirror speaks first (after the 8-byte `HEADER`): `Hello`. The leader answers with
//! `Settle` (what the mirror must drop), the messages it lacks as `Enqueue`s, `Caught`, and
//! then the live stream of `Enqueue`/`Settle`; the mirror answers `Ack`s. `Refuse` ends a
//! link with a reason.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::queue::Entry;

/// Longer frames are refused (a message body is bounded well below this).
const MAX_FRAME: usize = 512 << 20;

const HELLO: u8 = 1;
const ACK: u8 = 2;
const ENQUEUE: u8 = 3;
const SETTLE: u8 = 4;
const CAUGHT: u8 = 5;
const REFUSE: u8 = 6;

#[derive(Debug)]
pub enum Frame {
    Hello {
        vhost: String,
        queue: String,
        node: String,
        secret: String,
        /// What the mirror holds, as sorted inclusive id ranges.
        have: Vec<(u64, u64)>,
    },
    /// Everything up to `seq` is durable on the mirror.
    Ack {
        seq: u64,
    },
    Enqueue {
        seq: u64,
        id: u64,
        exchange: String,
        routing_key: String,
        properties: Bytes,
        body: Bytes,
    },
    Settle {
        seq: u64,
        ids: Vec<u64>,
    },
    /// The catch-up is sent: from here on the stream is live.
    Caught {
        seq: u64,
    },
    Refuse {
        reason: String,
    },
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s);
}

/// Starts a frame; `finish` fills in its length.
fn begin(buf: &mut BytesMut, kind: u8) -> usize {
    let at = buf.len();
    buf.put_u32(0);
    buf.put_u8(kind);
    at
}

fn finish(buf: &mut BytesMut, at: usize) {
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn hello(
    buf: &mut BytesMut,
    vhost: &str,
    queue: &str,
    node: &str,
    secret: &str,
    have: &[(u64, u64)],
) {
    let at = begin(buf, HELLO);
    for s in [vhost, queue, node, secret] {
        put_str(buf, s.as_bytes());
    }
    buf.put_u32(have.len() as u32);
    for &(a, b) in have {
        buf.put_u64(a);
        buf.put_u64(b);
    }
    finish(buf, at);
}

pub fn ack(buf: &mut BytesMut, seq: u64) {
    let at = begin(buf, ACK);
    buf.put_u64(seq);
    finish(buf, at);
}

pub fn enqueue(buf: &mut BytesMut, seq: u64, e: &Entry) {
    let m = &e.msg;
    let at = begin(buf, ENQUEUE);
    buf.put_u64(seq);
    buf.put_u64(e.id);
    put_str(buf, m.exchange.as_bytes());
    put_str(buf, m.routing_key.as_bytes());
    put_str(buf, &m.raw_properties);
    put_str(buf, &m.body);
    finish(buf, at);
}

pub fn settle(buf: &mut BytesMut, seq: u64, ids: &[u64]) {
    let at = begin(buf, SETTLE);
    buf.put_u64(seq);
    buf.put_u32(ids.len() as u32);
    for id in ids {
        buf.put_u64(*id);
    }
    finish(buf, at);
}

pub fn caught(buf: &mut BytesMut, seq: u64) {
    let at = begin(buf, CAUGHT);
    buf.put_u64(seq);
    finish(buf, at);
}

pub fn refuse(buf: &mut BytesMut, reason: &str) {
    let at = begin(buf, REFUSE);
    put_str(buf, reason.as_bytes());
    finish(buf, at);
}

/// A cursor over one frame's payload that reports truncation instead of panicking.
struct Payload(Bytes);

impl Payload {
    fn need(&self, n: usize) -> Result<(), String> {
        if self.0.remaining() < n {
            Err("truncated replication frame".into())
        } else {
            Ok(())
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.need(4)?;
        Ok(self.0.get_u32())
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.need(8)?;
        Ok(self.0.get_u64())
    }

    fn bytes(&mut self) -> Result<Bytes, String> {
        let n = self.u32()? as usize;
        self.need(n)?;
        Ok(self.0.split_to(n))
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| "bad string in replication frame".into())
    }

    fn ids(&mut self, per: usize) -> Result<usize, String> {
        let n = self.u32()? as usize;
        self.need(n.saturating_mul(per))?;
        Ok(n)
    }
}

/// Takes one complete frame off `buf`, if there is one. Bodies are slices of the read
/// buffer, not copies.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(format!("replication frame of {len} bytes refused"));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut p = Payload(buf.split_to(len).freeze());
    let kind = p.0.get_u8();
    let frame = match kind {
        HELLO => {
            let (vhost, queue, node, secret) = (p.string()?, p.string()?, p.string()?, p.string()?);
            let n = p.ids(16)?;
            let mut have = Vec::with_capacity(n);
            for _ in 0..n {
                have.push((p.u64()?, p.u64()?));
            }
            Frame::Hello {
                vhost,
                queue,
                node,
                secret,
                have,
            }
        }
        ACK => Frame::Ack { seq: p.u64()? },
        ENQUEUE => Frame::Enqueue {
            seq: p.u64()?,
            id: p.u64()?,
            exchange: p.string()?,
            routing_key: p.string()?,
            properties: p.bytes()?,
            body: p.bytes()?,
        },
        SETTLE => {
            let seq = p.u64()?;
            let n = p.ids(8)?;
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(p.u64()?);
            }
            Frame::Settle { seq, ids }
        }
        CAUGHT => Frame::Caught { seq: p.u64()? },
        REFUSE => Frame::Refuse {
            reason: p.string()?,
        },
        k => return Err(format!("unknown replication frame kind {k}")),
    };
    Ok(Some(frame))
}

/// Reads the next frame (`Ok(None)` at a clean end of stream).
pub async fn read<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, String> {
    loop {
        if let Some(f) = decode(buf)? {
            return Ok(Some(f));
        }
        if buf.capacity() - buf.len() < 64 << 10 {
            buf.reserve(64 << 10);
        }
        let n = rd.read_buf(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("replication link closed mid-frame".into())
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncation_is_an_error() {
        let mut buf = BytesMut::new();
        hello(&mut buf, "/", "q", "warren@a", "s", &[(1, 3), (9, 9)]);
        settle(&mut buf, 7, &[1, 2]);
        ack(&mut buf, 9);
        match decode(&mut buf).unwrap().unwrap() {
            Frame::Hello { queue, have, .. } => {
                assert_eq!(queue, "q");
                assert_eq!(have, vec![(1, 3), (9, 9)]);
            }
            f => panic!("{f:?}"),
        }
        assert!(
            matches!(decode(&mut buf).unwrap(), Some(Frame::Settle { seq: 7, ref ids }) if ids == &[1, 2])
        );
        assert!(matches!(
            decode(&mut buf).unwrap(),
            Some(Frame::Ack { seq: 9 })
        ));
        assert!(decode(&mut buf).unwrap().is_none());

        // A length that claims more than the payload holds.
        let mut bad = BytesMut::new();
        bad.put_u32(5);
        bad.put_u8(ACK);
        bad.put_u32(1);
        assert!(decode(&mut bad).is_err());
        let mut huge = BytesMut::new();
        huge.put_u32(u32::MAX);
        huge.put_u8(ACK);
        assert!(decode(&mut huge).is_err());
    }
}
