//! The metadata Raft log and vote in redb: one table of entries by index, one of small
//! facts (vote, committed position, last purged id). Every append, vote and truncation is a
//! durable redb commit before openraft is told it is done, so an acknowledged entry survives
//! `kill -9`.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{io_err, TypeConfig};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

type Entry = EntryOf<TypeConfig>;
type LogId = LogIdOf<TypeConfig>;

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let db = Database::create(path).map_err(io_err)?;
        let tx = db.begin_write().map_err(io_err)?;
        tx.open_table(LOG).map_err(io_err)?;
        tx.open_table(META).map_err(io_err)?;
        tx.commit().map_err(io_err)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> std::io::Result<Option<T>> {
        let tx = self.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(META).map_err(io_err)?;
        match t.get(key).map_err(io_err)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(io_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, v: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(v).map_err(io_err)?;
        let tx = self.db.begin_write().map_err(io_err)?;
        tx.open_table(META)
            .map_err(io_err)?
            .insert(key, bytes.as_slice())
            .map_err(io_err)?;
        tx.commit().map_err(io_err)
    }

    fn last_entry_id(&self) -> std::io::Result<Option<LogId>> {
        let tx = self.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(LOG).map_err(io_err)?;
        let last = t.last().map_err(io_err)?;
        let id = match last {
            Some((_, v)) => {
                let e: Entry = serde_json::from_slice(v.value()).map_err(io_err)?;
                Some(e.log_id)
            }
            None => None,
        };
        Ok(id)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        let tx = self.db.begin_read().map_err(io_err)?;
        let t = tx.open_table(LOG).map_err(io_err)?;
        let mut out = Vec::new();
        for item in t.range(range).map_err(io_err)? {
            let (_, v) = item.map_err(io_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(io_err)?);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, std::io::Error> {
        self.get_meta("vote")
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta("purged")?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), std::io::Error> {
        self.put_meta("vote", vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        self.put_meta("committed", &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        Ok(self.get_meta::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = (|| {
            let tx = self.db.begin_write().map_err(io_err)?;
            {
                let mut t = tx.open_table(LOG).map_err(io_err)?;
                for e in entries {
                    let bytes = serde_json::to_vec(&e).map_err(io_err)?;
                    t.insert(e.log_id.index(), bytes.as_slice())
                        .map_err(io_err)?;
                }
            }
            tx.commit().map_err(io_err)
        })();
        let ok = result.is_ok();
        callback.io_completed(result.map_err(|e| io_err(&e)));
        if ok {
            Ok(())
        } else {
            Err(io_err("raft log append failed"))
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last_log_id.map_or(0, |l| l.index() + 1);
        let tx = self.db.begin_write().map_err(io_err)?;
        tx.open_table(LOG)
            .map_err(io_err)?
            .retain_in(from.., |_, _| false)
            .map_err(io_err)?;
        tx.commit().map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        let bytes = serde_json::to_vec(&log_id).map_err(io_err)?;
        let tx = self.db.begin_write().map_err(io_err)?;
        tx.open_table(LOG)
            .map_err(io_err)?
            .retain_in(..=log_id.index(), |_, _| false)
            .map_err(io_err)?;
        tx.open_table(META)
            .map_err(io_err)?
            .insert("purged", bytes.as_slice())
            .map_err(io_err)?;
        tx.commit().map_err(io_err)
    }
}
