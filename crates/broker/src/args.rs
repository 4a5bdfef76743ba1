//! Field-table helpers: reading `x-` arguments and comparing them as RabbitMQ does.
//!
//! RabbitMQ's "inequivalent arg" errors print values together with its own type names
//! (`signedint`, `longstr`, ...); clients show these texts to users, so they are reproduced.

use warren_amqp::{AMQPValue, FieldTable};

/// RabbitMQ's name for a field type, as printed in equivalence errors.
pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) => "shortstr",
        AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

/// An integer argument, whatever integer width the client chose.
pub fn as_i64(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => *x as i64,
        AMQPValue::ShortShortUInt(x) => *x as i64,
        AMQPValue::ShortInt(x) => *x as i64,
        AMQPValue::ShortUInt(x) => *x as i64,
        AMQPValue::LongInt(x) => *x as i64,
        AMQPValue::LongUInt(x) => *x as i64,
        AMQPValue::LongLongInt(x) => *x,
        AMQPValue::Timestamp(x) => *x as i64,
        _ => return None,
    })
}

/// A string argument (short or long string).
pub fn as_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

pub fn as_bool(v: &AMQPValue) -> Option<bool> {
    match v {
        AMQPValue::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// Value equality that ignores integer width and short/long string differences.
pub fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_i64(a), as_i64(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (as_str(a), as_str(b)) {
        return x == y;
    }
    a == b
}

/// Renders a value the way RabbitMQ prints it in error texts.
pub fn display_value(v: &AMQPValue) -> String {
    if let Some(i) = as_i64(v) {
        return i.to_string();
    }
    if let Some(s) = as_str(v) {
        return s;
    }
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::Float(f) => f.to_string(),
        AMQPValue::Double(f) => f.to_string(),
        other => format!("{other:?}"),
    }
}

pub fn get<'a>(table: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    table.inner().get(key)
}

/// Compares the arguments RabbitMQ checks for equivalence on redeclare; returns the
/// "inequivalent arg" detail for the first difference.
pub fn check_equivalent(
    keys: &[&str],
    current: &FieldTable,
    received: &FieldTable,
    kind: &str,
    name: &str,
    vhost: &str,
) -> Result<(), String> {
    for key in keys {
        let (cur, rec) = (get(current, key), get(received, key));
        let same = match (cur, rec) {
            (None, None) => true,
            (Some(a), Some(b)) => values_equal(a, b),
            _ => false,
        };
        if !same {
            let show = |v: Option<&AMQPValue>| match v {
                None => "none".to_string(),
                Some(v) => format!(
                    "the value '{}' of type '{}'",
                    display_value(v),
                    type_name(v)
                ),
            };
            return Err(format!(
                "inequivalent arg '{key}' for {kind} '{name}' in vhost '{vhost}': received {} but current is {}",
                show(rec),
                show(cur)
            ));
        }
    }
    Ok(())
}
