//! The item store: RocksDB holding item metadata, their prepared vectors and the write
//! sequence counter. It is the source of truth; index generations are derived from it.
//!
//! Column families:
//! - `items`   : item id (UTF-8) → bincode [`Version`] (metadata + the version's `seq` and spaces; see `record.rs`)
//! - `vectors` : seq (u64 big-endian) ++ space name → little-endian f32 row (prepared)
//! - `meta`    : `next_seq` → u64 LE
//!
//! Only the live version of an item has rows in `vectors`: a replacement deletes the old
//! version's rows in the same atomic, WAL-synced batch that writes the new ones. Keying
//! vectors by seq makes "everything written after generation S" a range scan.

mod record;

use crate::model::Version;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use std::path::{Path, PathBuf};

const CF_ITEMS: &str = "items";
const CF_VECTORS: &str = "vectors";
const CF_META: &str = "meta";
const KEY_NEXT_SEQ: &[u8] = b"next_seq";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
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
    Put { version: &'a Version, vectors: &'a [(String, Vec<f32>)], replaces_seq: Option<u64> },
    Delete { id: &'a str, seq: u64 },
}

pub struct Store {
    db: DB,
    path: PathBuf,
}

fn vector_key(seq: u64, space: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + space.len());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(space.as_bytes());
    k
}

fn parse_vector_row(key: &[u8], value: &[u8]) -> Result<(u64, String, Vec<f32>)> {
    let corrupt = |reason: &str| StoreError::Corrupt { key: format!("{key:?}"), reason: reason.into() };
    if key.len() < 8 || value.len() % 4 != 0 {
        return Err(corrupt("malformed vector row"));
    }
    let seq = u64::from_be_bytes(key[..8].try_into().map_err(|_| corrupt("short key"))?);
    let space = std::str::from_utf8(&key[8..]).map_err(|_| corrupt("space name not UTF-8"))?.to_string();
    let row = value.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Ok((seq, space, row))
}

fn row_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        std::fs::create_dir_all(path).map_err(|source| StoreError::Io { path: path.into(), source })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        let cfs = [CF_ITEMS, CF_VECTORS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Store { db, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> std::sync::Arc<rocksdb::BoundColumnFamily<'_>> {
        // The three families are created at open (create_missing_column_families), so the
        // handle always exists for the life of the DB.
        self.db.cf_handle(name).unwrap_or_else(|| unreachable!("column family {name} is created at open"))
    }

    /// The sequence number the next write will get (1 on an empty store).
    pub fn next_seq(&self) -> Result<u64> {
        match self.db.get_cf(&self.cf(CF_META), KEY_NEXT_SEQ)? {
            None => Ok(1),
            Some(b) if b.len() == 8 => Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default())),
            Some(_) => Err(StoreError::Corrupt { key: "next_seq".into(), reason: "not 8 bytes".into() }),
        }
    }

    /// Applies a batch atomically; returns after the WAL is synced to disk, which is what an
    /// acknowledgement promises.
    pub fn write(&self, ops: &[WriteOp<'_>], next_seq: u64) -> Result<()> {
        let items = self.cf(CF_ITEMS);
        let vectors = self.cf(CF_VECTORS);
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Put { version, vectors: rows, replaces_seq } => {
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
    pub fn for_each_vector_after(&self, after: u64, mut f: impl FnMut(u64, String, Vec<f32>)) -> Result<()> {
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
            Some(b) if b.len() == 8 => u64::from_le_bytes(b[..8].try_into().unwrap_or_default()).saturating_sub(1),
            _ => 0,
        };
        for entry in snap.iterator_cf(&self.cf(CF_VECTORS), IteratorMode::Start) {
            let (k, v) = entry?;
            let (seq, space, row) = parse_vector_row(&k, &v)?;
            f(seq, space, row);
        }
        Ok(covered)
    }

    /// RocksDB's own estimate of its memory use (block cache, memtables), for status/metrics.
    pub fn approximate_memory_bytes(&self) -> u64 {
        ["rocksdb.cur-size-all-mem-tables", "rocksdb.estimate-table-readers-mem", "rocksdb.block-cache-usage"]
            .iter()
            .filter_map(|p| self.db.property_int_value(*p).ok().flatten())
            .sum()
    }

    /// Writes memtables to SST files and syncs the WAL (clean shutdown).
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        for cf in [CF_ITEMS, CF_VECTORS, CF_META] {
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
    let cfs = [CF_ITEMS, CF_VECTORS, CF_META].map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    let db = DB::open_cf_descriptors_read_only(&Options::default(), path, cfs, false)?;
    let cf = db
        .cf_handle(CF_META)
        .ok_or_else(|| StoreError::Corrupt { key: "meta".into(), reason: "column family missing".into() })?;
    match db.get_cf(&cf, KEY_NEXT_SEQ)? {
        None => Ok(0),
        Some(b) if b.len() == 8 => Ok(u64::from_le_bytes(b[..8].try_into().unwrap_or_default()).saturating_sub(1)),
        Some(_) => Err(StoreError::Corrupt { key: "next_seq".into(), reason: "not 8 bytes".into() }),
    }
}
