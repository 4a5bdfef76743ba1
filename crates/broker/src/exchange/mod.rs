//! Exchanges: their declared attributes and their routing tables.
//!
//! Each exchange holds an immutable routing snapshot (`Routes`) rebuilt from the vhost's
//! bindings whenever they change and swapped in whole, so a publish only takes a read lock
//! for the time of an `Arc` clone. Each exchange type keeps its matching logic in its own
//! module.

pub mod delayed;
pub mod direct;
pub mod fanout;
pub mod headers;
pub mod topic;

use std::sync::{Arc, RwLock};

use warren_amqp::FieldTable;

use crate::queue::Queue;

/// Exchange types this broker implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding delivers: a queue, or another exchange (exchange-to-exchange binding).
#[derive(Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

/// One binding as the routing table sees it.
#[derive(Clone)]
pub struct Route {
    pub routing_key: String,
    pub arguments: FieldTable,
    pub destination: Destination,
}

/// The per-type routing table, built once per binding change.
pub enum Routes {
    Direct(direct::DirectTable),
    Fanout(fanout::FanoutTable),
    Topic(topic::TopicTable),
    Headers(headers::HeadersTable),
}

impl Routes {
    pub fn build(kind: ExchangeKind, routes: Vec<Route>) -> Self {
        match kind {
            ExchangeKind::Direct => Routes::Direct(direct::DirectTable::new(routes)),
            ExchangeKind::Fanout => Routes::Fanout(fanout::FanoutTable::new(routes)),
            ExchangeKind::Topic => Routes::Topic(topic::TopicTable::new(routes)),
            ExchangeKind::Headers => Routes::Headers(headers::HeadersTable::new(routes)),
        }
    }

    /// Calls `out` for every destination matching the message.
    pub fn matches(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut dyn FnMut(&Destination),
    ) {
        match self {
            Routes::Direct(t) => t.matches(routing_key, out),
            Routes::Fanout(t) => t.matches(out),
            Routes::Topic(t) => t.matches(routing_key, out),
            Routes::Headers(t) => t.matches(headers, out),
        }
    }
}

/// A declared exchange.
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    routes: RwLock<Arc<Routes>>,
    /// `alternate-exchange` from a policy (the argument, if any, wins).
    policy_alternate_exchange: RwLock<Option<String>>,
    /// Set for `x-delayed-message` exchanges (`kind` is then the `x-delayed-type`).
    pub delayed: Option<Arc<delayed::DelayedStore>>,
}

impl Exchange {
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Self {
        Exchange {
            name: name.to_string(),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            routes: RwLock::new(Arc::new(Routes::build(kind, Vec::new()))),
            policy_alternate_exchange: RwLock::new(None),
            delayed: None,
        }
    }

    /// Makes this an `x-delayed-message` exchange routing as `kind` once messages fall due.
    pub fn with_delay(mut self, store: delayed::DelayedStore) -> Self {
        self.delayed = Some(Arc::new(store));
        self
    }

    /// The declared type name (`x-delayed-message` for delayed exchanges).
    pub fn type_name(&self) -> &'static str {
        if self.delayed.is_some() {
            "x-delayed-message"
        } else {
            self.kind.as_str()
        }
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_routes(&self, routes: Vec<Route>) {
        let table = Arc::new(Routes::build(self.kind, routes));
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// The alternate exchange: the `alternate-exchange` argument, else the policy's.
    pub fn alternate_exchange(&self) -> Option<String> {
        crate::args::get(&self.arguments, "alternate-exchange")
            .and_then(crate::args::as_str)
            .or_else(|| {
                self.policy_alternate_exchange
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
    }

    pub fn set_policy_alternate_exchange(&self, ae: Option<String>) {
        *self
            .policy_alternate_exchange
            .write()
            .unwrap_or_else(|e| e.into_inner()) = ae;
    }
}
