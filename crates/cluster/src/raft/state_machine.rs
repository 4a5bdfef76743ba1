//! The metadata state machine: the broker's own metadata. Applying an entry applies its
//! `MetaOp` to the local broker; the applied position, the membership and the cluster name
//! are written into the broker's definitions file in the same atomic write as the metadata
//! they describe, so after `kill -9` a node resumes exactly after the last change it kept.
//!
//! A snapshot is the definitions document of everything the cluster agrees on (transient
//! objects included, each queue with its home node); installing one replaces this node's
//! metadata with it, keeping the messages of queues that remain.

use std::sync::{Arc, Weak};

use futures::StreamExt;
use openraft::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::EntryPayload;
use serde_json::{json, Value};
use warren_broker::metadata::{self, MetaReply};
use warren_broker::Broker;

use super::{io_err, Command, TypeConfig};

type LogId = LogIdOf<TypeConfig>;
type Membership = StoredMembershipOf<TypeConfig>;

/// What the state machine records beside the metadata.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId>,
    pub membership: Membership,
    #[serde(default)]
    pub cluster_name: String,
}

impl Applied {
    pub fn of(broker: &Broker) -> Applied {
        broker
            .cluster_state()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default()
    }

    fn store(&self, broker: &Broker) {
        broker.set_cluster_state(serde_json::to_value(self).ok());
    }
}

/// Holds the broker weakly: the broker holds the group, and a stopped app must be freed.
#[derive(Clone)]
pub struct StateMachine {
    pub broker: Weak<Broker>,
}

impl StateMachine {
    fn broker(&self) -> Result<Arc<Broker>, std::io::Error> {
        self.broker
            .upgrade()
            .ok_or_else(|| io_err("the broker application is stopped"))
    }

    fn snapshot(&self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, std::io::Error> {
        let broker = self.broker()?;
        let applied = Applied::of(&broker);
        let doc = json!({
            "definitions": warren_broker::definitions::export_cluster(&broker),
            "cluster_name": applied.cluster_name,
        });
        Ok(openraft::Snapshot {
            meta: openraft::SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership,
            },
            snapshot: serde_json::to_vec(&doc).unwrap_or_default(),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Vec<u8>>, std::io::Error> {
        self.snapshot()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), std::io::Error> {
        let a = Applied::of(&*self.broker()?);
        Ok((a.last_applied, a.membership))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>>
            + Unpin
            + Send,
    {
        let broker = self.broker()?;
        let mut applied = Applied::of(&broker);
        // Definition writes inside the changes are held back: the batch ends with one write
        // that carries both the metadata and the position it reached.
        broker.hold_persist();
        let mut outcome = Ok(());
        while let Some(item) = entries.next().await {
            let (entry, responder) = match item {
                Ok(x) => x,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(MetaReply::default()),
                EntryPayload::Membership(m) => {
                    applied.membership = Membership::new(Some(entry.log_id), m);
                    Ok(MetaReply::default())
                }
                EntryPayload::Normal(Command::SetClusterName(n)) => {
                    applied.cluster_name = n;
                    Ok(MetaReply::default())
                }
                EntryPayload::Normal(Command::Meta(op)) => {
                    let r = metadata::apply(&broker, &op);
                    if let Err((code, text)) = &r {
                        tracing::debug!("metadata change {op:?} refused: {code} {text}");
                    }
                    r
                }
            };
            if let Some(responder) = responder {
                responder.send(result);
            }
        }
        applied.store(&broker);
        broker.release_persist();
        outcome
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Vec<u8>,
    ) -> Result<(), std::io::Error> {
        let doc: Value = serde_json::from_slice(&snapshot).map_err(io_err)?;
        let applied = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            cluster_name: doc["cluster_name"].as_str().unwrap_or("").to_string(),
        };
        let broker = self.broker()?;
        applied.store(&broker);
        for w in warren_broker::definitions::replace(&broker, &doc["definitions"]) {
            tracing::warn!("metadata snapshot: {w}");
        }
        broker.persist_definitions();
        tracing::info!("installed a metadata snapshot up to {:?}", meta.last_log_id);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, Vec<u8>>>, std::io::Error> {
        // The current state is always a valid snapshot at the last applied entry.
        Ok(Some(self.snapshot()?).filter(|s| s.meta.last_log_id.is_some()))
    }
}
