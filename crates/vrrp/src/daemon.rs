//! Process plumbing: daemonising, pid files and where log lines go.
//!
//! Owns: `fork`/`setsid` (done before any tokio runtime or thread exists, since forking a
//! multi-threaded process keeps only the calling thread), pid files with keepalived's "daemon is
//! already running" refusal, and the tracing subscriber (console with `-l`, else syslog through
//! `/dev/log`, silently dropped when there is no syslog socket). Guarantees: the pid files hold
//! our pid while we run and are removed by `PidFiles::drop`; a stale pid file (dead pid) is
//! replaced, a live one is refused.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use tracing_subscriber::fmt::MakeWriter;

/// Forks into the background. Returns in the child only; the parent exits 0.
pub fn daemonise(keep_stderr: bool) -> io::Result<()> {
    // SAFETY: called while the process is single-threaded (before the runtime exists).
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain syscalls on our own process.
    unsafe {
        libc::setsid();
        libc::umask(0o022);
    }
    let _ = std::env::set_current_dir("/");
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    let fd = devnull.as_raw_fd();
    // SAFETY: dup2 onto the standard descriptors; `fd` stays valid until `devnull` drops.
    unsafe {
        libc::dup2(fd, 0);
        libc::dup2(fd, 1);
        if !keep_stderr {
            libc::dup2(fd, 2);
        }
    }
    Ok(())
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence/permission.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

pub struct PidFiles(Vec<PathBuf>);

impl PidFiles {
    /// Refuses when a pid file names a live process other than us. Called before forking (so
    /// the user sees the error and exit status) and again when the files are written.
    pub fn check(paths: &[&Path]) -> Result<(), String> {
        let me = std::process::id();
        for p in paths {
            if let Ok(text) = std::fs::read_to_string(p) {
                if let Ok(pid) = text.trim().parse::<i32>() {
                    if pid as u32 != me && pid_alive(pid) {
                        return Err(format!(
                            "daemon is already running (pid {pid} in {}); use -p/-r for another instance",
                            p.display()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn create(paths: &[&Path]) -> Result<PidFiles, String> {
        Self::check(paths)?;
        let me = std::process::id();
        let mut done = PidFiles(Vec::new());
        for p in paths {
            // Write then rename: a reader polling for the file must never see it empty.
            let tmp = p.with_extension("pid.tmp");
            std::fs::write(&tmp, format!("{me}\n"))
                .and_then(|()| std::fs::rename(&tmp, p))
                .map_err(|e| format!("cannot write pid file {}: {e}", p.display()))?;
            done.0.push(p.to_path_buf());
        }
        Ok(done)
    }
}

impl Drop for PidFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// One syslog datagram per log line (RFC 3164 framing, facility daemon).
pub struct Syslog {
    sock: Option<UnixDatagram>,
}

pub struct SyslogLine<'a> {
    sock: Option<&'a UnixDatagram>,
    buf: Vec<u8>,
}

impl Default for Syslog {
    fn default() -> Self {
        Self::new()
    }
}

impl Syslog {
    pub fn new() -> Syslog {
        let sock = UnixDatagram::unbound()
            .ok()
            .filter(|s| s.connect("/dev/log").is_ok());
        Syslog { sock }
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogLine<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        SyslogLine {
            sock: self.sock.as_ref(),
            buf: Vec::new(),
        }
    }
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.sock {
            let line = String::from_utf8_lossy(&self.buf);
            // <29> = daemon.notice
            let msg = format!(
                "<29>Warren_vrrp[{}]: {}",
                std::process::id(),
                line.trim_end()
            );
            let _ = s.send(msg.as_bytes());
        }
    }
}

pub fn init_logging(console: bool, detail: bool) {
    let level = if detail {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_target("warren_vrrp", level)
        .with_default(tracing::Level::WARN);
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    if console {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_target(false)
            .with_ansi(false);
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
    } else {
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(Syslog::new())
            .with_target(false)
            .with_ansi(false)
            .without_time()
            .with_level(false);
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
    }
}
