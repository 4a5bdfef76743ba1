//! Stand-ins for queues whose home is another cluster node.
//!
//! Every node knows every queue (the metadata is replicated), but a queue's messages live on
//! its home node. On the other nodes the queue is a stand-in that clients use as if it were
//! local:
//! - **Publishing**: a message routed to a stand-in is forwarded to the home node over an
//!   internal AMQP connection with publisher confirms. The publisher's own confirm waits for
//!   the home node's, through an external ticket in this node's journal (`reserve_external`),
//!   so it is ordered with local confirms by the same machinery. A message the home node
//!   refuses or cannot take yet is sent again; a full forwarding buffer refuses new messages
//!   (`basic.nack`): backpressure, never a silent drop.
//! - **Consuming**: while a stand-in has local consumers, it pulls deliveries from the home
//!   node (a consumer there, with a bounded prefetch) into its local ready list, and the
//!   normal queue machinery delivers them. Acks, rejects and no-ack deliveries are passed back
//!   with the home node's delivery tags; the home node dead-letters rejects with its own
//!   settings. When the last local consumer leaves, what the stand-in holds is handed back
//!   (`basic.nack requeue`). If the link breaks, the home node requeues everything it had
//!   delivered; settlements of that generation are dropped, since they no longer mean
//!   anything there.
//!
//! The internal connections log in as `auth::INTERNAL_USER` with a secret derived from the
//! cluster cookie.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use warren_amqp::content::ContentHeader;
use warren_amqp::frame::{FRAME_BODY, FRAME_HEADER, FRAME_METHOD};
use warren_amqp::outgoing::Outgoing;
use warren_amqp::{basic, confirm, connection, queue, AMQPClass, FieldTable, ShortString};

use super::{Enqueued, Queue};
use crate::broker::Broker;
use crate::client::{Client, Uri};
use crate::message::Message;

/// Messages waiting for the home node per (home, vhost) link; beyond this, publishes are
/// refused with a nack.
const FORWARD_BUFFER: usize = 10_000;
/// Deliveries a stand-in may hold from its home node at once.
const PULL_PREFETCH: u16 = 500;
/// Entry ids of a stand-in: link generation above, home node's delivery tag below.
const TAG_BITS: u32 = 40;
const RETRY: Duration = Duration::from_millis(500);
/// How soon a forwarding link tries a home node again (failover needs it short).
const FAILED_CONNECT_RETRY: Duration = Duration::from_millis(50);

/// What becomes of a message taken from the home node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    Ack,
    Reject,
}

pub struct StandIn {
    pub home: String,
    settles: Mutex<Vec<(u64, Settle)>>,
    requests: Mutex<VecDeque<(Request, Reply)>>,
    wake: Notify,
    pulling: AtomicBool,
    generation: AtomicU64,
    /// The queue moved to another home (failover): this stand-in's links end.
    retired: AtomicBool,
}

/// One message on its way to the home node.
pub(crate) struct Forward {
    queue: String,
    msg: Arc<Message>,
    ticket: u64,
    /// Sent before, over a link that broke before confirming it: it may be there already.
    resent: bool,
}

/// The header a forwarded message carries on the internal link: the exchange and routing
/// key the client used (the link itself publishes straight to the queue) and whether it is
/// a resend. The home node takes it off again (`unwrap_forwarded`).
const FORWARDED: &str = "x-warren-forwarded";

/// On the home node: restores a forwarded message's exchange, routing key and the client's
/// own properties (byte for byte); returns whether it is a resend (to be marked
/// redelivered) and the queue it was sent to (the routing key the link published with).
pub fn unwrap_forwarded(m: &mut Message) -> Option<(bool, String)> {
    use warren_amqp::AMQPValue;
    let headers = m.properties.headers().as_ref()?;
    let Some(AMQPValue::FieldArray(a)) = headers.inner().get(FORWARDED) else {
        return None;
    };
    let (
        Some(AMQPValue::LongString(exchange)),
        Some(AMQPValue::LongString(routing_key)),
        Some(AMQPValue::Boolean(resent)),
        Some(AMQPValue::ByteArray(raw)),
    ) = (
        a.as_slice().first(),
        a.as_slice().get(1),
        a.as_slice().get(2),
        a.as_slice().get(3),
    )
    else {
        return None;
    };
    let raw = Bytes::copy_from_slice(raw.as_slice());
    let properties = warren_amqp::content::decode_properties(&raw)?;
    let resent = *resent;
    m.exchange = exchange.to_string();
    let queue = std::mem::replace(&mut m.routing_key, routing_key.to_string());
    m.raw_properties = raw;
    m.properties = properties;
    Some((resent, queue))
}

