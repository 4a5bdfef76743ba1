//! A virtual host: its exchanges, queues and bindings, and routing across them.
//!
//! The vhost is the one place that keeps bindings consistent with the exchanges' routing
//! snapshots: every change to a binding rebuilds the snapshot of its source exchange.
//! Deleting a queue or exchange removes every binding that mentions it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use warren_amqp::reply::{AmqpError, ACCESS_REFUSED, COMMAND_INVALID};
use warren_amqp::FieldTable;

use crate::args;
use crate::broker::Broker;
use crate::exchange::{Destination, Exchange, ExchangeKind, Route};
use crate::policy::{self, Policy};
use crate::queue::{settings, Queue, QueueAttrs};

/// A binding as declared (names, not handles), kept for listing and for rebuilding routes.
#[derive(Clone, Debug)]
pub struct Binding {
    pub source: String,
    pub destination: String,
    pub destination_is_queue: bool,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Binding {
    fn same(&self, other: &Binding) -> bool {
        self.source == other.source
            && self.destination == other.destination
            && self.destination_is_queue == other.destination_is_queue
            && self.routing_key == other.routing_key
            && self.arguments == other.arguments
    }
}

#[derive(Default)]
pub struct VhostState {
    pub exchanges: HashMap<String, Arc<Exchange>>,
    pub queues: HashMap<String, Arc<Queue>>,
    pub bindings: Vec<Binding>,
}

/// What an exchange declaration asks for.
pub struct ExchangeSpec<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// What a queue declaration asks for.
pub struct QueueSpec<'a> {
    pub name: &'a str,
    pub passive: bool,
    pub durable: bool,
    /// The declaring connection, for exclusive queues.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// The connection asking (exclusive queues of others are locked, 405).
    pub connection_id: u64,
    /// The broker generated the name (`amq.gen-...`), so the reserved prefix is allowed.
    pub server_named: bool,
    /// In a cluster, the node holding the queue's messages when it is not this one.
    pub home: Option<String>,
}

/// Queue arguments RabbitMQ compares on redeclaration.
const QUEUE_EQUIVALENCE_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-type",
    "x-single-active-consumer",
];

pub struct Vhost {
    pub name: String,
    state: RwLock<VhostState>,
    policies: RwLock<Vec<Policy>>,
    /// The broker, told to persist definitions after durable metadata changes.
    broker: Weak<Broker>,
}

impl Vhost {
    /// A vhost with the default exchange and the standard `amq.*` exchanges.
    pub fn new(name: &str, broker: Weak<Broker>) -> Arc<Self> {
        let v = Vhost {
            name: name.to_string(),
            state: RwLock::new(VhostState::default()),
            policies: RwLock::new(Vec::new()),
            broker,
        };
        {
            let mut st = v.write();
            for (n, k) in [
                ("", ExchangeKind::Direct),
                ("amq.direct", ExchangeKind::Direct),
                ("amq.fanout", ExchangeKind::Fanout),
                ("amq.topic", ExchangeKind::Topic),
                ("amq.headers", ExchangeKind::Headers),
                ("amq.match", ExchangeKind::Headers),
            ] {
                st.exchanges.insert(
                    n.to_string(),
                    Arc::new(Exchange::new(
                        n,
                        k,
                        true,
                        false,
                        false,
                        FieldTable::default(),
                    )),
                );
            }
        }
        Arc::new(v)
    }

    pub fn broker(&self) -> Option<Arc<Broker>> {
        self.broker.upgrade()
    }

    pub fn read(&self) -> RwLockReadGuard<'_, VhostState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, VhostState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists definitions (durable metadata changed); a no-op without durable storage.
    fn persist(&self) {
        if let Some(b) = self.broker.upgrade() {
            b.persist_definitions();
        }
    }

    pub fn declare_exchange(
        self: &Arc<Self>,
        spec: ExchangeSpec<'_>,
    ) -> Result<Arc<Exchange>, AmqpError> {
        // Only a new durable exchange changes what is on disk (a redeclaration does not).
        let durable_change =
            !spec.passive && spec.durable && !self.read().exchanges.contains_key(spec.name);
        let r = self.declare_exchange_locked(spec);
        if r.is_ok() && durable_change {
            self.persist();
        }
        r
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        self.delete_exchange_locked(name, if_unused)?;
        self.persist();
        Ok(())
    }

