//! Load generator and backend for `bench/lb.sh`.
//!
//! `lbbench backend PORT`: a tokio server; the first byte of each connection picks the mode:
//! `S` sink (discard, then report the byte count as 8 bytes when the client half-closes),
//! `E` echo, `C` reply one byte and close (connection-rate test).
//! `lbbench bulk ADDR SECS`: one connection pushing 1 MiB writes; prints MB/s.
//! `lbbench latency ADDR COUNT`: 64-byte request/response round trips; prints p50/p99 in µs.
//! `lbbench connrate ADDR SECS THREADS`: connect/ask/close loops; prints connections/s.
//! `lbbench amqp ADDR COUNT SIZE`: one AMQP 0-9-1 connection (guest/guest) publishing COUNT
//! unroutable messages of SIZE bytes, then closing the channel (whose close-ok arrives after the
//! broker has handled every publish); prints messages/s.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize| a.get(i).cloned().unwrap_or_else(|| usage());
    match a.get(1).map(String::as_str) {
        Some("backend") => backend(arg(2).parse().unwrap_or_else(|_| usage())),
        Some("bulk") => bulk(&arg(2), arg(3).parse().unwrap_or_else(|_| usage())),
        Some("latency") => latency(&arg(2), arg(3).parse().unwrap_or_else(|_| usage())),
        Some("amqp") => amqp(
            &arg(2),
            arg(3).parse().unwrap_or_else(|_| usage()),
            arg(4).parse().unwrap_or_else(|_| usage()),
        ),
        Some("connrate") => connrate(
            &arg(2),
            arg(3).parse().unwrap_or_else(|_| usage()),
            arg(4).parse().unwrap_or_else(|_| usage()),
        ),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: lbbench backend PORT | bulk ADDR SECS | latency ADDR COUNT | connrate ADDR SECS THREADS | amqp ADDR COUNT SIZE");
    std::process::exit(2)
}

fn backend(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let mut mode = [0u8; 1];
                if s.read_exact(&mut mode).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 256 * 1024];
                match mode[0] {
                    b'S' => {
                        let mut total = 0u64;
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                        let _ = s.write_all(&total.to_be_bytes()).await;
                    }
                    b'E' => {
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                    _ => {
                        let _ = s.write_all(b"k").await;
                    }
                }
            });
        }
    });
}

fn bulk(addr: &str, secs: u64) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"S").unwrap();
    let buf = vec![0x5au8; 1 << 20];
    let t0 = Instant::now();
    let mut sent = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        s.write_all(&buf).unwrap();
        sent += buf.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut total = [0u8; 8];
    s.read_exact(&mut total).unwrap();
    let el = t0.elapsed().as_secs_f64();
    let got = u64::from_be_bytes(total);
    assert_eq!(got, sent, "backend received {got} of {sent} bytes");
    println!("{:.0}", got as f64 / el / 1e6);
}

fn latency(addr: &str, count: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.write_all(b"E").unwrap();
    let req = [7u8; 64];
    let mut resp = [0u8; 64];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count + 200 {
        let t = Instant::now();
        s.write_all(&req).unwrap();
        s.read_exact(&mut resp).unwrap();
        if i >= 200 {
            rtts.push(t.elapsed().as_nanos() as u64); // the first 200 warm up
        }
    }
    rtts.sort_unstable();
    let p = |q: f64| rtts[((rtts.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!("{:.1} {:.1}", p(0.50), p(0.99));
}

fn connrate(addr: &str, secs: u64, threads: usize) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let addr = addr.to_string();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let mut b = [0u8; 1];
                while Instant::now() < deadline {
                    let Ok(mut s) = TcpStream::connect(&addr) else {
                        continue;
                    };
                    let _ = s.set_nodelay(true);
                    if s.write_all(b"C").is_ok() && s.read_exact(&mut b).is_ok() {
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    println!("{:.0}", total as f64 / t0.elapsed().as_secs_f64());
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut p = class.to_be_bytes().to_vec();
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(args);
    p
}

fn shortstr(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// Reads frames until a method frame (class, id) arrives; returns its arguments.
fn expect(s: &mut TcpStream, class: u16, id: u16) -> Vec<u8> {
    loop {
        let mut head = [0u8; 7];
        s.read_exact(&mut head).expect("read frame");
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut payload = vec![0u8; size + 1];
        s.read_exact(&mut payload).expect("read frame payload");
        if head[0] == 1 && size >= 4 {
            let (c, m) = (
                u16::from_be_bytes([payload[0], payload[1]]),
                u16::from_be_bytes([payload[2], payload[3]]),
            );
            if (c, m) == (class, id) {
                return payload[4..size].to_vec();
            }
            if (c, m) == (10, 50) || (c, m) == (20, 40) {
                panic!(
                    "broker closed: {}",
                    String::from_utf8_lossy(&payload[6..size])
                );
            }
        }
    }
}

fn amqp(addr: &str, count: usize, size: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    expect(&mut s, 10, 10);
    let mut start_ok = 0u32.to_be_bytes().to_vec(); // empty client-properties table
    start_ok.extend_from_slice(&shortstr("PLAIN"));
    let resp = b"\0guest\0guest";
    start_ok.extend_from_slice(&(resp.len() as u32).to_be_bytes());
    start_ok.extend_from_slice(resp);
    start_ok.extend_from_slice(&shortstr("en_US"));
    s.write_all(&frame(1, 0, &method(10, 11, &start_ok)))
        .unwrap();
    let tune = expect(&mut s, 10, 30);
    let mut tune_ok = tune[..2].to_vec();
    tune_ok.extend_from_slice(&131072u32.to_be_bytes());
    tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeats
    s.write_all(&frame(1, 0, &method(10, 31, &tune_ok)))
        .unwrap();
    let mut open = shortstr("/");
    open.extend_from_slice(&shortstr(""));
    open.push(0);
    s.write_all(&frame(1, 0, &method(10, 40, &open))).unwrap();
    expect(&mut s, 10, 41);
    s.write_all(&frame(1, 1, &method(20, 10, &shortstr(""))))
        .unwrap();
    expect(&mut s, 20, 11);

    let mut publish = vec![0, 0];
    publish.extend_from_slice(&shortstr(""));
    publish.extend_from_slice(&shortstr("lbbench-unroutable"));
    publish.push(0);
    let mut header = 60u16.to_be_bytes().to_vec();
    header.extend_from_slice(&0u16.to_be_bytes());
    header.extend_from_slice(&(size as u64).to_be_bytes());
    header.extend_from_slice(&0u16.to_be_bytes());
    let mut one = frame(1, 1, &method(60, 40, &publish));
    one.extend_from_slice(&frame(2, 1, &header));
    one.extend_from_slice(&frame(3, 1, &vec![b'x'; size]));
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 256).collect();
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < count {
        let n = (count - sent).min(256);
        s.write_all(&batch[..one.len() * n]).unwrap();
        sent += n;
    }
    let mut close = 200u16.to_be_bytes().to_vec();
    close.extend_from_slice(&shortstr(""));
    close.extend_from_slice(&[0, 0, 0, 0]);
    s.write_all(&frame(1, 1, &method(20, 40, &close))).unwrap();
    expect(&mut s, 20, 41);
    let rate = count as f64 / t0.elapsed().as_secs_f64();
    s.write_all(&frame(1, 0, &method(10, 50, &close))).unwrap();
    expect(&mut s, 10, 51);
    println!("{rate:.0}");
}
