//! This node's member of the metadata Raft group: starting it (bootstrapping a new
//! one-node cluster, or waiting to be added to an existing one), submitting changes (the
//! leader writes; a follower forwards to the leader and then waits until it has applied the
//! change itself, so a client reads its own writes on any node), membership changes for
//! join/leave/forget, and the requests peers send on the cluster port.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use serde_json::{json, Value};
use warren_broker::metadata::{MetaOp, MetaResult, Metadata};
use warren_broker::Broker;

use crate::raft::log_store::LogStore;
use crate::raft::network::{self, call_once, Network};
use crate::raft::state_machine::{Applied, StateMachine};
use crate::raft::{node_id, Command, Peer, Raft};

/// How long a metadata change may wait for a majority before the client is told.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The AMQP code used when the cluster cannot decide (no majority reachable):
/// 541 INTERNAL_ERROR, a connection error, since the node cannot serve metadata at all.
const UNAVAILABLE: u16 = 541;

pub struct Group {
    pub raft: Raft,
    pub me: Peer,
    pub id: u64,
    cookie: String,
    /// When each other member's application last answered a ping.
    alive: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Members whose cluster port refused the last ping (the process is gone) or that
    /// answered with their application stopped: down at once, not after `UP_WITHIN`.
    refused: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Marks a member refused (and wakes queue placement when that is news).
    on_refused: network::OnRefused,
    /// The local broker, whose queue counts ride along with some pings so that every node
    /// lists every queue with its leader's numbers.
    broker: std::sync::Weak<Broker>,
}

/// Every how many pings the queue counts go along.
const STATS_EVERY: u32 = 7;

/// Without a majority for this long, a node pauses (see `has_majority`).
const LIVENESS: Duration = Duration::from_secs(3);
/// A member whose application has not answered a ping for this long counts as down (queue
/// failover starts); pings go out every `PING_EVERY`.
const UP_WITHIN: Duration = Duration::from_millis(1500);
const PING_EVERY: Duration = Duration::from_millis(150);

/// The broker's handle on the group (the broker holds this; the group holds no broker).
pub struct GroupMetadata(pub Arc<Group>, pub std::sync::Weak<Broker>);

impl Metadata for GroupMetadata {
    fn submit(&self, op: MetaOp) -> Pin<Box<dyn Future<Output = MetaResult> + Send>> {
        let g = self.0.clone();
        Box::pin(async move { g.write(Command::Meta(op)).await })
    }

    fn view(&self) -> warren_broker::metadata::ClusterView {
        let g = &self.0;
        let members: Vec<(String, bool)> = g
            .members()
            .into_iter()
            .map(|(p, _)| {
                let up = self.node_is_up(&p.name);
                (p.name, up)
            })
            .collect();
        let partitions = if g.has_majority(LIVENESS) {
            Vec::new()
        } else {
            members
                .iter()
                .filter(|(n, _)| *n != g.me.name)
                .map(|(n, _)| n.clone())
                .collect()
        };
        warren_broker::metadata::ClusterView {
            name: self
                .1
                .upgrade()
                .map_or_else(|| g.me.name.clone(), |b| g.cluster_name(&b)),
            members,
            partitions,
        }
    }

    fn node_is_up(&self, node: &str) -> bool {
        if node == self.0.me.name {
            return true;
        }
        let refused = self
            .0
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(node);
        !refused
            && self
                .0
                .alive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(node)
                .is_none_or(|t| t.elapsed() < UP_WITHIN)
    }

    fn is_leader(&self) -> bool {
        let m = self.0.metrics();
        m.current_leader == Some(self.0.id) && m.state == ServerState::Leader
    }

    fn node_amqp_address(&self, node: &str) -> Option<(String, u16)> {
        let (peer, _) = self.0.members().into_iter().find(|(p, _)| p.name == node)?;
        let (host, _) = crate::raft::network::split_addr(&peer.addr).ok()?;
        (peer.amqp_port != 0).then_some((host, peer.amqp_port))
    }
}