/// The properties a forwarded message travels with (see `FORWARDED`).
fn forwarded_properties(f: &Forward) -> Bytes {
    use warren_amqp::AMQPValue;
    let mut headers = f.msg.properties.headers().clone().unwrap_or_default();
    let fields = vec![
        AMQPValue::LongString(f.msg.exchange.clone().into()),
        AMQPValue::LongString(f.msg.routing_key.clone().into()),
        AMQPValue::Boolean(f.resent),
        AMQPValue::ByteArray(f.msg.raw_properties.to_vec().into()),
    ];
    headers.insert(FORWARDED.into(), AMQPValue::FieldArray(fields.into()));
    warren_amqp::content::encode_properties(&f.msg.properties.clone().with_headers(headers))
}

impl StandIn {
    pub fn new(home: &str) -> StandIn {
        StandIn {
            home: home.to_string(),
            settles: Mutex::new(Vec::new()),
            requests: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            pulling: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// The queue's home moved: links of this stand-in end, and what they had pulled is
    /// void (settlements carry the old generation and are dropped).
    pub(super) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.fail_requests("the queue moved to another node");
        self.wake.notify_one();
    }

    fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(super) fn settle(&self, s: Vec<(u64, Settle)>) {
        self.settles.lock().extend(s);
        self.wake.notify_one();
    }

    pub(super) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Sends `msg` to the home node; the publisher's confirm waits for the home node's.
    pub(super) fn forward(&self, q: &Arc<Queue>, msg: Arc<Message>) -> Enqueued {
        let Some(broker) = q.vhost_ref.upgrade().and_then(|v| v.broker()) else {
            return Enqueued::Rejected;
        };
        let Some(journal) = broker.journal().cloned() else {
            return Enqueued::Rejected;
        };
        let link = broker.forward_link(&self.home, &q.vhost);
        let ticket = journal.reserve_external();
        let f = Forward {
            queue: q.name.clone(),
            msg,
            ticket,
            resent: false,
        };
        match link.try_send(f) {
            Ok(()) => Enqueued::Accepted { sync: ticket },
            Err(_) => {
                journal.complete_external(ticket);
                tracing::warn!(
                    "refused a message for queue '{}' on node {}: {FORWARD_BUFFER} messages already wait for that node",
                    q.name,
                    self.home
                );
                Enqueued::Rejected
            }
        }
    }

    /// Starts the link to the home node if it is not running (a local consumer or a
    /// request arrived).
    pub(super) fn start_pulling(self: &Arc<Self>, q: &Arc<Queue>) {
        if self.pulling.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
            return;
        }
        tokio::spawn(pull(Arc::downgrade(q), self.clone()));
    }
}

impl Broker {
    /// The sender of the forwarding link to `home` for `vhost` (started on first use).
    fn forward_link(self: &Arc<Self>, home: &str, vhost: &str) -> mpsc::Sender<Forward> {
        let mut links = self.forward_links.lock();
        let key = (home.to_string(), vhost.to_string());
        if let Some(tx) = links.get(&key).filter(|tx| !tx.is_closed()) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::channel(FORWARD_BUFFER);
        tokio::spawn(forward_loop(
            Arc::downgrade(self),
            home.to_string(),
            vhost.to_string(),
            rx,
        ));
        links.insert(key, tx.clone());
        tx
    }
}

/// The forwarding links of a node, by (home node, vhost).
pub(crate) type ForwardLinks = Mutex<HashMap<(String, String), mpsc::Sender<Forward>>>;

