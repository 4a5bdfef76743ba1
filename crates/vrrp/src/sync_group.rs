//! `vrrp_sync_group`: instances that change state together.
//!
//! Owns: the shared view of a group's members (state, and whether a member is in FAULT by its
//! own tracking or only because the group followed it) and the bounded channels that tell the
//! other members to follow a transition. Rules (keepalived's): a member that becomes MASTER by
//! itself takes the others to MASTER; one that drops to BACKUP takes the others to BACKUP; one
//! that enters FAULT takes the others to FAULT, and the group stays in FAULT until no member has
//! a fault of its own. Guarantees: a forced transition is never re-broadcast (no ping-pong); a
//! full channel (a member already has 8 pending orders) is logged, never blocks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::model::SyncGroup;
use crate::instance::State;
use crate::track::notify;

pub struct GroupRt {
    pub cfg: SyncGroup,
    senders: Vec<(String, mpsc::Sender<State>)>,
    /// member → (state, in FAULT by its own tracking)
    states: Mutex<HashMap<String, (State, bool)>>,
}

/// A member's handle: the group and the channel on which it receives orders.
pub struct Membership {
    pub group: Arc<GroupRt>,
    pub orders: mpsc::Receiver<State>,
}

/// Builds the runtime of one group; returns each member's membership by instance name.
pub fn build(cfg: &SyncGroup) -> Vec<(String, Membership)> {
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for m in &cfg.members {
        let (tx, rx) = mpsc::channel(8);
        senders.push((m.clone(), tx));
        receivers.push((m.clone(), rx));
    }
    let group = Arc::new(GroupRt {
        cfg: cfg.clone(),
        senders,
        states: Mutex::new(HashMap::new()),
    });
    receivers
        .into_iter()
        .map(|(name, orders)| {
            (
                name,
                Membership {
                    group: group.clone(),
                    orders,
                },
            )
        })
        .collect()
}

impl GroupRt {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, (State, bool)>> {
        // A poisoned lock only means another task panicked mid-update; the map is still usable.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `member`'s state. When the member decided it itself (`initiated`), orders the
    /// other members to follow and runs the group's notify scripts.
    pub fn record(
        &self,
        member: &str,
        state: State,
        own_fault: bool,
        initiated: bool,
        priority: u8,
        user: Option<&str>,
    ) {
        let previous = self.states().insert(member.to_string(), (state, own_fault));
        if !initiated || previous.map(|p| p.0) == Some(state) {
            return;
        }
        info!(
            "VRRP_Group({}) Syncing instances to {} state",
            self.cfg.name,
            state.name()
        );
        for (name, tx) in &self.senders {
            if name != member && tx.try_send(state).is_err() {
                warn!(
                    "VRRP_Group({}) cannot order {name} to {}: too many pending orders",
                    self.cfg.name,
                    state.name()
                );
            }
        }
        let script = match state {
            State::Master => &self.cfg.notify_master,
            State::Backup => &self.cfg.notify_backup,
            State::Fault => &self.cfg.notify_fault,
            State::Init => &None,
        };
        if let Some(s) = script {
            notify(s, &[], user);
        }
        if let Some(s) = &self.cfg.notify {
            let args = [
                "GROUP".to_string(),
                self.cfg.name.clone(),
                state.name().to_string(),
                priority.to_string(),
            ];
            notify(s, &args, user);
        }
    }

    /// True while another member is in FAULT by its own tracking: the group must stay in FAULT.
    pub fn other_member_faulty(&self, member: &str) -> bool {
        self.states()
            .iter()
            .any(|(n, (s, own))| n != member && *s == State::Fault && *own)
    }
}
