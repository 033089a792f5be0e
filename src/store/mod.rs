//! The item store: RocksDB holding item metadata, their prepared vectors and the write
//! sequence counter. It is the source of truth; index generations are derived from it.
//!
//! Column families:
//! - `items`   : item id (UTF-8) → bincode [`Version`] (metadata + the version's `seq` and spaces; see `record.rs`)
//! - `vectors` : seq (u64 big-endian) ++ space name → little-endian f32 row (prepared)
//! - `meta`    : `next_seq` → u64 LE; `next_event`, `interactions` (see `interactions.rs`)
//! - `interactions` : shoppers' behaviour, keyed by user (`interactions.rs`)
//! - `thumbs`  : item id → a small JPEG of its first photo (for the web pages, #13), written and
//!   deleted in the same batch as the item
//!
//! Memory ([`StoreConfig`], the file's `[store]` section): every family (and `default`) opens
//! with its own small write buffer and LZ4; one LRU block cache is shared by all families and
//! also holds their index and filter blocks; a write buffer manager caps the memtables of all
//! families together (reaching the cap makes RocksDB flush, it does not stall or refuse
//! writes). [`Store::memory`] reports what each part holds.
//!
//! Only the live version of an item has rows in `vectors`: a replacement deletes the old
//! version's rows in the same atomic, WAL-synced batch that writes the new ones. Keying
//! vectors by seq makes "everything written after generation S" a range scan.

mod interactions;
mod record;

pub use interactions::Recorded;

use crate::model::Version;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch,
    WriteOptions, DB,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const CF_ITEMS: &str = "items";
const CF_VECTORS: &str = "vectors";
const CF_META: &str = "meta";
const CF_THUMBS: &str = "thumbs";
const KEY_NEXT_SEQ: &[u8] = b"next_seq";
const KEY_VECTOR_MODELS: &[u8] = b"vector_models";
/// Every family the store opens, RocksDB's own `default` (which holds nothing) included.
const FAMILIES: [&str; 6] = [
    rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
    CF_ITEMS,
    CF_VECTORS,
    CF_META,
    interactions::CF_INTERACTIONS,
    CF_THUMBS,
];

const MIB: usize = 1024 * 1024;

/// `[store]`: how much memory RocksDB may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The one block cache all column families share (data blocks, and the index and filter
    /// blocks of the SST files).
    pub block_cache_bytes: usize,
    /// Memtable size of each column family: a family's memtable is flushed at this size. A
    /// memtable takes memory in blocks of an eighth of it (at most 1 MiB).
    pub write_buffer_bytes: usize,
    /// All memtables of all families together: past it RocksDB flushes the largest.
    pub memtable_budget_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            block_cache_bytes: 64 * MIB,
            write_buffer_bytes: 8 * MIB,
            memtable_budget_bytes: 64 * MIB,
        }
    }
}

impl StoreConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.block_cache_bytes == 0 {
            return Err("store.block_cache_bytes must be > 0".into());
        }
        if self.write_buffer_bytes < 64 * 1024 {
            return Err("store.write_buffer_bytes must be at least 65536".into());
        }
        if self.memtable_budget_bytes == 0 {
            return Err("store.memtable_budget_bytes must be > 0".into());
        }
        Ok(())
    }
}

/// What RocksDB holds in memory, by part ([`Store::memory`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreMemory {
    /// Usage of the shared block cache (counted once), index and filter blocks included.
    pub block_cache: u64,
    pub block_cache_capacity: u64,
    /// Of `block_cache`: entries pinned by open iterators and readers.
    pub block_cache_pinned: u64,
    /// Per family: active and unflushed immutable memtables.
    pub memtables: Vec<(&'static str, u64)>,
    /// Table readers' memory outside the block cache, all families.
    pub table_readers: u64,
}

impl StoreMemory {
    pub fn memtables_total(&self) -> u64 {
        self.memtables.iter().map(|(_, b)| b).sum()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Files written by a newer RocksDB than the one linked (mmsearch links Debian's 7.8; data
    /// directories made before that switch were written by RocksDB 10 and cannot be read back).
    #[error(
        "{path}: written by a newer RocksDB than this build links (7.8): {reason}. Re-ingest \
         into a new data directory (a snapshot taken by the same older release restores only \
         with that release)"
    )]
    NewerFormat { path: PathBuf, reason: String },
    #[error("corrupt record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One write of a batch.
pub enum WriteOp<'a> {
    Put {
        version: &'a Version,
        vectors: &'a [(String, Vec<f32>)],
        replaces_seq: Option<u64>,
        /// The item's thumbnail; `None` removes the one an older version had.
        thumbnail: Option<&'a [u8]>,
    },
    Delete {
        id: &'a str,
        seq: u64,
    },
}

