//! The `interactions` family: shoppers' behaviour, keyed by user so that one user's data is
//! one key range (an export is a range scan, an erasure one range delete).
//!
//! Keys (`P` = the user prefix: user id length as u32 BE, then the id's bytes):
//! - `P 'e' ts(u64 BE) n(u64 BE)` → bincode [`Stored`] (one interaction; `n` a store-wide
//!   counter, so equal events at the same millisecond are kept apart)
//! - `P 'k' idempotency key`      → the event key it was stored under
//!
//! `meta` holds the counter (`next_event`) and the number of stored events (`interactions`).

use super::{Result, Store, StoreError};
use crate::model::{Interaction, InteractionKind};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

pub(super) const CF_INTERACTIONS: &str = "interactions";
pub(super) const KEY_NEXT_EVENT: &[u8] = b"next_event";
const KEY_COUNT: &[u8] = b"interactions";
const KEY_ERASURES: &[u8] = b"erasures";
const EVENT: u8 = b'e';
const IDEM: u8 = b'k';

/// An interaction as stored (the user is in the key).
#[derive(Serialize, Deserialize)]
struct Stored {
    item_id: String,
    kind: InteractionKind,
    dwell_ms: u32,
    ts_ms: i64,
    key: String,
}

/// What became of one interaction of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Stored,
    /// Its (user, idempotency key) was stored before; nothing written.
    Duplicate,
}

fn user_prefix(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + user.len() + 17);
    k.extend_from_slice(&(user.len() as u32).to_be_bytes());
    k.extend_from_slice(user.as_bytes());
    k
}

/// One past every key of the user: the byte after the prefix is `'e'` or `'k'`.
fn user_end(user: &str) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.push(0xff);
    k
}

fn event_key(user: &str, ts_ms: i64, n: u64) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.push(EVENT);
    k.extend_from_slice(&(ts_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&n.to_be_bytes());
    k
}

fn idem_key(user: &str, key: &str) -> Vec<u8> {
    let mut k = user_prefix(user);
    k.push(IDEM);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The user and the record kind of a key.
fn split_key(key: &[u8]) -> Option<(&str, u8)> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    let user = std::str::from_utf8(key.get(4..4 + len)?).ok()?;
    Some((user, *key.get(4 + len)?))
}

fn decode(user: &str, key: &[u8], value: &[u8]) -> Result<Interaction> {
    let (s, _): (Stored, usize) =
        bincode::serde::decode_from_slice(value, bincode::config::standard()).map_err(|e| {
            StoreError::Corrupt {
                key: format!("{key:?}"),
                reason: e.to_string(),
            }
        })?;
    Ok(Interaction {
        user_id: user.to_string(),
        item_id: s.item_id,
        kind: s.kind,
        dwell_ms: s.dwell_ms,
        ts_ms: s.ts_ms,
        key: s.key,
    })
}

