//! Load generator and backend for `bench/lb.sh`.
//!
//! `lbbench backend PORT`: a tokio server; the first byte of each connection picks the mode:
//! `S` sink (discard, then report the byte count as 8 bytes when the client half-closes),
//! `E` echo, `C` reply one byte and close (connection-rate test).
//! `lbbench bulk ADDR SECS`: one connection pushing 1 MiB writes; prints MB/s.
//! `lbbench latency ADDR COUNT`: 64-byte request/response round trips; prints p50/p99 in µs.
//! `lbbench connrate ADDR SECS THREADS`: connect/ask/close loops; prints connections/s.

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
        Some("connrate") => connrate(
            &arg(2),
            arg(3).parse().unwrap_or_else(|_| usage()),
            arg(4).parse().unwrap_or_else(|_| usage()),
        ),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: lbbench backend PORT | bulk ADDR SECS | latency ADDR COUNT | connrate ADDR SECS THREADS");
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
