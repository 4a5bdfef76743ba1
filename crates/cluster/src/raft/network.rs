//! Raft messages between nodes over the cluster port: each request is one JSON line on a
//! cookie-authenticated connection (see `handshake`), `{"raft": kind, ...}`, answered by
//! `{"ok": response}` or `{"error": text}`. One connection per peer, re-dialled after any
//! failure; openraft's backoff paces the retries to a node that is down.
//!
//! Metadata is small and changes rarely, so JSON is plenty here; message traffic between
//! nodes does not go through this path.

use std::future::Future;
use std::time::Duration;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::RaftNetworkV2;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::{io_err, Peer, Raft, TypeConfig};
use crate::handshake::{self, Channel};

/// Told the name of a peer whose cluster port refused a connection: its process is gone.
pub type OnRefused = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Dials peers as `me`, proving the cookie.
#[derive(Clone)]
pub struct Network {
    pub me: String,
    pub cookie: String,
    /// The leader's heartbeats (every 75 ms) notice a crashed member first: queue failover
    /// starts from here rather than from the next liveness ping.
    pub on_refused: OnRefused,
}

pub struct PeerLink {
    me: String,
    cookie: String,
    peer: Peer,
    chan: Option<Channel>,
    on_refused: OnRefused,
}

/// Whether an error from dialling a peer says the connection was refused.
pub fn is_refused(e: &std::io::Error) -> bool {
    let t = e.to_string();
    t.contains("ConnectionRefused") || t.contains("Connection refused")
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, _target: u64, node: &Peer) -> PeerLink {
        PeerLink {
            me: self.me.clone(),
            cookie: self.cookie.clone(),
            peer: node.clone(),
            chan: None,
            on_refused: self.on_refused.clone(),
        }
    }
}

/// Splits `host:port` (the host may be an IPv6 literal in brackets).
pub fn split_addr(addr: &str) -> std::io::Result<(String, u16)> {
    let (h, p) = addr
        .rsplit_once(':')
        .ok_or_else(|| io_err(format!("bad peer address {addr}")))?;
    let port = p
        .parse()
        .map_err(|_| io_err(format!("bad port in {addr}")))?;
    Ok((h.trim_matches(|c| c == '[' || c == ']').to_string(), port))
}

/// One request/response exchange with a node's cluster port (a fresh connection).
pub async fn call_once(addr: &str, cookie: &str, me: &str, req: &Value) -> std::io::Result<Value> {
    let (host, port) = split_addr(addr)?;
    let mut ch = handshake::connect((&host, port), cookie, me)
        .await
        .map_err(|e| io_err(format!("{e:?}")))?;
    ch.call(req).await
}

impl PeerLink {
    async fn call<T: DeserializeOwned>(&mut self, req: Value, ttl: Duration) -> std::io::Result<T> {
        let r = tokio::time::timeout(ttl, self.exchange(&req))
            .await
            .map_err(|_| io_err(format!("{} did not answer in time", self.peer.name)))
            .and_then(|r| r);
        if let Err(e) = &r {
            self.chan = None;
            if is_refused(e) {
                (self.on_refused)(&self.peer.name);
            }
        }
        let v = r?;
        match v.get("ok") {
            Some(ok) => serde_json::from_value(ok.clone()).map_err(io_err),
            None => Err(io_err(
                v["error"].as_str().unwrap_or("bad reply").to_string(),
            )),
        }
    }

    async fn exchange(&mut self, req: &Value) -> std::io::Result<Value> {
        if self.chan.is_none() {
            let (host, port) = split_addr(&self.peer.addr)?;
            let ch = handshake::connect((&host, port), &self.cookie, &self.me)
                .await
                .map_err(|e| io_err(format!("{e:?}")))?;
            self.chan = Some(ch);
        }
        let ch = self.chan.as_mut().expect("connected above");
        ch.call(req).await
    }
}

fn unreachable(e: std::io::Error) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkV2<TypeConfig> for PeerLink {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(json!({"raft": "append", "rpc": rpc}), option.hard_ttl())
            .await
            .map_err(unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(json!({"raft": "vote", "rpc": rpc}), option.hard_ttl())
            .await
            .map_err(unreachable)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(json!({"raft": "pre_vote", "rpc": rpc}), option.hard_ttl())
            .await
            .map_err(unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = String::from_utf8(snapshot.snapshot).unwrap_or_default();
        let req = json!({"raft": "snapshot", "vote": vote, "meta": snapshot.meta, "data": data});
        self.call(req, option.hard_ttl().max(Duration::from_secs(30)))
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}

/// The receiving side: runs one Raft request against the local group.
pub async fn serve(raft: &Raft, req: &Value) -> Value {
    fn reply<T: serde::Serialize, E: std::fmt::Display>(r: Result<T, E>) -> Value {
        match r {
            Ok(v) => json!({"ok": v}),
            Err(e) => json!({"error": e.to_string()}),
        }
    }
    fn parse<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("bad raft request: {e}"))
    }
    match req["raft"].as_str().unwrap_or("") {
        "append" => match parse(&req["rpc"]) {
            Ok(rpc) => reply(raft.append_entries(rpc).await),
            Err(e) => json!({"error": e}),
        },
        "vote" => match parse(&req["rpc"]) {
            Ok(rpc) => reply(raft.vote(rpc).await),
            Err(e) => json!({"error": e}),
        },
        "pre_vote" => match parse(&req["rpc"]) {
            Ok(rpc) => reply(raft.pre_vote(rpc).await),
            Err(e) => json!({"error": e}),
        },
        "snapshot" => {
            let (vote, meta) = match (parse(&req["vote"]), parse(&req["meta"])) {
                (Ok(v), Ok(m)) => (v, m),
                (Err(e), _) | (_, Err(e)) => return json!({"error": e}),
            };
            let data = req["data"].as_str().unwrap_or("").as_bytes().to_vec();
            let snapshot = openraft::Snapshot {
                meta,
                snapshot: data,
            };
            reply(raft.install_full_snapshot(vote, snapshot).await)
        }
        other => json!({"error": format!("unknown raft request '{other}'")}),
    }
}
