//! One AMQP channel: a state machine driven by its connection's reader.
//!
//! The reader hands every method and content frame of this channel to `Channel`; replies go
//! out through the connection's wire. A channel error (404, 403, 405, 406) is returned to the
//! connection, which closes just this channel; connection errors close the connection.
//! Submodules hold the method groups: `declare` (exchanges, queues, bindings), `publish`
//! (content assembly, routing, confirms, transactions), `consume` (consumers, get, acks, qos).

pub mod clustered;
pub mod consume;
pub mod declare;
pub mod link;
pub mod publish;
pub mod reply_to;

use std::collections::HashMap;
use std::sync::Arc;

use warren_amqp::reply::{AmqpError, COMMAND_INVALID, NOT_IMPLEMENTED};
use warren_amqp::{basic, channel, confirm, exchange, queue, tx, AMQPClass};

use crate::auth::Access;
use crate::broker::Broker;
use crate::connection::wire::Wire;
use crate::queue::Queue;
use crate::vhost::Vhost;
use link::ChannelLink;

/// What a channel needs to know about its connection.
pub struct Ctx<'a> {
    pub broker: &'a Arc<Broker>,
    pub vhost: &'a Arc<Vhost>,
    pub user: &'a str,
    pub connection_id: u64,
    pub wire: &'a Arc<Wire>,
    pub consumer_cancel_notify: bool,
    /// Set when this connection published into a queue in flow (see `Queue::in_flow`): the
    /// connection then pauses reading until the queue's consumers catch up.
    pub flow: &'a std::cell::RefCell<Option<Arc<Queue>>>,
    /// A metadata change a channel proposed, for the connection to submit to the cluster.
    pub pending_meta: &'a std::cell::RefCell<Option<clustered::PendingMeta>>,
    /// A `basic.get` or purge a channel passed to a queue's home node.
    pub pending_remote: &'a std::cell::RefCell<Option<clustered::PendingRemote>>,
}

impl Ctx<'_> {
    /// 403 unless the user has `access` on `resource` (`kind` is "queue" or "exchange").
    pub fn check(&self, access: Access, kind: &str, resource: &str) -> Result<(), AmqpError> {
        if self
            .broker
            .auth
            .check(self.user, &self.vhost.name, access, resource)
        {
            Ok(())
        } else {
            Err(AmqpError::access_refused(format!(
                "{} access to {kind} '{resource}' in vhost '{}' refused for user '{}'",
                match access {
                    Access::Configure => "configure",
                    Access::Write => "write",
                    Access::Read => "read",
                },
                self.vhost.name,
                self.user
            )))
        }
    }
}

pub struct Channel {
    pub id: u16,
    pub link: Arc<ChannelLink>,
    /// We sent `channel.close` and wait for `close-ok`; everything else is dropped.
    pub closing: bool,
    publish: publish::PublishState,
    /// Consumer tag → queue, for cancel and cleanup.
    consumers: HashMap<String, Arc<Queue>>,
    /// `basic.qos global=false`: the prefetch given to consumers created from now on.
    consumer_prefetch: u32,
    next_consumer_tag: u64,
    /// The last queue declared here; an empty queue name in later methods means this one.
    last_queue: Option<String>,
    /// The direct reply-to consumer on this channel: (token, consumer tag).
    reply_consumer: Option<(String, String)>,
    /// Acked deliveries not yet settled with their queues (see `flush_acks`).
    pending_acks: Vec<link::Unacked>,
}

impl Channel {
    pub fn new(id: u16, wire: Arc<Wire>) -> Self {
        Channel {
            id,
            link: ChannelLink::new(id, wire),
            closing: false,
            publish: publish::PublishState::default(),
            consumers: HashMap::new(),
            consumer_prefetch: 0,
            next_consumer_tag: 1,
            last_queue: None,
            reply_consumer: None,
            pending_acks: Vec::new(),
        }
    }

    fn reply(&self, ctx: &Ctx<'_>, m: AMQPClass) {
        ctx.wire.send(|out| out.method(self.id, &m));
    }

    /// Handles one method addressed to this (open) channel.
    pub fn handle_method(&mut self, ctx: &Ctx<'_>, method: AMQPClass) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.get_amqp_class_id(), method.get_amqp_method_id());
        if self.publish.expecting_content() {
            return Err(AmqpError::new(
                warren_amqp::reply::UNEXPECTED_FRAME,
                "expected content header for class 60, got non content header frame instead",
            )
            .on(class_id, method_id));
        }
        self.dispatch(ctx, method).map_err(|e| {
            if e.class_id == 0 {
                e.on(class_id, method_id)
            } else {
                e
            }
        })
    }

