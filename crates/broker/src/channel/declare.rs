//! Declaring, deleting, binding and purging exchanges and queues on a channel.
//!
//! Permission checks follow RabbitMQ: declare/delete need *configure* on the resource,
//! binding needs *write* on the destination and *read* on the source, purge needs *read*.

use std::sync::Arc;

use rand::Rng;
use warren_amqp::reply::AmqpError;
use warren_amqp::{exchange, queue, AMQPClass, ShortString};

use super::clustered::{binding_op, Then};
use super::{Channel, Ctx};
use crate::auth::Access;
use crate::json;
use crate::metadata::{MetaOp, MetaReply};
use crate::queue::Queue;
use crate::vhost::{check_exclusive, Binding, ExchangeSpec, QueueSpec};

impl Channel {
    pub(super) fn exchange_declare(
        &mut self,
        ctx: &Ctx<'_>,
        m: exchange::Declare,
    ) -> Result<(), AmqpError> {
        if !m.passive {
            ctx.check(Access::Configure, "exchange", m.exchange.as_str())?;
        }
        if m.exchange.as_str().is_empty() && !m.passive {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if ctx.broker.clustered() && !m.passive && ctx.vhost.exchange(m.exchange.as_str()).is_none()
        {
            let op = MetaOp::DeclareExchange {
                vhost: ctx.vhost.name.clone(),
                name: m.exchange.to_string(),
                kind: m.kind.to_string(),
                durable: m.durable,
                auto_delete: m.auto_delete,
                internal: m.internal,
                arguments: json::table(&m.arguments),
            };
            self.defer(
                ctx,
                op,
                Then::ExchangeDeclared { nowait: m.nowait },
                (40, 10),
            );
            return Ok(());
        }
        ctx.vhost.declare_exchange(ExchangeSpec {
            name: m.exchange.as_str(),
            kind: m.kind.as_str(),
            passive: m.passive,
            durable: m.durable,
            auto_delete: m.auto_delete,
            internal: m.internal,
            arguments: m.arguments,
        })?;
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Exchange(exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {})),
            );
        }
        Ok(())
    }

    pub(super) fn exchange_delete(
        &mut self,
        ctx: &Ctx<'_>,
        m: exchange::Delete,
    ) -> Result<(), AmqpError> {
        ctx.check(Access::Configure, "exchange", m.exchange.as_str())?;
        if ctx.broker.clustered() {
            let op = MetaOp::DeleteExchange {
                vhost: ctx.vhost.name.clone(),
                name: m.exchange.to_string(),
                if_unused: m.if_unused,
            };
            self.defer(
                ctx,
                op,
                Then::ExchangeDeleted { nowait: m.nowait },
                (40, 20),
            );
            return Ok(());
        }
        ctx.vhost
            .delete_exchange(m.exchange.as_str(), m.if_unused)?;
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Exchange(exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {})),
            );
        }
        Ok(())
    }

    pub(super) fn exchange_bind(
        &mut self,
        ctx: &Ctx<'_>,
        m: exchange::Bind,
    ) -> Result<(), AmqpError> {
        let binding = Binding {
            source: m.source.to_string(),
            destination: m.destination.to_string(),
            destination_is_queue: false,
            routing_key: m.routing_key.to_string(),
            arguments: m.arguments,
        };
        let then = Then::ExchangeBound {
            nowait: m.nowait,
            bind: true,
        };
        self.change_binding(ctx, binding, then, (40, 30))
    }

    pub(super) fn exchange_unbind(
        &mut self,
        ctx: &Ctx<'_>,
        m: exchange::Unbind,
    ) -> Result<(), AmqpError> {
        let binding = Binding {
            source: m.source.to_string(),
            destination: m.destination.to_string(),
            destination_is_queue: false,
            routing_key: m.routing_key.to_string(),
            arguments: m.arguments,
        };
        let then = Then::ExchangeBound {
            nowait: m.nowait,
            bind: false,
        };
        self.change_binding(ctx, binding, then, (40, 40))
    }

    /// An empty queue name means the last queue declared on this channel (AMQP 0-9-1 §1.7).
    pub(super) fn queue_name(&self, name: &ShortString) -> Result<String, AmqpError> {
        if !name.as_str().is_empty() {
            return Ok(name.to_string());
        }
        self.last_queue.clone().ok_or_else(|| {
            AmqpError::new(
                warren_amqp::reply::NOT_FOUND,
                "no previously declared queue",
            )
        })
    }

    /// Looks a queue up for an operation by this connection (404, 405).
    pub(super) fn find_queue(&self, ctx: &Ctx<'_>, name: &str) -> Result<Arc<Queue>, AmqpError> {
        let q = ctx
            .vhost
            .queue(name)
            .ok_or_else(|| AmqpError::not_found("queue", name, &ctx.vhost.name))?;
        check_exclusive(&q, ctx.connection_id, &ctx.vhost.name)?;
        if let Some(home) = &q.home() {
            if !ctx.broker.metadata().is_some_and(|m| m.node_is_up(home)) {
                return Err(AmqpError::new(
                    warren_amqp::reply::NOT_FOUND,
                    format!(
                        "home node '{home}' of {}queue '{name}' in vhost '{}' is down or inaccessible",
                        if q.durable { "durable " } else { "" },
                        ctx.vhost.name
                    ),
                ));
            }
        }
        Ok(q)
    }

    pub(super) fn queue_declare(
        &mut self,
        ctx: &Ctx<'_>,
        m: queue::Declare,
    ) -> Result<(), AmqpError> {
        let server_named = m.queue.as_str().is_empty();
        let name = if server_named {
            generated_queue_name()
        } else {
            m.queue.to_string()
        };
        if !m.passive {
            ctx.check(Access::Configure, "queue", &name)?;
        }
        if ctx.broker.clustered() && !m.passive && ctx.vhost.queue(&name).is_none() {
            let arguments = json::table(&m.arguments);
            let home = crate::replication::placement::locate(
                ctx.broker,
                &ctx.vhost.name,
                &name,
                &arguments,
                m.exclusive,
            );
            let op = MetaOp::DeclareQueue {
                vhost: ctx.vhost.name.clone(),
                name: name.clone(),
                durable: m.durable,
                auto_delete: m.auto_delete,
                exclusive_owner: m.exclusive.then_some(ctx.connection_id),
                arguments,
                home,
                server_named,
            };
            let then = Then::QueueDeclared {
                name,
                nowait: m.nowait,
            };
            self.defer(ctx, op, then, (50, 10));
            return Ok(());
        }
        let q = ctx.vhost.declare_queue(QueueSpec {
            name: &name,
            passive: m.passive,
            durable: m.durable,
            exclusive_owner: m.exclusive.then_some(ctx.connection_id),
            auto_delete: m.auto_delete,
            arguments: m.arguments,
            connection_id: ctx.connection_id,
            server_named,
            home: None,
        })?;
        self.last_queue = Some(name.clone());
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Queue(queue::AMQPMethod::DeclareOk(queue::DeclareOk {
                    queue: ShortString::from(name),
                    message_count: q.message_count() as u32,
                    consumer_count: q.consumer_count() as u32,
                })),
            );
        }
        Ok(())
    }

    pub(super) fn queue_bind(&mut self, ctx: &Ctx<'_>, m: queue::Bind) -> Result<(), AmqpError> {
        let binding = Binding {
            source: m.exchange.to_string(),
            destination: self.queue_name(&m.queue)?,
            destination_is_queue: true,
            routing_key: m.routing_key.to_string(),
            arguments: m.arguments,
        };
        let then = Then::QueueBound {
            nowait: m.nowait,
            bind: true,
        };
        self.change_binding(ctx, binding, then, (50, 20))
    }

    pub(super) fn queue_unbind(
        &mut self,
        ctx: &Ctx<'_>,
        m: queue::Unbind,
    ) -> Result<(), AmqpError> {
        let binding = Binding {
            source: m.exchange.to_string(),
            destination: self.queue_name(&m.queue)?,
            destination_is_queue: true,
            routing_key: m.routing_key.to_string(),
            arguments: m.arguments,
        };
        let then = Then::QueueBound {
            nowait: false,
            bind: false,
        };
        self.change_binding(ctx, binding, then, (50, 50))
    }

    /// What queue.bind/unbind and exchange.bind/unbind share: *write* on the destination,
    /// *read* on the source, the exclusive-queue lock (405, for binds and unbinds alike), then
    /// the change: here, or proposed to the cluster. The `*-ok` is `then`'s either way.
    fn change_binding(
        &mut self,
        ctx: &Ctx<'_>,
        binding: Binding,
        then: Then,
        method: (u16, u16),
    ) -> Result<(), AmqpError> {
        let bind = matches!(
            then,
            Then::ExchangeBound { bind: true, .. } | Then::QueueBound { bind: true, .. }
        );
        let kind = if binding.destination_is_queue {
            "queue"
        } else {
            "exchange"
        };
        ctx.check(Access::Write, kind, &binding.destination)?;
        ctx.check(Access::Read, "exchange", &binding.source)?;
        if binding.destination_is_queue {
            if let Some(q) = ctx.vhost.queue(&binding.destination) {
                check_exclusive(&q, ctx.connection_id, &ctx.vhost.name)?;
            }
        }
        if ctx.broker.clustered() {
            let op = binding_op(&ctx.vhost.name, binding, bind);
            self.defer(ctx, op, then, method);
            return Ok(());
        }
        if bind {
            ctx.vhost.bind(binding)?;
        } else {
            ctx.vhost.unbind(&binding)?;
        }
        self.complete_meta(ctx, then, Ok(MetaReply::default()))
    }

    pub(super) fn queue_purge(&mut self, ctx: &Ctx<'_>, m: queue::Purge) -> Result<(), AmqpError> {
        let name = self.queue_name(&m.queue)?;
        ctx.check(Access::Read, "queue", &name)?;
        let q = self.find_queue(ctx, &name)?;
        if q.is_standin() {
            let request = crate::queue::remote::Request::Purge;
            self.defer_remote(ctx, q, request, m.nowait, (50, 30));
            return Ok(());
        }
        let n = q.purge();
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Queue(queue::AMQPMethod::PurgeOk(queue::PurgeOk {
                    message_count: n,
                })),
            );
        }
        Ok(())
    }

    pub(super) fn queue_delete(
        &mut self,
        ctx: &Ctx<'_>,
        m: queue::Delete,
    ) -> Result<(), AmqpError> {
        let name = self.queue_name(&m.queue)?;
        ctx.check(Access::Configure, "queue", &name)?;
        let mut count = 0;
        if let Some(q) = ctx.vhost.queue(&name) {
            check_exclusive(&q, ctx.connection_id, &ctx.vhost.name)?;
            if m.if_unused && q.consumer_count() > 0 {
                return Err(AmqpError::precondition(format!(
                    "queue '{name}' in vhost '{}' in use",
                    ctx.vhost.name
                )));
            }
            if m.if_empty && q.message_count() > 0 {
                return Err(AmqpError::precondition(format!(
                    "queue '{name}' in vhost '{}' not empty",
                    ctx.vhost.name
                )));
            }
            if ctx.broker.clustered() {
                let op = MetaOp::DeleteQueue {
                    vhost: ctx.vhost.name.clone(),
                    name,
                };
                let then = Then::QueueDeleted {
                    nowait: m.nowait,
                    message_count: q.message_count() as u32,
                };
                self.defer(ctx, op, then, (50, 40));
                return Ok(());
            }
            count = delete_queue_now(ctx, &q);
        }
        if !m.nowait {
            self.reply(
                ctx,
                AMQPClass::Queue(queue::AMQPMethod::DeleteOk(queue::DeleteOk {
                    message_count: count,
                })),
            );
        }
        Ok(())
    }
}

/// Deletes a queue on behalf of a channel (delete, auto-delete, exclusive owner gone). On a
/// clustered node the deletion is proposed in the background (nothing waits for it).
pub fn delete_queue_now(ctx: &Ctx<'_>, q: &Arc<Queue>) -> u32 {
    if ctx.broker.clustered() {
        let count = q.message_count() as u32;
        let (broker, op) = (
            ctx.broker.clone(),
            MetaOp::DeleteQueue {
                vhost: ctx.vhost.name.clone(),
                name: q.name.clone(),
            },
        );
        tokio::spawn(async move {
            if let Err(e) = broker.submit(op).await {
                tracing::warn!("could not delete queue: {e}");
            }
        });
        return count;
    }
    ctx.vhost.delete_queue(q)
}

/// `amq.gen-` followed by 22 URL-safe characters, as RabbitMQ names server-named queues.
fn generated_queue_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    let suffix: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("amq.gen-{suffix}")
}
