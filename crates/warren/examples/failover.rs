//! Failover probe for `bench/mirrored.sh`: publishes persistent, mandatory messages with
//! confirms to a node that stays up, `kill -9`s the queue leader's node itself (so the kill
//! instant and the confirm timestamps share one clock), and reports how long the queue took
//! to confirm again.
//!
//! Works against any AMQP 0-9-1 broker (Warren or RabbitMQ); the caller declares the queue
//! and finds the leader's pid.
//!
//! ```text
//! failover --uri amqp://guest:guest@127.0.0.1:5674/%2f --queue mirror_failover --kill-pid 1234
//! ```
//!
//! The last line is machine-readable:
//! `RESULT first_confirm_ms=… last_before_ms=… first_any_ms=… confirms_before=… reconnects=…`.

use std::pin::Pin;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

#[derive(Parser, Debug)]
struct Args {
    /// Broker URI to publish through (repeat: tried in turn when a connection fails).
    #[arg(long, required = true)]
    uri: Vec<String>,
    /// Queue to publish to (through the default exchange).
    #[arg(long)]
    queue: String,
    /// Process to `kill -9` once publishing is steady: the queue leader's node.
    #[arg(long)]
    kill_pid: i32,
    /// Publish this long before the kill.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// Give up if no publish is confirmed this long after the kill.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
}

/// What one publish came to.
enum Outcome {
    Confirmed,
    /// Acked but returned: no queue took it (e.g. the queue was briefly unknown), so it
    /// proves nothing about the new leader.
    Returned,
    Nacked,
    Failed,
}

type Pending = Pin<Box<dyn Future<Output = (Instant, Outcome)> + Send>>;

async fn open(uri: &str) -> Result<(Connection, Channel), lapin::Error> {
    let conn = Connection::connect(uri, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((conn, ch))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let a = Args::parse();
    match run(a).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("failover: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(a: Args) -> Result<(), String> {
    let body = vec![b'x'; a.size.max(16)];
    let props = BasicProperties::default().with_delivery_mode(2);
    let started = Instant::now();
    let mut link: Option<(Connection, Channel)> = None;
    let mut next_uri = 0usize;
    let mut reconnects = 0u32;
    let mut in_flight: FuturesUnordered<Pending> = FuturesUnordered::new();
    let mut last_publish: Option<Instant> = None;
    let mut killed_at: Option<Instant> = None;
    let mut last_before: Option<Instant> = None;
    let mut confirms_before = 0u64;
    let mut first_any: Option<Instant> = None;
    let (mut returned, mut nacked, mut failed) = (0u64, 0u64, 0u64);
    loop {
        if let Some(k) = killed_at {
            if k.elapsed() > Duration::from_secs(a.timeout_secs) {
                return Err(format!(
                    "no publish confirmed within {}s of the kill ({returned} returned, \
                     {nacked} nacked, {failed} failed, {reconnects} reconnects)",
                    a.timeout_secs
                ));
            }
        } else if started.elapsed() > Duration::from_secs(a.timeout_secs) {
            return Err(format!(
                "publishing never became steady before the kill ({confirms_before} confirms)"
            ));
        }
        if link
            .as_ref()
            .is_none_or(|(c, ch)| !c.status().connected() || !ch.status().connected())
        {
            if link.take().is_some() {
                reconnects += 1;
            }
            let uri = &a.uri[next_uri % a.uri.len()];
            next_uri += 1;
            match tokio::time::timeout(Duration::from_secs(2), open(uri)).await {
                Ok(Ok(l)) => link = Some(l),
                // Back off briefly before the next URI rather than spin on a refusing node.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        }
        // One publish at a time while confirms flow (so a confirm's time is that message's),
        // plus another every 50 ms while older ones hang, so a publish stuck at the dead
        // leader does not hide the moment the new leader answers.
        let due = in_flight.is_empty()
            || last_publish.is_some_and(|t| t.elapsed() > Duration::from_millis(50));
        if due && in_flight.len() < 256 {
            let (_, ch) = link.as_ref().expect("link checked above");
            let sent = Instant::now();
            let publish = ch.basic_publish(
                "".into(),
                a.queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                props.clone(),
            );
            match tokio::time::timeout(Duration::from_secs(1), publish).await {
                Ok(Ok(confirm)) => {
                    last_publish = Some(sent);
                    in_flight.push(Box::pin(async move {
                        let outcome = match confirm.await {
                            Ok(Confirmation::Ack(None)) => Outcome::Confirmed,
                            Ok(Confirmation::Ack(Some(_))) => Outcome::Returned,
                            Ok(_) => Outcome::Nacked,
                            Err(_) => Outcome::Failed,
                        };
                        (sent, outcome)
                    }));
                }
                _ => {
                    failed += 1;
                    link = None;
                    reconnects += 1;
                    continue;
                }
            }
        }
        let done = tokio::time::timeout(Duration::from_millis(10), in_flight.next()).await;
        let Ok(Some((sent, outcome))) = done else {
            continue;
        };
        let now = Instant::now();
        match outcome {
            Outcome::Confirmed => {}
            Outcome::Returned => {
                returned += 1;
                continue;
            }
            Outcome::Nacked => {
                nacked += 1;
                continue;
            }
            Outcome::Failed => {
                failed += 1;
                continue;
            }
        }
        match killed_at {
            None => {
                last_before = Some(now);
                confirms_before += 1;
                if started.elapsed() >= Duration::from_millis(a.warmup_ms) && confirms_before >= 20
                {
                    let k = Instant::now();
                    // SAFETY: plain kill(2) on a pid the caller named.
                    if unsafe { libc::kill(a.kill_pid, libc::SIGKILL) } != 0 {
                        return Err(format!(
                            "kill -9 {}: {}",
                            a.kill_pid,
                            std::io::Error::last_os_error()
                        ));
                    }
                    killed_at = Some(k);
                }
            }
            Some(k) => {
                first_any.get_or_insert(now);
                // Only a message published after the kill proves the new leader took it.
                if sent >= k {
                    let before = last_before.map_or(0.0, |t| ms(k - t));
                    println!(
                        "killed pid {} after {confirms_before} confirms; last confirm {before:.1} ms \
                         before the kill, first confirm of a message published after it: \
                         {:.1} ms after ({reconnects} reconnects, {returned} returned, \
                         {nacked} nacked, {failed} failed publishes on the way)",
                        a.kill_pid,
                        ms(now - k)
                    );
                    println!(
                        "RESULT first_confirm_ms={:.1} last_before_ms={before:.1} first_any_ms={:.1} \
                         confirms_before={confirms_before} reconnects={reconnects} returned={returned} \
                         nacked={nacked} failed={failed}",
                        ms(now - k),
                        ms(first_any.unwrap_or(now) - k)
                    );
                    return Ok(());
                }
            }
        }
    }
}
