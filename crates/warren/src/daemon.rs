//! Daemonising (`-detached`): fork, new session, stdio to the log file, pid file.
//!
//! Must run before any tokio runtime exists: `fork` keeps only the calling thread.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Forks into the background. Returns only in the child; the parent exits 0 once the child
/// has started.
pub fn detach(log_file: &Path, pid_file: &Path) -> std::io::Result<()> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)?;
    // SAFETY: called before any other thread exists (no runtime yet), so the child is a
    // faithful copy; the parent only exits.
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()),
        0 => {}
        _ => std::process::exit(0),
    }
    // SAFETY: plain syscalls on our own process and file descriptors.
    unsafe {
        libc::setsid();
        let devnull = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if devnull >= 0 {
            libc::dup2(devnull, 0);
        }
        libc::dup2(log.as_raw_fd(), 1);
        libc::dup2(log.as_raw_fd(), 2);
    }
    // Write then rename: a reader polling for the file must never see it empty.
    let tmp = pid_file.with_extension("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, pid_file)?;
    Ok(())
}
