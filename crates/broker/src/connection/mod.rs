//! One client connection: the handshake, then a reader loop that splits frames and drives
//! the channels, plus a writer task (`wire`) that owns the socket's write half.
//!
//! Guarantees: a protocol error closes this connection with RabbitMQ's code and text and a
//! log line, never the node; a peer that stops sending (heartbeats included) for two
//! heartbeat intervals is dropped; on close every channel's unacked deliveries are requeued
//! and the connection's exclusive queues are deleted.

pub mod handshake;
pub mod live;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use warren_amqp::frame::{self, Frame, FRAME_BODY, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD};
use warren_amqp::method::MethodError;
use warren_amqp::reply::{
    AmqpError, CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED, FRAME_ERROR, NOT_IMPLEMENTED,
    UNEXPECTED_FRAME,
};
use warren_amqp::{basic, channel, connection, AMQPClass, ShortString};

use crate::broker::{Broker, ConnectionInfo};
use crate::channel::{declare, Channel, Ctx};
use handshake::{HandshakeFailure, Session};
use wire::Wire;

/// Bodies smaller than this are copied out of the read buffer: a small message that waits in
/// a queue would otherwise pin the whole (64 KiB) read buffer it arrived in.
const COPY_BODY_BELOW: usize = 2048;
const READ_CHUNK: usize = 64 * 1024;
/// The longest a publishing connection pauses for one queue in flow.
const FLOW_PAUSE_MAX: Duration = Duration::from_millis(200);
/// How many frames a connection processes before letting other tasks on its worker run.
const YIELD_EVERY_FRAMES: usize = 1024;
/// How many payload bytes likewise: large bodies are then delivered while they are still in
/// the core's cache (the copy into the consumer's socket is most of the cost of a large
/// message, and it is faster from L2 than from memory).
const YIELD_EVERY_BYTES: usize = 256 * 1024;

/// Serves one accepted socket until it closes.
pub async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    // Mirror links of other cluster nodes share the AMQP port (their address is already
    // known everywhere); they announce themselves with their own header.
    // A client arriving while this node catches up with the cluster waits for it (a
    // handshake a little slower) rather than see a stale leader for a queue.
    if !broker.wait_caught_up(handshake::HANDSHAKE_TIMEOUT).await {
        return;
    }
    let mut first = [0u8; 8];
    let peeked = tokio::time::timeout(handshake::HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if matches!(peeked, Ok(Ok(8))) && &first == crate::replication::HEADER {
        return crate::replication::leader::serve(broker, stream).await;
    }
    let local = stream.local_addr().unwrap_or(peer);
    let (mut rd, wr) = stream.into_split();
    let wire = Wire::new(broker.config.frame_max);
    let writer = tokio::spawn(wire.clone().run_writer(wr));
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let hs = tokio::time::timeout(
        handshake::HANDSHAKE_TIMEOUT,
        handshake::run(&broker, &mut rd, &mut buf, &wire, peer),
    )
    .await
    .unwrap_or_else(|_| Err(HandshakeFailure::Drop("handshake timeout".into())));
    match hs {
        Ok(session) => {
            let id = broker.next_connection_id();
            let live = Arc::new(live::LiveConnection::default());
            broker.register_connection(ConnectionInfo {
                id,
                peer,
                user: session.user.clone(),
                vhost: session.vhost.name.clone(),
                local,
                connected_at: std::time::SystemTime::now(),
                client_properties: session.client_properties.clone(),
                frame_max: session.frame_max,
                channel_max: session.channel_max,
                heartbeat: session.heartbeat,
                live: live.clone(),
            });
            tracing::info!(%peer, user = %session.user, vhost = %session.vhost.name, "connection {id} opened");
            wire.set_frame_max(session.frame_max);
            let mut conn = Connection {
                env: Env {
                    broker: broker.clone(),
                    id,
                    peer,
                    wire: wire.clone(),
                    session,
                    flow: std::cell::RefCell::new(None),
                    pending_meta: std::cell::RefCell::new(None),
                    pending_remote: std::cell::RefCell::new(None),
                    live,
                },
                channels: HashMap::new(),
                published: false,
            };
            conn.run(&mut rd, &mut buf).await;
            conn.cleanup();
            broker.unregister_connection(id);
            tracing::info!(%peer, "connection {id} closed");
        }
        Err(HandshakeFailure::Drop(why)) => {
            tracing::info!(%peer, "connection dropped during handshake: {why}");
        }
        Err(HandshakeFailure::Close(e)) => {
            tracing::warn!(%peer, "closing connection during handshake: {e}");
            send_connection_close(&wire, &e);
            let _ = tokio::time::timeout(Duration::from_secs(1), await_close_ok(&mut rd, &mut buf))
                .await;
        }
    }
    wire.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Resolves when the journal's durable epoch advances (never without a journal).
async fn journal_advanced(rx: &mut Option<tokio::sync::watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

fn send_connection_close(wire: &Wire, e: &AmqpError) {
    let m = AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
        reply_code: e.code,
        reply_text: ShortString::from(e.text.clone()),
        class_id: e.class_id,
        method_id: e.method_id,
    }));
    wire.send(|out| out.method(0, &m));
}

