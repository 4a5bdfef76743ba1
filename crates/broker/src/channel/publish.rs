//! Publishing on a channel: assembling method + header + body frames into a message,
//! routing it, returning it when mandatory and unroutable, publisher confirms and
//! transactions.
//!
//! A single-frame body stays the `Bytes` slice of the read buffer it arrived in (no copy);
//! only bodies split over several frames are joined. Confirms are coalesced: everything
//! published in one read batch is acknowledged with one `basic.ack multiple`.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use warren_amqp::basic;
use warren_amqp::content::ContentHeader;
use warren_amqp::reply::{
    AmqpError, FRAME_ERROR, NOT_IMPLEMENTED, NO_ROUTE, PRECONDITION_FAILED, UNEXPECTED_FRAME,
};

use super::Ctx;
use crate::auth::Access;
use crate::connection::wire::Wire;
use crate::exchange::Exchange;
use crate::message::Message;

struct Pending {
    /// This channel's direct reply-to token, to rewrite `reply_to = amq.rabbitmq.reply-to`.
    reply_token: Option<String>,
    exchange: Arc<Exchange>,
    routing_key: String,
    mandatory: bool,
    header: Option<ContentHeader>,
    body: Body,
    received: u64,
}

#[derive(Default)]
enum Body {
    #[default]
    Empty,
    One(Bytes),
    Many(BytesMut),
}

/// A publish, or an ack/nack/reject, held back until `tx.commit`.
pub enum TxOp {
    Publish {
        exchange: Arc<Exchange>,
        message: Arc<Message>,
        mandatory: bool,
    },
    /// (delivery tag, multiple, requeue, is_ack)
    Settle(u64, bool, bool, bool),
}

#[derive(Default)]
enum Mode {
    #[default]
    Plain,
    Confirm {
        next_seq: u64,
        /// Published, not yet confirmed: (sequence number, journal epoch that must be durable
        /// first, ack or nack). Confirms go out in order.
        pending: VecDeque<(u64, u64, bool)>,
    },
    Tx(Vec<TxOp>),
}

#[derive(Default)]
pub struct PublishState {
    pending: Option<Pending>,
    mode: Mode,
}

impl PublishState {
    pub fn expecting_content(&self) -> bool {
        self.pending.is_some()
    }

    pub fn in_tx(&self) -> bool {
        matches!(self.mode, Mode::Tx(_))
    }

