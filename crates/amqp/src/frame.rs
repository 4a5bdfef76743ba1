//! Frame splitting: turns a byte stream into frames without copying payloads.
//!
//! Guarantees: the size field is checked against the negotiated `frame_max` *before* the
//! payload is waited for, so a peer cannot make us buffer more than one maximal frame; the
//! frame-end octet and the frame type are validated; payloads are `Bytes` slices of the read
//! buffer (zero copy).

use bytes::{Buf, Bytes, BytesMut};

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;
/// Frame header (type, channel, size) plus the end octet.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest `frame_max` a peer may negotiate (spec 4.2.3).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// One frame as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: u8,
    pub channel: u16,
    pub payload: Bytes,
}

/// Why a byte stream is not a valid sequence of frames. Each is a connection error 501.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The size field exceeds the negotiated `frame_max`.
    TooLarge { size: u32, frame_max: u32 },
    /// The octet after the payload is not 0xCE.
    BadFrameEnd(u8),
    /// A frame type this protocol does not define.
    UnknownType(u8),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { size, frame_max } => write!(
                f,
                "frame size {} exceeds negotiated frame_max {frame_max}",
                *size as usize + FRAME_OVERHEAD
            ),
            FrameError::BadFrameEnd(b) => write!(f, "invalid frame end marker 0x{b:02x}"),
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Frames above this size make the read buffer grow by several frames at a time.
const LARGE_FRAME: usize = 16 * 1024;

/// Splits frames out of `buf`. Returns `Ok(None)` when more bytes are needed.
///
/// `frame_max` is the whole-frame limit (header + payload + end octet) as negotiated in
/// `connection.tune`; 0 means "no limit beyond u32".
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownType(kind));
    }
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
    if frame_max != 0 && size as u64 + FRAME_OVERHEAD as u64 > frame_max as u64 {
        return Err(FrameError::TooLarge { size, frame_max });
    }
    let total = 7 + size as usize + 1;
    if buf.len() < total {
        // A reallocation copies the partial frame; with room for several large frames at
        // once, a stream of them is copied once per few frames instead of about once each
        // (the old buffer cannot be reused: message bodies are slices of it).
        let room = if total > LARGE_FRAME {
            total * 8
        } else {
            total
        };
        buf.reserve(room - buf.len());
        return Ok(None);
    }
    let end = buf[total - 1];
    if end != FRAME_END {
        return Err(FrameError::BadFrameEnd(end));
    }
    buf.advance(7);
    let payload = buf.split_to(size as usize).freeze();
    buf.advance(1);
    Ok(Some(Frame {
        kind,
        channel,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_bytes(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&channel.to_be_bytes());
        v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v.extend_from_slice(payload);
        v.push(FRAME_END);
        v
    }

    #[test]
    fn splits_frames_and_waits_for_more() {
        let mut all = frame_bytes(FRAME_METHOD, 1, b"abc");
        all.extend(frame_bytes(FRAME_BODY, 2, b"hello"));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&all[..5]);
        assert_eq!(decode(&mut buf, 4096), Ok(None));
        buf.extend_from_slice(&all[5..]);
        let f = decode(&mut buf, 4096).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.channel, &f.payload[..]),
            (FRAME_METHOD, 1, &b"abc"[..])
        );
        let f = decode(&mut buf, 4096).unwrap().unwrap();
        assert_eq!(
            (f.kind, f.channel, &f.payload[..]),
            (FRAME_BODY, 2, &b"hello"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_frame_before_buffering_it() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[FRAME_BODY, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            decode(&mut buf, 131072),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn refuses_bad_end_and_type() {
        let mut v = frame_bytes(FRAME_METHOD, 0, b"x");
        *v.last_mut().unwrap() = 0;
        let mut buf = BytesMut::from(&v[..]);
        assert_eq!(decode(&mut buf, 0), Err(FrameError::BadFrameEnd(0)));
        let mut buf = BytesMut::from(&frame_bytes(9, 0, b"x")[..]);
        assert_eq!(decode(&mut buf, 0), Err(FrameError::UnknownType(9)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(f)) = decode(&mut buf, 4096) {
                let _ = crate::method::decode(&f.payload);
                let _ = crate::content::ContentHeader::decode(f.payload.clone());
            }
        }
    }
}
