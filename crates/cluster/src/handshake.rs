//! The cluster port's framing and challenge–response authentication.
//!
//! Messages are JSON objects, one per line. The node speaks first:
//! `{"node": "warren@h", "challenge": "<hex>"}`; the peer answers
//! `{"client": "<its name>", "response": hex(HMAC-SHA256(cookie, challenge))}`; the node
//! replies `{"ok": true}` or refuses and closes. After that each request line gets one
//! response line.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// The longest line accepted (bounded so a peer cannot make us buffer without limit).
const MAX_LINE: usize = 64 << 20;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn prove(cookie: &str, challenge: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cookie.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(challenge.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// One authenticated connection on the cluster port.
pub struct Channel {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    /// The other side's name.
    pub peer: String,
}

impl Channel {
    pub async fn send(&mut self, v: &Value) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.wr.write_all(&line).await
    }

    pub async fn recv(&mut self) -> std::io::Result<Option<Value>> {
        read_json(&mut self.rd).await
    }

    /// Sends a request and waits for its response.
    pub async fn call(&mut self, v: &Value) -> std::io::Result<Value> {
        self.send(v).await?;
        self.recv().await?.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "node closed the connection",
            )
        })
    }
}

async fn read_json(rd: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Option<Value>> {
    let mut line = Vec::new();
    let n = (&mut *rd)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

use tokio::io::AsyncReadExt;

/// Node side: challenges the peer; `Err` (already logged) if it does not know the cookie.
pub async fn accept(stream: TcpStream, cookie: &str, node: &str) -> Result<Channel, String> {
    let (rd, wr) = stream.into_split();
    let mut ch = Channel {
        rd: BufReader::new(rd),
        wr,
        peer: String::new(),
    };
    let challenge = hex(&rand::random::<[u8; 32]>());
    ch.send(&json!({"node": node, "challenge": challenge}))
        .await
        .map_err(|e| e.to_string())?;
    let reply = ch
        .recv()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("peer closed before answering the challenge")?;
    let client = reply
        .get("client")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let response = reply.get("response").and_then(Value::as_str).unwrap_or("");
    if !constant_time_eq(response, &prove(cookie, &challenge)) {
        tracing::warn!("** Connection attempt from node '{client}' rejected by node '{node}'. Invalid challenge reply. **");
        let _ = ch.send(&json!({"error": "authentication failed"})).await;
        return Err(format!("peer {client} failed the cookie challenge"));
    }
    ch.send(&json!({"ok": true}))
        .await
        .map_err(|e| e.to_string())?;
    ch.peer = client;
    Ok(ch)
}

/// Why a connection to a node failed.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP connection refused or unreachable.
    Unreachable(std::io::Error),
    /// The TCP connection succeeded but the node refused our cookie.
    Rejected,
    /// The node spoke something else.
    Protocol(String),
}

/// Peer side: connects and answers the node's challenge.
pub async fn connect(
    addr: (&str, u16),
    cookie: &str,
    client: &str,
) -> Result<Channel, ConnectError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ConnectError::Unreachable)?;
    let (rd, wr) = stream.into_split();
    let mut ch = Channel {
        rd: BufReader::new(rd),
        wr,
        peer: String::new(),
    };
    let hello = ch
        .recv()
        .await
        .map_err(|e| ConnectError::Protocol(e.to_string()))?
        .ok_or_else(|| ConnectError::Protocol("node closed the connection".into()))?;
    let challenge = hello.get("challenge").and_then(Value::as_str).unwrap_or("");
    ch.peer = hello
        .get("node")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    ch.send(&json!({"client": client, "response": prove(cookie, challenge)}))
        .await
        .map_err(|e| ConnectError::Protocol(e.to_string()))?;
    match ch.recv().await {
        Ok(Some(v)) if v.get("ok").and_then(Value::as_bool) == Some(true) => Ok(ch),
        Ok(_) | Err(_) => Err(ConnectError::Rejected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_cookie_passes_wrong_cookie_fails() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = l.accept().await.unwrap();
                if let Ok(mut ch) = accept(s, "SECRET", "warren@test").await {
                    let req = ch.recv().await.unwrap().unwrap();
                    ch.send(&json!({"echo": req})).await.unwrap();
                }
            }
        });
        let mut ch = connect(("127.0.0.1", port), "SECRET", "ctl@test")
            .await
            .unwrap();
        assert_eq!(ch.peer, "warren@test");
        let r = ch.call(&json!({"command": "status"})).await.unwrap();
        assert_eq!(r["echo"]["command"], "status");
        assert!(matches!(
            connect(("127.0.0.1", port), "WRONG", "ctl@test").await,
            Err(ConnectError::Rejected)
        ));
    }
}
