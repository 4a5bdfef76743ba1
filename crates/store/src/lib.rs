//! Durability for one node: the message journal and the definitions file.
//!
//! * `journal`: every persistent message routed to a durable queue is appended to one
//!   node-wide journal (length + CRC32C per record), and settlements (acks, drops, purges)
//!   after it. A dedicated thread writes and `fdatasync`s whatever has accumulated — group
//!   commit, so many publishers share one fsync — and publishes the durable position; a
//!   publisher confirm waits for that position. One journal rather than a file per queue means
//!   one fsync per round however many queues are written.
//! * `recovery`: replays the journal at start-up, truncating a torn tail and skipping corrupt
//!   records (each reported in one log line), and returns the messages still owed.
//! * `definitions`: the durable vhosts, users, exchanges, queues, bindings and policies, kept
//!   as one JSON document replaced atomically (write, fsync, rename).
//!
//! This crate knows nothing of AMQP: records carry opaque property bytes and bodies.

pub mod definitions;
pub mod journal;
pub mod record;
pub mod recovery;

pub use journal::Journal;
pub use recovery::{recover, Recovered, RecoveredMessage};
