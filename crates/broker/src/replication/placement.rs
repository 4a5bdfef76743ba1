//! Where a mirrored queue's copies live, and failover: decided in one place, the metadata
//! leader, from the policy (`ha-mode`, `ha-params`, `ha-promote-on-*`, or a quorum queue's
//! group size) and which members are up, and committed as `MetaOp`s so that every node
//! applies the same placement.
//!
//! - The leader's node is down or gone: promote a replica from the in-sync set (all of them
//!   hold every confirmed message). An out-of-sync mirror is promoted only when none in sync
//!   survives and `ha-promote-on-failure` (crash) or `ha-promote-on-shutdown` (the node left
//!   the cluster, e.g. `stop_app`) is `always`. Warren's default for both is `when-synced`:
//!   the queue waits for an in-sync replica rather than lose confirmed messages.
//! - Otherwise keep the mirror set the policy asks for: `exactly N` replaces a lost replica
//!   with a running node (fewer nodes than N: a copy on each), `all` mirrors to every
//!   member, `nodes` to the listed members. A mirror whose node is down stays listed while
//!   there is no running node to replace it, so it can catch up by delta when it returns.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;

use super::Placement;
use crate::broker::Broker;
use crate::metadata::MetaOp;
use crate::queue::Queue;

/// RabbitMQ's `mirroring_sync_batch_size` default.
pub const DEFAULT_SYNC_BATCH: usize = 4096;

/// How a queue is to be replicated.
#[derive(Clone, Debug, PartialEq)]
pub struct HaPolicy {
    pub copies: Copies,
    pub promote_on_shutdown_always: bool,
    pub promote_on_failure_always: bool,
    pub automatic_sync: bool,
    /// Messages per catch-up write (`ha-sync-batch-size`).
    pub sync_batch: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Copies {
    All,
    /// Total copies, the leader included.
    Exactly(usize),
    Nodes(Vec<String>),
}

/// The replication a queue asks for through its policy (or as a quorum queue); `None` for
/// unmirrored and exclusive queues.
pub fn ha_policy(q: &Queue, policy: Option<&Value>) -> Option<HaPolicy> {
    if q.exclusive_owner.is_some() {
        return None;
    }
    let arg = |k: &str| crate::args::get(&q.arguments, k);
    if arg("x-queue-type").and_then(crate::args::as_str).as_deref() == Some("quorum") {
        let size = arg("x-quorum-initial-group-size")
            .and_then(crate::args::as_i64)
            .filter(|n| *n > 0)
            .unwrap_or(3);
        return Some(HaPolicy {
            copies: Copies::Exactly(size as usize),
            promote_on_shutdown_always: false,
            promote_on_failure_always: false,
            automatic_sync: true,
            sync_batch: DEFAULT_SYNC_BATCH,
        });
    }
    let def = policy?;
    let copies = match def.get("ha-mode")?.as_str()? {
        "all" => Copies::All,
        "exactly" => Copies::Exactly(def.get("ha-params")?.as_u64()? as usize),
        "nodes" => Copies::Nodes(
            def.get("ha-params")?
                .as_array()?
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
        ),
        _ => return None,
    };
    let always = |k: &str| def.get(k).and_then(Value::as_str) == Some("always");
    Some(HaPolicy {
        copies,
        promote_on_shutdown_always: always("ha-promote-on-shutdown"),
        promote_on_failure_always: always("ha-promote-on-failure"),
        automatic_sync: def.get("ha-sync-mode").and_then(Value::as_str) == Some("automatic"),
        sync_batch: def
            .get("ha-sync-batch-size")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_SYNC_BATCH, |n| n as usize),
    })
}

