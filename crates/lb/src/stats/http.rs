//! A deliberately small HTTP/1.0 server for the stats listener: one request per connection,
//! a bounded request head (8 KiB, 10 s), `stats auth` Basic authentication, and three answers:
//! the HTML page at `stats uri`, CSV at `<uri>;csv`, anything else 503 (HAProxy has no server to
//! send it to). Hand-written because pulling in an HTTP framework for this would dwarf the LB.

use crate::state::{ProxyState, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub async fn serve(
    rt: Arc<Runtime>,
    px: Arc<ProxyState>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    // The stats page gets its own small concurrency bound so it cannot exhaust memory.
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.wait_for(|s| *s) => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((sock, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (rt, px) = (rt.clone(), px.clone());
        tokio::spawn(async move {
            px.fe.session_started(rt.now_ms());
            let _ = tokio::time::timeout(Duration::from_secs(10), handle(&rt, &px, sock)).await;
            px.fe.session_ended();
            drop(permit);
        });
    }
}

async fn handle(rt: &Runtime, px: &ProxyState, mut sock: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() > 8192 {
            return respond(
                &mut sock,
                true,
                "400 Bad Request",
                "text/plain",
                &[],
                "request too large\n",
            )
            .await;
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        px.fe
            .bin
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or("");
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let version = parts.next().unwrap_or("");
    if !target.starts_with('/') || !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return respond(
            &mut sock,
            true,
            "400 Bad Request",
            "text/plain",
            &[],
            "bad request\n",
        )
        .await;
    }
    let stats = &px.cfg.stats;
    if !stats.auth.is_empty() {
        let authorised = lines
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
            .filter_map(|(_, v)| {
                v.trim()
                    .strip_prefix("Basic ")
                    .map(|b| b.trim().to_string())
            })
            .filter_map(|b| base64_decode(&b))
            .any(|cred| {
                stats
                    .auth
                    .iter()
                    .any(|(u, p)| cred == format!("{u}:{p}").as_bytes())
            });
        if !authorised {
            let realm = stats.realm.replace('"', "");
            let hdr = format!("WWW-Authenticate: Basic realm=\"{realm}\"\r\n");
            return respond(&mut sock, true, "401 Unauthorized", "text/html", &[&hdr], "<html><body><h1>401 Unauthorized</h1>\nYou need a valid user and password to access this content.\n</body></html>\n").await;
        }
    }
    if method != "GET" && method != "HEAD" {
        return respond(
            &mut sock,
            true,
            "405 Method Not Allowed",
            "text/plain",
            &[],
            "method not allowed\n",
        )
        .await;
    }
    let path = target.split('?').next().unwrap_or("");
    let uri = stats.uri.as_str();
    // HAProxy matches the stats URI as a prefix; options follow as `;csv`, `;norefresh`.
    let Some(rest) = target.strip_prefix(uri).or_else(|| path.strip_prefix(uri)) else {
        return respond(&mut sock, true, "503 Service Unavailable", "text/html", &[], "<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n</body></html>\n").await;
    };
    let opts: Vec<&str> = rest.split(';').skip(1).collect();
    let body = if opts.contains(&"csv") {
        (super::csv::render(rt), "text/plain")
    } else {
        let mut s = stats.clone();
        if opts.contains(&"norefresh") {
            s.refresh = None;
        }
        (super::html::render(rt, &s, uri), "text/html")
    };
    let r = respond(
        &mut sock,
        method != "HEAD",
        "200 OK",
        body.1,
        &["Cache-Control: no-cache\r\n"],
        &body.0,
    )
    .await;
    px.fe
        .bout
        .fetch_add(body.0.len() as u64, std::sync::atomic::Ordering::Relaxed);
    r
}

/// Writes a complete response; `with_body` is false for HEAD (headers still give the length).
async fn respond(
    sock: &mut TcpStream,
    with_body: bool,
    status: &str,
    ctype: &str,
    extra: &[&str],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for e in extra {
        head.push_str(e);
    }
    head.push_str("\r\n");
    sock.write_all(head.as_bytes()).await?;
    if with_body {
        sock.write_all(body.as_bytes()).await?;
    }
    sock.shutdown().await
}

/// Standard base64 (RFC 4648) decoding for the `Authorization: Basic` header.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64() {
        assert_eq!(super::base64_decode("dTpw").unwrap(), b"u:p");
        assert_eq!(
            super::base64_decode("YWRtaW46c2VjcmV0").unwrap(),
            b"admin:secret"
        );
        assert_eq!(super::base64_decode("YQ==").unwrap(), b"a");
        assert!(super::base64_decode("!!").is_none());
    }
}
