//! The supervisor: starts scripts and instances from a configuration, reloads, shuts down.
//!
//! Owns: wiring track scripts to the instances that track them, reacting to SIGHUP (reload)
//! and SIGTERM/SIGINT (shutdown). Guarantees: a reload with an invalid file keeps the running
//! configuration (logged); on reload an instance that keeps its name, interface and VRID keeps
//! MASTER without releasing the VIPs it still owns; on shutdown every instance has sent its
//! priority-0 advert and released its VIPs (or 3 s have passed) before we return.

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::model::{Config, Instance, VrrpScript};
use crate::config::parse::load_file;
use crate::instance::{self, InstanceHandle, Outcome, Setup, Stop};
use crate::netlink::Netlink;
use crate::track::{spawn_script, TrackState};

struct Running {
    instances: Vec<(Instance, InstanceHandle)>,
    scripts: Vec<JoinHandle<()>>,
    /// Each running script's definition and state, carried over by a reload when unchanged.
    script_states: Vec<(VrrpScript, watch::Receiver<TrackState>)>,
}

/// The state a reloaded script starts from: the old one's if the definition is unchanged.
fn carried_state(old: &[(VrrpScript, watch::Receiver<TrackState>)], s: &VrrpScript) -> TrackState {
    old.iter()
        .find(|(o, _)| {
            o.name == s.name
                && o.script == s.script
                && o.rise == s.rise
                && o.fall == s.fall
                && o.user == s.user
        })
        .map(|(_, rx)| *rx.borrow())
        .unwrap_or(TrackState::Unknown)
}

fn same_identity(a: &Instance, b: &Instance) -> bool {
    a.name == b.name && a.interface == b.interface && a.vrid == b.vrid && a.version == b.version
}

fn start(
    cfg: &Config,
    nl: &Netlink,
    resume: &[String],
    old_scripts: &[(VrrpScript, watch::Receiver<TrackState>)],
) -> Result<Running, String> {
    let mut wakes: Vec<(mpsc::Sender<()>, mpsc::Receiver<()>)> =
        cfg.instances.iter().map(|_| mpsc::channel(1)).collect();
    let mut scripts = Vec::new();
    let mut script_states = Vec::new();
    let mut per_instance: Vec<Vec<(i32, watch::Receiver<TrackState>)>> =
        vec![Vec::new(); cfg.instances.len()];
    for s in &cfg.scripts {
        let users: Vec<usize> = (0..cfg.instances.len())
            .filter(|&i| {
                cfg.instances[i]
                    .track_scripts
                    .iter()
                    .any(|t| t.name == s.name)
            })
            .collect();
        if users.is_empty() {
            continue; // keepalived does not run scripts nobody tracks
        }
        let senders = users.iter().map(|&i| wakes[i].0.clone()).collect();
        let initial = carried_state(old_scripts, s);
        let (runner, handle) =
            spawn_script(s.clone(), cfg.global.script_user.clone(), senders, initial);
        scripts.push(handle);
        script_states.push((s.clone(), runner.state.clone()));
        for &i in &users {
            for t in cfg.instances[i]
                .track_scripts
                .iter()
                .filter(|t| t.name == s.name)
            {
                per_instance[i].push((t.weight.unwrap_or(s.weight), runner.state.clone()));
            }
        }
    }
    let mut memberships: Vec<(String, crate::sync_group::Membership)> = cfg
        .sync_groups
        .iter()
        .flat_map(crate::sync_group::build)
        .collect();
    let mut instances = Vec::new();
    for (i, inst) in cfg.instances.iter().enumerate() {
        let group = memberships
            .iter()
            .position(|(n, _)| n == &inst.name)
            .map(|k| memberships.swap_remove(k).1);
        let (_, wake_rx) = std::mem::replace(&mut wakes[i], mpsc::channel(1));
        let setup = Setup {
            cfg: inst.clone(),
            nl: nl.clone(),
            script_user: cfg.global.script_user.clone(),
            scripts: std::mem::take(&mut per_instance[i]),
            wake: wake_rx,
            resume_master: resume.contains(&inst.name),
            group,
        };
        match instance::spawn(setup) {
            Ok(h) => instances.push((inst.clone(), h)),
            Err(e) => {
                // Roll back what was started so the caller sees all or nothing.
                for s in &scripts {
                    s.abort();
                }
                return Err(e);
            }
        }
    }
    Ok(Running {
        instances,
        scripts,
        script_states,
    })
}

async fn stop_one(h: &InstanceHandle, how: Stop) -> Option<Outcome> {
    let (tx, rx) = oneshot::channel();
    h.cmd.send((how, tx)).await.ok()?;
    tokio::time::timeout(Duration::from_secs(3), rx)
        .await
        .ok()?
        .ok()
}

/// Runs until SIGTERM/SIGINT. Returns the process exit code.
pub async fn run(config_path: &Path, initial: Config) -> u8 {
    let nl = match Netlink::new() {
        Ok(n) => n,
        Err(e) => {
            error!("cannot open rtnetlink: {e}");
            return 1;
        }
    };
    let (mut hup, mut term, mut int) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => {
            error!("cannot install signal handlers");
            return 1;
        }
    };
    let mut running = match start(&initial, &nl, &[], &[]) {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    info!(
        "Warren VRRP started ({} instance(s))",
        running.instances.len()
    );
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("Reloading");
                let loaded = match load_file(config_path) {
                    Ok(l) => l,
                    Err(e) => {
                        error!("reload failed, keeping the running configuration: {e}");
                        continue;
                    }
                };
                for w in &loaded.warnings {
                    warn!("{w}");
                }
                let new = loaded.config;
                for s in &running.scripts {
                    s.abort();
                }
                let mut resume = Vec::new();
                for (old, h) in &running.instances {
                    let successor = new.instances.iter().find(|n| same_identity(old, n));
                    let how = match successor {
                        Some(n) => Stop::Handover { keep: n.vips.iter().chain(&n.excluded_vips).cloned().collect() },
                        None => Stop::Shutdown,
                    };
                    if let Some(o) = stop_one(h, how).await {
                        if o.was_master && successor.is_some() {
                            resume.push(old.name.clone());
                        }
                    }
                }
                running = match start(&new, &nl, &resume, &running.script_states) {
                    Ok(r) => r,
                    Err(e) => {
                        error!("reload failed: {e}; no instance is running, exiting");
                        return 1;
                    }
                };
                info!("Reload finished ({} instance(s))", running.instances.len());
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("Stopping");
    for s in &running.scripts {
        s.abort();
    }
    for (_, h) in &running.instances {
        let _ = stop_one(h, Stop::Shutdown).await;
    }
    info!("Stopped Warren VRRP");
    0
}
