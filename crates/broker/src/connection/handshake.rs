//! The connection handshake: protocol header, start/start-ok (authentication), tune/tune-ok,
//! open/open-ok — with RabbitMQ's server properties, limits and refusal texts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use warren_amqp::frame::{self, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE};
use warren_amqp::reply::{AmqpError, ACCESS_REFUSED, COMMAND_INVALID, NOT_ALLOWED};
use warren_amqp::{connection, AMQPClass, AMQPValue, FieldTable, LongString, ShortString};

use super::wire::Wire;
use crate::auth::{parse_credentials, LoginError};
use crate::broker::Broker;
use crate::vhost::Vhost;

/// RabbitMQ's `handshake_timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the handshake settled.
pub struct Session {
    pub user: String,
    pub vhost: Arc<Vhost>,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub consumer_cancel_notify: bool,
    pub connection_blocked: bool,
    pub client_properties: FieldTable,
}

/// How a handshake ended without a session.
pub enum HandshakeFailure {
    /// Close the socket without a word (bad header, client went away, timeout, or a failed
    /// login by a client that did not ask for `authentication_failure_close`).
    Drop(String),
    /// Send `connection.close` with this error, then drop.
    Close(AmqpError),
}

impl From<std::io::Error> for HandshakeFailure {
    fn from(e: std::io::Error) -> Self {
        HandshakeFailure::Drop(format!("socket error during handshake: {e}"))
    }
}

