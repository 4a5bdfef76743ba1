//! A minimal AMQP 0-9-1 client over Warren's own codec, for `warren perf` and for the
//! links between cluster nodes (a node forwards publishes to a queue's home node and pulls
//! deliveries from it as an ordinary, if privileged, AMQP client).
//!
//! Why not lapin here: measured on this 2-core machine, lapin spent 113% CPU to move 20k
//! msg/s (one frame per wakeup through its IO loop), so it — not the broker — set the
//! result. This client writes hundreds of publishes per syscall and parses deliveries and
//! confirms by hand. It speaks PLAIN login, one channel, publish, consume, ack.

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use warren_amqp::frame::{self, Frame, FRAME_METHOD};
use warren_amqp::outgoing::Outgoing;
use warren_amqp::{channel, connection, AMQPClass, FieldTable, LongString, ShortString};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// `amqp://user:pass@host:port/vhost`, percent-decoded.
#[derive(Clone, Debug)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_uri(s: &str) -> Result<Uri, Error> {
    let rest = s
        .strip_prefix("amqp://")
        .ok_or_else(|| format!("unsupported URI '{s}' (expected amqp://...)"))?;
    let (auth, hostpart) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let (user, pass) = match auth.and_then(|a| a.split_once(':')) {
        Some((u, p)) => (percent_decode(u), percent_decode(p)),
        None => ("guest".to_string(), "guest".to_string()),
    };
    let (hostport, vhost) = match hostpart.split_once('/') {
        Some((h, v)) => (
            h,
            if v.is_empty() {
                "/".to_string()
            } else {
                percent_decode(v)
            },
        ),
        None => (hostpart, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.trim_matches(['[', ']']).to_string(),
            p.parse().map_err(|_| format!("bad port in '{s}'"))?,
        ),
        _ => (hostport.to_string(), 5672),
    };
    Ok(Uri {
        host,
        port,
        user,
        pass,
        vhost,
    })
}

pub struct Reader {
    rd: OwnedReadHalf,
    buf: BytesMut,
}

impl Reader {
    /// The next frame; errors on EOF or a broker-sent `connection.close`/`channel.close`.
    pub async fn frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(f) = frame::decode(&mut self.buf, 0)? {
                if f.kind == FRAME_METHOD && f.payload.len() >= 4 {
                    let ids = (
                        u16::from_be_bytes([f.payload[0], f.payload[1]]),
                        u16::from_be_bytes([f.payload[2], f.payload[3]]),
                    );
                    if ids == (10, 50) || ids == (20, 40) {
                        let m = warren_amqp::method::decode(&f.payload)?;
                        return Err(format!("broker closed: {m:?}").into());
                    }
                }
                return Ok(f);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed by broker".into());
            }
        }
    }

    /// True when a complete frame is already buffered (lets callers batch their replies).
    pub fn has_buffered_frame(&self) -> bool {
        self.buf.len() >= 7 && {
            let size =
                u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]) as usize;
            self.buf.len() >= size + 8
        }
    }

    async fn method(&mut self) -> Result<AMQPClass, Error> {
        loop {
            let f = self.frame().await?;
            if f.kind == FRAME_METHOD {
                return Ok(warren_amqp::method::decode(&f.payload)?);
            }
        }
    }
}

pub struct Writer {
    wr: OwnedWriteHalf,
}

impl Writer {
    pub async fn write(&mut self, out: &mut Outgoing) -> Result<(), Error> {
        // One writev for a whole batch: a write per chunk cost two small sends per message
        // (frames, then the body) and made the load generator, not the broker, the limit.
        crate::connection::wire::write_chunks(&mut self.wr, out.take()).await?;
        Ok(())
    }
}

/// A connection with channel 1 open.
pub struct Client {
    pub reader: Reader,
    pub writer: Writer,
    pub frame_max: u32,
}

impl Client {
    pub async fn connect(uri: &Uri) -> Result<Client, Error> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", uri.host, uri.port))?;
        stream.set_nodelay(true)?;
        let (rd, wr) = stream.into_split();
        let mut c = Client {
            reader: Reader {
                rd,
                buf: BytesMut::with_capacity(64 * 1024),
            },
            writer: Writer { wr },
            frame_max: 131072,
        };
        let mut out = Outgoing::new();
        out.raw(warren_amqp::PROTOCOL_HEADER);
        c.writer.write(&mut out).await?;
        match c.reader.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(_)) => {}
            other => return Err(format!("expected connection.start, got {other:?}").into()),
        }
        let response = format!("\0{}\0{}", uri.user, uri.pass);
        out.method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: FieldTable::default(),
                mechanism: ShortString::from("PLAIN"),
                response: LongString::from(response.into_bytes()),
                locale: ShortString::from("en_US"),
            })),
        );
        c.writer.write(&mut out).await?;
        let tune = match c.reader.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(format!("login refused or unexpected reply: {other:?}").into()),
        };
        c.frame_max = if tune.frame_max == 0 {
            131072
        } else {
            tune.frame_max
        };
        out.method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: c.frame_max,
                heartbeat: 0,
            })),
        );
        out.method(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ShortString::from(uri.vhost.clone()),
            })),
        );
        c.writer.write(&mut out).await?;
        match c.reader.method().await? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => {}
            other => return Err(format!("connection.open refused: {other:?}").into()),
        }
        c.call(AMQPClass::Channel(channel::AMQPMethod::Open(
            channel::Open {},
        )))
        .await?;
        Ok(c)
    }

    /// Sends a synchronous method on channel 1 and returns the reply.
    pub async fn call(&mut self, m: AMQPClass) -> Result<AMQPClass, Error> {
        let mut out = Outgoing::new();
        out.method(1, &m);
        self.writer.write(&mut out).await?;
        self.reader.method().await
    }
}

/// Delivery tag of a `basic.deliver` payload, parsed by hand (the consumer's hot path).
pub fn deliver_tag(payload: &[u8]) -> Option<u64> {
    let tag_len = *payload.get(4)? as usize;
    let at = 5 + tag_len;
    let b: [u8; 8] = payload.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// (delivery tag, multiple) of a `basic.ack`/`basic.nack` payload.
pub fn confirm_tag(payload: &[u8]) -> Option<(u64, bool)> {
    let b: [u8; 8] = payload.get(4..12)?.try_into().ok()?;
    Some((
        u64::from_be_bytes(b),
        payload.get(12).is_some_and(|f| f & 1 == 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let u = parse_uri("amqp://guest:guest@127.0.0.1:5699/%2f").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("127.0.0.1", 5699, "/")
        );
        let u = parse_uri("amqp://localhost").unwrap();
        assert_eq!(
            (u.port, u.user.as_str(), u.vhost.as_str()),
            (5672, "guest", "/")
        );
        let u = parse_uri("amqp://a:b%40c@h:1/v").unwrap();
        assert_eq!((u.pass.as_str(), u.vhost.as_str()), ("b@c", "v"));
    }
}
