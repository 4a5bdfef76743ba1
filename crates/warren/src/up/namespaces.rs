//! Network-namespace plumbing for `warren up --netns` and the namespace tests: one bridge in
//! its own namespace (`<prefix>br`, so nothing is added to the root namespace), one namespace
//! per host (`<prefix><host>`) with `eth0` on that bridge and an address from 198.18.0.0/24,
//! and `/etc/netns/<ns>/hosts` naming every host (what `ip netns exec` mounts over
//! `/etc/hosts`). Removal touches only the names built from the prefix and the host list,
//! never "everything that starts with the prefix".
//!
//! Uses only std and libc, so that integration tests can include this file with `#[path]`
//! instead of keeping a second copy.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// One host of the topology: its short name and IPv4 address (198.18.0.0/24).
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub addr: String,
}

impl Host {
    pub fn new(name: &str, addr: &str) -> Host {
        Host {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

/// The namespace of `host` under `prefix`.
pub fn ns(prefix: &str, host: &str) -> String {
    format!("{prefix}{host}")
}

/// The bridge's namespace.
pub fn bridge_ns(prefix: &str) -> String {
    ns(prefix, "br")
}

/// The bridge-side end of `host`'s veth pair (interface names are limited to 15 bytes).
pub fn bridge_port(host: &str) -> String {
    let mut p = format!("v{host}");
    p.truncate(15);
    p
}

/// None when we may build namespaces; else the one-line reason.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        return Some("iproute2's `ip` is not installed".into());
    }
    None
}

/// Runs a command; its stdout, or an error with its stderr.
pub fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces that currently exist.
pub fn list() -> Vec<String> {
    sh(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Which of this topology's namespaces exist now.
pub fn existing(prefix: &str, hosts: &[Host]) -> Vec<String> {
    let mine: Vec<String> = hosts
        .iter()
        .map(|h| ns(prefix, &h.name))
        .chain([bridge_ns(prefix)])
        .collect();
    list().into_iter().filter(|n| mine.contains(n)).collect()
}

/// Deletes this topology's namespaces and hosts files (whatever of them exists); the names
/// removed. Deleting a namespace removes its interfaces, and so the veth pairs and bridge.
pub fn remove(prefix: &str, hosts: &[Host]) -> Vec<String> {
    let gone = existing(prefix, hosts);
    for n in &gone {
        let _ = sh(&["ip", "netns", "del", n]);
    }
    for h in hosts {
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", ns(prefix, &h.name)));
    }
    gone
}

/// Builds the bridge and one namespace per host, each with `lo` and `eth0` up, its address
/// (/24) and a hosts file listing `extra_hosts` and every host.
pub fn create(prefix: &str, hosts: &[Host], extra_hosts: &str) -> Result<(), String> {
    let br = bridge_ns(prefix);
    sh(&["ip", "netns", "add", &br])?;
    sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"])?;
    sh(&["ip", "-n", &br, "link", "set", "br0", "up"])?;
    let names: String = hosts
        .iter()
        .map(|h| format!("{} {}\n", h.addr, h.name))
        .collect();
    for h in hosts {
        let n = ns(prefix, &h.name);
        let port = bridge_port(&h.name);
        sh(&["ip", "netns", "add", &n])?;
        sh(&[
            "ip", "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
            &n,
        ])?;
        sh(&["ip", "-n", &br, "link", "set", &port, "master", "br0", "up"])?;
        sh(&["ip", "-n", &n, "link", "set", "lo", "up"])?;
        sh(&[
            "ip",
            "-n",
            &n,
            "addr",
            "add",
            &format!("{}/24", h.addr),
            "dev",
            "eth0",
        ])?;
        sh(&["ip", "-n", &n, "link", "set", "eth0", "up"])?;
        // `ip netns exec` changes the network, not the hostname or /etc/hosts: names resolve
        // through this file, which it bind-mounts over /etc/hosts inside the namespace.
        let etc = format!("/etc/netns/{n}");
        std::fs::create_dir_all(&etc).map_err(|e| format!("cannot create {etc}: {e}"))?;
        std::fs::write(
            format!("{etc}/hosts"),
            format!("127.0.0.1 localhost\n{extra_hosts}{names}"),
        )
        .map_err(|e| format!("cannot write {etc}/hosts: {e}"))?;
    }
    Ok(())
}

/// `ip netns exec <ns>`: append the program and its arguments. `ip` execs the program, so
/// the child's pid is the program's own.
pub fn exec(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    c
}

/// Whether `addr` (no prefix length) is configured on `dev` in namespace `ns`.
pub fn has_addr(ns: &str, dev: &str, addr: &str) -> bool {
    sh(&["ip", "-n", ns, "-4", "addr", "show", "dev", dev])
        .is_ok_and(|o| o.contains(&format!("inet {addr}/")))
}

/// Takes `host`'s link on the bridge down or up (cuts the host off without touching it).
pub fn set_link(prefix: &str, host: &str, up: bool) -> Result<(), String> {
    sh(&[
        "ip",
        "-n",
        &bridge_ns(prefix),
        "link",
        "set",
        &bridge_port(host),
        if up { "up" } else { "down" },
    ])
    .map(|_| ())
}

/// Runs `f` on a new thread inside network namespace `ns` (namespaces are per thread, and
/// threads it spawns inherit it, so a runtime built inside `f` lives there too).
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
        // SAFETY: setns on this thread only, with a namespace fd we just opened.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!(
                "cannot enter {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| format!("the thread in {ns} panicked"))?
}
