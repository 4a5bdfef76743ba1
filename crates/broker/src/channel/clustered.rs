//! Metadata methods on a clustered node: `exchange.declare`, `queue.bind` and the rest are
//! proposed to the cluster's metadata group instead of applied in place.
//!
//! A channel method cannot wait (it runs inside the connection's frame loop), so it leaves a
//! `PendingMeta` behind; the connection submits it, waits for the commit with no channel
//! state borrowed, and hands the outcome back to `Channel::complete_meta`, which sends the
//! `*-ok` or closes the channel with the error. Frames after the method are read only
//! afterwards, so a client that pipelines a declare and a publish sees them in order.

use warren_amqp::reply::AmqpError;
use warren_amqp::{exchange, queue, AMQPClass, ShortString};

use super::{Channel, Ctx};
use crate::json;
use crate::metadata::{MetaOp, MetaReply};
use crate::vhost::Binding;

/// A proposed change and what to answer once it is decided.
pub struct PendingMeta {
    pub channel: u16,
    pub op: MetaOp,
    pub then: Then,
    /// The method's class and id, for the error's `channel.close`.
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

/// The op for a binding change.
pub(super) fn binding_op(vhost: &str, b: Binding, bind: bool) -> MetaOp {
    let (source, destination, destination_is_queue, routing_key, arguments) = (
        b.source,
        b.destination,
        b.destination_is_queue,
        b.routing_key,
        json::table(&b.arguments),
    );
    let vhost = vhost.to_string();
    if bind {
        MetaOp::Bind {
            vhost,
            source,
            destination,
            destination_is_queue,
            routing_key,
            arguments,
        }
    } else {
        MetaOp::Unbind {
            vhost,
            source,
            destination,
            destination_is_queue,
            routing_key,
            arguments,
        }
    }
}