impl Group {
    /// Starts the group on `data_dir/raft.redb`. A node that was never in a cluster and is
    /// not joining one becomes a one-node cluster of its own.
    pub async fn start(
        broker: &Arc<Broker>,
        me: Peer,
        cookie: String,
        data_dir: &Path,
        joining: bool,
    ) -> std::io::Result<Arc<Group>> {
        let log = LogStore::open(&data_dir.join("raft.redb"))?;
        let config = Config {
            cluster_name: "warren".into(),
            heartbeat_interval: 60,
            election_timeout_min: 200,
            election_timeout_max: 400,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            ..Default::default()
        }
        .validate()
        .map_err(crate::raft::io_err)?;
        let id = node_id(&me.name);
        let refused: Arc<std::sync::Mutex<std::collections::HashSet<String>>> = Default::default();
        let on_refused: network::OnRefused = {
            let (refused, broker) = (refused.clone(), Arc::downgrade(broker));
            Arc::new(move |peer: &str| {
                let new = refused
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(peer.to_string());
                if let (true, Some(b)) = (new, broker.upgrade()) {
                    b.wake_placement();
                }
            })
        };
        let net = Network {
            me: me.name.clone(),
            cookie: cookie.clone(),
            on_refused: on_refused.clone(),
        };
        let sm = StateMachine {
            broker: Arc::downgrade(broker),
        };
        let raft = Raft::new(id, Arc::new(config), net, log, sm)
            .await
            .map_err(crate::raft::io_err)?;
        let g = Arc::new(Group {
            raft,
            me: me.clone(),
            id,
            cookie,
            alive: Default::default(),
            refused,
            on_refused,
            broker: Arc::downgrade(broker),
        });
        tokio::spawn(ping_members(Arc::downgrade(&g)));
        let fresh = !g.raft.is_initialized().await.map_err(crate::raft::io_err)?;
        if fresh && !joining {
            g.raft
                .initialize(BTreeMap::from([(id, me.clone())]))
                .await
                .map_err(crate::raft::io_err)?;
            g.raft
                .wait(Some(Duration::from_secs(10)))
                .state(ServerState::Leader, "new one-node cluster elects itself")
                .await
                .map_err(crate::raft::io_err)?;
            // The log starts with everything this node already has, so that a node that
            // joins later and replays the log from the start ends with the same metadata.
            let definitions = warren_broker::definitions::export_cluster(broker);
            g.write(Command::Meta(MetaOp::Import { definitions }))
                .await
                .map_err(|(_, e)| crate::raft::io_err(e))?;
            g.write(Command::SetClusterName(me.name.clone()))
                .await
                .map_err(|(_, e)| crate::raft::io_err(e))?;
            tracing::info!("formed a new cluster with this node ({})", me.name);
        }
        broker.set_metadata(Arc::new(GroupMetadata(g.clone(), Arc::downgrade(broker))));
        Ok(g)
    }

    /// Applies `cmd` through the leader; returns once this node has applied it too.
    pub async fn write(&self, cmd: Command) -> MetaResult {
        match tokio::time::timeout(WRITE_TIMEOUT, self.write_inner(cmd)).await {
            Ok(r) => r,
            Err(_) => Err((
                UNAVAILABLE,
                "metadata change timed out: no majority of the cluster's nodes is reachable".into(),
            )),
        }
    }