/// After sending `connection.close`, discards frames until `close-ok` (or EOF / garbage).
async fn await_close_ok<R: AsyncRead + Unpin>(rd: &mut R, buf: &mut BytesMut) {
    loop {
        while let Ok(Some(f)) = frame::decode(buf, 0) {
            if f.kind == FRAME_METHOD && f.channel == 0 {
                if let Ok(AMQPClass::Connection(
                    connection::AMQPMethod::CloseOk(_) | connection::AMQPMethod::Close(_),
                )) = warren_amqp::method::decode(&f.payload)
                {
                    return;
                }
            }
        }
        if frame::decode(buf, 0).is_err() {
            return;
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The connection's fixed facts, borrowed by channels while `channels` is borrowed mutably.
struct Env {
    broker: Arc<Broker>,
    id: u64,
    peer: SocketAddr,
    wire: Arc<Wire>,
    session: Session,
    flow: std::cell::RefCell<Option<Arc<crate::queue::Queue>>>,
    pending_meta: std::cell::RefCell<Option<crate::channel::clustered::PendingMeta>>,
    pending_remote: std::cell::RefCell<Option<crate::channel::clustered::PendingRemote>>,
    live: Arc<live::LiveConnection>,
}

impl Env {
    fn synced_epoch(&self) -> u64 {
        confirmable_epoch(&self.broker, &self.session.user)
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            broker: &self.broker,
            vhost: &self.session.vhost,
            user: &self.session.user,
            connection_id: self.id,
            wire: &self.wire,
            consumer_cancel_notify: self.session.consumer_cancel_notify,
            flow: &self.flow,
            pending_meta: &self.pending_meta,
            pending_remote: &self.pending_remote,
        }
    }
}

struct Connection {
    env: Env,
    channels: HashMap<u16, Channel>,
    /// This connection has published: it is blocked while a resource alarm is in effect.
    published: bool,
}

/// How the reader loop ends.
enum End {
    /// The client closed (close handshake done, or EOF).
    Closed,
    /// We close with this error.
    Error(AmqpError),
}

impl Connection {
    async fn run<R: AsyncRead + Unpin>(&mut self, rd: &mut R, buf: &mut BytesMut) {
        let end = self.read_loop(rd, buf).await;
        if let End::Error(e) = end {
            if e.code == CONNECTION_FORCED {
                tracing::info!(peer = %self.env.peer, "closing connection {}: {e}", self.env.id);
            } else {
                tracing::warn!(peer = %self.env.peer, "closing connection {}: {e}", self.env.id);
            }
            send_connection_close(&self.env.wire, &e);
            let _ = tokio::time::timeout(Duration::from_secs(1), await_close_ok(rd, buf)).await;
        }
    }

    async fn read_loop<R: AsyncRead + Unpin>(&mut self, rd: &mut R, buf: &mut BytesMut) -> End {
        let hb = self.env.session.heartbeat;
        let tick = if hb == 0 {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(hb as u64 * 500)
        };
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_read = Instant::now();
        let mut shutdown = self.env.broker.shutdown_signal();
        let mut paused = self.env.broker.paused();
        let mut forced = self.env.live.close_requests();
        let mut journal = self.env.broker.journal().map(|j| {
            if confirms_for_peer(&self.env.session.user) {
                j.synced_for_peers()
            } else {
                j.synced()
            }
        });
        let mut alarms = self.env.broker.alarms();
        let mut blocked = false;
        let (mut frames_since_yield, mut bytes_since_yield) = (0usize, 0usize);
        loop {
            loop {
                match frame::decode(buf, self.env.session.frame_max) {
                    Ok(Some(f)) => {
                        frames_since_yield += 1;
                        bytes_since_yield += f.payload.len();
                        match self.handle_frame(f) {
                            Ok(true) => {}
                            Ok(false) => return End::Closed,
                            Err(e) => return End::Error(e),
                        }
                        let pending = self.env.pending_meta.borrow_mut().take();
                        if let Some(p) = pending {
                            if let Err(e) = self.finish_meta(p).await {
                                return End::Error(e);
                            }
                        }
                        let pending = self.env.pending_remote.borrow_mut().take();
                        if let Some(p) = pending {
                            if let Err(e) = self.finish_remote(p).await {
                                return End::Error(e);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return End::Error(AmqpError::new(FRAME_ERROR, e.to_string())),
                }
            }
            let flow = self.env.flow.borrow_mut().take();
            if let Some(q) = flow {
                if !self.channels.values().any(Channel::has_consumers) {
                    // Credit-style flow control: a publisher into a queue whose consumers lag
                    // stops being read (TCP pushes back) until the backlog halves, so the
                    // consumers get the CPU; bounded so nothing can wait on it forever.
                    q.wait_for_flow_to_clear(FLOW_PAUSE_MAX).await;
                }
            }
            if frames_since_yield >= YIELD_EVERY_FRAMES || bytes_since_yield >= YIELD_EVERY_BYTES {
                // A publisher that always has input would otherwise keep its worker for a
                // whole coop budget (~128 reads, 100k+ messages), starving the consumers'
                // acks and deliveries queued behind it on the same worker.
                (frames_since_yield, bytes_since_yield) = (0, 0);
                tokio::task::yield_now().await;
            }
            let synced = self.env.synced_epoch();
            let mut waiting = false;
            for ch in self.channels.values_mut() {
                ch.flush_acks(&self.env.broker);
                ch.flush_confirms(&self.env.wire, synced);
                waiting |= ch.waiting_for_sync(synced);
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(READ_CHUNK);
            }
            let in_effect = alarms.borrow_and_update().clone();
            let block = self.published && !in_effect.is_empty();
            if block != blocked {
                blocked = block;
                last_read = Instant::now();
                self.tell_blocked(block.then(|| in_effect.join(" & ")));
            }
            tokio::select! {
                _ = alarms.changed() => {}
                r = rd.read_buf(buf), if !blocked => match r {
                    Ok(0) | Err(_) => return End::Closed,
                    Ok(_) => last_read = Instant::now(),
                },
                _ = ticker.tick(), if hb != 0 => {
                    if !blocked && last_read.elapsed() > Duration::from_secs(hb as u64 * 2) {
                        tracing::warn!(peer = %self.env.peer, "missed heartbeats from client, timeout: {hb}s");
                        return End::Closed;
                    }
                    self.env.wire.send(|out| out.heartbeat());
                }
                _ = journal_advanced(&mut journal), if waiting => {}
                r = paused.changed() => {
                    let reason = paused.borrow().clone();
                    if let (Ok(()), Some(reason)) = (r, reason) {
                        return End::Error(AmqpError::new(
                            CONNECTION_FORCED,
                            format!("broker forced connection closure with reason '{reason}'"),
                        ));
                    }
                }
                // The sender lives in `self.env.live`, so this never fails while we run.
                _ = forced.changed() => {
                    if let Some(reason) = forced.borrow().clone() {
                        return End::Error(AmqpError::new(CONNECTION_FORCED, reason));
                    }
                }
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return End::Error(AmqpError::new(
                            CONNECTION_FORCED,
                            "broker forced connection closure with reason 'shutdown'",
                        ));
                    }
                }
            }
        }
    }

    /// Returns Ok(false) when the client completed a close handshake.
    fn handle_frame(&mut self, f: Frame) -> Result<bool, AmqpError> {
        match f.kind {
            FRAME_HEARTBEAT => {
                if f.channel != 0 {
                    return Err(AmqpError::new(
                        FRAME_ERROR,
                        format!("heartbeat frame on channel {}", f.channel),
                    ));
                }
                Ok(true)
            }
            FRAME_METHOD => {
                let method = warren_amqp::method::decode(&f.payload).map_err(method_error)?;
                if matches!(method, AMQPClass::Basic(basic::AMQPMethod::Publish(_))) {
                    self.published = true;
                }
                if f.channel == 0 {
                    return self.connection_method(method);
                }
                self.channel_method(f.channel, method)?;
                Ok(true)
            }
            FRAME_HEADER | FRAME_BODY => {
                if f.channel == 0 {
                    return Err(AmqpError::new(
                        UNEXPECTED_FRAME,
                        "content frame on channel 0",
                    ));
                }
                let payload = if f.kind == FRAME_BODY && f.payload.len() < COPY_BODY_BELOW {
                    Bytes::copy_from_slice(&f.payload)
                } else {
                    f.payload
                };
                let ctx = self.env.ctx();
                let Some(ch) = self.channels.get_mut(&f.channel) else {
                    return Err(AmqpError::new(
                        CHANNEL_ERROR,
                        format!("expected 'channel.open' on channel {}", f.channel),
                    ));
                };
                if ch.closing {
                    return Ok(true);
                }
                let r = if f.kind == FRAME_HEADER {
                    ch.handle_header(&ctx, payload)
                } else {
                    ch.handle_body(&ctx, payload)
                };
                if let Err(e) = r {
                    close_channel_with(&ctx, ch, e)?;
                }
                Ok(true)
            }
            other => Err(AmqpError::new(
                FRAME_ERROR,
                format!("unknown frame type {other}"),
            )),
        }
    }

    /// `connection.blocked` (with the alarm as reason) or `connection.unblocked`, for clients
    /// that announced the capability; others just stop being read from.
    fn tell_blocked(&self, reason: Option<String>) {
        match &reason {
            Some(r) => {
                tracing::warn!(peer = %self.env.peer, "blocking publishing connection {}: {r}", self.env.id)
            }
            None => tracing::info!(peer = %self.env.peer, "unblocking connection {}", self.env.id),
        }
        if !self.env.session.connection_blocked {
            return;
        }
        let m = match reason {
            Some(r) => connection::AMQPMethod::Blocked(connection::Blocked {
                reason: ShortString::from(r),
            }),
            None => connection::AMQPMethod::Unblocked(connection::Unblocked {}),
        };
        self.env
            .wire
            .send(|out| out.method(0, &AMQPClass::Connection(m)));
    }

    fn connection_method(&mut self, method: AMQPClass) -> Result<bool, AmqpError> {
        match method {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                tracing::debug!(peer = %self.env.peer, "client closed connection: {} {}", c.reply_code, c.reply_text);
                self.cleanup();
                let ok =
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
                self.env.wire.send(|out| out.method(0, &ok));
                Ok(false)
            }
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)) => Ok(false),
            AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(_)) => {
                let ok = AMQPClass::Connection(connection::AMQPMethod::UpdateSecretOk(
                    connection::UpdateSecretOk {},
                ));
                self.env.wire.send(|out| out.method(0, &ok));
                Ok(true)
            }
            other => Err(AmqpError::new(
                COMMAND_INVALID,
                format!(
                    "method class {} id {} is not valid on channel 0",
                    other.get_amqp_class_id(),
                    other.get_amqp_method_id()
                ),
            )
            .on(other.get_amqp_class_id(), other.get_amqp_method_id())),
        }
    }

    fn channel_method(&mut self, id: u16, method: AMQPClass) -> Result<(), AmqpError> {
        if id > self.env.session.channel_max {
            return Err(AmqpError::new(
                CHANNEL_ERROR,
                format!(
                    "channel {id} exceeds the negotiated channel_max {}",
                    self.env.session.channel_max
                ),
            ));
        }
        let ids = (method.get_amqp_class_id(), method.get_amqp_method_id());
        let ctx = self.env.ctx();
        match method {
            AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                if self.channels.contains_key(&id) {
                    return Err(AmqpError::new(CHANNEL_ERROR, "second 'channel.open' seen")
                        .on(ids.0, ids.1));
                }
                let ch = Channel::new(id, self.env.wire.clone());
                self.env.live.add_channel(&ch.link);
                self.channels.insert(id, ch);
                let ok = AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {}));
                self.env.wire.send(|out| out.method(id, &ok));
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                if let Some(mut ch) = self.channels.remove(&id) {
                    ch.flush_confirms(&self.env.wire, self.env.synced_epoch());
                    ch.shutdown(&ctx);
                }
                let ok = AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}));
                self.env.wire.send(|out| out.method(id, &ok));
                Ok(())
            }
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                if self.channels.get(&id).is_some_and(|c| c.closing) {
                    self.channels.remove(&id);
                }
                Ok(())
            }
            method => {
                let Some(ch) = self.channels.get_mut(&id) else {
                    return Err(AmqpError::new(
                        CHANNEL_ERROR,
                        format!("expected 'channel.open' on channel {id}"),
                    )
                    .on(ids.0, ids.1));
                };
                if ch.closing {
                    return Ok(());
                }
                if let Err(e) = ch.handle_method(&ctx, method) {
                    close_channel_with(&ctx, ch, e)?;
                }
                Ok(())
            }
        }
    }

    /// Submits a channel's metadata change to the cluster and answers it (the frame loop
    /// reads nothing meanwhile, so the channel's later methods see the change).
    async fn finish_meta(
        &mut self,
        p: crate::channel::clustered::PendingMeta,
    ) -> Result<(), AmqpError> {
        let outcome = self.env.broker.submit(p.op).await;
        let ctx = self.env.ctx();
        let Some(ch) = self.channels.get_mut(&p.channel) else {
            return Ok(());
        };
        if let Err(e) = ch.complete_meta(&ctx, p.then, outcome) {
            let e = if e.class_id == 0 {
                e.on(p.method.0, p.method.1)
            } else {
                e
            };
            close_channel_with(&ctx, ch, e)?;
        }
        Ok(())
    }

    /// Passes a channel's `basic.get`/purge to the queue's home node and answers it.
    async fn finish_remote(
        &mut self,
        p: crate::channel::clustered::PendingRemote,
    ) -> Result<(), AmqpError> {
        let outcome = match p.queue.remote_link() {
            Some(r) => r.request(&p.queue, p.request).await,
            None => Err("not a stand-in".into()),
        };
        let ctx = self.env.ctx();
        let Some(ch) = self.channels.get_mut(&p.channel) else {
            return Ok(());
        };
        let method = p.method;
        if let Err(e) = ch.complete_remote(&ctx, p, outcome) {
            let e = if e.class_id == 0 {
                e.on(method.0, method.1)
            } else {
                e
            };
            close_channel_with(&ctx, ch, e)?;
        }
        Ok(())
    }

    /// Ends every channel (requeueing unacked messages) and deletes exclusive queues.
    fn cleanup(&mut self) {
        let ctx = self.env.ctx();
        for (_, mut ch) in self.channels.drain() {
            ch.shutdown(&ctx);
        }
        for name in self.env.session.vhost.exclusive_queues_of(self.env.id) {
            if let Some(q) = self.env.session.vhost.queue(&name) {
                declare::delete_queue_now(&ctx, &q);
            }
        }
    }
}

