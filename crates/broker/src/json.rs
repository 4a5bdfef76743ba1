//! AMQP field values to and from JSON, as RabbitMQ's management API and definitions files
//! show arguments and headers.

use serde_json::{Map, Value};
use warren_amqp::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

pub fn value(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(x) => (*x).into(),
        AMQPValue::ShortShortUInt(x) => (*x).into(),
        AMQPValue::ShortInt(x) => (*x).into(),
        AMQPValue::ShortUInt(x) => (*x).into(),
        AMQPValue::LongInt(x) => (*x).into(),
        AMQPValue::LongUInt(x) => (*x).into(),
        AMQPValue::LongLongInt(x) => (*x).into(),
        AMQPValue::Timestamp(x) => (*x).into(),
        AMQPValue::Float(x) => (*x as f64).into(),
        AMQPValue::Double(x) => (*x).into(),
        AMQPValue::ShortString(s) => Value::String(s.to_string()),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value).collect()),
        AMQPValue::FieldTable(t) => table(t),
        AMQPValue::ByteArray(_) | AMQPValue::DecimalValue(_) | AMQPValue::Void => Value::Null,
    }
}

pub fn table(t: &FieldTable) -> Value {
    let mut m = Map::new();
    for (k, v) in t.inner() {
        m.insert(k.to_string(), value(v));
    }
    Value::Object(m)
}

/// JSON → AMQP, as RabbitMQ's management API converts request arguments.
pub fn to_amqp(v: &Value) -> AMQPValue {
    match v {
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes().to_vec())),
        Value::Array(a) => {
            AMQPValue::FieldArray(FieldArray::from(a.iter().map(to_amqp).collect::<Vec<_>>()))
        }
        Value::Object(_) => AMQPValue::FieldTable(to_table(v)),
        Value::Null => AMQPValue::Void,
    }
}

pub fn to_table(v: &Value) -> FieldTable {
    let mut t = FieldTable::default();
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            t.insert(ShortString::from(k.as_str()), to_amqp(v));
        }
    }
    t
}
