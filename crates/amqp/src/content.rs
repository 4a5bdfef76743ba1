//! Content headers: body size and message properties.
//!
//! The raw property bytes are kept next to the parsed form so that a message is re-sent to
//! consumers exactly as it was published, without re-encoding, unless the broker changes a
//! property (dead-lettering adds `x-death`, for instance).

use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;

/// A decoded content-header frame.
#[derive(Debug, Clone)]
pub struct ContentHeader {
    pub class_id: u16,
    pub body_size: u64,
    /// Property flags and property list, exactly as received.
    pub raw_properties: Bytes,
    pub properties: BasicProperties,
}

/// The content header does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentHeaderError;

impl std::fmt::Display for ContentHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed content header")
    }
}

impl ContentHeader {
    pub fn decode(payload: Bytes) -> Result<Self, ContentHeaderError> {
        if payload.len() < 14 {
            return Err(ContentHeaderError);
        }
        let class_id = u16::from_be_bytes([payload[0], payload[1]]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&payload[4..12]);
        let body_size = u64::from_be_bytes(size);
        let raw_properties = payload.slice(12..);
        let properties = match parse_properties(&raw_properties[..]) {
            Ok((&[], p)) => p,
            _ => return Err(ContentHeaderError),
        };
        Ok(ContentHeader {
            class_id,
            body_size,
            raw_properties,
            properties,
        })
    }
}

/// Decodes properties stored in their wire form (e.g. by the message journal).
pub fn decode_properties(raw: &[u8]) -> Option<BasicProperties> {
    match parse_properties(raw) {
        Ok((&[], p)) => Some(p),
        _ => None,
    }
}

/// Encodes properties into the wire form kept in `ContentHeader::raw_properties`.
pub fn encode_properties(properties: &BasicProperties) -> Bytes {
    match cookie_factory::gen_simple(gen_properties(properties), Vec::with_capacity(64)) {
        Ok(v) => Bytes::from(v),
        // Serialising into a Vec cannot run out of space; an empty property set is the only
        // safe fallback if the generator ever reports an error.
        Err(_) => Bytes::from_static(&[0, 0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::ShortString;

    #[test]
    fn round_trips_properties() {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_expiration(ShortString::from("1000"));
        let raw = encode_properties(&props);
        let mut payload = vec![0, 60, 0, 0];
        payload.extend_from_slice(&5u64.to_be_bytes());
        payload.extend_from_slice(&raw);
        let h = ContentHeader::decode(Bytes::from(payload)).unwrap();
        assert_eq!(h.body_size, 5);
        assert_eq!(h.properties, props);
        assert_eq!(h.raw_properties, raw);
    }
}
