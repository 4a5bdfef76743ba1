//! Track scripts, notify scripts, and the priority arithmetic they feed.
//!
//! Owns: running each `vrrp_script` every `interval` with its `timeout`, turning exit codes into
//! an OK/FAILED state with `rise`/`fall` hysteresis, publishing that state to the instances that
//! track it, running notify scripts with keepalived's arguments, and computing an instance's
//! effective priority exactly as keepalived does (weight > 0: added while OK; weight < 0: added,
//! i.e. subtracted, while FAILED; weight 0: FAILED puts the instance in FAULT; the result clamped
//! to 1..=254; an address owner's 255 never moves). Guarantees: a script that hangs is killed at
//! its timeout and counts as a failure; a script that cannot be started counts as a failure
//! (logged); a script's state is UNKNOWN until its first result and UNKNOWN has no effect.
//! Commands run without a shell (split on whitespace) unless they contain shell syntax.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::model::VrrpScript;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackState {
    Unknown,
    Ok,
    Failed,
}

/// The result of applying every tracked object to the configured priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub priority: u8,
    pub fault: bool,
}

/// keepalived's rule; `tracks` are (weight, state) pairs from scripts and interfaces.
pub fn effective_priority(base: u8, tracks: &[(i32, TrackState)]) -> Effective {
    let mut fault = false;
    let mut p = i32::from(base);
    for &(w, s) in tracks {
        match (w, s) {
            (0, TrackState::Failed) => fault = true,
            (w, TrackState::Ok) if w > 0 => p += w,
            (w, TrackState::Failed) if w < 0 => p += w,
            _ => {}
        }
    }
    let priority = if base == 255 {
        255
    } else {
        p.clamp(1, 254) as u8
    };
    Effective { priority, fault }
}

/// Rise/fall hysteresis: `rise` consecutive successes to become OK, `fall` consecutive failures
/// to become FAILED; the first result decides straight away (keepalived starts scripts one
/// success short of OK).
#[derive(Debug, Clone)]
pub struct Hysteresis {
    pub state: TrackState,
    rise: u32,
    fall: u32,
    run: u32,
    last_ok: Option<bool>,
}

impl Hysteresis {
    pub fn new(rise: u32, fall: u32) -> Self {
        Hysteresis {
            state: TrackState::Unknown,
            rise: rise.max(1),
            fall: fall.max(1),
            run: 0,
            last_ok: None,
        }
    }

    /// Continues from a known state (a reload keeps what the previous run of the same script
    /// established, so priorities do not jump while the first new result is pending).
    pub fn resume(rise: u32, fall: u32, state: TrackState) -> Self {
        Hysteresis {
            state,
            ..Hysteresis::new(rise, fall)
        }
    }

    /// Feeds one result; returns true when the state changed.
    pub fn feed(&mut self, ok: bool) -> bool {
        if self.last_ok == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.run = 1;
            self.last_ok = Some(ok);
        }
        let next = match (self.state, ok) {
            (TrackState::Unknown, true) => TrackState::Ok,
            (TrackState::Unknown, false) => TrackState::Failed,
            (TrackState::Failed, true) if self.run >= self.rise => TrackState::Ok,
            (TrackState::Ok, false) if self.run >= self.fall => TrackState::Failed,
            (s, _) => s,
        };
        let changed = next != self.state;
        self.state = next;
        changed
    }
}

/// Characters that mean the command needs `/bin/sh -c`.
fn needs_shell(cmd: &str) -> bool {
    cmd.contains(|c: char| "|&;<>()$`\\\"'*?[]#~=%{}\n".contains(c))
}

/// Builds the command: split on whitespace, or `/bin/sh -c` when shell syntax is present.
pub fn command(cmd: &str, extra: &[String]) -> Option<Command> {
    let mut c = if needs_shell(cmd) {
        let mut c = Command::new("/bin/sh");
        // "$0" is a placeholder so that "$@" are the extra arguments (notify's 4 arguments).
        let full = if extra.is_empty() {
            cmd.to_string()
        } else {
            format!("{cmd} \"$@\"")
        };
        c.arg("-c").arg(full).arg("sh").args(extra);
        c
    } else {
        let mut words = cmd.split_whitespace();
        let mut c = Command::new(words.next()?);
        c.args(words).args(extra);
        c
    };
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    Some(c)
}

fn set_user(c: &mut Command, user: Option<&str>) {
    let Some(user) = user else { return };
    let Ok(cu) = std::ffi::CString::new(user) else {
        return;
    };
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(cu.as_ptr()) };
    if pw.is_null() {
        warn!("script user '{user}' not found, running as current user");
        return;
    }
    // SAFETY: non-null passwd entry from getpwnam.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == uid {
        return;
    }
    c.uid(uid).gid(gid);
}

