//! Master-worker mode (`-W`, `-Ws`, or `master-worker` in `global`), as HAProxy runs under
//! systemd: a master process keeps the unit's main pid and runs the load balancer in a worker
//! (this same binary, `warren lb -db`). `SIGUSR2` reloads: the master checks the files again
//! and, if they are valid, starts a new worker with `-sf <current worker>`; the new worker takes
//! the old one's listening sockets (`takeover`) and soft-stops it, so a reload refuses no
//! connection. A configuration with errors, or a new worker that fails to start, leaves the
//! current worker serving.
//!
//! Signals to the master: `SIGUSR2` reload, `SIGHUP` forwarded to the current worker (it logs
//! every server's state), `SIGUSR1` soft stop of every worker, `SIGTERM`/`SIGINT` hard stop.
//! When the current worker exits by itself the master stops the others and exits with its
//! status, so systemd restarts the unit (`master-worker no-exit-on-failure` keeps the master
//! waiting for a reload instead). With `-Ws` the master tells systemd `READY=1` once the first
//! worker serves (`Type=notify`).

use crate::cli::Cli;
use crate::config;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// Set in a worker's environment: it must neither daemonise nor write the pid file (the
/// master did both).
pub const WORKER_ENV: &str = "WARREN_LB_WORKER";

/// How long a new worker may take to serve before a reload is given up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn is_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}

/// Runs the master until the workers are gone. Called after the configuration was checked and
/// after daemonising (the pid file holds the master's pid).
pub fn run(cli: Cli, exit_on_failure: bool) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("[ALERT] (master) cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(supervise(cli, exit_on_failure))
}

type Exited = (i32, Option<i32>);

struct Workers {
    exe: PathBuf,
    cli: Cli,
    exited_tx: mpsc::Sender<Exited>,
    /// Every live worker; the newest serving one is `current`.
    live: BTreeSet<i32>,
    current: Option<i32>,
    /// Set once the master was told to stop: workers exiting then is what was asked for.
    stopping: bool,
}

