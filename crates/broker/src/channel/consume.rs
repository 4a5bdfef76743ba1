//! Consuming on a channel: consumers, `basic.get`, acknowledgements, `basic.qos` and
//! `basic.recover`.
//!
//! Prefetch follows RabbitMQ rather than the spec: `global=false` limits each consumer
//! created afterwards, `global=true` limits the channel as a whole.

use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use rand::Rng;
use warren_amqp::reply::{AmqpError, NOT_ALLOWED, NOT_IMPLEMENTED};
use warren_amqp::{basic, AMQPClass, ShortString};

use super::link::{Consumer, Unacked};
use super::{declare, reply_to, Channel, Ctx};
use crate::args;
use crate::auth::Access;
use crate::queue::{ConsumeError, Queue};

impl Channel {
    pub(super) fn consume(&mut self, ctx: &Ctx<'_>, m: basic::Consume) -> Result<(), AmqpError> {
        if m.queue.as_str() == reply_to::PSEUDO_QUEUE {
            return self.consume_reply_to(ctx, m);
        }
        let name = self.queue_name(&m.queue)?;
        ctx.check(Access::Read, "queue", &name)?;
        let q = self.find_queue(ctx, &name)?;
        let tag = if m.consumer_tag.as_str().is_empty() {
            let mut rng = rand::rng();
            format!(
                "amq.ctag-{:016x}{:06x}",
                rng.random::<u64>(),
                self.next_consumer_tag
            )
        } else {
            m.consumer_tag.to_string()
        };
        self.next_consumer_tag += 1;
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::new(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let priority = args::get(&m.arguments, "x-priority")
            .and_then(args::as_i64)
            .unwrap_or(0);
        let consumer = Arc::new(Consumer {
            tag: tag.clone(),
            link: self.link.clone(),
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority,
            prefetch: self.consumer_prefetch,
            unacked: AtomicU32::new(0),
            notify_cancel: ctx.consumer_cancel_notify,
            seq: q.next_consumer_seq(),
            cancel_on_failover: args::get(&m.arguments, "x-cancel-on-ha-failover")
                .is_some_and(|v| matches!(v, warren_amqp::AMQPValue::Boolean(true))),
        });
        let id = self.id;
        let nowait = m.nowait;
        // consume-ok must reach the client before the first delivery, so it is written from
        // inside the queue's lock, just before the queue starts dispatching to the consumer.
        q.add_consumer(consumer, || {
            if !nowait {
                let ok = AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: ShortString::from(tag.clone()),
                }));
                ctx.wire.send(|out| out.method(id, &ok));
            }
        })
        .map_err(|ConsumeError::ExclusiveUse| {
            AmqpError::access_refused(format!(
                "queue '{name}' in vhost '{}' in exclusive use",
                ctx.vhost.name
            ))
        })?;
        self.consumers.insert(tag, q);
        Ok(())
    }

    /// `basic.consume` on `amq.rabbitmq.reply-to` (direct reply-to).
    fn consume_reply_to(&mut self, ctx: &Ctx<'_>, m: basic::Consume) -> Result<(), AmqpError> {
        if !m.no_ack {
            return Err(AmqpError::precondition("reply consumer cannot acknowledge"));
        }
        if self.reply_consumer.is_some() {
            return Err(AmqpError::precondition("reply consumer already set"));
        }
        let tag = if m.consumer_tag.as_str().is_empty() {
            format!("amq.ctag-{}", reply_to::new_token())
        } else {
            m.consumer_tag.to_string()
        };
        let token = reply_to::new_token();
        ctx.broker.register_reply_target(
            &token,
            reply_to::ReplyTarget {
                link: Arc::downgrade(&self.link),
                consumer_tag: tag.clone(),
            },
        );
        self.reply_consumer = Some((token, tag.clone()));
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: ShortString::from(tag),
                })),
            );
        }
        Ok(())
    }

    pub(super) fn cancel(&mut self, ctx: &Ctx<'_>, m: basic::Cancel) -> Result<(), AmqpError> {
        let tag = m.consumer_tag.to_string();
        if self.reply_consumer.as_ref().is_some_and(|(_, t)| *t == tag) {
            if let Some((token, _)) = self.reply_consumer.take() {
                ctx.broker.unregister_reply_target(&token);
            }
        }
        if let Some(q) = self.consumers.remove(&tag) {
            if q.remove_consumer(&self.link, &tag) {
                declare::delete_queue_now(ctx, &q);
            }
        }
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                    consumer_tag: m.consumer_tag,
                })),
            );
        }
        Ok(())
    }

    pub(super) fn get(&mut self, ctx: &Ctx<'_>, m: basic::Get) -> Result<(), AmqpError> {
        let name = self.queue_name(&m.queue)?;
        ctx.check(Access::Read, "queue", &name)?;
        let q = self.find_queue(ctx, &name)?;
        if q.is_standin() {
            let method = (60, 70);
            self.defer_remote(ctx, q, crate::queue::remote::Request::Get, m.no_ack, method);
            return Ok(());
        }
        self.get_from(ctx, &q, m.no_ack);
        Ok(())
    }

    /// `get-ok` with the queue's head, or `get-empty`.
    pub(super) fn get_from(&mut self, ctx: &Ctx<'_>, q: &Arc<Queue>, no_ack: bool) {
        match q.get(no_ack) {
            Some((entry, left)) => self.link.record_get(q, &entry, no_ack, left),
            None => self.reply(
                ctx,
                AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            ),
        }
    }

    pub(super) fn qos(&mut self, ctx: &Ctx<'_>, m: basic::Qos) -> Result<(), AmqpError> {
        let count = m.prefetch_count as u32;
        if m.global {
            self.link.state().global_prefetch = count;
        } else {
            self.consumer_prefetch = count;
            self.link.state().prefetch_count = count;
        }
        self.reply(
            ctx,
            AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
        );
        self.kick_consumed_queues();
        Ok(())
    }

    pub(super) fn recover(&mut self, _ctx: &Ctx<'_>, requeue: bool) -> Result<(), AmqpError> {
        if !requeue {
            return Err(AmqpError::new(NOT_IMPLEMENTED, "requeue=false"));
        }
        let all = self.link.take_unacked(0, true).unwrap_or_default();
        requeue_all(all);
        Ok(())
    }

    pub(super) fn settle_or_buffer(
        &mut self,
        ctx: &Ctx<'_>,
        tag: u64,
        multiple: bool,
        requeue: bool,
        ack: bool,
    ) -> Result<(), AmqpError> {
        if self.publish.in_tx() {
            self.publish.buffer_settle(tag, multiple, requeue, ack);
            return Ok(());
        }
        self.settle(ctx, tag, multiple, requeue, ack)
    }

    /// Applies an ack, or a nack/reject with or without requeue.
    pub(super) fn settle(
        &mut self,
        _ctx: &Ctx<'_>,
        tag: u64,
        multiple: bool,
        requeue: bool,
        ack: bool,
    ) -> Result<(), AmqpError> {
        let taken = self
            .link
            .take_unacked(tag, multiple)
            .ok_or_else(|| AmqpError::precondition(format!("unknown delivery tag {tag}")))?;
        if !ack && requeue {
            requeue_all(taken);
        } else if ack {
            // Acks are applied once per read batch (`flush_acks`): a consumer acking every
            // message would otherwise take the queue's lock once per ack, and a publisher
            // holding that lock in a tight loop starves it.
            self.pending_acks.extend(taken);
        } else {
            for (q, entries) in group_by_queue(taken) {
                q.reject(entries);
            }
        }
        Ok(())
    }

    /// Applies the acks gathered since the last call, one queue lock per queue.
    pub fn flush_acks(&mut self, broker: &crate::broker::Broker) {
        if self.pending_acks.is_empty() {
            return;
        }
        broker.stats.acknowledged.fetch_add(
            self.pending_acks.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        for (q, entries) in group_by_queue(std::mem::take(&mut self.pending_acks)) {
            q.settle(entries);
        }
        if self.link.state().global_prefetch != 0 {
            self.kick_consumed_queues();
        }
    }
}

/// Consecutive deliveries from one queue are grouped so each queue is locked once.
fn group_by_queue(unacked: Vec<Unacked>) -> Vec<(Arc<Queue>, Vec<crate::queue::Entry>)> {
    let mut groups: Vec<(Arc<Queue>, Vec<crate::queue::Entry>)> = Vec::new();
    for u in unacked {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &u.queue)) {
            Some((_, v)) => v.push(u.entry),
            None => groups.push((u.queue, vec![u.entry])),
        }
    }
    groups
}

/// Returns deliveries to their queues, marked redelivered.
pub fn requeue_all(unacked: Vec<Unacked>) {
    for (q, entries) in group_by_queue(unacked) {
        q.requeue(entries);
    }
}
