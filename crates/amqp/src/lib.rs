//! AMQP 0-9-1 on the wire, as RabbitMQ speaks it.
//!
//! This crate owns the byte format only: splitting a byte stream into frames (with `frame_max`
//! enforced before a payload is buffered), decoding and encoding methods and content headers,
//! and RabbitMQ's reply codes. It knows nothing of sockets or queues.
//!
//! The slow path (connection handshake, declares, binds, ...) uses the `amq-protocol` codec.
//! The hot path is hand-written because `amq-protocol` copies every body frame into a `Vec`:
//! here bodies stay `Bytes` slices of the read buffer from socket to consumer, and outgoing
//! content is written as a chain of chunks so bodies are never copied into a write buffer.

pub mod content;
pub mod frame;
pub mod method;
pub mod outgoing;
pub mod reply;

pub use amq_protocol::protocol::{
    basic, channel, confirm, connection, exchange, queue, tx, AMQPClass, BasicProperties,
};
pub use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

/// The protocol header a 0-9-1 client sends first, and that a server answers with when it
/// does not support the header it was given.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Decodes a length-prefixed field table (used for SASL AMQPLAIN responses).
pub fn decode_field_table(bytes: &[u8]) -> Option<FieldTable> {
    amq_protocol::types::parsing::parse_field_table(bytes)
        .ok()
        .map(|(_, t)| t)
}