    async fn write_inner(&self, cmd: Command) -> MetaResult {
        loop {
            match self.raft.client_write(cmd.clone()).await {
                Ok(r) => return r.data,
                Err(e) => {
                    let Some(fwd) = e.forward_to_leader() else {
                        return Err((UNAVAILABLE, format!("metadata change failed: {e}")));
                    };
                    let Some(leader) = fwd.leader_node.clone() else {
                        // No leader yet (election in progress): try again shortly.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let req = json!({"cluster": "write", "cmd": cmd});
                    let reply =
                        match call_once(&leader.addr, &self.cookie, &self.me.name, &req).await {
                            Ok(v) => v,
                            Err(_) => {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        };
                    if reply["retry"].as_bool() == Some(true) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                    let result: MetaResult = serde_json::from_value(reply["result"].clone())
                        .unwrap_or_else(|e| Err((UNAVAILABLE, format!("bad reply: {e}"))));
                    let index = reply["index"].as_u64();
                    let _ = self
                        .raft
                        .wait(Some(WRITE_TIMEOUT))
                        .applied_index_at_least(index, "forwarded change applied here")
                        .await;
                    return result;
                }
            }
        }
    }

    /// Adds `peer` as a learner, lets it catch up, then makes it a voter (leader only).
    async fn add_member(&self, peer: Peer) -> Result<(), String> {
        let id = node_id(&peer.name);
        let m = self.metrics().membership_config.clone();
        if m.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        if m.get_node(&id).is_none() || m.get_node(&id) != Some(&peer) {
            self.raft
                .add_learner(id, peer.clone(), true)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("node {} is now a voting cluster member", peer.name);
        Ok(())
    }

    /// Membership change on the leader: `leave` keeps the node as a non-voter, `forget`
    /// removes it.
    async fn remove_member(&self, name: &str, forget: bool) -> Result<(), String> {
        let id = node_id(name);
        let m = self.metrics().membership_config.clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                // The last voter stays one: the last node standing keeps serving.
                return Ok(());
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), !forget)
                .await
                .map_err(|e| e.to_string())?;
        } else if forget && m.get_node(&id).is_some() {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Sends a membership request to the leader (or handles it here when we lead).
    pub async fn ask_leader(&self, req: Value) -> Result<Value, String> {
        let settled = |v: &Value| v["retry"].as_bool() != Some(true) && !is_not_leader(v);
        for _ in 0..50 {
            if self.metrics().current_leader == Some(self.id) {
                let v = self.handle_cluster(&req).await;
                if settled(&v) {
                    return Ok(v);
                }
            } else if let Some(v) = self.forward_to_leader(&req).await {
                if settled(&v) {
                    return Ok(v);
                }
            }
            // This node's view of the leader is missing or stale (e.g. it restarted as the
            // leader of a past term after leaving the voter set): ask every other member;
            // only the leader can act, the others say so.
            for (p, _) in self.members() {
                if p.name == self.me.name {
                    continue;
                }
                let call = call_once(&p.addr, &self.cookie, &self.me.name, &req);
                if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_secs(2), call).await {
                    if settled(&v) {
                        return Ok(v);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err("no cluster leader reachable".into())
    }

    /// One attempt to pass a request to the current leader (another node).
    async fn forward_to_leader(&self, req: &Value) -> Option<Value> {
        let m = self.metrics();
        let leader = m.current_leader.filter(|l| *l != self.id)?;
        let node = m.membership_config.get_node(&leader)?.clone();
        call_once(&node.addr, &self.cookie, &self.me.name, req)
            .await
            .ok()
    }

    /// A request from a peer on the cluster port.
    pub async fn handle(&self, req: &Value) -> Value {
        if req.get("raft").is_some() {
            return network::serve(&self.raft, req).await;
        }
        self.handle_cluster(req).await
    }

    async fn handle_cluster(&self, req: &Value) -> Value {
        let leader = self.metrics().current_leader == Some(self.id);
        match req["cluster"].as_str().unwrap_or("") {
            "write" => {
                let Ok(cmd) = serde_json::from_value::<Command>(req["cmd"].clone()) else {
                    return json!({"result": {"Err": [UNAVAILABLE, "bad command"]}});
                };
                match self.raft.client_write(cmd).await {
                    Ok(r) => json!({"result": r.data, "index": r.log_id.index()}),
                    Err(e) if e.forward_to_leader().is_some() => json!({"retry": true}),
                    Err(e) => json!({"result": {"Err": [UNAVAILABLE, e.to_string()]}}),
                }
            }
            "join" | "leave" | "forget" if !leader => match self.forward_to_leader(req).await {
                Some(v) => v,
                None => json!({"retry": true}),
            },
            "join" => match serde_json::from_value::<Peer>(req["peer"].clone()) {
                Ok(p) => result(self.add_member(p).await),
                Err(e) => json!({"error": e.to_string()}),
            },
            "leave" => result(
                self.remove_member(req["node"].as_str().unwrap_or(""), false)
                    .await,
            ),
            "forget" => result(
                self.remove_member(req["node"].as_str().unwrap_or(""), true)
                    .await,
            ),
            other => json!({"error": format!("unknown cluster request '{other}'")}),
        }
    }

    /// The members as recorded in the metadata: (name, address, voter).
    pub fn members(&self) -> Vec<(Peer, bool)> {
        let m = self.metrics().membership_config.clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        let mut out: Vec<(Peer, bool)> = m
            .nodes()
            .map(|(id, p)| (p.clone(), voters.contains(id)))
            .collect();
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        out
    }

    /// Whether this node is a voter in the membership it has applied.
    pub fn is_voter(&self) -> bool {
        self.metrics()
            .membership_config
            .voter_ids()
            .any(|id| id == self.id)
    }

    pub fn leader(&self) -> Option<String> {
        let metrics = self.metrics();
        let l = metrics.current_leader?;
        metrics
            .membership_config
            .get_node(&l)
            .map(|p| p.name.clone())
    }

    pub fn cluster_name(&self, broker: &Broker) -> String {
        let n = Applied::of(broker).cluster_name;
        if n.is_empty() {
            self.me.name.clone()
        } else {
            n
        }
    }

    /// Whether this node is in touch with a majority of the voters: it follows a leader,
    /// or it leads and a quorum acknowledged it recently. A lone voter always is.
    pub fn has_majority(&self, within: Duration) -> bool {
        use openraft::Instant;
        let m = self.metrics();
        let voters: Vec<u64> = m.membership_config.voter_ids().collect();
        if voters == [self.id] {
            return true;
        }
        match m.current_leader {
            Some(l) if l == self.id => m
                .last_quorum_acked
                .as_ref()
                .is_some_and(|t| t.elapsed() < within),
            Some(_) => m.state == ServerState::Follower || m.state == ServerState::Learner,
            None => false,
        }
    }

    /// The latest Raft metrics (membership, leader, state).
    pub fn metrics(&self) -> openraft::RaftMetrics<crate::raft::TypeConfig> {
        use openraft::async_runtime::WatchReceiver;
        self.raft.metrics().borrow_watched().clone()
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Pings every other member's cluster port (all at once, every `PING_EVERY`) and records
/// whose application runs.
async fn ping_members(group: std::sync::Weak<Group>) {
    let mut round = 0u32;
    loop {
        let Some(g) = group.upgrade() else { return };
        round = round.wrapping_add(1);
        let mut req = json!({"cluster": "ping"});
        if round.is_multiple_of(STATS_EVERY) {
            if let Some(b) = g.broker.upgrade() {
                req["stats"] = b.led_queue_stats();
            }
        }
        let mut pings = Vec::new();
        for (p, _) in g.members() {
            if p.name == g.me.name {
                continue;
            }
            // A member seen for the first time gets the benefit of the doubt.
            g.alive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(p.name.clone())
                .or_insert_with(std::time::Instant::now);
            let (g, req) = (g.clone(), req.clone());
            pings.push(tokio::spawn(async move {
                let ping = call_once(&p.addr, &g.cookie, &g.me.name, &req);
                let answer = tokio::time::timeout(Duration::from_millis(1000), ping).await;
                let refused = matches!(&answer, Ok(Err(e)) if network::is_refused(e));
                let running = matches!(&answer, Ok(Ok(v)) if v["running"].as_bool() == Some(true));
                if running {
                    g.alive
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(p.name.clone(), std::time::Instant::now());
                }
                // An answer without the application running is as clear as a refusal: the
                // node stopped its app (stop_app) and its queues must fail over now.
                let stopped = matches!(&answer, Ok(Ok(v)) if v["running"].as_bool() == Some(false));
                if refused || stopped {
                    (g.on_refused)(&p.name);
                } else {
                    g.refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&p.name);
                }
            }));
        }
        drop(g);
        tokio::time::sleep(PING_EVERY).await;
        for p in pings {
            let _ = p.await;
        }
    }
}

/// An answer from a node that is not the leader (openraft's "forward to leader").
fn is_not_leader(v: &Value) -> bool {
    v["error"]
        .as_str()
        .is_some_and(|e| e.contains("has to forward request"))
}

fn result(r: Result<(), String>) -> Value {
    match r {
        Ok(()) => json!({"ok": true}),
        // One membership change at a time: the caller waits for the previous one.
        Err(e) if e.contains("undergoing a configuration change") => json!({"retry": true}),
        Err(e) => json!({"error": e}),
    }
}