impl Workers {
    /// Starts a worker that takes over from the processes in `soft` (`-sf`) and `hard` (`-st`)
    /// and waits until it serves. `None` when it could not start or exited first (the caller
    /// keeps what it had).
    async fn start(
        &mut self,
        soft: &[i32],
        hard: &[i32],
        exited_rx: &mut mpsc::Receiver<Exited>,
    ) -> Option<i32> {
        let mut args: Vec<OsString> = vec!["lb".into(), "-db".into()];
        if self.cli.quiet {
            args.push("-q".into());
        }
        for f in &self.cli.files {
            args.push("-f".into());
            args.push(f.into());
        }
        for (flag, pids) in [("-sf", soft), ("-st", hard)] {
            if !pids.is_empty() {
                args.push(flag.into());
                args.extend(pids.iter().map(|p| OsString::from(p.to_string())));
            }
        }
        let mut child = match Command::new(&self.exe)
            .args(&args)
            .env(WORKER_ENV, "1")
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "[ALERT] (master) cannot start a worker ({}): {e}",
                    self.exe.display()
                );
                return None;
            }
        };
        let pid = child.id().map_or(0, |p| p as i32);
        let tx = self.exited_tx.clone();
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code());
            let _ = tx.send((pid, code)).await;
        });
        self.live.insert(pid);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if crate::takeover::is_serving(pid as u32) {
                eprintln!("[NOTICE] (master) : worker {pid} is serving.");
                return Some(pid);
            }
            if Instant::now() > deadline {
                eprintln!("[ALERT] (master) worker {pid} did not start serving in {START_TIMEOUT:?}; stopping it.");
                crate::daemon::signal(&[pid], libc::SIGTERM);
                return None;
            }
            tokio::select! {
                Some(exited) = exited_rx.recv() => {
                    let failed = exited.0 == pid;
                    self.reap(exited);
                    if failed {
                        return None;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    fn reap(&mut self, (pid, code): Exited) {
        self.live.remove(&pid);
        let how = code.map_or("was killed by a signal".to_string(), |c| {
            format!("exited with code {c}")
        });
        match (self.current == Some(pid), self.stopping) {
            (true, false) => {
                self.current = None;
                eprintln!("[ALERT] (master) : Current worker ({pid}) {how}.");
            }
            (true, true) => eprintln!("[NOTICE] (master) : Worker ({pid}) {how}."),
            (false, _) => eprintln!("[NOTICE] (master) : Former worker ({pid}) {how}."),
        }
    }

    fn signal_all(&self, sig: libc::c_int) {
        crate::daemon::signal(&self.live.iter().copied().collect::<Vec<_>>(), sig);
    }
}

async fn supervise(cli: Cli, exit_on_failure: bool) -> ExitCode {
    let (Ok(mut usr1), Ok(mut usr2), Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("[ALERT] (master) cannot install signal handlers");
        return ExitCode::from(1);
    };
    let (exited_tx, mut exited_rx) = mpsc::channel(64);
    let mut w = Workers {
        exe: worker_exe(),
        cli,
        exited_tx,
        live: BTreeSet::new(),
        current: None,
        stopping: false,
    };
    // The first worker replaces what the master's own command line names.
    let (soft, hard) = (w.cli.soft_stop.clone(), w.cli.hard_stop.clone());
    w.current = w.start(&soft, &hard, &mut exited_rx).await;
    if w.current.is_none() {
        eprintln!("[ALERT] (master) the first worker did not start.");
        return ExitCode::from(1);
    }
    if w.cli.systemd_notify {
        sd_notify(&format!("READY=1\nMAINPID={}", std::process::id()));
    }
    let stopping = loop {
        tokio::select! {
            _ = usr2.recv() => reload(&mut w, &mut exited_rx).await,
            _ = hup.recv() => {
                if let Some(pid) = w.current {
                    crate::daemon::signal(&[pid], libc::SIGHUP);
                }
            }
            _ = usr1.recv() => break libc::SIGUSR1,
            _ = term.recv() => break libc::SIGTERM,
            _ = int.recv() => break libc::SIGTERM,
            Some((pid, code)) = exited_rx.recv() => {
                let was_current = w.current == Some(pid);
                w.reap((pid, code));
                if was_current && exit_on_failure {
                    w.signal_all(libc::SIGTERM);
                    while !w.live.is_empty() {
                        match exited_rx.recv().await {
                            Some(e) => w.reap(e),
                            None => break,
                        }
                    }
                    return ExitCode::from(code.unwrap_or(1).clamp(1, 255) as u8);
                }
            }
        }
    };
    w.stopping = true;
    w.signal_all(stopping);
    while !w.live.is_empty() {
        tokio::select! {
            Some(e) = exited_rx.recv() => w.reap(e),
            // A second SIGTERM/SIGINT cuts a soft stop short, as for a single process.
            _ = term.recv() => w.signal_all(libc::SIGTERM),
            _ = int.recv() => w.signal_all(libc::SIGTERM),
        }
    }
    ExitCode::SUCCESS
}

async fn reload(w: &mut Workers, exited_rx: &mut mpsc::Receiver<Exited>) {
    eprintln!("[NOTICE] (master) : Reloading.");
    let (cfg, diags) = config::load(&w.cli.files);
    if cfg.is_none() {
        for e in &diags.errors {
            eprintln!("[ALERT] {e}");
        }
        eprintln!(
            "[ALERT] (master) : Fatal errors found in configuration; reload refused, worker {} keeps serving.",
            w.current.map_or("(none)".into(), |p| p.to_string())
        );
        return;
    }
    let replacing: Vec<i32> = w.current.into_iter().collect();
    match w.start(&replacing, &[], exited_rx).await {
        Some(pid) => {
            w.current = Some(pid);
            eprintln!("[NOTICE] (master) : Loading success.");
        }
        None => eprintln!(
            "[ALERT] (master) : the new worker did not start; reload failed, worker {} keeps serving.",
            w.current.map_or("(none)".into(), |p| p.to_string())
        ),
    }
}

/// The binary to run workers from. After an upgrade replaced the file, /proc/self/exe names
/// the deleted one; the path without " (deleted)" is the new binary, which a reload should run.
fn worker_exe() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    }
}

/// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET ('@' = abstract name).
fn sd_notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(&path),
    };
    let sent = UnixDatagram::unbound()
        .and_then(|s| addr.and_then(|a| s.send_to_addr(state.as_bytes(), &a)));
    if let Err(e) = sent {
        eprintln!("[WARNING] (master) cannot notify systemd ({path}): {e}");
    }
}