    pub fn start(
        &mut self,
        ctx: &Ctx<'_>,
        m: basic::Publish,
        reply_token: Option<String>,
    ) -> Result<(), AmqpError> {
        if m.immediate {
            return Err(AmqpError::new(NOT_IMPLEMENTED, "immediate=true"));
        }
        let name = m.exchange.as_str();
        ctx.check(Access::Write, "exchange", name)?;
        let exchange = ctx
            .vhost
            .exchange(name)
            .ok_or_else(|| AmqpError::not_found("exchange", name, &ctx.vhost.name))?;
        if exchange.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{name}' in vhost '{}'",
                ctx.vhost.name
            )));
        }
        self.pending = Some(Pending {
            reply_token,
            exchange,
            routing_key: m.routing_key.to_string(),
            mandatory: m.mandatory,
            header: None,
            body: Body::Empty,
            received: 0,
        });
        Ok(())
    }

    pub fn header(&mut self, ctx: &Ctx<'_>, channel: u16, payload: Bytes) -> Result<(), AmqpError> {
        let Some(p) = self.pending.as_mut().filter(|p| p.header.is_none()) else {
            return Err(AmqpError::new(
                UNEXPECTED_FRAME,
                format!("expected method frame, got non method frame instead (channel {channel})"),
            ));
        };
        let header = ContentHeader::decode(payload)
            .map_err(|e| AmqpError::new(FRAME_ERROR, format!("{e} on channel {channel}")))?;
        if header.class_id != 60 {
            return Err(AmqpError::new(
                FRAME_ERROR,
                format!(
                    "content header for class {} on channel {channel}",
                    header.class_id
                ),
            ));
        }
        let empty = header.body_size == 0;
        p.header = Some(header);
        if empty {
            self.finish(ctx, channel)?;
        }
        Ok(())
    }

    pub fn body(&mut self, ctx: &Ctx<'_>, channel: u16, payload: Bytes) -> Result<(), AmqpError> {
        let Some(p) = self.pending.as_mut().filter(|p| p.header.is_some()) else {
            return Err(AmqpError::new(
                UNEXPECTED_FRAME,
                format!(
                    "expected content header frame, got content body instead (channel {channel})"
                ),
            ));
        };
        let size = p.header.as_ref().map_or(0, |h| h.body_size);
        p.received += payload.len() as u64;
        if p.received > size {
            return Err(AmqpError::new(
                FRAME_ERROR,
                format!("content body exceeds the size {size} announced in its header"),
            ));
        }
        p.body = match std::mem::take(&mut p.body) {
            Body::Empty if p.received == size => Body::One(payload),
            Body::Empty => {
                let mut b = BytesMut::with_capacity(size.min(512 << 20) as usize);
                b.extend_from_slice(&payload);
                Body::Many(b)
            }
            Body::Many(mut b) => {
                b.extend_from_slice(&payload);
                Body::Many(b)
            }
            Body::One(first) => {
                let mut b = BytesMut::from(&first[..]);
                b.extend_from_slice(&payload);
                Body::Many(b)
            }
        };
        if p.received == size {
            self.finish(ctx, channel)?;
        }
        Ok(())
    }

    fn finish(&mut self, ctx: &Ctx<'_>, channel: u16) -> Result<(), AmqpError> {
        let Some(p) = self.pending.take() else {
            return Ok(());
        };
        let Some(header) = p.header else {
            return Ok(());
        };
        if let Some(uid) = header.properties.user_id() {
            if uid.as_str() != ctx.user {
                return Err(AmqpError::new(
                    PRECONDITION_FAILED,
                    format!(
                        "user_id property set to '{}' but authenticated user was '{}'",
                        uid.as_str(),
                        ctx.user
                    ),
                )
                .on(60, 40));
            }
        }
        let (mut properties, mut raw_properties) = (header.properties, header.raw_properties);
        if properties.reply_to().as_ref().map(|r| r.as_str()) == Some(super::reply_to::PSEUDO_QUEUE)
        {
            let Some(token) = &p.reply_token else {
                return Err(
                    AmqpError::precondition("fast reply consumer does not exist").on(60, 40),
                );
            };
            properties =
                properties.with_reply_to(format!("{}{token}", super::reply_to::PREFIX_DOT).into());
            raw_properties = warren_amqp::content::encode_properties(&properties);
        }
        let body = match p.body {
            Body::Empty => Bytes::new(),
            Body::One(b) => b,
            Body::Many(b) => b.freeze(),
        };
        let mut message = Message {
            exchange: p.exchange.name.clone(),
            routing_key: p.routing_key,
            raw_properties,
            properties,
            body,
        };
        // Another node forwarding a message it routed: restore what the client published.
        let forwarded = if ctx.user == crate::auth::INTERNAL_USER {
            crate::queue::remote::unwrap_forwarded(&mut message)
        } else {
            None
        };
        let message = Arc::new(message);
        let route = Route {
            mandatory: p.mandatory,
            redelivered: forwarded.as_ref().is_some_and(|f| f.0),
            key: forwarded.map(|f| f.1),
        };
        match &mut self.mode {
            Mode::Tx(ops) => {
                ops.push(TxOp::Publish {
                    exchange: p.exchange,
                    message,
                    mandatory: p.mandatory,
                });
            }
            Mode::Plain => {
                route_and_enqueue(ctx, channel, &p.exchange, message, route);
            }
            Mode::Confirm { next_seq, pending } => {
                let outcome = route_and_enqueue(ctx, channel, &p.exchange, message, route);
                let seq = *next_seq;
                *next_seq += 1;
                pending.push_back(match outcome {
                    Some(epoch) => (seq, epoch, true),
                    None => (seq, 0, false),
                });
            }
        }
        Ok(())
    }

    pub fn select_confirm(&mut self) -> Result<(), AmqpError> {
        match self.mode {
            Mode::Tx(_) => Err(AmqpError::precondition(
                "cannot switch from tx to confirm mode",
            )),
            Mode::Confirm { .. } => Ok(()),
            Mode::Plain => {
                self.mode = Mode::Confirm {
                    next_seq: 1,
                    pending: VecDeque::new(),
                };
                Ok(())
            }
        }
    }

    pub fn select_tx(&mut self) -> Result<(), AmqpError> {
        match self.mode {
            Mode::Confirm { .. } => Err(AmqpError::precondition(
                "cannot switch from confirm to tx mode",
            )),
            Mode::Tx(_) => Ok(()),
            Mode::Plain => {
                self.mode = Mode::Tx(Vec::new());
                Ok(())
            }
        }
    }

    /// Buffers an ack/nack/reject inside a transaction.
    pub fn buffer_settle(&mut self, tag: u64, multiple: bool, requeue: bool, ack: bool) {
        if let Mode::Tx(ops) = &mut self.mode {
            ops.push(TxOp::Settle(tag, multiple, requeue, ack));
        }
    }

    /// Applies the transaction's publishes; returns its settlements for the channel to apply.
    pub fn commit(
        &mut self,
        ctx: &Ctx<'_>,
        channel: u16,
    ) -> Result<Vec<(u64, bool, bool, bool)>, AmqpError> {
        let Mode::Tx(ops) = &mut self.mode else {
            return Err(AmqpError::precondition("channel is not transactional"));
        };
        let ops = std::mem::take(ops);
        let mut settles = Vec::new();
        for op in ops {
            match op {
                TxOp::Publish {
                    exchange,
                    message,
                    mandatory,
                } => {
                    let route = Route {
                        mandatory,
                        redelivered: false,
                        key: None,
                    };
                    route_and_enqueue(ctx, channel, &exchange, message, route);
                }
                TxOp::Settle(t, m, r, a) => settles.push((t, m, r, a)),
            }
        }
        Ok(settles)
    }

    pub fn rollback(&mut self) -> Result<(), AmqpError> {
        match &mut self.mode {
            Mode::Tx(ops) => {
                ops.clear();
                Ok(())
            }
            _ => Err(AmqpError::precondition("channel is not transactional")),
        }
    }

    /// Sends the confirms whose messages are durable (`synced` is the journal's durable
    /// epoch), coalescing runs of acks into one `basic.ack multiple`.
    pub fn flush_confirms(&mut self, channel: u16, wire: &Wire, synced: u64) {
        let Mode::Confirm { pending, .. } = &mut self.mode else {
            return;
        };
        let mut run: Option<(u64, u64)> = None;
        while let Some(&(seq, epoch, ack)) = pending.front() {
            if epoch > synced {
                break;
            }
            pending.pop_front();
            if ack {
                run = Some(run.map_or((seq, seq), |(first, _)| (first, seq)));
            } else {
                if let Some((first, last)) = run.take() {
                    wire.send(|out| out.confirm(channel, last, last > first, true));
                }
                wire.send(|out| out.confirm(channel, seq, false, false));
            }
        }
        if let Some((first, last)) = run {
            wire.send(|out| out.confirm(channel, last, last > first, true));
        }
    }

    /// Whether confirms are held until the journal reaches a later epoch than `synced`.
    pub fn waiting_for_sync(&self, synced: u64) -> bool {
        matches!(&self.mode, Mode::Confirm { pending, .. } if pending.front().is_some_and(|p| p.1 > synced))
    }
}

