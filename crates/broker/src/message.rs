//! A published message, shared by every queue it was routed to.
//!
//! Routing to N queues clones an `Arc`, never the body: the body is the `Bytes` slice of the
//! connection's read buffer it arrived in.

use bytes::Bytes;
use warren_amqp::BasicProperties;

#[derive(Debug)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    /// Properties exactly as published, re-sent to consumers as they are.
    pub raw_properties: Bytes,
    pub properties: BasicProperties,
    pub body: Bytes,
}

impl Message {
    pub fn persistent(&self) -> bool {
        *self.properties.delivery_mode() == Some(2)
    }

    /// Bytes counted against queue length limits (RabbitMQ counts bodies only).
    pub fn body_size(&self) -> usize {
        self.body.len()
    }
}

impl Message {
    /// A message from its stored or shipped parts (`None` if its properties do not decode).
    pub fn from_parts(
        exchange: String,
        routing_key: String,
        raw_properties: bytes::Bytes,
        body: bytes::Bytes,
    ) -> Option<Message> {
        let properties = warren_amqp::content::decode_properties(&raw_properties)?;
        Some(Message {
            exchange,
            routing_key,
            raw_properties,
            properties,
            body,
        })
    }

    /// A message read back from the journal (`None` if its properties do not decode).
    pub fn from_recovered(m: warren_store::RecoveredMessage) -> Option<Message> {
        Message::from_parts(m.exchange, m.routing_key, m.properties, m.body)
    }
}