    /// Declares (or checks) a queue.
    pub fn declare_queue(self: &Arc<Self>, spec: QueueSpec<'_>) -> Result<Arc<Queue>, AmqpError> {
        // Only a new durable queue changes what is on disk (a redeclaration does not).
        let durable_change = !spec.passive
            && spec.durable
            && spec.exclusive_owner.is_none()
            && !self.read().queues.contains_key(spec.name);
        let q = self.declare_queue_locked(spec)?;
        if durable_change {
            self.persist();
        }
        Ok(q)
    }

    pub fn bind(&self, binding: Binding) -> Result<(), AmqpError> {
        self.bind_locked(binding)?;
        self.persist();
        Ok(())
    }

    pub fn unbind(&self, binding: &Binding) -> Result<(), AmqpError> {
        self.unbind_locked(binding)?;
        self.persist();
        Ok(())
    }

    /// Adds or replaces a policy and re-applies policies to every queue and exchange.
    /// Returns true when the policy is new.
    pub fn set_policy(&self, p: Policy) -> bool {
        let created = self.set_policy_locked(p);
        self.persist();
        created
    }

    pub fn clear_policy(&self, name: &str) -> bool {
        let removed = self.clear_policy_locked(name);
        if removed {
            self.persist();
        }
        removed
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.read().exchanges.get(name).cloned()
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.read().queues.get(name).cloned()
    }

    fn not_found(&self, kind: &str, name: &str) -> AmqpError {
        AmqpError::not_found(kind, name, &self.name)
    }

