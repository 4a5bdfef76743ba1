//! `warren lb`: a TCP load balancer that reads HAProxy configuration files.
//!
//! Startup order matters and mirrors HAProxy: parse and validate every file (errors with
//! `file:line`, exit 1, nothing started), bind every listener and stats socket (so "address in
//! use" is reported to the invoking shell), daemonise if asked (`fork` must precede any runtime
//! thread), write the pid file, then build the tokio runtime and serve. Once serving, `-sf`/`-st`
//! processes are signalled so they let go of the ports; their listening sockets were taken over
//! before binding (`takeover`), so both processes accept from the same kernel sockets.

pub mod balance;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod logger;
pub mod master;
pub mod proxy;
pub mod socket;
pub mod state;
pub mod stats;
pub mod takeover;

use std::ffi::OsString;
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

/// Entry point for `warren lb ARGS...` (HAProxy's flags: `-f`, `-c`, `-D`, `-db`, ...).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match cli::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("[ALERT] {e}\n{}", cli::USAGE);
            return ExitCode::from(1);
        }
    };
    if cli.version {
        println!(
            "warren lb version {} (HAProxy configuration compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let (cfg, diags) = config::load(&cli.files);
    if !cli.quiet {
        for w in &diags.warnings {
            eprintln!("[WARNING] {w}");
        }
    }
    let Some(cfg) = cfg else {
        for e in &diags.errors {
            eprintln!("[ALERT] {e}");
        }
        eprintln!("[ALERT] Fatal errors found in configuration.");
        return ExitCode::from(1);
    };
    if cli.check {
        println!("Configuration file is valid");
        return ExitCode::SUCCESS;
    }

    if (cli.master_worker || cfg.global.master_worker.is_some()) && !master::is_worker() {
        if let Some(code) = detach(&cli, &cfg) {
            return code;
        }
        let exit_on_failure = cfg.global.master_worker != Some(false);
        return master::run(cli, exit_on_failure);
    }

    // Stats sockets first: once a TCP port answers, the sockets are there too.
    let mut sockets = Vec::new();
    for s in &cfg.global.stats_sockets {
        match socket::bind(s) {
            Ok(l) => sockets.push((l, s.level.clone())),
            Err(e) => {
                eprintln!(
                    "[ALERT] Starting stats socket: cannot bind UNIX socket ({e}) [{}]",
                    s.path.display()
                );
                return ExitCode::from(1);
            }
        }
    }

    // Like HAProxy's threads: every thread runs its own event loop with its own SO_REUSEPORT copy
    // of each listener, and the kernel spreads new connections over them. No session ever moves
    // between threads, which keeps wake-ups local (the stats page needs only one copy).
    let threads = cfg
        .global
        .nbthread
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // The processes we replace hand over their listening sockets, so nothing queued on them
    // is lost when they stop (see `takeover`); what they do not offer is bound afresh.
    let mut inherited = takeover::take(&[&cli.soft_stop[..], &cli.hard_stop[..]].concat());
    let taken: usize = inherited.values().map(Vec::len).sum();
    if taken > 0 && !cli.quiet {
        eprintln!("[NOTICE] took over {taken} listening sockets from the old process");
    }
    let copies_of = |p: &config::Proxy| if p.is_stats() { 1 } else { threads };
    let mut listeners = Vec::new();
    for (i, p) in cfg.proxies.iter().enumerate() {
        let copies = copies_of(p);
        for b in p
            .binds
            .iter()
            .flat_map(|b| std::iter::repeat_n(b, copies))
            .enumerate()
        {
            let (k, b) = (b.0 % copies, b.1);
            let taken = inherited.get_mut(&b.addr).and_then(Vec::pop);
            match taken.map_or_else(|| proxy::bind(b.addr), Ok) {
                Ok(l) => listeners.push((i, k, l)),
                Err(e) => {
                    eprintln!(
                        "[ALERT] Starting {} {}: cannot bind socket ({e}) [{}]",
                        p.kind.name(),
                        p.name,
                        b.addr
                    );
                    return ExitCode::from(1);
                }
            }
        }
    }
    // Inherited sockets beyond our own copies still hold queued connections: accept from them
    // too (spread over the threads); those of binds no longer configured are closed.
    for (addr, rest) in inherited {
        let Some((i, p)) = cfg
            .proxies
            .iter()
            .enumerate()
            .find(|(_, p)| p.binds.iter().any(|b| b.addr == addr))
        else {
            continue;
        };
        for (j, l) in rest.into_iter().enumerate() {
            listeners.push((i, j % copies_of(p), l));
        }
    }
    if let Some(code) = detach(&cli, &cfg) {
        return code;
    }

    // The first thread's event loop also runs health checks, the stats page and the socket.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("[ALERT] cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(cfg, listeners, sockets, cli));
    // Do not wait for sessions still running after a hard stop.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}

/// Daemonises if asked and writes the pid file (none of it in a master's worker: the master
/// did). `Some(code)` means this process is done (the parent of a fork, or an error).
fn detach(cli: &cli::Cli, cfg: &config::Config) -> Option<ExitCode> {
    if master::is_worker() {
        return None;
    }
    let pidfile = cli.pidfile.clone().or_else(|| cfg.global.pidfile.clone());
    let daemon = (cli.daemon || cfg.global.daemon) && !cli.foreground;
    logger::set_foreground(!daemon);
    if daemon {
        match daemon::daemonise() {
            Err(e) => {
                eprintln!("[ALERT] cannot fork: {e}");
                return Some(ExitCode::from(1));
            }
            Ok(daemon::Forked::Parent(child)) => {
                if let Some(p) = &pidfile {
                    if let Err(e) = daemon::write_pidfile(p, child) {
                        eprintln!("[ALERT] cannot create pidfile {}: {e}", p.display());
                        daemon::signal(&[child], libc::SIGTERM);
                        return Some(ExitCode::from(1));
                    }
                }
                return Some(ExitCode::SUCCESS);
            }
            Ok(daemon::Forked::Child) => {}
        }
    } else if let Some(p) = &pidfile {
        if let Err(e) = daemon::write_pidfile(p, std::process::id() as i32) {
            eprintln!("[ALERT] cannot create pidfile {}: {e}", p.display());
            return Some(ExitCode::from(1));
        }
    }
    None
}

async fn serve(
    cfg: config::Config,
    listeners: Vec<(usize, usize, std::net::TcpListener)>,
    sockets: Vec<(std::os::unix::net::UnixListener, config::Level)>,
    cli: cli::Cli,
) -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = Arc::new(state::Runtime::new(&cfg));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let global = Arc::new(tokio::sync::Semaphore::new(rt.global_maxconn as usize));
    let frontends: Vec<_> = rt
        .proxies
        .iter()
        .map(|p| Arc::new(tokio::sync::Semaphore::new(p.frontend_maxconn as usize)))
        .collect();
    let offered = takeover::offer_list(listeners.iter().map(|(_, _, l)| l));
    tokio::spawn(takeover::serve(offered.clone()));
    let mut per_thread: std::collections::BTreeMap<usize, Vec<(usize, std::net::TcpListener)>> =
        Default::default();
    for (i, k, l) in listeners {
        per_thread.entry(k).or_default().push((i, l));
    }
    let shared = Shared {
        rt: rt.clone(),
        global,
        frontends,
        stop: stop_rx.clone(),
    };
    for (k, group) in per_thread {
        if k == 0 {
            if let Err(e) = start_listeners(&shared, group) {
                eprintln!("[ALERT] cannot register listener: {e}");
                return ExitCode::from(1);
            }
            continue;
        }
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("warren-lb-{k}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("[ALERT] thread {k}: cannot start its event loop: {e}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    if let Err(e) = start_listeners(&shared, group) {
                        eprintln!("[ALERT] thread {k}: cannot register listener: {e}");
                    }
                    // Sessions of this thread live until the process exits (main decides when).
                    std::future::pending::<()>().await
                });
            });
        if let Err(e) = spawned {
            eprintln!("[ALERT] cannot start thread {k}: {e}");
            return ExitCode::from(1);
        }
    }
    for (l, level) in sockets {
        match tokio::net::UnixListener::from_std(l) {
            Ok(l) => {
                tokio::spawn(socket::serve(rt.clone(), l, level));
            }
            Err(e) => eprintln!("[WARNING] cannot register stats socket: {e}"),
        }
    }
    check::spawn_all(&rt);

    let (Ok(mut usr1), Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("[ALERT] cannot install signal handlers");
        return ExitCode::from(1);
    };
    // Now that our listeners are live, the old processes can let go of theirs.
    daemon::signal(&cli.soft_stop, libc::SIGUSR1);
    daemon::signal(&cli.hard_stop, libc::SIGTERM);

    loop {
        tokio::select! {
            _ = usr1.recv() => break,
            _ = term.recv() => return ExitCode::SUCCESS,
            _ = int.recv() => return ExitCode::SUCCESS,
            // As HAProxy: SIGHUP reports every server's state instead of ending the process.
            _ = hup.recv() => dump_states(&rt),
        }
    }
    // Soft stop: close listeners, let sessions finish, then exit (SIGTERM cuts it short).
    takeover::withdraw(&offered);
    rt.stopping.store(true, Relaxed);
    let _ = stop_tx.send(true);
    for p in &rt.proxies {
        if p.cfg.kind.has_frontend() && !p.cfg.binds.is_empty() {
            eprintln!(
                "[WARNING] ({}) : Proxy {} stopped (cumulated conns: FE: {}, BE: {}).",
                rt.pid,
                p.cfg.name,
                p.fe.stot.load(Relaxed),
                p.be.stot.load(Relaxed)
            );
        }
    }
    loop {
        if rt.accepting.load(Relaxed) == 0 && rt.cur_conns.load(Relaxed) == 0 {
            return ExitCode::SUCCESS;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = term.recv() => return ExitCode::SUCCESS,
            _ = int.recv() => return ExitCode::SUCCESS,
        }
    }
}

