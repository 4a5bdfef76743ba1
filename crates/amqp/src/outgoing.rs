//! Outgoing frames as a chain of chunks ready for one `writev`.
//!
//! Small things (method frames, headers, small bodies) are encoded into a scratch buffer;
//! large bodies are appended as `Bytes` references to the published message, so a body
//! delivered to N consumers is never copied N times. Bodies are split at the negotiated
//! `frame_max`, as strict clients require.

use amq_protocol::protocol::{gen_class, AMQPClass};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::VecDeque;

use crate::frame::{FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};

/// Bodies up to this size are copied into the scratch buffer: for them an extra iovec and a
/// reference count cost more than the copy.
const INLINE_BODY_MAX: usize = 512;

/// Encoded frames waiting to be written, in order.
#[derive(Default)]
pub struct Outgoing {
    chunks: VecDeque<Bytes>,
    scratch: BytesMut,
    len: usize,
}

impl Outgoing {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes queued (encoded but not yet written).
    pub fn len(&self) -> usize {
        self.len + self.scratch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn seal_scratch(&mut self) {
        if !self.scratch.is_empty() {
            let b = self.scratch.split().freeze();
            self.len += b.len();
            self.chunks.push_back(b);
        }
    }

    /// Takes everything queued so far, in write order.
    pub fn take(&mut self) -> VecDeque<Bytes> {
        self.seal_scratch();
        self.len = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Bytes that are not a frame (the protocol header sent back to a client that offered an
    /// unsupported version).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.scratch.put_slice(bytes);
    }

    pub fn heartbeat(&mut self) {
        self.scratch
            .put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
    }

    /// Any method, through the generated encoder (slow path).
    pub fn method(&mut self, channel: u16, class: &AMQPClass) {
        let args = match cookie_factory::gen_simple(gen_class(class), Vec::with_capacity(64)) {
            Ok(v) => v,
            Err(_) => return,
        };
        self.scratch.reserve(args.len() + 8);
        self.scratch.put_u8(FRAME_METHOD);
        self.scratch.put_u16(channel);
        self.scratch.put_u32(args.len() as u32);
        self.scratch.put_slice(&args);
        self.scratch.put_u8(FRAME_END);
    }

    /// Starts a method frame whose arguments the caller writes by hand; returns the offset of
    /// the size field to patch in `end_method`.
    fn begin_method(&mut self, channel: u16, class_id: u16, method_id: u16) -> usize {
        self.scratch.put_u8(FRAME_METHOD);
        self.scratch.put_u16(channel);
        let at = self.scratch.len();
        self.scratch.put_u32(0);
        self.scratch.put_u16(class_id);
        self.scratch.put_u16(method_id);
        at
    }

    fn end_method(&mut self, size_at: usize) {
        let size = (self.scratch.len() - size_at - 4) as u32;
        self.scratch[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
        self.scratch.put_u8(FRAME_END);
    }

    fn short_str(&mut self, s: &str) {
        let b = &s.as_bytes()[..s.len().min(255)];
        self.scratch.put_u8(b.len() as u8);
        self.scratch.put_slice(b);
    }

    /// `basic.deliver` (hot path, hand-encoded).
    pub fn deliver(
        &mut self,
        channel: u16,
        consumer_tag: &str,
        delivery_tag: u64,
        redelivered: bool,
        exchange: &str,
        routing_key: &str,
    ) {
        let at = self.begin_method(channel, 60, 60);
        self.short_str(consumer_tag);
        self.scratch.put_u64(delivery_tag);
        self.scratch.put_u8(redelivered as u8);
        self.short_str(exchange);
        self.short_str(routing_key);
        self.end_method(at);
    }

    /// `basic.get-ok` (hand-encoded).
    pub fn get_ok(
        &mut self,
        channel: u16,
        delivery_tag: u64,
        redelivered: bool,
        exchange: &str,
        routing_key: &str,
        message_count: u32,
    ) {
        let at = self.begin_method(channel, 60, 71);
        self.scratch.put_u64(delivery_tag);
        self.scratch.put_u8(redelivered as u8);
        self.short_str(exchange);
        self.short_str(routing_key);
        self.scratch.put_u32(message_count);
        self.end_method(at);
    }

    /// `basic.return` (hand-encoded).
    pub fn basic_return(
        &mut self,
        channel: u16,
        reply_code: u16,
        reply_text: &str,
        exchange: &str,
        routing_key: &str,
    ) {
        let at = self.begin_method(channel, 60, 50);
        self.scratch.put_u16(reply_code);
        self.short_str(reply_text);
        self.short_str(exchange);
        self.short_str(routing_key);
        self.end_method(at);
    }

    /// `basic.publish` (hand-encoded; clients' hot path, used by `warren perf`).
    pub fn publish(&mut self, channel: u16, exchange: &str, routing_key: &str, mandatory: bool) {
        let at = self.begin_method(channel, 60, 40);
        self.scratch.put_u16(0);
        self.short_str(exchange);
        self.short_str(routing_key);
        self.scratch.put_u8(mandatory as u8);
        self.end_method(at);
    }

    /// `basic.ack` or `basic.nack` (hand-encoded): publisher confirms from a server, or
    /// consumer acknowledgements from a client.
    pub fn confirm(&mut self, channel: u16, delivery_tag: u64, multiple: bool, ack: bool) {
        let at = self.begin_method(channel, 60, if ack { 80 } else { 120 });
        self.scratch.put_u64(delivery_tag);
        self.scratch.put_u8(multiple as u8);
        self.end_method(at);
    }

    /// Content header + body frames. `frame_max` is the negotiated whole-frame limit.
    pub fn content(&mut self, channel: u16, raw_properties: &[u8], body: &Bytes, frame_max: u32) {
        self.scratch.reserve(22 + raw_properties.len());
        self.scratch.put_u8(FRAME_HEADER);
        self.scratch.put_u16(channel);
        self.scratch.put_u32(12 + raw_properties.len() as u32);
        self.scratch.put_u16(60);
        self.scratch.put_u16(0);
        self.scratch.put_u64(body.len() as u64);
        self.scratch.put_slice(raw_properties);
        self.scratch.put_u8(FRAME_END);
        let max_payload = (frame_max as usize).saturating_sub(8).max(1);
        let mut offset = 0;
        while offset < body.len() {
            let n = (body.len() - offset).min(max_payload);
            self.scratch.put_u8(FRAME_BODY);
            self.scratch.put_u16(channel);
            self.scratch.put_u32(n as u32);
            if n <= INLINE_BODY_MAX {
                self.scratch.put_slice(&body[offset..offset + n]);
            } else {
                self.seal_scratch();
                let part = body.slice(offset..offset + n);
                self.len += part.len();
                self.chunks.push_back(part);
            }
            self.scratch.put_u8(FRAME_END);
            offset += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::decode;

    fn flatten(out: &mut Outgoing) -> BytesMut {
        let mut all = BytesMut::new();
        for c in out.take() {
            all.extend_from_slice(&c);
        }
        all
    }

    #[test]
    fn splits_bodies_at_frame_max_and_round_trips() {
        let mut out = Outgoing::new();
        out.deliver(3, "ctag", 9, true, "ex", "rk");
        let body = Bytes::from(vec![7u8; 10_000]);
        out.content(3, &[0, 0], &body, 4096);
        let mut buf = flatten(&mut out);
        let deliver = decode(&mut buf, 4096).unwrap().unwrap();
        match crate::method::decode(&deliver.payload).unwrap() {
            AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Deliver(d)) => {
                assert_eq!(d.consumer_tag.as_str(), "ctag");
                assert_eq!((d.delivery_tag, d.redelivered), (9, true));
                assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("ex", "rk"));
            }
            other => panic!("{other:?}"),
        }
        let header = decode(&mut buf, 4096).unwrap().unwrap();
        let h = crate::content::ContentHeader::decode(header.payload).unwrap();
        assert_eq!(h.body_size, 10_000);
        let mut total = 0;
        while let Some(f) = decode(&mut buf, 4096).unwrap() {
            assert_eq!(f.kind, FRAME_BODY);
            assert!(f.payload.len() <= 4088);
            total += f.payload.len();
        }
        assert_eq!(total, 10_000);
    }
}