    fn dispatch(&mut self, ctx: &Ctx<'_>, method: AMQPClass) -> Result<(), AmqpError> {
        use AMQPClass as C;
        match method {
            C::Basic(basic::AMQPMethod::Publish(m)) => {
                let token = self.reply_consumer.as_ref().map(|(t, _)| t.clone());
                self.publish.start(ctx, m, token)
            }
            C::Basic(basic::AMQPMethod::Ack(m)) => {
                self.settle_or_buffer(ctx, m.delivery_tag, m.multiple, false, true)
            }
            C::Basic(basic::AMQPMethod::Nack(m)) => {
                self.settle_or_buffer(ctx, m.delivery_tag, m.multiple, m.requeue, false)
            }
            C::Basic(basic::AMQPMethod::Reject(m)) => {
                self.settle_or_buffer(ctx, m.delivery_tag, false, m.requeue, false)
            }
            C::Basic(basic::AMQPMethod::Consume(m)) => self.consume(ctx, m),
            C::Basic(basic::AMQPMethod::Cancel(m)) => self.cancel(ctx, m),
            C::Basic(basic::AMQPMethod::Get(m)) => self.get(ctx, m),
            C::Basic(basic::AMQPMethod::Qos(m)) => self.qos(ctx, m),
            C::Basic(basic::AMQPMethod::Recover(m)) => {
                self.recover(ctx, m.requeue)?;
                self.reply(
                    ctx,
                    C::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
                );
                Ok(())
            }
            C::Basic(basic::AMQPMethod::RecoverAsync(m)) => self.recover(ctx, m.requeue),
            C::Exchange(exchange::AMQPMethod::Declare(m)) => self.exchange_declare(ctx, m),
            C::Exchange(exchange::AMQPMethod::Delete(m)) => self.exchange_delete(ctx, m),
            C::Exchange(exchange::AMQPMethod::Bind(m)) => self.exchange_bind(ctx, m),
            C::Exchange(exchange::AMQPMethod::Unbind(m)) => self.exchange_unbind(ctx, m),
            C::Queue(queue::AMQPMethod::Declare(m)) => self.queue_declare(ctx, m),
            C::Queue(queue::AMQPMethod::Bind(m)) => self.queue_bind(ctx, m),
            C::Queue(queue::AMQPMethod::Unbind(m)) => self.queue_unbind(ctx, m),
            C::Queue(queue::AMQPMethod::Purge(m)) => self.queue_purge(ctx, m),
            C::Queue(queue::AMQPMethod::Delete(m)) => self.queue_delete(ctx, m),
            C::Confirm(confirm::AMQPMethod::Select(m)) => {
                self.publish.select_confirm()?;
                self.link.state().confirm = true;
                if !m.nowait {
                    self.reply(
                        ctx,
                        C::Confirm(confirm::AMQPMethod::SelectOk(confirm::SelectOk {})),
                    );
                }
                Ok(())
            }
            C::Tx(tx::AMQPMethod::Select(_)) => {
                self.publish.select_tx()?;
                self.link.state().transactional = true;
                self.reply(ctx, C::Tx(tx::AMQPMethod::SelectOk(tx::SelectOk {})));
                Ok(())
            }
            C::Tx(tx::AMQPMethod::Commit(_)) => {
                let acks = self.publish.commit(ctx, self.id)?;
                for (tag, multiple, requeue, ack) in acks {
                    self.settle(ctx, tag, multiple, requeue, ack)?;
                }
                self.reply(ctx, C::Tx(tx::AMQPMethod::CommitOk(tx::CommitOk {})));
                Ok(())
            }
            C::Tx(tx::AMQPMethod::Rollback(_)) => {
                self.publish.rollback()?;
                self.reply(ctx, C::Tx(tx::AMQPMethod::RollbackOk(tx::RollbackOk {})));
                Ok(())
            }
            C::Channel(channel::AMQPMethod::Flow(m)) => {
                self.link.state().flow = m.active;
                if m.active {
                    self.kick_consumed_queues();
                }
                self.reply(
                    ctx,
                    C::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: m.active,
                    })),
                );
                Ok(())
            }
            C::Channel(channel::AMQPMethod::FlowOk(_)) => Ok(()),
            C::Access(_) => Err(AmqpError::new(
                NOT_IMPLEMENTED,
                "access.request is not supported (removed in AMQP 0-9-1)",
            )),
            other => Err(AmqpError::new(
                COMMAND_INVALID,
                format!(
                    "method class {} id {} is not valid from a client on a channel",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ),
            )),
        }
    }

    /// Content header frame for this channel.
    pub fn handle_header(&mut self, ctx: &Ctx<'_>, payload: bytes::Bytes) -> Result<(), AmqpError> {
        self.publish.header(ctx, self.id, payload)
    }

    /// Content body frame for this channel.
    pub fn handle_body(&mut self, ctx: &Ctx<'_>, payload: bytes::Bytes) -> Result<(), AmqpError> {
        self.publish.body(ctx, self.id, payload)
    }

    /// Sends the publisher confirms whose messages are durable up to journal epoch `synced`
    /// (called after each batch of frames and whenever the journal advances).
    pub fn flush_confirms(&mut self, wire: &Wire, synced: u64) {
        self.publish.flush_confirms(self.id, wire, synced);
    }

    pub fn waiting_for_sync(&self, synced: u64) -> bool {
        self.publish.waiting_for_sync(synced)
    }

    /// Whether this channel has consumers (a connection that consumes is never paused for
    /// flow: pausing its reads would also hold back its acks).
    pub fn has_consumers(&self) -> bool {
        !self.consumers.is_empty() || self.reply_consumer.is_some()
    }

    fn kick_consumed_queues(&self) {
        let mut seen: Vec<*const Queue> = Vec::new();
        for q in self.consumers.values() {
            if !seen.contains(&Arc::as_ptr(q)) {
                seen.push(Arc::as_ptr(q));
                q.kick();
            }
        }
    }

    /// Tears the channel down (close, connection end, or error): consumers are removed,
    /// unacked messages requeued with `redelivered`, auto-delete queues deleted.
    pub fn shutdown(&mut self, ctx: &Ctx<'_>) {
        self.flush_acks(ctx.broker);
        if let Some((token, _)) = self.reply_consumer.take() {
            ctx.broker.unregister_reply_target(&token);
        }
        let unacked = self.link.close();
        consume::requeue_all(unacked);
        for (tag, q) in std::mem::take(&mut self.consumers) {
            if q.remove_consumer(&self.link, &tag) {
                declare::delete_queue_now(ctx, &q);
            }
        }
    }
}