/// An internal connection to `home`'s AMQP listener in `vhost`.
async fn connect(broker: &Broker, home: &str, vhost: &str) -> Result<Client, String> {
    let (host, port) = broker
        .metadata()
        .and_then(|m| m.node_amqp_address(home))
        .ok_or_else(|| format!("no address known for node {home}"))?;
    let pass = broker
        .auth
        .internal_secret()
        .ok_or("this node has no cluster secret")?;
    let uri = Uri {
        host,
        port,
        user: crate::auth::INTERNAL_USER.into(),
        pass,
        vhost: vhost.to_string(),
    };
    Client::connect(&uri).await.map_err(|e| e.to_string())
}

/// Publishes what arrives on `rx` to `home`, with confirms; resends anything unconfirmed
/// after a reconnect, and completes each message's ticket when the home node confirms it.
async fn forward_loop(
    broker: Weak<Broker>,
    home: String,
    vhost: String,
    mut rx: mpsc::Receiver<Forward>,
) {
    // Sent and not yet confirmed, in publish order, with their sequence numbers.
    let mut unconfirmed: VecDeque<(u64, Forward)> = VecDeque::new();
    let mut resend: VecDeque<Forward> = VecDeque::new();
    loop {
        // With nothing to send, (re)connect only once something arrives: a node that is down
        // for good is not dialled forever.
        if resend.is_empty() && unconfirmed.is_empty() {
            match rx.recv().await {
                Some(f) => resend.push_back(f),
                None => return,
            }
        }
        let Some(b) = broker.upgrade() else { return };
        let mut client = match connect(&b, &home, &vhost).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("forwarding to {home}: {e}");
                // A queue whose leader moved (failover) takes its messages along.
                reroute(&b, &home, &vhost, &mut unconfirmed, &mut resend, &mut rx);
                drop(b);
                tokio::time::sleep(FAILED_CONNECT_RETRY).await;
                continue;
            }
        };
        let journal = b.journal().cloned();
        drop(b);
        let ok = client
            .call(AMQPClass::Confirm(confirm::AMQPMethod::Select(
                confirm::Select { nowait: false },
            )))
            .await;
        if ok.is_err() {
            tokio::time::sleep(RETRY).await;
            continue;
        }
        // A new channel numbers publishes from 1 again: resend in the original order.
        resend.extend(unconfirmed.drain(..).map(|(_, mut f)| {
            f.resent = true;
            f
        }));
        let mut seq = 0u64;
        let frame_max = client.frame_max;
        let mut out = Outgoing::new();
        let result: Result<(), String> = async {
            loop {
                while let Some(f) = resend.pop_front() {
                    seq += 1;
                    publish(&mut out, &f, frame_max);
                    unconfirmed.push_back((seq, f));
                }
                if !out.is_empty() {
                    client.writer.write(&mut out).await.map_err(|e| e.to_string())?;
                }
                tokio::select! {
                    f = rx.recv() => {
                        let Some(f) = f else { return Ok(()) };
                        resend.push_back(f);
                        // Batch what is already waiting into the same write.
                        while resend.len() < 256 {
                            match rx.try_recv() {
                                Ok(f) => resend.push_back(f),
                                Err(_) => break,
                            }
                        }
                    }
                    frame = client.reader.frame() => {
                        let frame = frame.map_err(|e| e.to_string())?;
                        if frame.kind != FRAME_METHOD {
                            continue;
                        }
                        let Some((tag, multiple)) = crate::client::confirm_tag(&frame.payload) else {
                            continue;
                        };
                        let ack = frame.payload.get(2..4) == Some(&[0, 80][..]);
                        while unconfirmed.front().is_some_and(|(s, _)| *s == tag || (multiple && *s <= tag)) {
                            let (_, f) = unconfirmed.pop_front().expect("checked");
                            if ack {
                                if let Some(j) = &journal {
                                    j.complete_external(f.ticket);
                                }
                            } else {
                                // Refused for now (e.g. reject-publish): offer it again.
                                resend.push_back(f);
                            }
                        }
                        if !ack {
                            tokio::time::sleep(RETRY).await;
                        }
                    }
                }
            }
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!("link to {home} for forwarding lost ({e}); reconnecting");
                if let Some(b) = broker.upgrade() {
                    reroute(&b, &home, &vhost, &mut unconfirmed, &mut resend, &mut rx);
                }
                tokio::time::sleep(FAILED_CONNECT_RETRY).await;
            }
        }
    }
}