    fn declare_exchange_locked(
        self: &Arc<Self>,
        spec: ExchangeSpec<'_>,
    ) -> Result<Arc<Exchange>, AmqpError> {
        let mut st = self.write();
        if let Some(x) = st.exchanges.get(spec.name) {
            if spec.passive {
                return Ok(x.clone());
            }
            let check = |arg: &str, rec: String, cur: String| {
                if rec == cur {
                    Ok(())
                } else {
                    Err(AmqpError::precondition(format!(
                        "inequivalent arg '{arg}' for exchange '{}' in vhost '{}': received '{rec}' but current is '{cur}'",
                        spec.name, self.name
                    )))
                }
            };
            check("type", spec.kind.to_string(), x.type_name().to_string())?;
            check("durable", spec.durable.to_string(), x.durable.to_string())?;
            check(
                "auto_delete",
                spec.auto_delete.to_string(),
                x.auto_delete.to_string(),
            )?;
            check(
                "internal",
                spec.internal.to_string(),
                x.internal.to_string(),
            )?;
            args::check_equivalent(
                &["alternate-exchange"],
                &x.arguments,
                &spec.arguments,
                "exchange",
                spec.name,
                &self.name,
            )
            .map_err(AmqpError::precondition)?;
            return Ok(x.clone());
        }
        if spec.passive {
            return Err(self.not_found("exchange", spec.name));
        }
        let delayed = spec.kind == "x-delayed-message";
        let kind = if delayed {
            args::get(&spec.arguments, "x-delayed-type")
                .and_then(args::as_str)
                .and_then(|t| ExchangeKind::parse(&t))
                .ok_or_else(|| {
                    AmqpError::precondition(
                        "Invalid argument, 'x-delayed-type' must be an existing exchange type",
                    )
                })?
        } else {
            ExchangeKind::parse(spec.kind).ok_or_else(|| {
                AmqpError::new(
                    COMMAND_INVALID,
                    format!("invalid exchange type '{}'", spec.kind),
                )
            })?
        };
        if spec.name.starts_with("amq.") {
            return Err(AmqpError::new(
                ACCESS_REFUSED,
                format!(
                    "exchange name '{}' contains reserved prefix 'amq.*'",
                    spec.name
                ),
            ));
        }
        let mut x = Exchange::new(
            spec.name,
            kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            spec.arguments,
        );
        if delayed {
            let journal = spec
                .durable
                .then(|| self.broker.upgrade().and_then(|b| b.journal().cloned()))
                .flatten()
                .map(|j| (j, delayed_key(&self.name, spec.name)));
            x = x.with_delay(crate::exchange::delayed::DelayedStore::new(journal));
        }
        let x = Arc::new(x);
        if delayed && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(crate::exchange::delayed::run(
                Arc::downgrade(&x),
                Arc::downgrade(self),
            ));
        }
        let ae = self.policy_for(spec.name, false).and_then(|(_, d)| {
            d.get("alternate-exchange")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        });
        x.set_policy_alternate_exchange(ae);
        st.exchanges.insert(spec.name.to_string(), x.clone());
        Ok(x)
    }

    fn delete_exchange_locked(&self, name: &str, if_unused: bool) -> Result<(), AmqpError> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "operation not permitted on the default exchange or built-in exchange '{name}'"
            )));
        }
        let mut st = self.write();
        if !st.exchanges.contains_key(name) {
            return Ok(());
        }
        if if_unused && st.bindings.iter().any(|b| b.source == name) {
            return Err(AmqpError::precondition(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange(&mut st, name);
        Ok(())
    }

    fn remove_exchange(&self, st: &mut VhostState, name: &str) {
        if let Some(store) = st.exchanges.remove(name).and_then(|x| x.delayed.clone()) {
            store.drop_all();
        }
        let touched = remove_bindings(st, |b| {
            b.source == name || (!b.destination_is_queue && b.destination == name)
        });
        self.rebuild(st, touched);
    }

    /// Declares (or checks) a queue.
    fn declare_queue_locked(
        self: &Arc<Self>,
        spec: QueueSpec<'_>,
    ) -> Result<Arc<Queue>, AmqpError> {
        let QueueSpec {
            name,
            passive,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            connection_id,
            server_named,
            home,
        } = spec;
        let mut st = self.write();
        if let Some(q) = st.queues.get(name) {
            check_exclusive(q, connection_id, &self.name)?;
            q.touch();
            if passive {
                return Ok(q.clone());
            }
            let check = |arg: &str, rec: bool, cur: bool| {
                if rec == cur {
                    Ok(())
                } else {
                    Err(AmqpError::precondition(format!(
                        "inequivalent arg '{arg}' for queue '{name}' in vhost '{}': received '{rec}' but current is '{cur}'",
                        self.name
                    )))
                }
            };
            check("durable", durable, q.durable)?;
            check(
                "exclusive",
                exclusive_owner.is_some(),
                q.exclusive_owner.is_some(),
            )?;
            check("auto_delete", auto_delete, q.auto_delete)?;
            args::check_equivalent(
                QUEUE_EQUIVALENCE_ARGS,
                &q.arguments,
                &arguments,
                "queue",
                name,
                &self.name,
            )
            .map_err(AmqpError::precondition)?;
            return Ok(q.clone());
        }
        if passive {
            return Err(self.not_found("queue", name));
        }
        if name.starts_with("amq.") && !server_named {
            return Err(AmqpError::access_refused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        if let Some(t) = args::get(&arguments, "x-queue-type").and_then(args::as_str) {
            // A quorum queue is served by the mirrored-queue replication with every member
            // in sync (`replication::placement`); RabbitMQ's rules on its properties apply.
            if t == "quorum" {
                let refuse = |what: &str| {
                    Err(AmqpError::precondition(format!(
                        "invalid property '{what}' for queue '{name}' in vhost '{}'",
                        self.name
                    )))
                };
                if !durable {
                    return refuse("non-durable");
                }
                if exclusive_owner.is_some() {
                    return refuse("exclusive");
                }
                if auto_delete {
                    return refuse("auto-delete");
                }
            } else if t != "classic" {
                return Err(AmqpError::precondition(format!(
                    "invalid arg 'x-queue-type' for queue '{name}' in vhost '{}': queue type '{t}' is not supported by this broker yet",
                    self.name
                )));
            }
        }
        if let Err((key, why)) = settings::validate_arguments(&arguments) {
            return Err(AmqpError::precondition(format!(
                "invalid arg '{key}' for queue '{name}' in vhost '{}': {why}",
                self.name
            )));
        }
        let policy = self.policy_for(name, true);
        // A stand-in's journal keeps its copy when it is a mirror.
        let journal = (durable && exclusive_owner.is_none())
            .then(|| self.broker.upgrade().and_then(|b| b.journal().cloned()))
            .flatten();
        let q = Queue::new(
            name,
            self,
            QueueAttrs {
                durable,
                exclusive_owner,
                auto_delete,
                arguments,
                home,
            },
            policy,
            journal,
        );
        st.queues.insert(name.to_string(), q.clone());
        // Every queue is bound to the default exchange by its name; that binding is implicit
        // (routing looks the queue up directly) and is listed but never stored.
        Ok(q)
    }

    /// Deletes a queue: removes it and its bindings, and tells its consumers (`basic.cancel`,
    /// for clients that announced `consumer_cancel_notify`). Returns the number of ready
    /// messages it held.
    pub fn delete_queue(&self, q: &Arc<Queue>) -> u32 {
        let count = self.delete_queue_locked(q);
        if q.durable && q.exclusive_owner.is_none() {
            self.persist();
        }
        count
    }

    fn delete_queue_locked(&self, q: &Arc<Queue>) -> u32 {
        let mut st = self.write();
        if st
            .queues
            .get(&q.name)
            .is_some_and(|have| Arc::ptr_eq(have, q))
        {
            st.queues.remove(&q.name);
            let touched = remove_bindings(&mut st, |b| {
                b.destination_is_queue && b.destination == q.name
            });
            self.rebuild(&mut st, touched);
        }
        drop(st);
        let (consumers, count) = q.delete();
        for c in consumers {
            c.notify_cancelled();
        }
        count
    }

    /// The policy (name and definition) that applies to an object now.
    pub fn policy_for(&self, name: &str, is_queue: bool) -> Option<(String, serde_json::Value)> {
        let policies = self.policies.read().unwrap_or_else(|e| e.into_inner());
        policy::select(&policies, name, is_queue).map(|p| (p.name.clone(), p.definition.clone()))
    }

    pub fn policies(&self) -> Vec<Policy> {
        self.policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds or replaces a policy and re-applies policies to every queue and exchange.
    /// Returns true when the policy is new.
    fn set_policy_locked(&self, p: Policy) -> bool {
        let created = {
            let mut ps = self.policies.write().unwrap_or_else(|e| e.into_inner());
            let created = !ps.iter().any(|x| x.name == p.name);
            ps.retain(|x| x.name != p.name);
            ps.push(p);
            created
        };
        self.reapply_policies();
        created
    }

    fn clear_policy_locked(&self, name: &str) -> bool {
        let removed = {
            let mut ps = self.policies.write().unwrap_or_else(|e| e.into_inner());
            let before = ps.len();
            ps.retain(|x| x.name != name);
            ps.len() != before
        };
        if removed {
            self.reapply_policies();
        }
        removed
    }

    fn reapply_policies(&self) {
        let (queues, exchanges): (Vec<Arc<Queue>>, Vec<Arc<Exchange>>) = {
            let st = self.read();
            (
                st.queues.values().cloned().collect(),
                st.exchanges.values().cloned().collect(),
            )
        };
        for q in queues {
            q.apply_policy(self.policy_for(&q.name, true));
        }
        for x in exchanges {
            let ae = self.policy_for(&x.name, false).and_then(|(_, d)| {
                d.get("alternate-exchange")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            });
            x.set_policy_alternate_exchange(ae);
        }
    }

    fn bind_locked(&self, binding: Binding) -> Result<(), AmqpError> {
        let mut st = self.write();
        if binding.source.is_empty()
            || (!binding.destination_is_queue && binding.destination.is_empty())
        {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if !st.exchanges.contains_key(&binding.source) {
            return Err(self.not_found("exchange", &binding.source));
        }
        if binding.destination_is_queue {
            if !st.queues.contains_key(&binding.destination) {
                return Err(self.not_found("queue", &binding.destination));
            }
        } else if !st.exchanges.contains_key(&binding.destination) {
            return Err(self.not_found("exchange", &binding.destination));
        }
        if !st.bindings.iter().any(|b| b.same(&binding)) {
            let source = binding.source.clone();
            st.bindings.push(binding);
            self.rebuild(&mut st, vec![source]);
        }
        Ok(())
    }

    fn unbind_locked(&self, binding: &Binding) -> Result<(), AmqpError> {
        let mut st = self.write();
        if binding.source.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if binding.destination_is_queue && !st.queues.contains_key(&binding.destination) {
            return Err(self.not_found("queue", &binding.destination));
        }
        if !st.exchanges.contains_key(&binding.source) {
            return Err(self.not_found("exchange", &binding.source));
        }
        let touched = remove_bindings(&mut st, |b| b.same(binding));
        self.rebuild(&mut st, touched);
        Ok(())
    }

    /// Rebuilds the routing snapshots of `sources`, and deletes auto-delete exchanges that
    /// lost their last binding.
    fn rebuild(&self, st: &mut VhostState, sources: Vec<String>) {
        for source in sources {
            let Some(x) = st.exchanges.get(&source).cloned() else {
                continue;
            };
            let routes: Vec<Route> = st
                .bindings
                .iter()
                .filter(|b| b.source == source)
                .filter_map(|b| {
                    let destination = if b.destination_is_queue {
                        Destination::Queue(st.queues.get(&b.destination)?.clone())
                    } else {
                        Destination::Exchange(st.exchanges.get(&b.destination)?.clone())
                    };
                    Some(Route {
                        routing_key: b.routing_key.clone(),
                        arguments: b.arguments.clone(),
                        destination,
                    })
                })
                .collect();
            if routes.is_empty() && x.auto_delete && !st.bindings.iter().any(|b| b.source == source)
            {
                self.remove_exchange(st, &source);
            } else {
                x.set_routes(routes);
            }
        }
    }

    /// Routes a message published to `exchange`: the queues it reaches (each once),
    /// following exchange-to-exchange bindings and alternate exchanges.
    pub fn route(
        &self,
        exchange: &Arc<Exchange>,
        routing_key: &str,
        headers: Option<&FieldTable>,
    ) -> Vec<Arc<Queue>> {
        let mut queues: Vec<Arc<Queue>> = Vec::new();
        if exchange.name.is_empty() {
            if let Some(q) = self.read().queues.get(routing_key) {
                queues.push(q.clone());
            }
            return queues;
        }
        let mut visited: Vec<*const Exchange> = Vec::new();
        let mut work: Vec<Arc<Exchange>> = vec![exchange.clone()];
        while let Some(x) = work.pop() {
            if visited.contains(&Arc::as_ptr(&x)) {
                continue;
            }
            visited.push(Arc::as_ptr(&x));
            let mut matched = false;
            x.routes().matches(routing_key, headers, &mut |d| {
                matched = true;
                match d {
                    Destination::Queue(q) => {
                        if !queues.iter().any(|have| Arc::ptr_eq(have, q)) {
                            queues.push(q.clone());
                        }
                    }
                    Destination::Exchange(e) => work.push(e.clone()),
                }
            });
            if !matched {
                if let Some(ae) = x.alternate_exchange().and_then(|n| self.exchange(&n)) {
                    work.push(ae);
                }
            }
        }
        queues
    }

    /// Queues owned by an exclusive connection (deleted when it closes).
    pub fn exclusive_queues_of(&self, connection_id: u64) -> Vec<String> {
        self.read()
            .queues
            .values()
            .filter(|q| q.exclusive_owner == Some(connection_id))
            .map(|q| q.name.clone())
            .collect()
    }
}

/// The journal key of a delayed exchange's held messages (distinct from every queue key).
pub fn delayed_key(vhost: &str, exchange: &str) -> String {
    format!("{vhost}\0\u{1}{exchange}")
}

/// 405 unless the queue is not exclusive or belongs to `connection_id`.
pub fn check_exclusive(q: &Queue, connection_id: u64, vhost: &str) -> Result<(), AmqpError> {
    match q.exclusive_owner {
        // Connection ids are per node: another node's exclusive queue is never ours.
        Some(owner) if owner != connection_id || q.is_standin() => Err(AmqpError::new(
            warren_amqp::reply::RESOURCE_LOCKED,
            format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{vhost}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.",
                q.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Removes matching bindings; returns the distinct sources whose routes must be rebuilt.
fn remove_bindings(st: &mut VhostState, matches: impl Fn(&Binding) -> bool) -> Vec<String> {
    let mut touched: Vec<String> = Vec::new();
    st.bindings.retain(|b| {
        if matches(b) {
            if !touched.contains(&b.source) {
                touched.push(b.source.clone());
            }
            false
        } else {
            true
        }
    });
    touched
}
