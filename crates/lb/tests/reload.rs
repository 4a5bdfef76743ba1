//! Reloads: a new process taking over from an old one (`-sf`), by hand and through the
//! master-worker mode (`-W`, `SIGUSR2`), under a loop of connecting clients that must never see
//! a refused or reset connection.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A frontend on `fe` with one server, `name`, on `port`.
fn one_server(fe: u16, name: &str, port: u16) -> String {
    format!("{DEFAULTS}listen px\n    bind 127.0.0.1:{fe}\n    server {name} 127.0.0.1:{port}\n")
}

/// Clients that connect in a loop through the frontend and read the backend's name line.
struct ConnectLoop {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(Vec<String>, Vec<String>)>>,
}

impl ConnectLoop {
    fn start(fe: u16, n: usize) -> ConnectLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let (mut names, mut failed) = (Vec::new(), Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        match TcpStream::connect(("127.0.0.1", fe)) {
                            Ok(c) => {
                                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                                let mut buf = [0u8; 3];
                                match (&c).read_exact(&mut buf) {
                                    Ok(()) => names.push(String::from_utf8_lossy(&buf).into()),
                                    r => failed.push(format!("read: {r:?}")),
                                }
                            }
                            Err(e) => failed.push(format!("connect: {e}")),
                        }
                    }
                    (names, failed)
                })
            })
            .collect();
        ConnectLoop { stop, threads }
    }

    /// Stops the clients; asserts that at least `min_ok` sessions worked and none failed.
    /// Returns the backend names seen, in order per client.
    fn finish(self, min_ok: usize) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let (mut names, mut failed) = (Vec::new(), Vec::new());
        for t in self.threads {
            let (n, f) = t.join().unwrap();
            names.extend(n);
            failed.extend(f);
        }
        assert!(
            names.len() >= min_ok,
            "too few sessions to mean anything: {}",
            names.len()
        );
        assert!(
            failed.is_empty(),
            "{} of {} connections failed across reloads: {:?}",
            failed.len(),
            names.len() + failed.len(),
            &failed[..failed.len().min(5)]
        );
        names
    }
}

#[test]
fn sf_takes_over_and_old_process_drains() {
    let (fe, b1) = (free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = one_server(fe, "s1", b1);
    let mut old = Lb::start(&cfg, fe, &[]);
    // A session through the old process, which must survive its soft stop.
    let mut held = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 3];
    held.read_exact(&mut buf).unwrap();
    let pid = old.child.id().to_string();
    let _new = Lb::start(&cfg, fe, &["-sf", &pid]);
    wait_until(
        "old process stops listening",
        Duration::from_secs(10),
        || old.log().contains("stopped"),
    );
    assert!(
        old.child.try_wait().unwrap().is_none(),
        "old process exited while a session was open"
    );
    held.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    held.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    drop(held);
    wait_until(
        "old process exits after its last session",
        Duration::from_secs(10),
        || old.child.try_wait().unwrap().is_some(),
    );
    assert_eq!(ask(fe), "s1");
}

#[test]
fn takeovers_under_load_lose_no_connection() {
    let (fe, b1) = (free_port(), free_port());
    let _a = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = one_server(fe, "s1", b1);
    let mut current = Lb::start(&cfg, fe, &[]);
    let clients = ConnectLoop::start(fe, 2);
    let mut old_ones = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let pid = current.child.id().to_string();
        let next = Lb::start(&cfg, fe, &["-sf", &pid]);
        // Sharing the old process's sockets is what keeps its queued connections alive.
        wait_until(
            "the new process takes the sockets over",
            Duration::from_secs(10),
            || next.log().contains("took over"),
        );
        old_ones.push(std::mem::replace(&mut current, next));
    }
    std::thread::sleep(Duration::from_millis(300));
    clients.finish(100);
    for mut o in old_ones {
        wait_until("old process exits", Duration::from_secs(10), || {
            o.child.try_wait().unwrap().is_some()
        });
    }
}

#[test]
fn master_worker_reloads_on_sigusr2_without_losing_a_connection() {
    let (fe, b1, b2) = (free_port(), free_port(), free_port());
    let _s1 = Backend::start(b1, "s1", Behaviour::NameEcho);
    let _s2 = Backend::start(b2, "s2", Behaviour::NameEcho);
    let master = Lb::start(
        &format!("global\n    master-worker\n{}", one_server(fe, "s1", b1)),
        fe,
        &[],
    );
    let cfg = master.dir.join("haproxy.cfg");
    let master_pid = master.child.id() as i32;
    let loaded = || master.log().matches("Loading success").count();
    wait_until("the first worker serves", Duration::from_secs(10), || {
        master.log().contains("is serving")
    });
    let clients = ConnectLoop::start(fe, 2);
    // Reload onto a configuration that sends everything to s2, twice.
    std::fs::write(
        &cfg,
        format!("global\n    master-worker\n{}", one_server(fe, "s2", b2)),
    )
    .unwrap();
    for n in 1..=2 {
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(master_pid, libc::SIGUSR2) }, 0);
        wait_until("the reload succeeds", Duration::from_secs(10), || {
            loaded() == n
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let names = clients.finish(100);
    assert_eq!(names.first().map(String::as_str), Some("s1\n"));
    assert_eq!(
        names.last().map(String::as_str),
        Some("s2\n"),
        "the reload did not apply the new file"
    );
    // A broken file is refused and the current worker keeps serving.
    std::fs::write(&cfg, "listen px\n    frobnicate\n").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(master_pid, libc::SIGUSR2) };
    wait_until("the reload is refused", Duration::from_secs(10), || {
        master.log().contains("reload refused")
    });
    let mut c = TcpStream::connect(("127.0.0.1", fe)).unwrap();
    let mut buf = [0u8; 3];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"s2\n");
    wait_until("former workers exit", Duration::from_secs(10), || {
        master.log().matches("Former worker").count() == 2
    });
    // SIGTERM to the master stops the worker too.
    let mut master = master;
    // SAFETY: as above.
    unsafe { libc::kill(master_pid, libc::SIGTERM) };
    wait_until("the master exits", Duration::from_secs(10), || {
        master.child.try_wait().unwrap().is_some()
    });
    assert!(
        TcpStream::connect(("127.0.0.1", fe)).is_err(),
        "a worker outlived its master: {}",
        master.log()
    );
}

#[test]
fn master_exits_when_its_worker_dies_so_systemd_restarts_it() {
    let (fe, b1) = (free_port(), free_port());
    let _s1 = Backend::start(b1, "s1", Behaviour::NameEcho);
    let cfg = one_server(fe, "s1", b1);
    let mut master = Lb::start(&cfg, fe, &["-W"]);
    let worker_pid = || -> Option<i32> {
        let log = master.log();
        let line = log.lines().find(|l| l.contains("is serving"))?;
        line.split_whitespace().find_map(|w| w.parse().ok())
    };
    wait_until("the worker serves", Duration::from_secs(10), || {
        worker_pid().is_some()
    });
    let pid = worker_pid().unwrap();
    // SAFETY: kill(2) on our child's child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_until("the master exits", Duration::from_secs(10), || {
        master.child.try_wait().unwrap().is_some()
    });
    let status = master.child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{}", master.log());
    assert!(master.log().contains("Current worker"), "{}", master.log());
}
