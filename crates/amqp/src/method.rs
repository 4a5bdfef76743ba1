//! Method frame payloads: class id, method id and arguments.
//!
//! Decoding goes through `amq-protocol`'s generated parsers (RabbitMQ's field-table type tags
//! included). Errors distinguish an unknown class/method (540) from malformed arguments (501),
//! because RabbitMQ reports them differently and clients log the code.

use amq_protocol::protocol::{parse_class, AMQPClass};

/// Why a method frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodError {
    /// Shorter than a class id and method id.
    Truncated,
    /// A class/method pair AMQP 0-9-1 does not define.
    Unknown { class_id: u16, method_id: u16 },
    /// The arguments do not parse (bad field table, short string past the end, ...).
    Malformed { class_id: u16, method_id: u16 },
}

impl MethodError {
    pub fn ids(&self) -> (u16, u16) {
        match *self {
            MethodError::Truncated => (0, 0),
            MethodError::Unknown {
                class_id,
                method_id,
            }
            | MethodError::Malformed {
                class_id,
                method_id,
            } => (class_id, method_id),
        }
    }
}

impl std::fmt::Display for MethodError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MethodError::Truncated => write!(f, "method frame too short"),
            MethodError::Unknown {
                class_id,
                method_id,
            } => write!(f, "unknown method class {class_id} method {method_id}"),
            MethodError::Malformed {
                class_id,
                method_id,
            } => write!(
                f,
                "cannot decode arguments of method class {class_id} method {method_id}"
            ),
        }
    }
}

impl std::error::Error for MethodError {}

/// Decodes a method frame's payload.
pub fn decode(payload: &[u8]) -> Result<AMQPClass, MethodError> {
    if payload.len() < 4 {
        return Err(MethodError::Truncated);
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    match parse_class(payload) {
        Ok((_, class)) => Ok(class),
        Err(_) if is_known(class_id, method_id) => Err(MethodError::Malformed {
            class_id,
            method_id,
        }),
        Err(_) => Err(MethodError::Unknown {
            class_id,
            method_id,
        }),
    }
}

fn is_known(class_id: u16, method_id: u16) -> bool {
    let methods: &[u16] = match class_id {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        assert_eq!(decode(&[0, 60]), Err(MethodError::Truncated));
        assert_eq!(
            decode(&[0, 99, 0, 1]),
            Err(MethodError::Unknown {
                class_id: 99,
                method_id: 1
            })
        );
        // queue.declare whose queue-name short string runs past the end.
        assert_eq!(
            decode(&[0, 50, 0, 10, 0, 0, 200, b'a']),
            Err(MethodError::Malformed {
                class_id: 50,
                method_id: 10
            })
        );
    }

    #[test]
    fn decodes_basic_ack() {
        let mut p = vec![0, 60, 0, 80];
        p.extend_from_slice(&7u64.to_be_bytes());
        p.push(1);
        match decode(&p).unwrap() {
            AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Ack(a)) => {
                assert_eq!((a.delivery_tag, a.multiple), (7, true))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
