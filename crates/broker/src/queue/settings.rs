//! A queue's effective settings: its `x-` arguments merged over the matching policy's keys.
//!
//! RabbitMQ's rule for classic queues: a client-supplied argument wins over the policy for
//! the same setting. Arguments are validated at declare time with RabbitMQ's error shapes
//! (`invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}`).

use serde_json::Value;
use warren_amqp::{AMQPValue, FieldTable};

use crate::args::{as_i64, as_str, get, type_name};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    #[default]
    DropHead,
    RejectPublish,
    RejectPublishDlx,
}

impl Overflow {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "drop-head" => Overflow::DropHead,
            "reject-publish" => Overflow::RejectPublish,
            "reject-publish-dlx" => Overflow::RejectPublishDlx,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueSettings {
    pub message_ttl: Option<u64>,
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    pub max_priority: u8,
    pub single_active_consumer: bool,
}

impl QueueSettings {
    /// Effective settings from arguments (already validated) and a policy definition.
    pub fn effective(args: &FieldTable, policy: Option<&Value>) -> Self {
        let pol = |k: &str| policy.and_then(|p| p.get(k));
        let int = |arg: &str, key: &str| {
            get(args, arg)
                .and_then(as_i64)
                .or_else(|| pol(key).and_then(Value::as_i64))
                .map(|v| v.max(0) as u64)
        };
        let string = |arg: &str, key: &str| {
            get(args, arg)
                .and_then(as_str)
                .or_else(|| pol(key).and_then(Value::as_str).map(str::to_string))
        };
        QueueSettings {
            message_ttl: int("x-message-ttl", "message-ttl"),
            expires: int("x-expires", "expires"),
            max_length: int("x-max-length", "max-length"),
            max_length_bytes: int("x-max-length-bytes", "max-length-bytes"),
            overflow: string("x-overflow", "overflow")
                .and_then(|s| Overflow::parse(&s))
                .unwrap_or_default(),
            dead_letter_exchange: string("x-dead-letter-exchange", "dead-letter-exchange"),
            dead_letter_routing_key: string("x-dead-letter-routing-key", "dead-letter-routing-key"),
            max_priority: get(args, "x-max-priority")
                .and_then(as_i64)
                .map_or(0, |p| p.clamp(0, 255) as u8),
            single_active_consumer: matches!(
                get(args, "x-single-active-consumer"),
                Some(AMQPValue::Boolean(true))
            ),
        }
    }
}

/// Validates queue arguments; the error is the part after `invalid arg 'KEY' for queue ...`.
pub fn validate_arguments(args: &FieldTable) -> Result<(), (String, String)> {
    for (k, v) in args.inner() {
        let key = k.as_str();
        let bad = |why: String| Err((key.to_string(), why));
        let non_negative = |min: i64| match as_i64(v) {
            None => Err(format!("{{unacceptable_type,{}}}", type_name(v))),
            Some(n) if n < min && min == 0 => Err(format!("{{value_negative,{n}}}")),
            Some(n) if n < min => Err(format!("{{value_zero,{n}}}")),
            Some(_) => Ok(()),
        };
        match key {
            "x-message-ttl" | "x-max-length" | "x-max-length-bytes" => {
                if let Err(e) = non_negative(0) {
                    return bad(e);
                }
            }
            "x-expires" => {
                if let Err(e) = non_negative(1) {
                    return bad(e);
                }
            }
            "x-max-priority" => match as_i64(v) {
                None => return bad(format!("{{unacceptable_type,{}}}", type_name(v))),
                Some(n) if n < 0 => return bad(format!("{{value_negative,{n}}}")),
                Some(n) if n > 255 => return bad(format!("{{value_too_large,{n},255}}")),
                Some(_) => {}
            },
            "x-overflow" => match as_str(v) {
                Some(s) if Overflow::parse(&s).is_some() => {}
                Some(s) => return bad(format!("{{unacceptable_value,<<\"{s}\">>}}")),
                None => return bad(format!("{{unacceptable_type,{}}}", type_name(v))),
            },
            "x-dead-letter-exchange" | "x-dead-letter-routing-key" if as_str(v).is_none() => {
                return bad(format!("{{unacceptable_type,{}}}", type_name(v)));
            }
            "x-queue-mode" => match as_str(v).as_deref() {
                Some("default") | Some("lazy") => {}
                Some(s) => return bad(format!("{{unacceptable_value,<<\"{s}\">>}}")),
                None => return bad(format!("{{unacceptable_type,{}}}", type_name(v))),
            },
            "x-single-active-consumer" if !matches!(v, AMQPValue::Boolean(_)) => {
                return bad(format!("{{unacceptable_type,{}}}", type_name(v)));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_amqp::ShortString;

    fn table(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(ShortString::from(k), v);
        }
        t
    }

    #[test]
    fn arguments_beat_policy() {
        let args = table(vec![("x-message-ttl", AMQPValue::LongInt(1000))]);
        let pol = serde_json::json!({"message-ttl": 5000, "max-length": 10, "dead-letter-exchange": "dlx"});
        let s = QueueSettings::effective(&args, Some(&pol));
        assert_eq!(s.message_ttl, Some(1000));
        assert_eq!(s.max_length, Some(10));
        assert_eq!(s.dead_letter_exchange.as_deref(), Some("dlx"));
    }

    #[test]
    fn validation_follows_rabbitmq_shapes() {
        let e = validate_arguments(&table(vec![("x-message-ttl", AMQPValue::LongInt(-1))]))
            .unwrap_err();
        assert_eq!(
            e,
            (
                "x-message-ttl".to_string(),
                "{value_negative,-1}".to_string()
            )
        );
        let e = validate_arguments(&table(vec![("x-max-priority", AMQPValue::LongInt(300))]))
            .unwrap_err();
        assert_eq!(e.1, "{value_too_large,300,255}");
        assert!(validate_arguments(&table(vec![(
            "x-overflow",
            AMQPValue::LongString("reject-publish".into())
        )]))
        .is_ok());
    }
}