/// What every thread's accept loops share.
#[derive(Clone)]
struct Shared {
    rt: Arc<state::Runtime>,
    global: Arc<tokio::sync::Semaphore>,
    frontends: Vec<Arc<tokio::sync::Semaphore>>,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// Registers listeners with the current thread's event loop and starts serving them.
fn start_listeners(sh: &Shared, group: Vec<(usize, std::net::TcpListener)>) -> std::io::Result<()> {
    for (i, l) in group {
        let l = tokio::net::TcpListener::from_std(l)?;
        let px = sh.rt.proxies[i].clone();
        if px.cfg.is_stats() {
            tokio::spawn(stats::http::serve(sh.rt.clone(), px, l, sh.stop.clone()));
        } else {
            tokio::spawn(proxy::accept_loop(
                sh.rt.clone(),
                px,
                l,
                sh.global.clone(),
                sh.frontends[i].clone(),
                sh.stop.clone(),
            ));
        }
    }
    Ok(())
}

/// SIGHUP: one line per server with its state, like HAProxy's state dump.
fn dump_states(rt: &state::Runtime) {
    for p in rt.proxies.iter().filter(|p| !p.servers.is_empty()) {
        for s in &p.servers {
            let (status, _) = stats::server_status(s);
            let msg = format!(
                "SIGHUP: Server {}/{} is {status}. Conn: {} act, 0 pend, {} tot.",
                p.cfg.name,
                s.name,
                s.counters.scur.load(Relaxed),
                s.counters.stot.load(Relaxed)
            );
            eprintln!("[NOTICE] ({}) : {msg}", rt.pid);
            p.logger.send(config::logtarget::NOTICE, &msg);
        }
    }
}