/// Routes a message and enqueues it on every queue it reaches; unroutable mandatory
/// messages are returned (312 NO_ROUTE) before any confirm for them is sent. Returns the
/// journal epoch the confirm must wait for, or `None` when a queue refused the message
/// (`x-overflow: reject-publish`), which the publisher is told with `basic.nack`.
/// How a published message is routed: `key` overrides its routing key (another node's
/// forward names the queue), and `redelivered` marks it (a forward sent again).
struct Route {
    mandatory: bool,
    redelivered: bool,
    key: Option<String>,
}

fn route_and_enqueue(
    ctx: &Ctx<'_>,
    channel: u16,
    exchange: &Arc<Exchange>,
    message: Arc<Message>,
    route: Route,
) -> Option<u64> {
    let Route {
        mandatory,
        redelivered,
        key,
    } = route;
    if let Some(store) = &exchange.delayed {
        let delay = message
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delay"))
            .and_then(crate::args::as_i64)
            .unwrap_or(0);
        if delay > 0 {
            return Some(store.hold(message, delay as u64));
        }
    }
    if exchange.name.is_empty() {
        if let Some(token) = message
            .routing_key
            .strip_prefix(super::reply_to::PREFIX_DOT)
        {
            if !super::reply_to::deliver(ctx.broker, token, &message) && mandatory {
                return_unroutable(ctx, channel, &message);
            }
            return Some(0);
        }
    }
    let queues = ctx.vhost.route(
        exchange,
        key.as_deref().unwrap_or(&message.routing_key),
        message.properties.headers().as_ref(),
    );
    ctx.broker
        .stats
        .published
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if queues.is_empty() {
        ctx.broker
            .stats
            .unroutable
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if mandatory {
            return_unroutable(ctx, channel, &message);
        }
        return Some(0);
    }
    let mut sync = Some(0u64);
    for q in queues {
        if q.in_flow() {
            *ctx.flow.borrow_mut() = Some(q.clone());
        }
        sync = match q.publish_with(message.clone(), redelivered) {
            crate::queue::Enqueued::Accepted { sync: s } => sync.map(|have| have.max(s)),
            crate::queue::Enqueued::Rejected => None,
        };
    }
    sync
}

fn return_unroutable(ctx: &Ctx<'_>, channel: u16, message: &Message) {
    let frame_max = ctx.wire.frame_max();
    ctx.wire.send(|out| {
        out.basic_return(
            channel,
            NO_ROUTE,
            "NO_ROUTE",
            &message.exchange,
            &message.routing_key,
        );
        out.content(channel, &message.raw_properties, &message.body, frame_max);
    });
}