fn u64_le(b: Option<Vec<u8>>) -> u64 {
    b.and_then(|b| {
        b.get(..8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    })
    .unwrap_or(0)
}

impl Store {
    pub(super) fn read_next_event(&self) -> Result<u64> {
        Ok(u64_le(self.db.get_cf(&self.cf(super::CF_META), KEY_NEXT_EVENT)?).max(1))
    }

    /// Stores a batch of validated interactions atomically; returns after the WAL is synced.
    /// A (user, idempotency key) already stored, or repeated within the batch, is a duplicate.
    pub fn record_interactions(&self, batch_in: &[Interaction]) -> Result<Vec<Recorded>> {
        let cf = self.cf(CF_INTERACTIONS);
        let meta = self.cf(super::CF_META);
        // One writer at a time: the idempotency check and the write must not interleave.
        let mut next = self.events.lock();
        let mut batch = WriteBatch::default();
        let mut out = Vec::with_capacity(batch_in.len());
        let mut keys_in_batch = std::collections::HashSet::new();
        let mut n = *next;
        for i in batch_in {
            if !i.key.is_empty() {
                let ik = idem_key(&i.user_id, &i.key);
                if !keys_in_batch.insert(ik.clone()) || self.db.get_pinned_cf(&cf, &ik)?.is_some() {
                    out.push(Recorded::Duplicate);
                    continue;
                }
                batch.put_cf(&cf, &ik, event_key(&i.user_id, i.ts_ms, n));
            }
            let s = Stored {
                item_id: i.item_id.clone(),
                kind: i.kind,
                dwell_ms: i.dwell_ms,
                ts_ms: i.ts_ms,
                key: i.key.clone(),
            };
            let value =
                bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap_or_default();
            batch.put_cf(&cf, event_key(&i.user_id, i.ts_ms, n), value);
            n += 1;
            out.push(Recorded::Stored);
        }
        let stored = n - *next;
        if stored == 0 {
            return Ok(out);
        }
        let count = u64_le(self.db.get_cf(&meta, KEY_COUNT)?) + stored;
        batch.put_cf(&meta, KEY_NEXT_EVENT, n.to_le_bytes());
        batch.put_cf(&meta, KEY_COUNT, count.to_le_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        *next = n;
        Ok(out)
    }

    /// One user's interactions, oldest first.
    pub fn user_interactions(&self, user: &str) -> Result<Vec<Interaction>> {
        let cf = self.cf(CF_INTERACTIONS);
        let mut start = user_prefix(user);
        start.push(EVENT);
        let mut end = user_prefix(user);
        end.push(EVENT + 1);
        let mut out = Vec::new();
        for entry in self
            .db
            .iterator_cf(&cf, IteratorMode::From(&start, rocksdb::Direction::Forward))
        {
            let (k, v) = entry?;
            if *k >= *end {
                break;
            }
            out.push(decode(user, &k, &v)?);
        }
        out.sort_by_key(|i| i.ts_ms);
        Ok(out)
    }

    /// Every stored interaction, user by user (training, retention).
    pub fn for_each_interaction(&self, mut f: impl FnMut(Interaction)) -> Result<()> {
        for entry in self
            .db
            .iterator_cf(&self.cf(CF_INTERACTIONS), IteratorMode::Start)
        {
            let (k, v) = entry?;
            match split_key(&k) {
                Some((user, EVENT)) => f(decode(user, &k, &v)?),
                Some(_) => {}
                None => {
                    return Err(StoreError::Corrupt {
                        key: format!("{k:?}"),
                        reason: "malformed interaction key".into(),
                    })
                }
            }
        }
        Ok(())
    }

    pub fn interaction_count(&self) -> Result<u64> {
        Ok(u64_le(self.db.get_cf(&self.cf(super::CF_META), KEY_COUNT)?))
    }

    /// Erases every interaction and idempotency key of a user (one synced range delete), then
    /// flushes and compacts so that no live file keeps the user's keys or values: the range
    /// tombstone drops them at the flush, and the compaction to the last level drops the
    /// tombstone (whose bounds name the user). Returns the events erased.
    pub fn erase_user(&self, user: &str) -> Result<u64> {
        let cf = self.cf(CF_INTERACTIONS);
        let meta = self.cf(super::CF_META);
        let erased = {
            let _writer = self.events.lock();
            let erased = self.user_interactions(user)?.len() as u64;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(&cf, user_prefix(user), user_end(user));
            let count = u64_le(self.db.get_cf(&meta, KEY_COUNT)?).saturating_sub(erased);
            batch.put_cf(&meta, KEY_COUNT, count.to_le_bytes());
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.write_opt(batch, &wo)?;
            erased
        };
        self.compact_away(&cf)?;
        Ok(erased)
    }

    /// Deletes interactions older than `before_ms` (retention). Returns how many.
    pub fn expire_interactions(&self, before_ms: i64) -> Result<u64> {
        let cf = self.cf(CF_INTERACTIONS);
        let meta = self.cf(super::CF_META);
        let _writer = self.events.lock();
        let mut batch = WriteBatch::default();
        let mut expired = 0u64;
        for entry in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = entry?;
            if let Some((user, EVENT)) = split_key(&k) {
                let i = decode(user, &k, &v)?;
                if i.ts_ms < before_ms {
                    batch.delete_cf(&cf, &k);
                    if !i.key.is_empty() {
                        batch.delete_cf(&cf, idem_key(user, &i.key));
                    }
                    expired += 1;
                }
            }
        }
        if expired > 0 {
            let count = u64_le(self.db.get_cf(&meta, KEY_COUNT)?).saturating_sub(expired);
            batch.put_cf(&meta, KEY_COUNT, count.to_le_bytes());
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            self.db.write_opt(batch, &wo)?;
        }
        Ok(expired)
    }

    /// Flushes every family (so no WAL file still holds erased records and is kept for an
    /// unflushed family) and compacts `cf` to its last level, where deletions are final.
    fn compact_away(&self, cf: &std::sync::Arc<rocksdb::BoundColumnFamily<'_>>) -> Result<()> {
        self.db.flush_wal(true)?;
        for f in super::FAMILIES {
            self.db.flush_cf(&self.cf(f))?;
        }
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        // The MANIFEST still records the key bounds of the files compacted away (they name
        // the user); one more change starts a new manifest from the live files only (the store
        // opens with a manifest per change), and the old one is deleted.
        let meta = self.cf(super::CF_META);
        let erasures = u64_le(self.db.get_cf(&meta, KEY_ERASURES)?) + 1;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(&meta, KEY_ERASURES, erasures.to_le_bytes(), &wo)?;
        self.db.flush_cf(&meta)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn ev(user: &str, item: &str, ts: i64, key: &str) -> Interaction {
        Interaction {
            user_id: user.into(),
            item_id: item.into(),
            kind: InteractionKind::Click,
            dwell_ms: 0,
            ts_ms: ts,
            key: key.into(),
        }
    }

    #[test]
    fn record_dedup_export_erase() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let r = store
            .record_interactions(&[
                ev("a", "x", 5, "k1"),
                ev("a", "y", 3, ""),
                ev("a", "x", 5, "k1"),
                ev("ab", "z", 1, "k1"),
            ])
            .unwrap();
        assert_eq!(
            r,
            vec![
                Recorded::Stored,
                Recorded::Stored,
                Recorded::Duplicate,
                Recorded::Stored
            ]
        );
        assert_eq!(
            store.record_interactions(&[ev("a", "x", 9, "k1")]).unwrap(),
            vec![Recorded::Duplicate]
        );
        // "a" is a prefix of "ab" as a string, never as a key: the length comes first.
        let a: Vec<String> = store
            .user_interactions("a")
            .unwrap()
            .into_iter()
            .map(|i| i.item_id)
            .collect();
        assert_eq!(a, vec!["y", "x"]);
        assert_eq!(store.interaction_count().unwrap(), 3);
        let mut all = 0;
        store.for_each_interaction(|_| all += 1).unwrap();
        assert_eq!(all, 3);
        assert_eq!(store.erase_user("a").unwrap(), 2);
        assert!(store.user_interactions("a").unwrap().is_empty());
        assert_eq!(store.user_interactions("ab").unwrap().len(), 1);
        assert_eq!(store.interaction_count().unwrap(), 1);
        // The key is free again after an erasure.
        assert_eq!(
            store.record_interactions(&[ev("a", "x", 9, "k1")]).unwrap(),
            vec![Recorded::Stored]
        );
        // Nothing of an erased user stays in the store's files (keys, values, file bounds).
        let who = "erase-me-user";
        let many: Vec<Interaction> = (0..50)
            .map(|t| ev(who, "x", t, &format!("key-{t}")))
            .collect();
        store.record_interactions(&many).unwrap();
        store.record_interactions(&[ev("zz", "y", 1, "")]).unwrap();
        store.flush().unwrap();
        store
            .record_interactions(
                &many[..5]
                    .iter()
                    .map(|e| Interaction {
                        ts_ms: 99,
                        key: String::new(),
                        ..e.clone()
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        assert_eq!(store.erase_user(who).unwrap(), 55);
        let mut left = Vec::new();
        for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let bytes = std::fs::read(e.path()).unwrap();
            if bytes.windows(who.len()).any(|w| w == who.as_bytes()) {
                left.push(e.file_name());
            }
        }
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "{left:?} of {names:?}; CURRENT {}",
            std::fs::read_to_string(dir.path().join("CURRENT")).unwrap()
        );
        // ts 1 of "ab" and of "zz" are older than 5; "a"'s ts 9 stays.
        assert_eq!(store.expire_interactions(5).unwrap(), 2);
        assert_eq!(store.interaction_count().unwrap(), 1);
    }
}