pub struct Store {
    db: DB,
    path: PathBuf,
    cache: Cache,
    cache_capacity: usize,
    /// The next interaction counter; its lock serialises interaction writes.
    events: parking_lot::Mutex<u64>,
}

fn vector_key(seq: u64, space: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + space.len());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(space.as_bytes());
    k
}

fn parse_vector_row(key: &[u8], value: &[u8]) -> Result<(u64, String, Vec<f32>)> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("{key:?}"),
        reason: reason.into(),
    };
    if key.len() < 8 || value.len() % 4 != 0 {
        return Err(corrupt("malformed vector row"));
    }
    let seq = u64::from_be_bytes(key[..8].try_into().map_err(|_| corrupt("short key"))?);
    let space = std::str::from_utf8(&key[8..])
        .map_err(|_| corrupt("space name not UTF-8"))?
        .to_string();
    let row = value
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((seq, space, row))
}

fn row_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Store {
    pub fn open(path: &Path, config: &StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })?;
        let cache = Cache::new_lru_cache(config.block_cache_bytes).map_err(StoreError::Rocks)?;
        let family = || {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            // Point reads that miss — a new idempotency key, an id not in the catalogue — would
            // otherwise search every overlapping file's index and data blocks; 10 bits per key
            // (≈ 1 % false positives, ≈ 1.25 bytes per key, charged to the shared cache).
            table.set_bloom_filter(10.0, false);
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_write_buffer_size(config.write_buffer_bytes);
            o.set_max_write_buffer_number(2);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o
        };
        // `default` is named too: the crate opens a family left out with `Options::default()`.
        // Every flush and compaction starts a new MANIFEST written from the live files only,
        // so the key bounds of files an erasure compacted away (they name the user, see
        // `interactions.rs`) do not stay in an old one. A manifest is a line per live file,
        // small beside the flush itself.
        let mut opts = family();
        opts.set_max_manifest_file_size(1);
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // Memtables are capped as a whole (RocksDB's own write-buffer manager, not charged to
        // the block cache), so the two parts are reported (and sized) separately.
        opts.set_db_write_buffer_size(config.memtable_budget_bytes);
        let cfs = FAMILIES.map(|name| ColumnFamilyDescriptor::new(name, family()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            let reason = e.to_string();
            if reason.contains("unsupported format_version") {
                StoreError::NewerFormat {
                    path: path.to_path_buf(),
                    reason,
                }
            } else {
                StoreError::Rocks(e)
            }
        })?;
        let mut store = Store {
            db,
            path: path.to_path_buf(),
            cache,
            cache_capacity: config.block_cache_bytes,
            events: Default::default(),
        };
        *store.events.get_mut() = store.read_next_event()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> std::sync::Arc<rocksdb::BoundColumnFamily<'_>> {
        // The families are created at open (create_missing_column_families), so the
        // handle always exists for the life of the DB.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| unreachable!("column family {name} is created at open"))
    }

    /// The sequence number the next write will get (1 on an empty store).
    pub fn next_seq(&self) -> Result<u64> {
        match self.db.get_cf(&self.cf(CF_META), KEY_NEXT_SEQ)? {
            None => Ok(1),
            Some(b) if b.len() == 8 => {
                Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default()))
            }
            Some(_) => Err(StoreError::Corrupt {
                key: "next_seq".into(),
                reason: "not 8 bytes".into(),
            }),
        }
    }

    /// The models that made the stored vectors, as the engine recorded them; `None` in a store
    /// written before they were recorded (or never written with models).
    pub fn vector_models(&self) -> Result<Option<String>> {
        match self.db.get_cf(&self.cf(CF_META), KEY_VECTOR_MODELS)? {
            None => Ok(None),
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| StoreError::Corrupt {
                    key: "vector_models".into(),
                    reason: "not UTF-8".into(),
                }),
        }
    }

    /// Records which models make this store's vectors (synced, like every write).
    pub fn set_vector_models(&self, models: &str) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(&self.cf(CF_META), KEY_VECTOR_MODELS, models.as_bytes(), &wo)?;
        Ok(())
    }

    /// Applies a batch atomically; returns after the WAL is synced to disk, which is what an
    /// acknowledgement promises.
    pub fn write(&self, ops: &[WriteOp<'_>], next_seq: u64) -> Result<()> {
        let items = self.cf(CF_ITEMS);
        let vectors = self.cf(CF_VECTORS);
        let thumbs = self.cf(CF_THUMBS);
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Put {
                    version,
                    vectors: rows,
                    replaces_seq,
                    thumbnail,
                } => {
                    match thumbnail {
                        Some(jpeg) => batch.put_cf(&thumbs, version.item.id.as_bytes(), jpeg),
                        None => batch.delete_cf(&thumbs, version.item.id.as_bytes()),
                    }
                    if let Some(old) = replaces_seq {
                        batch.delete_range_cf(&vectors, old.to_be_bytes(), (old + 1).to_be_bytes());
                    }
                    batch.put_cf(&items, version.item.id.as_bytes(), record::encode(version));
                    for (space, row) in rows.iter() {
                        batch.put_cf(&vectors, vector_key(version.seq, space), row_bytes(row));
                    }
                }
                WriteOp::Delete { id, seq } => {
                    batch.delete_cf(&items, id.as_bytes());
                    batch.delete_cf(&thumbs, id.as_bytes());
                    batch.delete_range_cf(&vectors, seq.to_be_bytes(), (seq + 1).to_be_bytes());
                }
            }
        }
        batch.put_cf(&self.cf(CF_META), KEY_NEXT_SEQ, next_seq.to_le_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Version>> {
        match self.db.get_pinned_cf(&self.cf(CF_ITEMS), id.as_bytes())? {
            Some(bytes) => Ok(Some(record::decode(id, &bytes)?)),
            None => Ok(None),
        }
    }

    /// The item's thumbnail (JPEG), if its live version has one.
    pub fn thumbnail(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(&self.cf(CF_THUMBS), id.as_bytes())?)
    }

    pub fn multi_get(&self, ids: &[&str]) -> Result<Vec<Option<Version>>> {
        let cf = self.cf(CF_ITEMS);
        let keys = ids.iter().map(|id| (&cf, id.as_bytes()));
        self.db
            .multi_get_cf(keys)
            .into_iter()
            .zip(ids)
            .map(|(r, id)| match r? {
                Some(bytes) => Ok(Some(record::decode(id, &bytes)?)),
                None => Ok(None),
            })
            .collect()
    }

    pub fn vector(&self, seq: u64, space: &str) -> Result<Option<Vec<f32>>> {
        let key = vector_key(seq, space);
        match self.db.get_pinned_cf(&self.cf(CF_VECTORS), &key)? {
            Some(v) => Ok(Some(parse_vector_row(&key, &v)?.2)),
            None => Ok(None),
        }
    }

    /// Visits every stored item (in id order).
    pub fn for_each_item(&self, mut f: impl FnMut(Version)) -> Result<()> {
        for entry in self.db.iterator_cf(&self.cf(CF_ITEMS), IteratorMode::Start) {
            let (k, v) = entry?;
            let id = String::from_utf8_lossy(&k).into_owned();
            f(record::decode(&id, &v)?);
        }
        Ok(())
    }

    /// Visits vector rows with seq > `after` in (seq, space) order.
    pub fn for_each_vector_after(
        &self,
        after: u64,
        mut f: impl FnMut(u64, String, Vec<f32>),
    ) -> Result<()> {
        let start = (after.saturating_add(1)).to_be_bytes();
        let mode = IteratorMode::From(&start, rocksdb::Direction::Forward);
        for entry in self.db.iterator_cf(&self.cf(CF_VECTORS), mode) {
            let (k, v) = entry?;
            let (seq, space, row) = parse_vector_row(&k, &v)?;
            f(seq, space, row);
        }
        Ok(())
    }

    /// A consistent view of all vector rows as of now, for building a generation while
    /// writes continue. Returns the rows and the sequence number the view covers.
    pub fn snapshot_vectors(&self, mut f: impl FnMut(u64, String, Vec<f32>)) -> Result<u64> {
        let snap = self.db.snapshot();
        let covered = match snap.get_cf(&self.cf(CF_META), KEY_NEXT_SEQ)? {
            Some(b) if b.len() == 8 => {
                u64::from_le_bytes(b[..8].try_into().unwrap_or_default()).saturating_sub(1)
            }
            _ => 0,
        };
        for entry in snap.iterator_cf(&self.cf(CF_VECTORS), IteratorMode::Start) {
            let (k, v) = entry?;
            let (seq, space, row) = parse_vector_row(&k, &v)?;
            f(seq, space, row);
        }
        Ok(covered)
    }

    /// What RocksDB holds in memory, by part, over all families (status and metrics).
    pub fn memory(&self) -> StoreMemory {
        let prop = |name: &str, p: &str| match self.db.cf_handle(name) {
            Some(cf) => self
                .db
                .property_int_value_cf(&cf, p)
                .ok()
                .flatten()
                .unwrap_or(0),
            None => 0,
        };
        StoreMemory {
            block_cache: self.cache.get_usage() as u64,
            block_cache_capacity: self.cache_capacity as u64,
            block_cache_pinned: self.cache.get_pinned_usage() as u64,
            memtables: FAMILIES
                .iter()
                .map(|&f| (f, prop(f, "rocksdb.cur-size-all-mem-tables")))
                .collect(),
            table_readers: FAMILIES
                .iter()
                .map(|f| prop(f, "rocksdb.estimate-table-readers-mem"))
                .sum(),
        }
    }

    /// Writes memtables to SST files and syncs the WAL (clean shutdown).
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        for cf in [
            CF_ITEMS,
            CF_VECTORS,
            CF_META,
            interactions::CF_INTERACTIONS,
            CF_THUMBS,
        ] {
            self.db.flush_cf(&self.cf(cf))?;
        }
        Ok(())
    }

    /// Writes a consistent on-disk copy (hard links where possible) into `dir`, which must not
    /// exist. The memtables are flushed first, so the copy needs no WAL replay.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        cp.create_checkpoint(dir)?;
        Ok(())
    }
}

