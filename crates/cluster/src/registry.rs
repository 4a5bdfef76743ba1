//! The per-host node registry (what epmd is to RabbitMQ): one small JSON file per running
//! node under `/run/warren` (root) or `$XDG_RUNTIME_DIR/warren`, recording its ports, so that
//! `warren ctl -n name@host` finds a local node on a non-default port. Network namespaces
//! share the file system but not loopback, so an entry counts only in the namespace of the
//! node that wrote it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub node: String,
    pub pid: u32,
    pub amqp_port: u16,
    pub mgmt_port: u16,
    pub cluster_port: u16,
    /// The node's network namespace (`/proc/self/ns/net`), when known.
    #[serde(default)]
    pub netns: Option<String>,
}

/// This process's network namespace, as `/proc/self/ns/net` names it.
pub fn current_netns() -> Option<String> {
    std::fs::read_link("/proc/self/ns/net")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WARREN_REGISTRY_DIR") {
        return PathBuf::from(d);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/run/warren");
    }
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(|d| PathBuf::from(d).join("warren"))
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("warren-{}", unsafe { libc::geteuid() }))
        })
}

fn file(node: &str) -> PathBuf {
    dir().join(node.replace('/', "_"))
}

pub fn register(e: &Entry) -> std::io::Result<()> {
    std::fs::create_dir_all(dir())?;
    std::fs::write(file(&e.node), serde_json::to_vec(e).unwrap_or_default())
}

pub fn unregister(node: &str) {
    let _ = std::fs::remove_file(file(node));
}

/// The registered entry for `node`, if its process is still alive.
pub fn lookup(node: &str) -> Option<Entry> {
    let e: Entry = serde_json::from_slice(&std::fs::read(file(node)).ok()?).ok()?;
    // SAFETY: kill with signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(e.pid as libc::pid_t, 0) } == 0;
    // A node in another namespace is not reachable on this one's loopback.
    let here = e.netns.is_none() || e.netns == current_netns();
    (alive && here).then_some(e)
}
