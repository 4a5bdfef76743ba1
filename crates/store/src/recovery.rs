//! Start-up recovery: replays every journal segment in order and returns the messages each
//! durable queue still owes, with the live count of each segment.
//!
//! A torn tail (crash mid-write) is truncated and reported; corrupt records in the middle are
//! skipped and reported; every good record is kept. Time is linear in the journal's size.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::journal::{list_segments, segment_path, Journal};
use crate::record::{scan, Record};

#[derive(Debug, Clone)]
pub struct RecoveredMessage {
    pub id: u64,
    pub segment: u32,
    /// Where its record starts in `segment`.
    pub offset: u64,
    pub exchange: String,
    pub routing_key: String,
    pub properties: Bytes,
    pub body: Bytes,
}

#[derive(Default)]
pub struct Recovered {
    /// Queue key → messages in id order.
    pub queues: HashMap<String, Vec<RecoveredMessage>>,
    /// Delayed-exchange key → (due time in Unix ms, message) still held.
    pub delayed: HashMap<String, Vec<(u64, RecoveredMessage)>>,
    pub segments: usize,
    pub bytes: u64,
    pub elapsed_ms: u128,
}

/// Replays `dir` and opens the journal for appending.
pub fn recover(dir: &Path) -> std::io::Result<(Arc<Journal>, Recovered)> {
    std::fs::create_dir_all(dir)?;
    let started = Instant::now();
    let mut queues: HashMap<String, BTreeMap<u64, RecoveredMessage>> = HashMap::new();
    let mut delayed: HashMap<String, BTreeMap<u64, (u64, RecoveredMessage)>> = HashMap::new();
    let mut rec = Recovered::default();
    let segments = list_segments(dir);
    for &seg in &segments {
        let path = segment_path(dir, seg);
        let data = Bytes::from(std::fs::read(&path)?);
        rec.bytes += data.len() as u64;
        let s = scan(data.clone());
        if s.skipped > 0 {
            tracing::warn!(
                "journal {}: skipped {} corrupt record(s); every good record was kept",
                path.display(),
                s.skipped
            );
        }
        if s.good_end < data.len() {
            tracing::warn!(
                "journal {}: truncated a torn tail of {} bytes at offset {}",
                path.display(),
                data.len() - s.good_end,
                s.good_end
            );
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.set_len(s.good_end as u64)?;
            f.sync_all()?;
        }
        for (r, offset) in s.records.into_iter().zip(s.offsets) {
            match r {
                Record::Enqueue {
                    queue,
                    id,
                    exchange,
                    routing_key,
                    properties,
                    body,
                } => {
                    queues.entry(queue).or_default().insert(
                        id,
                        RecoveredMessage {
                            id,
                            segment: seg,
                            offset,
                            exchange,
                            routing_key,
                            properties,
                            body,
                        },
                    );
                }
                Record::Delayed {
                    queue,
                    id,
                    due_ms,
                    exchange,
                    routing_key,
                    properties,
                    body,
                } => {
                    let m = RecoveredMessage {
                        id,
                        segment: seg,
                        offset,
                        exchange,
                        routing_key,
                        properties,
                        body,
                    };
                    delayed.entry(queue).or_default().insert(id, (due_ms, m));
                }
                Record::Settle { queue, ids } => {
                    if let Some(q) = queues.get_mut(&queue) {
                        for id in &ids {
                            q.remove(id);
                        }
                    }
                    if let Some(d) = delayed.get_mut(&queue) {
                        for id in &ids {
                            d.remove(id);
                        }
                    }
                }
                Record::DropQueue { queue } => {
                    queues.remove(&queue);
                    delayed.remove(&queue);
                }
                // Transient messages do not survive a restart, paged out or not.
                Record::Paged { .. } => {}
            }
        }
    }
    let mut live: BTreeMap<u32, u64> = BTreeMap::new();
    for msgs in queues.values() {
        for m in msgs.values() {
            *live.entry(m.segment).or_insert(0) += 1;
        }
    }
    for held in delayed.values() {
        for (_, m) in held.values() {
            *live.entry(m.segment).or_insert(0) += 1;
        }
    }
    rec.delayed = delayed
        .into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect();
    rec.segments = segments.len();
    rec.queues = queues
        .into_iter()
        .map(|(k, v)| (k, v.into_values().collect()))
        .collect();
    let next = segments.last().map_or(0, |s| s + 1);
    let journal = Journal::open(dir, next, live)?;
    rec.elapsed_ms = started.elapsed().as_millis();
    Ok((journal, rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("warren-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn survives_restart_and_forgets_settled() {
        let dir = tmp("restart");
        {
            let (j, rec) = recover(&dir).unwrap();
            assert!(rec.queues.is_empty());
            let mut synced = j.synced();
            let a1 = j.enqueue("v\0q", 1, "", "q", &[0, 0], b"one");
            let (e1, s1) = (a1.epoch, a1.segment);
            let e2 = j.enqueue("v\0q", 2, "", "q", &[0, 0], b"two").epoch;
            j.enqueue("v\0gone", 1, "", "gone", &[0, 0], b"x");
            j.settle("v\0q", &[(1, s1)]);
            j.drop_queue("v\0gone", &[]);
            while *synced.borrow() < e2.max(e1) {
                synced.changed().await.unwrap();
            }
            j.close();
        }
        let (_j, rec) = recover(&dir).unwrap();
        let q = &rec.queues["v\0q"];
        assert_eq!(q.len(), 1);
        assert_eq!((q[0].id, &q[0].body[..]), (2, &b"two"[..]));
        assert!(!rec.queues.contains_key("v\0gone"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Segments rotate while messages arrive: a message that stays must survive whatever
    /// segment it landed in, however fast the others around it are settled and their
    /// segments deleted.
    #[test]
    fn rotation_under_load_never_deletes_a_live_message() {
        let dir = tmp("rotate");
        let _ = std::fs::remove_dir_all(&dir);
        {
            let (j, _) = recover(&dir).unwrap();
            j.set_segment_bytes(600);
            for i in 0..3000u64 {
                j.enqueue("v\0q", 2 * i, "", "q", &[0, 0], b"keep");
                let gone = j.enqueue("v\0q", 2 * i + 1, "", "q", &[0, 0], b"gone");
                j.settle("v\0q", &[(2 * i + 1, gone.segment)]);
            }
            j.close();
        }
        let segments = list_segments(&dir).len();
        let (j, rec) = recover(&dir).unwrap();
        let kept = rec.queues.get("v\0q").map_or(0, |q| q.len());
        assert_eq!(
            kept, 3000,
            "live messages lost ({segments} segments on disk)"
        );
        assert!(segments > 10, "the test must rotate: {segments} segments");
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_message_reads_back_from_where_it_was_appended() {
        let dir = tmp("readback");
        let _ = std::fs::remove_dir_all(&dir);
        let (j, _) = recover(&dir).unwrap();
        j.set_segment_bytes(300);
        let at: Vec<_> = (0..50u64)
            .map(|i| {
                (
                    i,
                    j.enqueue(
                        "v\0q",
                        i,
                        "x",
                        "rk",
                        &[0, 0],
                        format!("body-{i}").as_bytes(),
                    ),
                )
            })
            .collect();
        for (i, a) in at {
            let r = j.read_message(a.segment, a.offset);
            let r = r.unwrap_or_else(|e| panic!("{e} at {a:?}; on disk {:?}", list_segments(&dir)));
            match r {
                Record::Enqueue { id, body, .. } => {
                    assert_eq!((id, &body[..]), (i, format!("body-{i}").as_bytes()));
                }
                other => panic!("unexpected record {other:?}"),
            }
        }
        assert!(list_segments(&dir).len() > 3);
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_tail_is_truncated_and_reported() {
        let dir = tmp("torn");
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = Vec::new();
        crate::record::encode_enqueue(&mut v, "v\0q", 1, "", "q", &[0, 0], b"kept");
        let good = v.len();
        crate::record::encode_enqueue(&mut v, "v\0q", 2, "", "q", &[0, 0], b"torn");
        std::fs::write(segment_path(&dir, 0), &v[..v.len() - 3]).unwrap();
        let (j, rec) = recover(&dir).unwrap();
        assert_eq!(rec.queues["v\0q"].len(), 1);
        assert_eq!(
            std::fs::metadata(segment_path(&dir, 0)).unwrap().len() as usize,
            good
        );
        j.close();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