/// The last write sequence (0 = none) of a store directory that no server has open (a
/// checkpoint or a restored copy), read without modifying it.
pub fn last_seq_at(path: &Path) -> Result<u64> {
    let cfs = [CF_ITEMS, CF_VECTORS, CF_META]
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors_read_only(&Options::default(), path, cfs, false)?;
    let cf = db.cf_handle(CF_META).ok_or_else(|| StoreError::Corrupt {
        key: "meta".into(),
        reason: "column family missing".into(),
    })?;
    match db.get_cf(&cf, KEY_NEXT_SEQ)? {
        None => Ok(0),
        Some(b) if b.len() == 8 => {
            Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default()).saturating_sub(1))
        }
        Some(_) => Err(StoreError::Corrupt {
            key: "next_seq".into(),
            reason: "not 8 bytes".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_share_one_block_cache_within_its_capacity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = StoreConfig {
            block_cache_bytes: 256 * 1024,
            ..StoreConfig::default()
        };
        let store = Store::open(dir.path(), &config).expect("open");
        // Rows in `vectors` only, flushed to SST files, then read back through the cache.
        let mut batch = WriteBatch::default();
        let vectors = store.cf(CF_VECTORS);
        for seq in 1..=4000u64 {
            batch.put_cf(&vectors, vector_key(seq, "s"), row_bytes(&[seq as f32; 32]));
        }
        store.db.write(batch).expect("write");
        store.flush().expect("flush");
        for seq in 1..=4000u64 {
            assert_eq!(
                store.vector(seq, "s").expect("read"),
                Some(vec![seq as f32; 32])
            );
        }
        let m = store.memory();
        assert!(m.block_cache > 0, "{m:?}");
        assert!(m.block_cache <= config.block_cache_bytes as u64, "{m:?}");
        assert_eq!(m.block_cache_capacity, config.block_cache_bytes as u64);
        // Every family reports the same cache (a cache per family would report its own).
        for f in FAMILIES {
            let cf = store.db.cf_handle(f).expect("family");
            let usage = store
                .db
                .property_int_value_cf(&cf, "rocksdb.block-cache-usage")
                .expect("prop");
            let capacity = store
                .db
                .property_int_value_cf(&cf, "rocksdb.block-cache-capacity")
                .expect("prop");
            assert_eq!(capacity, Some(config.block_cache_bytes as u64), "{f}");
            // `items`, `meta` and `default` read nothing: only a shared cache holds blocks for them.
            assert_eq!(usage, Some(m.block_cache), "{f}");
        }
        assert_eq!(m.memtables.len(), FAMILIES.len());
    }

    #[test]
    fn config_is_checked() {
        assert!(StoreConfig::default().validate().is_ok());
        assert!(StoreConfig {
            write_buffer_bytes: 1000,
            ..StoreConfig::default()
        }
        .validate()
        .is_err());
        assert!(StoreConfig {
            block_cache_bytes: 0,
            ..StoreConfig::default()
        }
        .validate()
        .is_err());
        assert!(StoreConfig {
            memtable_budget_bytes: 0,
            ..StoreConfig::default()
        }
        .validate()
        .is_err());
    }
}