pub async fn run<R: AsyncRead + Unpin>(
    broker: &Arc<Broker>,
    rd: &mut R,
    buf: &mut BytesMut,
    wire: &Wire,
    peer: SocketAddr,
) -> Result<Session, HandshakeFailure> {
    let mut header = [0u8; 8];
    rd.read_exact(&mut header).await?;
    if &header != warren_amqp::PROTOCOL_HEADER {
        wire.send(|out| out.raw(warren_amqp::PROTOCOL_HEADER));
        return Err(HandshakeFailure::Drop(format!(
            "unsupported protocol header {header:?}"
        )));
    }
    let cfg = &broker.config;
    send(
        wire,
        connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(&cfg.node_name),
            mechanisms: LongString::from("PLAIN AMQPLAIN"),
            locales: LongString::from("en_US"),
        }),
    );
    let start_ok = match next_method(rd, buf, cfg.frame_max).await? {
        connection::AMQPMethod::StartOk(s) => s,
        other => return Err(unexpected(&other)),
    };
    let caps = start_ok
        .client_properties
        .inner()
        .get("capabilities")
        .and_then(|v| match v {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let cap = |k: &str| matches!(caps.inner().get(k), Some(AMQPValue::Boolean(true)));
    let mechanism = start_ok.mechanism.as_str();
    if mechanism != "PLAIN" && mechanism != "AMQPLAIN" {
        return Err(HandshakeFailure::Close(AmqpError::new(
            COMMAND_INVALID,
            format!("unknown authentication mechanism '{mechanism}'"),
        )));
    }
    let (user, password) = parse_credentials(mechanism, start_ok.response.as_bytes())
        .ok_or_else(|| {
            HandshakeFailure::Close(AmqpError::new(
                ACCESS_REFUSED,
                format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
            ))
        })?;
    if let Err(why) = broker.auth.login(&user, &password, peer.ip()) {
        let reason = match why {
            LoginError::UnknownUser => format!("user '{user}' - invalid credentials"),
            LoginError::BadPassword => format!("user '{user}' - invalid credentials"),
            LoginError::LoopbackOnly => {
                format!("user '{user}' - User can only log in via localhost")
            }
        };
        tracing::warn!(%peer, "login refused: {reason}");
        let err = AmqpError::new(
            ACCESS_REFUSED,
            format!("Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."),
        );
        return Err(if cap("authentication_failure_close") {
            HandshakeFailure::Close(err)
        } else {
            HandshakeFailure::Drop(reason)
        });
    }
    send(
        wire,
        connection::AMQPMethod::Tune(connection::Tune {
            channel_max: cfg.channel_max,
            frame_max: cfg.frame_max,
            heartbeat: cfg.heartbeat,
        }),
    );
    let tune_ok = match next_method(rd, buf, cfg.frame_max).await? {
        connection::AMQPMethod::TuneOk(t) => t,
        other => return Err(unexpected(&other)),
    };
    let frame_max = if tune_ok.frame_max == 0 {
        cfg.frame_max
    } else {
        tune_ok.frame_max
    };
    if frame_max > cfg.frame_max {
        return Err(HandshakeFailure::Close(AmqpError::new(
            NOT_ALLOWED,
            format!("frame_max={frame_max} > {} max size", cfg.frame_max),
        )));
    }
    if frame_max < FRAME_MIN_SIZE {
        return Err(HandshakeFailure::Close(AmqpError::new(
            NOT_ALLOWED,
            format!("frame_max={frame_max} < {FRAME_MIN_SIZE} min size"),
        )));
    }
    let channel_max = match (tune_ok.channel_max, cfg.channel_max) {
        (0, s) => s,
        (c, s) => c.min(s),
    };
    let open = match next_method(rd, buf, frame_max).await? {
        connection::AMQPMethod::Open(o) => o,
        other => return Err(unexpected(&other)),
    };
    let vhost_name = open.virtual_host.as_str();
    let vhost = broker.vhost(vhost_name).ok_or_else(|| {
        HandshakeFailure::Close(AmqpError::new(
            NOT_ALLOWED,
            format!("vhost {vhost_name} not found"),
        ))
    })?;
    if !broker.auth.can_access_vhost(&user, vhost_name) {
        return Err(HandshakeFailure::Close(AmqpError::new(
            NOT_ALLOWED,
            format!("access to vhost '{vhost_name}' refused for user '{user}'"),
        )));
    }
    send(wire, connection::AMQPMethod::OpenOk(connection::OpenOk {}));
    Ok(Session {
        user,
        vhost,
        frame_max,
        channel_max,
        heartbeat: tune_ok.heartbeat,
        consumer_cancel_notify: cap("consumer_cancel_notify"),
        connection_blocked: cap("connection.blocked"),
        client_properties: start_ok.client_properties,
    })
}

fn send(wire: &Wire, m: connection::AMQPMethod) {
    wire.send(|out| out.method(0, &AMQPClass::Connection(m)));
}

fn unexpected(m: &connection::AMQPMethod) -> HandshakeFailure {
    HandshakeFailure::Close(AmqpError::new(
        COMMAND_INVALID,
        format!("unexpected method during handshake: {m:?}"),
    ))
}

/// Reads the next connection-class method on channel 0, skipping heartbeats.
async fn next_method<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    frame_max: u32,
) -> Result<connection::AMQPMethod, HandshakeFailure> {
    loop {
        match frame::decode(buf, frame_max) {
            Err(e) => {
                return Err(HandshakeFailure::Close(AmqpError::new(
                    warren_amqp::reply::FRAME_ERROR,
                    e.to_string(),
                )))
            }
            Ok(Some(f)) if f.kind == FRAME_HEARTBEAT => continue,
            Ok(Some(f)) if f.kind == FRAME_METHOD && f.channel == 0 => {
                return match warren_amqp::method::decode(&f.payload) {
                    Ok(AMQPClass::Connection(m)) => Ok(m),
                    Ok(other) => Err(HandshakeFailure::Close(AmqpError::new(
                        COMMAND_INVALID,
                        format!(
                            "unexpected method class {} during handshake",
                            other.get_amqp_class_id()
                        ),
                    ))),
                    Err(e) => Err(HandshakeFailure::Close(AmqpError::new(
                        warren_amqp::reply::FRAME_ERROR,
                        e.to_string(),
                    ))),
                };
            }
            Ok(Some(_)) => {
                return Err(HandshakeFailure::Close(AmqpError::new(
                    warren_amqp::reply::UNEXPECTED_FRAME,
                    "unexpected frame during handshake",
                )))
            }
            Ok(None) => {
                if rd.read_buf(buf).await? == 0 {
                    return Err(HandshakeFailure::Drop(
                        "client closed the socket during the handshake".into(),
                    ));
                }
            }
        }
    }
}

fn server_properties(node: &str) -> FieldTable {
    let mut caps = FieldTable::default();
    for c in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(ShortString::from(c), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    let s = |v: &str| AMQPValue::LongString(LongString::from(v));
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p.insert("cluster_name".into(), s(node));
    p.insert("copyright".into(), s("Copyright (c) the Warren authors"));
    p.insert(
        "information".into(),
        s("Warren: a RabbitMQ-compatible broker. Licensed under the Apache License 2.0"),
    );
    p.insert("platform".into(), s("Rust"));
    p.insert("product".into(), s("Warren"));
    p.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
    p
}