/// The change the queue needs now, if any. `members` are the cluster's members with
/// whether each is running.
pub fn plan(
    vhost: &str,
    name: &str,
    home: &str,
    p: &Placement,
    ha: Option<&HaPolicy>,
    members: &[(String, bool)],
) -> Option<MetaOp> {
    let member = |n: &str| members.iter().any(|(m, _)| m == n);
    let up = |n: &str| members.iter().any(|(m, running)| m == n && *running);
    if !up(home) {
        let ha = ha?;
        let always = if member(home) {
            ha.promote_on_failure_always
        } else {
            ha.promote_on_shutdown_always
        };
        let in_sync = p.in_sync.iter().find(|n| up(n));
        let any = || p.mirrors.iter().find(|n| up(n)).filter(|_| always);
        let to = in_sync.or_else(any)?;
        return Some(MetaOp::Promote {
            vhost: vhost.to_string(),
            name: name.to_string(),
            home: to.clone(),
            epoch: p.epoch + 1,
        });
    }
    let desired = desired_mirrors(name, home, p, ha, members);
    let same = desired.len() == p.mirrors.len() && desired.iter().all(|n| p.mirrors.contains(n));
    (!same).then(|| MetaOp::SetMirrors {
        vhost: vhost.to_string(),
        name: name.to_string(),
        mirrors: desired,
        epoch: p.epoch,
    })
}

fn desired_mirrors(
    name: &str,
    home: &str,
    p: &Placement,
    ha: Option<&HaPolicy>,
    members: &[(String, bool)],
) -> Vec<String> {
    let others = members.iter().filter(|(m, _)| m != home);
    match ha.map(|h| &h.copies) {
        None => Vec::new(),
        Some(Copies::All) => others.map(|(m, _)| m.clone()).collect(),
        Some(Copies::Nodes(list)) => others
            .filter(|(m, _)| list.contains(m))
            .map(|(m, _)| m.clone())
            .collect(),
        Some(Copies::Exactly(n)) => {
            let want = n.saturating_sub(1);
            let running = |m: &str| members.iter().any(|(x, r)| x == m && *r);
            // Running mirrors stay (in-sync ones first), then running nodes join (spread by
            // the queue's name so that queues do not all pick the same node), then mirrors
            // that are down but may come back.
            let mut keep: Vec<String> = p
                .mirrors
                .iter()
                .filter(|m| running(m) && *m != home)
                .cloned()
                .collect();
            keep.sort_by_key(|m| !p.in_sync.contains(m));
            let mut spare: Vec<String> = others
                .filter(|(m, r)| *r && !keep.contains(m))
                .map(|(m, _)| m.clone())
                .collect();
            if !spare.is_empty() {
                let k = name
                    .bytes()
                    .fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize));
                let len = spare.len();
                spare.rotate_left(k % len);
            }
            keep.extend(spare);
            keep.extend(
                p.mirrors
                    .iter()
                    .filter(|m| !running(m) && *m != home && members.iter().any(|(x, _)| x == *m))
                    .cloned(),
            );
            keep.truncate(want);
            keep
        }
    }
}

