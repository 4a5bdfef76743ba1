//! Direct reply-to (`amq.rabbitmq.reply-to`): RPC replies delivered straight to the
//! requester's consumer without a queue.
//!
//! A client consumes from the pseudo-queue `amq.rabbitmq.reply-to` (no-ack only) and
//! publishes requests with `reply_to = amq.rabbitmq.reply-to`; the broker rewrites that to
//! `amq.rabbitmq.reply-to.<token>`, and a reply published to the default exchange with that
//! routing key goes directly to the consumer the token names.

use std::sync::{Arc, Weak};

use rand::Rng;

use super::link::ChannelLink;
use crate::broker::Broker;
use crate::message::Message;

pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
pub const PREFIX_DOT: &str = "amq.rabbitmq.reply-to.";

/// Where replies for one token go.
#[derive(Clone)]
pub struct ReplyTarget {
    pub link: Weak<ChannelLink>,
    pub consumer_tag: String,
}

pub fn new_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Delivers a reply; false if the requester is gone (the reply is unroutable).
pub fn deliver(broker: &Broker, token: &str, msg: &Arc<Message>) -> bool {
    let Some(target) = broker.reply_target(token) else {
        return false;
    };
    let Some(link) = target.link.upgrade() else {
        return false;
    };
    link.deliver_direct(&target.consumer_tag, msg)
}
