//! The stats socket (`stats socket PATH [mode M] [level L]` in `global`): a UNIX socket taking
//! HAProxy's non-interactive commands, one line per connection (several joined by `;`):
//! `show stat`, `show info`, `disable server B/S`, `enable server B/S`,
//! `set server B/S state ready|drain|maint`, `set weight B/S N[%]` (or `set server B/S weight`),
//! `get weight B/S`, `help`. Changing servers needs level `admin`.

use crate::config::{Level, StatsSocket};
use crate::state::{Admin, Runtime};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// Binds the socket file, replacing a stale one (as HAProxy does), and applies `mode`.
pub fn bind(s: &StatsSocket) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(&s.path);
    let l = std::os::unix::net::UnixListener::bind(&s.path)?;
    if let Some(mode) = s.mode {
        std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(mode))?;
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

pub async fn serve(rt: Arc<Runtime>, listener: UnixListener, level: Level) {
    let level = Arc::new(level);
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (rt, level) = (rt.clone(), level.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                let (r, mut w) = sock.into_split();
                let mut line = String::new();
                // Bounded read: a command line longer than 4 KiB is refused.
                let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(r, 4096));
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let mut out = String::new();
                for cmd in line.split(';') {
                    out.push_str(&execute(&rt, &level, cmd.trim()));
                }
                let _ = w.write_all(out.as_bytes()).await;
                let _ = w.shutdown().await;
            })
            .await;
            drop(permit);
        });
    }
}

/// Executes one command and returns HAProxy-style output (ends with an empty line).
pub fn execute(rt: &Runtime, level: &Level, cmd: &str) -> String {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        [] => String::new(),
        ["help"] => "Unknown command, but maybe one of the following ones is a better match:\n  help : this message\n  show stat : report counters for each proxy and server\n  show info : report information about the running process\n  disable server <bk>/<srv> : disable a server for maintenance\n  enable server <bk>/<srv> : re-enable a server\n  set server <bk>/<srv> state [ready|drain|maint] : change a server's state\n  set weight <bk>/<srv> (<w>|<w>%) : change a server's weight (also 'set server ... weight')\n  get weight <bk>/<srv> : report a server's current and initial weight\n\n".into(),
        ["show", "stat", ..] => {
            let mut s = crate::stats::csv::render(rt);
            s.push('\n');
            s
        }
        ["show", "info", ..] => info(rt),
        ["disable", "server", target] => admin(rt, level, target, Admin::Maint),
        ["enable", "server", target] => admin(rt, level, target, Admin::Ready),
        ["set", "server", target, "state", st] => match *st {
            "ready" => admin(rt, level, target, Admin::Ready),
            "drain" => admin(rt, level, target, Admin::Drain),
            "maint" => admin(rt, level, target, Admin::Maint),
            _ => "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n".into(),
        },
        ["set", "server", target, "weight", w] | ["set", "weight", target, w] => set_weight(rt, level, target, w),
        ["get", "weight", target] => match target.split_once('/').and_then(|(b, s)| rt.find_server(b, s)) {
            Some((_, s)) => format!("{} (initial {})\n\n", s.weight(), s.opts.weight),
            None => "No such server.\n\n".into(),
        },
        _ => format!("Unknown command: '{cmd}'. Try 'help'.\n\n"),
    }
}

fn admin(rt: &Runtime, level: &Level, target: &str, to: Admin) -> String {
    if *level != Level::Admin {
        return "Permission denied\n\n".into();
    }
    let Some((b, s)) = target.split_once('/') else {
        return "Require 'backend/server'.\n\n".into();
    };
    let Some((px, srv)) = rt.find_server(b, s) else {
        return "No such server.\n\n".into();
    };
    let became_usable = srv.update(|h| {
        h.admin = to;
        h.last_change = std::time::Instant::now();
        to == Admin::Ready
    });
    if became_usable {
        px.slot_freed.notify_waiters();
    }
    let what = match to {
        Admin::Ready => "READY",
        Admin::Drain => "DRAIN",
        Admin::Maint => "MAINT",
    };
    eprintln!(
        "[WARNING] ({}) : Server {b}/{s} is now in {what} mode (set from the stats socket).",
        rt.pid
    );
    "\n".into()
}

/// `set weight B/S N` or `N%` (of the configured weight), 0..=256 as in the configuration.
fn set_weight(rt: &Runtime, level: &Level, target: &str, w: &str) -> String {
    if *level != Level::Admin {
        return "Permission denied\n\n".into();
    }
    let Some((px, srv)) = target
        .split_once('/')
        .and_then(|(b, s)| rt.find_server(b, s))
    else {
        return "No such server.\n\n".into();
    };
    let weight = match w.strip_suffix('%') {
        Some(pct) => pct
            .parse::<u64>()
            .ok()
            .map(|p| u64::from(srv.opts.weight) * p / 100),
        None => w.parse::<u64>().ok(),
    };
    match weight {
        Some(n) if n <= 256 => {
            srv.set_weight(n as u32);
            px.slot_freed.notify_waiters();
            "\n".into()
        }
        _ => "Weight must be an integer between 0 and 256, or a percentage.\n\n".into(),
    }
}

fn info(rt: &Runtime) -> String {
    let up = rt.start.elapsed();
    let secs = up.as_secs();
    let cur = rt.cur_conns.load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "Name: warren-lb\nVersion: {}\nRelease_date: -\nNbthread: 1\nNbproc: 1\nProcess_num: 1\nPid: {}\nUptime: {}d {}h{:02}m{:02}s\nUptime_sec: {secs}\nMaxconn: {}\nHard_maxconn: {}\nCurrConns: {cur}\nCumConns: {}\nStopping: {}\n\n",
        env!("CARGO_PKG_VERSION"),
        rt.pid,
        secs / 86400,
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60,
        rt.global_maxconn,
        rt.global_maxconn,
        rt.proxies.iter().map(|p| p.fe.stot.load(std::sync::atomic::Ordering::Relaxed)).sum::<u64>(),
        u8::from(rt.stopping.load(std::sync::atomic::Ordering::Relaxed)),
    )
}