/// Where a new queue is led (`x-queue-master-locator` / `x-queue-leader-locator`, or the
/// policy's `queue-master-locator`): `client-local` (the default) is this node;
/// `min-masters` / `balanced` the running member leading the fewest queues; `random` any
/// running member. An exclusive queue stays with its connection.
pub fn locate(b: &Broker, vhost: &str, name: &str, arguments: &Value, exclusive: bool) -> String {
    let me = b.config.node_name.clone();
    let Some(m) = b.metadata().filter(|_| !exclusive) else {
        return me;
    };
    let arg = |k: &str| arguments.get(k).and_then(Value::as_str).map(str::to_string);
    let policy = b
        .vhost(vhost)
        .and_then(|v| v.policy_for(name, true))
        .and_then(|(_, d)| {
            d.get("queue-master-locator")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let locator = arg("x-queue-master-locator")
        .or_else(|| arg("x-queue-leader-locator"))
        .or(policy)
        .unwrap_or_default();
    let running: Vec<String> = m
        .view()
        .members
        .into_iter()
        .filter(|(_, up)| *up)
        .map(|(n, _)| n)
        .collect();
    match locator.as_str() {
        "min-masters" | "balanced" => {
            let queues = b.all_queues();
            let led = |n: &str| queues.iter().filter(|q| q.home_node(b) == n).count();
            running
                .into_iter()
                .min_by_key(|n| (led(n), n != &me))
                .unwrap_or(me)
        }
        "random" if !running.is_empty() => {
            let pick = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as usize);
            running[pick % running.len()].clone()
        }
        _ => me,
    }
}

/// The metadata leader's loop: every queue's placement is checked ten times a second, and at
/// once when a member is seen down (a refused heartbeat or ping).
pub async fn reconcile(broker: Weak<Broker>) {
    let mut leading = false;
    loop {
        let Some(b) = broker.upgrade() else { return };
        b.placement_woken(Duration::from_millis(100)).await;
        let Some(m) = b.metadata() else { continue };
        if m.is_leader() != leading {
            leading = !leading;
            if leading {
                tracing::info!("this node leads the metadata group: it decides queue placement");
            }
        }
        if !leading {
            continue;
        }
        let members = m.view().members;
        for q in b.all_queues() {
            let Some(v) = b.vhost(&q.vhost) else { continue };
            let policy = v.policy_for(&q.name, true);
            let ha = ha_policy(&q, policy.as_ref().map(|p| &p.1));
            let home = q.home_node(&b);
            let Some(op) = plan(
                &q.vhost,
                &q.name,
                &home,
                &q.placement(),
                ha.as_ref(),
                &members,
            ) else {
                continue;
            };
            if let MetaOp::Promote { home: to, .. } = &op {
                tracing::warn!(
                    "queue '{}' in vhost '{}': leader {home} is down; promoting the mirror on {to}",
                    q.name,
                    q.vhost
                );
            }
            if let Err(e) = b.submit(op).await {
                tracing::debug!("placement of queue '{}': {}", q.name, e.text);
            }
        }
    }
}

/// Applies a committed placement change to this node's view of the queue.
pub fn apply_op(b: &Arc<Broker>, op: &MetaOp) -> Result<(), warren_amqp::reply::AmqpError> {
    use warren_amqp::reply::AmqpError;
    let (vhost, name) = match op {
        MetaOp::Promote { vhost, name, .. }
        | MetaOp::SetMirrors { vhost, name, .. }
        | MetaOp::MirrorSync { vhost, name, .. } => (vhost, name),
        _ => return Ok(()),
    };
    let q = b.vhost(vhost).and_then(|v| v.queue(name)).ok_or_else(|| {
        AmqpError::new(
            warren_amqp::reply::NOT_FOUND,
            format!("no queue '{name}' in vhost '{vhost}'"),
        )
    })?;
    let mut p = q.placement();
    let mut home = q.home_node(b);
    let stale = |epoch: u64| {
        AmqpError::precondition(format!(
            "placement of queue '{name}' moved on (epoch {} now, {epoch} proposed)",
            p.epoch
        ))
    };
    match op {
        MetaOp::Promote {
            home: to, epoch, ..
        } => {
            if *epoch != p.epoch + 1 {
                return Err(stale(*epoch));
            }
            let old = std::mem::replace(&mut home, to.clone());
            p.mirrors.retain(|m| m != to);
            if !p.mirrors.contains(&old) {
                p.mirrors.push(old);
            }
            p.in_sync.clear();
            p.epoch = *epoch;
        }
        MetaOp::SetMirrors { mirrors, epoch, .. } => {
            if *epoch != p.epoch {
                return Err(stale(*epoch));
            }
            for m in mirrors.iter().filter(|m| !p.mirrors.contains(m)) {
                tracing::info!("queue '{name}' in vhost '{vhost}': adding a mirror on {m}");
            }
            p.mirrors = mirrors.iter().filter(|m| **m != home).cloned().collect();
            let kept = p.mirrors.clone();
            p.in_sync.retain(|m| kept.contains(m));
        }
        MetaOp::MirrorSync {
            node,
            in_sync,
            epoch,
            ..
        } => {
            if *epoch != p.epoch {
                return Err(stale(*epoch));
            }
            if *in_sync {
                if !p.mirrors.contains(node) {
                    return Err(AmqpError::precondition(format!(
                        "{node} is not a mirror of queue '{name}'"
                    )));
                }
                if !p.in_sync.contains(node) {
                    p.in_sync.push(node.clone());
                }
            } else {
                p.in_sync.retain(|m| m != node);
            }
        }
        _ => {}
    }
    super::apply(b, &q, &home, p);
    b.persist_definitions();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(up: &[&str], down: &[&str]) -> Vec<(String, bool)> {
        up.iter()
            .map(|n| (n.to_string(), true))
            .chain(down.iter().map(|n| (n.to_string(), false)))
            .collect()
    }

    fn exactly(n: usize) -> HaPolicy {
        HaPolicy {
            copies: Copies::Exactly(n),
            promote_on_shutdown_always: false,
            promote_on_failure_always: false,
            automatic_sync: true,
            sync_batch: DEFAULT_SYNC_BATCH,
        }
    }

    fn placement(mirrors: &[&str], in_sync: &[&str]) -> Placement {
        Placement {
            mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
            in_sync: in_sync.iter().map(|s| s.to_string()).collect(),
            epoch: 3,
        }
    }

    #[test]
    fn exactly_two_adds_one_running_mirror_and_replaces_a_lost_one() {
        let ha = exactly(2);
        let m = members(&["a", "b", "c"], &[]);
        let Some(MetaOp::SetMirrors { mirrors, .. }) =
            plan("/", "q", "a", &placement(&[], &[]), Some(&ha), &m)
        else {
            panic!("expected a mirror to be added")
        };
        assert_eq!(mirrors.len(), 1);
        assert_ne!(mirrors[0], "a");
        // b is down and c runs: c replaces b.
        let m = members(&["a", "c"], &["b"]);
        let op = plan("/", "q", "a", &placement(&["b"], &[]), Some(&ha), &m);
        assert!(
            matches!(op, Some(MetaOp::SetMirrors { ref mirrors, .. }) if mirrors == &["c".to_string()])
        );
        // No spare node: the down mirror stays listed (it catches up when it returns).
        let m = members(&["a"], &["b"]);
        assert_eq!(
            plan("/", "q", "a", &placement(&["b"], &[]), Some(&ha), &m),
            None
        );
    }

    #[test]
    fn failover_promotes_only_in_sync_replicas_unless_always() {
        let mut ha = exactly(2);
        let m = members(&["b", "c"], &["a"]);
        let op = plan(
            "/",
            "q",
            "a",
            &placement(&["b", "c"], &["c"]),
            Some(&ha),
            &m,
        );
        assert!(matches!(op, Some(MetaOp::Promote { ref home, epoch: 4, .. }) if home == "c"));
        // Nothing in sync: wait (when-synced) ...
        assert_eq!(
            plan("/", "q", "a", &placement(&["b"], &[]), Some(&ha), &m),
            None
        );
        // ... unless the failure policy is `always`.
        ha.promote_on_failure_always = true;
        let op = plan("/", "q", "a", &placement(&["b"], &[]), Some(&ha), &m);
        assert!(matches!(op, Some(MetaOp::Promote { ref home, .. }) if home == "b"));
        // A node that left the cluster (stop_app) falls under the shutdown policy.
        let gone = members(&["b", "c"], &[]);
        assert_eq!(
            plan("/", "q", "a", &placement(&["b"], &[]), Some(&ha), &gone),
            None
        );
    }

    #[test]
    fn no_policy_means_no_mirrors() {
        let m = members(&["a", "b"], &[]);
        let op = plan("/", "q", "a", &placement(&["b"], &["b"]), None, &m);
        assert!(matches!(op, Some(MetaOp::SetMirrors { ref mirrors, .. }) if mirrors.is_empty()));
    }
}