/// Hands the messages of queues no longer led by `home` (a failover moved them) to the
/// forwarding link of their new leader, in their order. Unconfirmed ones may have reached
/// the old leader and its mirrors: they can arrive twice (at least once, never lost).
fn reroute(
    b: &Arc<Broker>,
    home: &str,
    vhost: &str,
    unconfirmed: &mut VecDeque<(u64, Forward)>,
    resend: &mut VecDeque<Forward>,
    rx: &mut mpsc::Receiver<Forward>,
) {
    resend.extend(unconfirmed.drain(..).map(|(_, mut f)| {
        f.resent = true;
        f
    }));
    while let Ok(f) = rx.try_recv() {
        resend.push_back(f);
    }
    let Some(v) = b.vhost(vhost) else { return };
    let mut stay = VecDeque::new();
    for f in resend.drain(..) {
        let now = v.queue(&f.queue).map(|q| q.home_node(b));
        match now {
            Some(n) if n != home => {
                if let Err(e) = b.forward_link(&n, vhost).try_send(f) {
                    // The new link is full: keep it here and try again next round.
                    let f = match e {
                        mpsc::error::TrySendError::Full(f)
                        | mpsc::error::TrySendError::Closed(f) => f,
                    };
                    stay.push_back(f);
                }
            }
            // The queue is gone: nothing will confirm it; let the publisher go.
            None => {
                if let Some(j) = b.journal() {
                    j.complete_external(f.ticket);
                }
            }
            Some(_) => stay.push_back(f),
        }
    }
    *resend = stay;
}

fn publish(out: &mut Outgoing, f: &Forward, frame_max: u32) {
    // Straight to the queue through the home node's default exchange; the stand-in already
    // did the routing here.
    out.publish(1, "", &f.queue, false);
    out.content(1, &forwarded_properties(f), &f.msg.body, frame_max);
}

