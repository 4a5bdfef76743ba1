//! Dead-lettering: republishing expired, rejected and overflowed messages to the queue's
//! dead-letter exchange, with RabbitMQ's `x-death` history.
//!
//! Dead letters are collected while the queue's lock is held and republished after it is
//! released, so a dead-letter route back into the same queue cannot deadlock. A message that
//! would cycle back to a queue it already died in, with no rejection on the way, is dropped,
//! as RabbitMQ does.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use warren_amqp::content::encode_properties;
use warren_amqp::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

use crate::message::Message;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Expired,
    Rejected,
    Maxlen,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::Rejected => "rejected",
            Reason::Maxlen => "maxlen",
        }
    }
}

/// A message leaving a queue for its dead-letter exchange.
pub struct DeadLetter {
    pub msg: Arc<Message>,
    pub reason: Reason,
    pub exchange: String,
    pub routing_key: Option<String>,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn text(v: &AMQPValue) -> Option<String> {
    crate::args::as_str(v)
}

/// The message as it is republished: new exchange and routing key, `x-death` updated,
/// per-message `expiration` removed (kept as `original-expiration`).
pub fn dead_lettered_message(d: &DeadLetter, queue: &str) -> Message {
    let old = &d.msg;
    let mut props = old.properties.clone();
    let mut headers: FieldTable = props.headers().clone().unwrap_or_default();
    let original_expiration = props.expiration().clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_secs());
    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let same = |v: &AMQPValue| match v {
        AMQPValue::FieldTable(t) => {
            t.inner().get("queue").and_then(text).as_deref() == Some(queue)
                && t.inner().get("reason").and_then(text).as_deref() == Some(d.reason.as_str())
        }
        _ => false,
    };
    let mut entry = match deaths.iter().position(same) {
        Some(i) => match deaths.remove(i) {
            AMQPValue::FieldTable(t) => t,
            _ => FieldTable::default(),
        },
        None => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(0));
            t.insert("reason".into(), long(d.reason.as_str()));
            t.insert("queue".into(), long(queue));
            t.insert("exchange".into(), long(&old.exchange));
            let keys = FieldArray::from(vec![long(&old.routing_key)]);
            t.insert("routing-keys".into(), AMQPValue::FieldArray(keys));
            if let Some(exp) = &original_expiration {
                t.insert("original-expiration".into(), long(exp.as_str()));
            }
            t
        }
    };
    let count = entry
        .inner()
        .get("count")
        .and_then(crate::args::as_i64)
        .unwrap_or(0);
    entry.insert("count".into(), AMQPValue::LongLongInt(count + 1));
    entry.insert("time".into(), AMQPValue::Timestamp(now));
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(deaths)),
    );
    for (k, v) in [
        ("reason", long(d.reason.as_str())),
        ("queue", long(queue)),
        ("exchange", long(&old.exchange)),
    ] {
        let first = ShortString::from(format!("x-first-death-{k}"));
        if !headers.contains_key(first.as_str()) {
            headers.insert(first, v.clone());
        }
        headers.insert(ShortString::from(format!("x-last-death-{k}")), v);
    }
    props = props.with_headers(headers);
    if original_expiration.is_some() {
        // BasicProperties has no "clear": rebuild without the expiration.
        props = without_expiration(&props);
    }
    Message {
        exchange: d.exchange.clone(),
        routing_key: d
            .routing_key
            .clone()
            .unwrap_or_else(|| old.routing_key.clone()),
        raw_properties: encode_properties(&props),
        properties: props,
        body: old.body.clone(),
    }
}

fn without_expiration(p: &warren_amqp::BasicProperties) -> warren_amqp::BasicProperties {
    let mut n = warren_amqp::BasicProperties::default();
    macro_rules! copy {
        ($get:ident, $with:ident) => {
            if let Some(v) = p.$get().clone() {
                n = n.$with(v);
            }
        };
    }
    copy!(content_type, with_content_type);
    copy!(content_encoding, with_content_encoding);
    copy!(headers, with_headers);
    copy!(delivery_mode, with_delivery_mode);
    copy!(priority, with_priority);
    copy!(correlation_id, with_correlation_id);
    copy!(reply_to, with_reply_to);
    copy!(message_id, with_message_id);
    copy!(timestamp, with_timestamp);
    copy!(kind, with_type);
    copy!(user_id, with_user_id);
    copy!(app_id, with_app_id);
    copy!(cluster_id, with_cluster_id);
    n
}

/// Whether delivering `msg` (already carrying its new `x-death`) to `target` would complete
/// a dead-letter cycle with no rejection in it.
pub fn is_cycle(msg: &Message, target: &str) -> bool {
    let Some(AMQPValue::FieldArray(deaths)) = msg
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-death").cloned())
    else {
        return false;
    };
    let tables: Vec<FieldTable> = deaths
        .as_slice()
        .iter()
        .filter_map(|v| match v {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let rejected = tables
        .iter()
        .any(|t| t.inner().get("reason").and_then(text).as_deref() == Some("rejected"));
    !rejected
        && tables
            .iter()
            .any(|t| t.inner().get("queue").and_then(text).as_deref() == Some(target))
}