/// Runs a command to completion with a timeout; true when it exited 0.
pub async fn run_check(cmd: &str, user: Option<&str>, timeout: Duration) -> Result<bool, String> {
    let Some(mut c) = command(cmd, &[]) else {
        return Err("empty command".into());
    };
    set_user(&mut c, user);
    let mut child = c.spawn().map_err(|e| format!("cannot run '{cmd}': {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => Ok(status.success()),
        Ok(Err(e)) => Err(format!("waiting for '{cmd}': {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("'{cmd}' timed out after {timeout:?}"))
        }
    }
}

/// Publishes one script's state. Instances read the `watch` and are woken through `wake`.
pub struct ScriptRunner {
    pub name: String,
    pub state: watch::Receiver<TrackState>,
}

/// Starts the periodic task for one script. `wake` channels are bounded; a full one means the
/// instance already has a wake-up pending and will read the latest state anyway.
pub fn spawn_script(
    s: VrrpScript,
    default_user: Option<String>,
    wake: Vec<mpsc::Sender<()>>,
    initial: TrackState,
) -> (ScriptRunner, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(initial);
    let name = s.name.clone();
    let handle = tokio::spawn(async move {
        let mut h = Hysteresis::resume(s.rise, s.fall, initial);
        let user = s.user.clone().or(default_user);
        let mut tick = tokio::time::interval(s.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_err: Option<String> = None;
        loop {
            tick.tick().await;
            let ok = match run_check(&s.script, user.as_deref(), s.timeout).await {
                Ok(ok) => {
                    last_err = None;
                    ok
                }
                Err(e) => {
                    // Log each distinct error once, not every interval.
                    if last_err.as_deref() != Some(e.as_str()) {
                        warn!("VRRP_Script({}) {e}", s.name);
                        last_err = Some(e);
                    }
                    false
                }
            };
            if h.feed(ok) {
                match h.state {
                    TrackState::Ok => info!("VRRP_Script({}) succeeded", s.name),
                    _ => info!("VRRP_Script({}) failed (exited with status != 0)", s.name),
                }
                let _ = tx.send(h.state);
                for w in &wake {
                    let _ = w.try_send(());
                }
            }
        }
    });
    (ScriptRunner { name, state: rx }, handle)
}

/// Fire-and-forget notify script. keepalived does not wait for notify scripts; neither do we,
/// but the child is reaped by its own task so no zombie is left.
pub fn notify(cmd: &str, extra: &[String], user: Option<&str>) {
    let Some(mut c) = command(cmd, extra) else {
        return;
    };
    set_user(&mut c, user);
    c.kill_on_drop(false);
    match c.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
        }
        Err(e) => warn!("cannot run notify script '{cmd}': {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::TrackState::*;
    use super::*;

    #[test]
    fn keepalived_weights() {
        // Tutorial: weight +2 while OK.
        assert_eq!(effective_priority(100, &[(2, Ok)]).priority, 102);
        assert_eq!(effective_priority(100, &[(2, Failed)]).priority, 100);
        // Negative weight subtracts while failing, nothing while OK.
        assert_eq!(effective_priority(100, &[(-60, Failed)]).priority, 40);
        assert_eq!(effective_priority(100, &[(-60, Ok)]).priority, 100);
        // Weight 0: failing → FAULT, priority untouched.
        assert_eq!(
            effective_priority(100, &[(0, Failed)]),
            Effective {
                priority: 100,
                fault: true
            }
        );
        assert!(!effective_priority(100, &[(0, Ok)]).fault);
        // Unknown (no result yet) has no effect.
        assert_eq!(
            effective_priority(100, &[(-60, Unknown), (5, Unknown), (0, Unknown)]),
            Effective {
                priority: 100,
                fault: false
            }
        );
        // Clamped to 1..=254; owner stays 255.
        assert_eq!(effective_priority(250, &[(10, Ok)]).priority, 254);
        assert_eq!(effective_priority(10, &[(-50, Failed)]).priority, 1);
        assert_eq!(effective_priority(255, &[(-50, Failed)]).priority, 255);
        // Several at once.
        assert_eq!(
            effective_priority(100, &[(2, Ok), (-30, Failed), (-5, Ok)]).priority,
            72
        );
    }

    #[test]
    fn rise_and_fall() {
        let mut h = Hysteresis::new(2, 3);
        assert!(h.feed(true));
        assert_eq!(h.state, Ok);
        assert!(!h.feed(false));
        assert!(!h.feed(false));
        assert!(h.feed(false));
        assert_eq!(h.state, Failed);
        assert!(!h.feed(true));
        assert!(h.feed(true));
        assert_eq!(h.state, Ok);
        // An interrupted run starts over.
        h.feed(false);
        h.feed(true);
        h.feed(false);
        h.feed(false);
        assert_eq!(h.state, Ok);
    }

    #[test]
    fn resumed_state_keeps_hysteresis() {
        // A reload carries FAILED over: one success (rise 2) is not enough to become OK.
        let mut h = Hysteresis::resume(2, 1, Failed);
        assert!(!h.feed(true));
        assert_eq!(h.state, Failed);
        assert!(h.feed(true));
        assert_eq!(h.state, Ok);
    }

    #[test]
    fn shell_only_when_needed() {
        assert!(!needs_shell("/etc/keepalived/haproxy_chk.sh"));
        assert!(!needs_shell("/usr/bin/test -f /tmp/x"));
        assert!(needs_shell("pidof haproxy || exit 1"));
        assert!(needs_shell("test -f $HOME/x"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn checks_run_and_time_out() {
        assert_eq!(
            run_check("/bin/true", None, Duration::from_secs(5)).await,
            Result::Ok(true)
        );
        assert_eq!(
            run_check("/bin/false", None, Duration::from_secs(5)).await,
            Result::Ok(false)
        );
        assert_eq!(
            run_check(
                "test -f /nonexistent || exit 3",
                None,
                Duration::from_secs(5)
            )
            .await,
            Result::Ok(false)
        );
        let t = std::time::Instant::now();
        assert!(run_check("/bin/sleep 5", None, Duration::from_millis(200))
            .await
            .is_err());
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(run_check("/nonexistent/x", None, Duration::from_secs(1))
            .await
            .is_err());
    }
}
