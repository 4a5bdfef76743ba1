//! Process management: daemonising (one `fork` + `setsid`, stdio to /dev/null; must run before
//! any tokio runtime or other thread exists), pid files, and signalling the processes named by
//! `-sf`/`-st`.

use std::io;
use std::path::Path;

pub enum Forked {
    Parent(i32),
    Child,
}

/// Forks; the child detaches from the terminal. Safe only while the process is single-threaded.
pub fn daemonise() -> io::Result<Forked> {
    // SAFETY: called before any thread is spawned (no tokio runtime yet), so fork is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(Forked::Parent(pid));
    }
    // SAFETY: plain syscalls on our own process and fds.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(Forked::Child)
}

pub fn write_pidfile(path: &Path, pid: i32) -> io::Result<()> {
    std::fs::write(path, format!("{pid}\n"))
}

/// Sends `sig` to each pid; failures (already gone) are reported, not fatal.
pub fn signal(pids: &[i32], sig: libc::c_int) {
    for &pid in pids {
        // SAFETY: kill(2) with a positive pid only; the CLI refuses 0 and negatives (groups).
        if pid > 0 && unsafe { libc::kill(pid, sig) } != 0 {
            eprintln!(
                "[WARNING] could not signal process {pid}: {}",
                io::Error::last_os_error()
            );
        }
    }
}
