//! Methods a clustered node cannot answer on the spot: metadata changes (`exchange.declare`,
//! `queue.bind` and the rest, proposed to the cluster's metadata group instead of applied in
//! place), and `basic.get`/`queue.purge` on a queue whose home is another node (passed on
//! through the stand-in's link, see `queue::remote`).
//!
//! A channel method cannot wait (it runs inside the connection's frame loop), so it leaves a
//! `PendingMeta` behind; the connection submits it, waits for the commit with no channel
//! state borrowed, and hands the outcome back to `Channel::complete_meta`, which sends the
//! `*-ok` or closes the channel with the error. Frames after the method are read only
//! afterwards, so a client that pipelines a declare and a publish sees them in order.

use warren_amqp::reply::AmqpError;
use warren_amqp::{exchange, queue, AMQPClass, ShortString};

use std::sync::Arc;

use super::{Channel, Ctx};
use crate::metadata::{BindingOp, MetaOp, MetaReply};
use crate::queue::remote::{Answer, Request};
use crate::queue::Queue;
use crate::vhost::Binding;

/// A proposed change and what to answer once it is decided.
pub struct PendingMeta {
    pub channel: u16,
    pub op: MetaOp,
    pub then: Then,
    /// The method's class and id, for the error's `channel.close`.
    pub method: (u16, u16),
}

/// A `basic.get` or purge waiting for a queue's home node.
pub struct PendingRemote {
    pub channel: u16,
    pub queue: Arc<Queue>,
    pub request: Request,
    pub no_ack_or_nowait: bool,
    pub method: (u16, u16),
}

/// The reply a pending change owes its client.
pub enum Then {
    ExchangeDeclared { nowait: bool },
    ExchangeDeleted { nowait: bool },
    ExchangeBound { nowait: bool, bind: bool },
    QueueDeclared { name: String, nowait: bool },
    QueueBound { nowait: bool, bind: bool },
    QueueDeleted { nowait: bool, message_count: u32 },
}

impl Channel {
    /// Leaves `op` for the connection to submit.
    pub(super) fn defer(&mut self, ctx: &Ctx<'_>, op: MetaOp, then: Then, method: (u16, u16)) {
        *ctx.pending_meta.borrow_mut() = Some(PendingMeta {
            channel: self.id,
            op,
            then,
            method,
        });
    }

    /// Answers a change the cluster decided.
    pub fn complete_meta(
        &mut self,
        ctx: &Ctx<'_>,
        then: Then,
        outcome: Result<MetaReply, AmqpError>,
    ) -> Result<(), AmqpError> {
        let reply = outcome?;
        use AMQPClass as C;
        let m = match then {
            Then::ExchangeDeclared { nowait: true }
            | Then::ExchangeDeleted { nowait: true }
            | Then::ExchangeBound { nowait: true, .. }
            | Then::QueueDeclared { nowait: true, .. }
            | Then::QueueBound {
                nowait: true,
                bind: true,
            }
            | Then::QueueDeleted { nowait: true, .. } => return Ok(()),
            Then::ExchangeDeclared { .. } => {
                C::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {}))
            }
            Then::ExchangeDeleted { .. } => {
                C::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {}))
            }
            Then::ExchangeBound { bind: true, .. } => {
                C::Exchange(exchange::AMQPMethod::BindOk(exchange::BindOk {}))
            }
            Then::ExchangeBound { bind: false, .. } => {
                C::Exchange(exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {}))
            }
            Then::QueueDeclared { name, .. } => {
                let (messages, consumers) = ctx
                    .vhost
                    .queue(&name)
                    .map_or((0, 0), |q| (q.message_count(), q.consumer_count()));
                self.last_queue = Some(name.clone());
                C::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: ShortString::from(name),
                    message_count: messages as u32,
                    consumer_count: consumers as u32,
                }))
            }
            Then::QueueBound { bind: true, .. } => {
                C::Queue(queue::AMQPMethod::BindOk(queue::BindOk {}))
            }
            // queue.unbind has no nowait flag: it is always answered.
            Then::QueueBound { bind: false, .. } => {
                C::Queue(queue::AMQPMethod::UnbindOk(queue::UnbindOk {}))
            }
            Then::QueueDeleted { message_count, .. } => {
                C::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                    message_count: message_count.max(reply.message_count),
                }))
            }
        };
        self.reply(ctx, m);
        Ok(())
    }
}

impl Channel {
    /// Leaves a request to the home node of stand-in `queue` for the connection.
    pub(super) fn defer_remote(
        &mut self,
        ctx: &Ctx<'_>,
        queue: Arc<Queue>,
        request: Request,
        no_ack_or_nowait: bool,
        method: (u16, u16),
    ) {
        *ctx.pending_remote.borrow_mut() = Some(PendingRemote {
            channel: self.id,
            queue,
            request,
            no_ack_or_nowait,
            method,
        });
    }

    /// Answers a `basic.get` or purge once the home node did its part.
    pub fn complete_remote(
        &mut self,
        ctx: &Ctx<'_>,
        p: PendingRemote,
        outcome: Result<Answer, String>,
    ) -> Result<(), AmqpError> {
        let q = &p.queue;
        let answer = outcome.map_err(|e| {
            AmqpError::new(
                warren_amqp::reply::NOT_FOUND,
                format!(
                    "home node '{}' of queue '{}' in vhost '{}' is down or inaccessible ({e})",
                    q.home().as_deref().unwrap_or("?"),
                    q.name,
                    q.vhost
                ),
            )
        })?;
        match (p.request, answer) {
            (Request::Get, Answer::Message(entry)) => {
                let no_ack = p.no_ack_or_nowait;
                let left = q.adopt(&entry, no_ack);
                self.link.record_get(q, &entry, no_ack, left);
            }
            (Request::Get, Answer::Count(_)) => self.reply(
                ctx,
                AMQPClass::Basic(warren_amqp::basic::AMQPMethod::GetEmpty(
                    warren_amqp::basic::GetEmpty {},
                )),
            ),
            (Request::Purge, answer) => {
                let n = match answer {
                    Answer::Count(n) => n,
                    Answer::Message(_) => 0,
                };
                if !p.no_ack_or_nowait {
                    self.reply(
                        ctx,
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                            message_count: n,
                        })),
                    );
                }
            }
        }
        Ok(())
    }
}

/// The op for a binding change.
pub(super) fn binding_op(vhost: &str, b: Binding, bind: bool) -> MetaOp {
    let op = BindingOp::new(vhost, b);
    if bind {
        MetaOp::Bind(op)
    } else {
        MetaOp::Unbind(op)
    }
}