/// The durable epoch up to which this session's publishes may be confirmed (everything is
/// durable without a journal). Another node's internal link (and this node's link to
/// itself) must not wait for this node's own forwarding, or two forwarding nodes could wait
/// for each other forever (see `Journal::synced_for_peers`); a client waits for everything.
fn confirmable_epoch(broker: &Broker, user: &str) -> u64 {
    broker.journal().map_or(u64::MAX, |j| {
        if confirms_for_peer(user) {
            j.synced_for_peers_epoch()
        } else {
            j.synced_epoch()
        }
    })
}

/// Whether this session is another node's (or this node's own) internal link.
fn confirms_for_peer(user: &str) -> bool {
    user == crate::auth::INTERNAL_USER
}

/// A channel-level error closes the channel (the client answers `close-ok`); a
/// connection-level one is passed up.
fn close_channel_with(ctx: &Ctx<'_>, ch: &mut Channel, e: AmqpError) -> Result<(), AmqpError> {
    if e.is_connection_error() {
        return Err(e);
    }
    tracing::info!("closing channel {}: {e}", ch.id);
    ch.flush_confirms(ctx.wire, confirmable_epoch(ctx.broker, ctx.user));
    ch.shutdown(ctx);
    ch.closing = true;
    let m = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
        reply_code: e.code,
        reply_text: ShortString::from(e.text),
        class_id: e.class_id,
        method_id: e.method_id,
    }));
    ctx.wire.send(|out| out.method(ch.id, &m));
    Ok(())
}

fn method_error(e: MethodError) -> AmqpError {
    let (c, m) = e.ids();
    let code = match e {
        MethodError::Unknown { .. } => NOT_IMPLEMENTED,
        _ => FRAME_ERROR,
    };
    AmqpError::new(code, e.to_string()).on(c, m)
}