/// Keeps a link to the home node while the stand-in needs one: it has consumers, messages
/// out with local clients, or requests (`basic.get`, purge) to pass on.
async fn pull(queue: Weak<Queue>, r: Arc<StandIn>) {
    loop {
        let Some(q) = queue.upgrade() else { return };
        if r.is_retired() {
            return;
        }
        if !r.needed(&q) {
            r.pulling.store(false, Ordering::Release);
            // Something may have arrived between the check and the flag.
            if r.needed(&q) && !r.pulling.swap(true, Ordering::AcqRel) {
                continue;
            }
            return;
        }
        let Some(broker) = q.vhost_ref.upgrade().and_then(|v| v.broker()) else {
            return;
        };
        let generation = r.generation.fetch_add(1, Ordering::AcqRel) + 1;
        let client = connect(&broker, &r.home, &q.vhost).await;
        drop(broker);
        let result = match client {
            Ok(c) => link(&q, &r, c, generation).await,
            Err(e) => Err(e),
        };
        if r.is_retired() {
            return;
        }
        // Whatever the home node had delivered is back in its queue now.
        drop(q.take_ready());
        match result {
            Ok(()) => continue,
            Err(e) => {
                tracing::debug!("link for queue '{}' to {}: {e}", q.name, r.home);
                r.fail_requests(&e);
                drop(q);
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// A request a stand-in passes to its home node.
#[derive(Clone, Copy, Debug)]
pub enum Request {
    /// Fetch one message (answer: the message, or a count of 0 when the queue is empty).
    Get,
    /// Purge the queue there (answer: the number of messages purged).
    Purge,
}

/// What the home node answered.
pub enum Answer {
    Count(u32),
    /// A message fetched for `basic.get`, to be adopted by the asking client
    /// (`Queue::adopt`); it never waits in the stand-in's ready list.
    Message(super::Entry),
}

type Reply = tokio::sync::oneshot::Sender<Result<Answer, String>>;

impl StandIn {
    fn needed(&self, q: &Queue) -> bool {
        !q.is_deleted()
            && (q.has_consumers() || q.unacked_count() > 0 || !self.requests.lock().is_empty())
    }

    fn fail_requests(&self, why: &str) {
        for (_, tx) in self.requests.lock().drain(..) {
            let _ = tx.send(Err(why.to_string()));
        }
    }

    /// Passes `req` to the home node and waits for its answer.
    pub async fn request(self: &Arc<Self>, q: &Arc<Queue>, req: Request) -> Result<Answer, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.requests.lock().push_back((req, tx));
        self.start_pulling(q);
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(r)) => r,
            _ => Err(format!("node {} did not answer", self.home)),
        }
    }
}

/// A message arriving from the home node: (tag, redelivered, exchange, routing key, header,
/// body so far, answers a `basic.get`).
struct Incoming {
    tag: u64,
    redelivered: bool,
    exchange: String,
    routing_key: String,
    header: Option<ContentHeader>,
    body: BytesMut,
    for_get: bool,
}

/// One connection's worth of linking; `Ok` when the stand-in no longer needs it.
async fn link(
    q: &Arc<Queue>,
    r: &StandIn,
    mut client: Client,
    generation: u64,
) -> Result<(), String> {
    let e = |e: crate::client::Error| e.to_string();
    let id_of = |tag: u64| (generation << TAG_BITS) | tag;
    let tag_of = |id: u64| (id >> TAG_BITS == generation).then_some(id & ((1u64 << TAG_BITS) - 1));
    client
        .call(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: PULL_PREFETCH,
            global: false,
        })))
        .await
        .map_err(e)?;
    let mut consuming = false;
    let mut incoming: Option<Incoming> = None;
    let mut outstanding: Option<(Request, Reply)> = None;
    let mut idle_since: Option<std::time::Instant> = None;
    let mut out = Outgoing::new();
    loop {
        let want = q.has_consumers();
        if want && !consuming {
            out.method(
                1,
                &AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                    queue: ShortString::from(q.name.clone()),
                    consumer_tag: ShortString::from("warren-node-link"),
                    no_local: false,
                    no_ack: false,
                    exclusive: false,
                    nowait: true,
                    arguments: FieldTable::default(),
                })),
            );
            consuming = true;
        } else if !want && consuming {
            out.method(
                1,
                &AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: ShortString::from("warren-node-link"),
                    nowait: true,
                })),
            );
            consuming = false;
        }
        if !want {
            // Without consumers here, what waits (late deliveries, requeued messages) goes
            // back to the home node at once, to its place in the queue.
            for entry in q.take_ready() {
                if let Some(tag) = tag_of(entry.id) {
                    out.method(
                        1,
                        &AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                            delivery_tag: tag,
                            multiple: false,
                            requeue: true,
                        })),
                    );
                }
            }
        }
        if outstanding.is_none() {
            if let Some((req, tx)) = r.requests.lock().pop_front() {
                let m = match req {
                    Request::Get => AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                        queue: ShortString::from(q.name.clone()),
                        no_ack: false,
                    })),
                    Request::Purge => AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge {
                        queue: ShortString::from(q.name.clone()),
                        nowait: false,
                    })),
                };
                out.method(1, &m);
                outstanding = Some((req, tx));
            }
        }
        for (id, s) in std::mem::take(&mut *r.settles.lock()) {
            let Some(tag) = tag_of(id) else { continue };
            let m = match s {
                Settle::Ack => AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: tag,
                    multiple: false,
                })),
                Settle::Reject => AMQPClass::Basic(basic::AMQPMethod::Reject(basic::Reject {
                    delivery_tag: tag,
                    requeue: false,
                })),
            };
            out.method(1, &m);
        }
        let needed = r.needed(q) || outstanding.is_some() || incoming.is_some();
        let idle = if needed {
            idle_since = None;
            Duration::ZERO
        } else {
            idle_since
                .get_or_insert_with(std::time::Instant::now)
                .elapsed()
        };
        // Linger a little: a client doing get after get reuses the link.
        let done = q.is_deleted() || r.is_retired() || idle >= Duration::from_secs(2);
        if done {
            // Close properly: dropping the socket with deliveries unread would reset it,
            // and the home node could lose the acks written just before.
            out.method(
                0,
                &AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: ShortString::from("link no longer needed"),
                    class_id: 0,
                    method_id: 0,
                })),
            );
        }
        if !out.is_empty() {
            client.writer.write(&mut out).await.map_err(e)?;
        }
        if done {
            let close_ok = async {
                while let Ok(f) = client.reader.frame().await {
                    if f.kind == FRAME_METHOD && f.payload.get(..4) == Some(&[0, 10, 0, 51][..]) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), close_ok).await;
            return Ok(());
        }
        tokio::select! {
            frame = client.reader.frame() => {
                let f = frame.map_err(e)?;
                match f.kind {
                    FRAME_METHOD => match warren_amqp::method::decode(&f.payload).map_err(|x| x.to_string())? {
                        AMQPClass::Basic(basic::AMQPMethod::Deliver(d)) => {
                            incoming = Some(Incoming { tag: d.delivery_tag, redelivered: d.redelivered, exchange: d.exchange.to_string(), routing_key: d.routing_key.to_string(), header: None, body: BytesMut::new(), for_get: false });
                        }
                        AMQPClass::Basic(basic::AMQPMethod::GetOk(g)) => {
                            incoming = Some(Incoming { tag: g.delivery_tag, redelivered: g.redelivered, exchange: g.exchange.to_string(), routing_key: g.routing_key.to_string(), header: None, body: BytesMut::new(), for_get: true });
                        }
                        AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)) => {
                            if let Some((_, tx)) = outstanding.take() {
                                let _ = tx.send(Ok(Answer::Count(0)));
                            }
                        }
                        AMQPClass::Queue(queue::AMQPMethod::PurgeOk(p)) => {
                            if let Some((_, tx)) = outstanding.take() {
                                let _ = tx.send(Ok(Answer::Count(p.message_count)));
                            }
                        }
                        AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) => {
                            return Err("the home node cancelled (queue deleted)".into());
                        }
                        _ => {}
                    },
                    FRAME_HEADER => {
                        if let Some(m) = incoming.as_mut() {
                            m.header = Some(ContentHeader::decode(f.payload).map_err(|_| "bad content header")?);
                        }
                    }
                    FRAME_BODY => {
                        if let Some(m) = incoming.as_mut() {
                            m.body.extend_from_slice(&f.payload);
                        }
                    }
                    _ => {}
                }
                let complete = incoming
                    .as_ref()
                    .is_some_and(|m| m.header.as_ref().is_some_and(|h| m.body.len() as u64 >= h.body_size));
                if complete {
                    let m = incoming.take().expect("complete");
                    let header = m.header.expect("complete");
                    let msg = Arc::new(Message {
                        exchange: m.exchange,
                        routing_key: m.routing_key,
                        raw_properties: header.raw_properties,
                        properties: header.properties,
                        body: Bytes::from(m.body),
                    });
                    if m.for_get {
                        let entry = super::Entry { id: id_of(m.tag), msg, redelivered: m.redelivered, priority: 0, expires_at: None, seg: None, offset: 0, paged: None, incarnation: q.incarnation() };
                        match outstanding.take() {
                            Some((_, tx)) => {
                                if let Err(Ok(Answer::Message(e))) = tx.send(Ok(Answer::Message(entry))) {
                                    // The asker gave up: give the message back.
                                    q.push_remote(r, e.id, e.redelivered, e.msg);
                                }
                            }
                            None => q.push_remote(r, entry.id, entry.redelivered, entry.msg),
                        }
                    } else {
                        q.push_remote(r, id_of(m.tag), m.redelivered, msg);
                    }
                }
            }
            _ = r.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)), if !needed => {}
        }
    }
}
