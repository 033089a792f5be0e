//! The memory budget (`[memory]`): what the process holds, by part, and the one rule that refuses
//! writes before the kernel's OOM killer would end the process.
//!
//! Accounting is by part rather than by reading RSS on every write: RSS lags frees (the allocator
//! keeps pages), so a rule on RSS could keep refusing after a rebuild emptied the mutable layer.
//! The parts that grow with writes are counted exactly (mutable layers, catalogue, RocksDB's
//! memtables, block cache and table readers); what does not grow with writes (the binary, the
//! runtime, the models, mapped generation pages) is measured once as RSS minus those parts, and
//! again whenever the engine loads something large (the encoders). The next rebuild's peak is
//! reserved ahead: it grows with the live vectors, and a rebuild that cannot fit is exactly
//! what the budget is there to prevent.

use crate::store::StoreMemory;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// `[memory]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Bytes the process may hold. 0 = the cgroup's limit (`memory.max`) when there is one, else
    /// no budget.
    pub limit_bytes: u64,
    /// Share of the limit writes may not use: a rebuild's graph and vector buffers, request
    /// buffers and the allocator's slack live there. Writes are refused once the accounted
    /// memory plus the write would pass `limit × (1 − reserve)`.
    pub reserve: f64,
    /// A rebuild's peak heap as a multiple of the live vectors' bytes, reserved ahead of it.
    /// Measured with the hnsw_rs builder: 8.7 (RELIABILITY.md, "RocksDB within a budget":
    /// 20k × 384-d items, RSS 88 → 343 MiB over a rebuild).
    pub rebuild_factor: f64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            limit_bytes: 0,
            reserve: 0.1,
            rebuild_factor: 9.0,
        }
    }
}

impl MemoryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..0.9).contains(&self.reserve) {
            return Err(format!(
                "memory.reserve must be in [0, 0.9), got {}",
                self.reserve
            ));
        }
        if !(0.0..=100.0).contains(&self.rebuild_factor) {
            return Err(format!(
                "memory.rebuild_factor must be in [0, 100], got {}",
                self.rebuild_factor
            ));
        }
        Ok(())
    }

    /// The limit in force: the configured one, else the cgroup's.
    pub fn effective_limit(&self) -> Option<u64> {
        if self.limit_bytes > 0 {
            Some(self.limit_bytes)
        } else {
            cgroup_limit()
        }
    }
}

/// The memory limit of this process's cgroup (v2 `memory.max`, else v1
/// `memory.limit_in_bytes`); `None` when unlimited or unreadable.
pub fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    // v2: a single "0::/path" line.
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        let file = format!("/sys/fs/cgroup{}/memory.max", path.trim_end_matches('/'));
        if let Some(v) = read_limit(&file) {
            return Some(v);
        }
        return read_limit("/sys/fs/cgroup/memory.max");
    }
    read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes")
}

fn read_limit(file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let v: u64 = text.trim().parse().ok()?; // "max" (unlimited) does not parse
                                            // cgroup v1 writes "unlimited" as a page-rounded i64::MAX.
    (v < 1 << 60).then_some(v)
}

/// What the process holds, by part (bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryUse {
    pub rocksdb: StoreMemory,
    /// RocksDB's caps: the block cache's capacity plus the memtable budget. Both fill up to
    /// them whatever the writes do (a rebuild reads every vector through the cache), so the
    /// budget charges the caps from the start; charging their usage made a finished rebuild
    /// look like growth.
    pub rocksdb_caps: u64,
    /// Mutable layers (vectors written since the base generation), all spaces.
    pub mutable_layers: u64,
    /// The live catalogue (id → seq → filter fields).
    pub catalogue: u64,
    /// Held back for the next rebuild's peak: `rebuild_factor` × the live vectors' bytes.
    pub rebuild_reserve: u64,
    /// Measured, not counted: RSS at the last baseline minus the counted parts then (binary,
    /// runtime, models, resident pages of the mapped generation).
    pub baseline: u64,
    /// The limit in force, if any.
    pub limit: Option<u64>,
}

impl MemoryUse {
    /// Parts held now that the baseline does not include.
    pub fn counted(&self) -> u64 {
        self.rocksdb.block_cache
            + self.rocksdb.memtables_total()
            + self.rocksdb.table_readers
            + self.mutable_layers
            + self.catalogue
    }

    /// What writes are admitted against: the baseline, RocksDB at its caps (or above them, as
    /// memtables may briefly be), table readers, mutable layers, catalogue and the rebuild
    /// reserve.
    pub fn accounted(&self) -> u64 {
        let rocksdb =
            (self.rocksdb.block_cache + self.rocksdb.memtables_total()).max(self.rocksdb_caps);
        self.baseline
            + rocksdb
            + self.rocksdb.table_readers
            + self.mutable_layers
            + self.catalogue
            + self.rebuild_reserve
    }
}

/// The budget's state: the limit and the measured baseline.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: Option<u64>,
    reserve: f64,
    rebuild_factor: f64,
    baseline: AtomicU64,
}

/// A write the budget refused.
#[derive(Debug, Clone, PartialEq)]
pub struct OverBudget {
    pub accounted: u64,
    pub incoming: u64,
    pub allowed: u64,
    pub limit: u64,
}

impl MemoryBudget {
    pub fn new(config: &MemoryConfig) -> Self {
        MemoryBudget {
            limit: config.effective_limit(),
            reserve: config.reserve,
            rebuild_factor: config.rebuild_factor,
            baseline: AtomicU64::new(0),
        }
    }

    /// The next rebuild's peak for `vector_bytes` of live vectors.
    pub fn rebuild_reserve(&self, vector_bytes: u64) -> u64 {
        (vector_bytes as f64 * self.rebuild_factor) as u64
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn baseline(&self) -> u64 {
        self.baseline.load(Ordering::Relaxed)
    }

    /// Re-measures what is not counted: RSS now minus the counted parts now.
    pub fn set_baseline(&self, rss: u64, counted: u64) {
        self.baseline
            .store(rss.saturating_sub(counted), Ordering::Relaxed);
    }

    /// Whether a write adding about `incoming` bytes fits.
    pub fn admit(&self, accounted: u64, incoming: u64) -> Result<(), OverBudget> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let allowed = (limit as f64 * (1.0 - self.reserve)) as u64;
        if accounted.saturating_add(incoming) > allowed {
            return Err(OverBudget {
                accounted,
                incoming,
                allowed,
                limit,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_past_the_limit_less_the_reserve_are_refused() {
        let b = MemoryBudget::new(&MemoryConfig {
            limit_bytes: 1000,
            reserve: 0.2,
            rebuild_factor: 2.0,
        });
        assert!(b.admit(700, 100).is_ok());
        let e = b.admit(700, 101).unwrap_err();
        assert_eq!((e.allowed, e.limit), (800, 1000));
        assert_eq!(b.rebuild_reserve(50), 100);
        let none = MemoryBudget {
            limit: None,
            reserve: 0.2,
            rebuild_factor: 2.0,
            baseline: AtomicU64::new(0),
        };
        assert!(none.admit(u64::MAX / 2, u64::MAX / 2).is_ok());
    }

    #[test]
    fn the_baseline_is_rss_less_the_counted_parts() {
        let b = MemoryBudget::new(&MemoryConfig {
            limit_bytes: 1000,
            reserve: 0.0,
            rebuild_factor: 0.0,
        });
        b.set_baseline(300, 120);
        assert_eq!(b.baseline(), 180);
        b.set_baseline(100, 120);
        assert_eq!(b.baseline(), 0);
    }

    #[test]
    fn bad_reserve_is_refused() {
        assert!(MemoryConfig {
            reserve: 0.95,
            ..MemoryConfig::default()
        }
        .validate()
        .is_err());
        assert!(MemoryConfig {
            rebuild_factor: -1.0,
            ..MemoryConfig::default()
        }
        .validate()
        .is_err());
        assert!(MemoryConfig::default().validate().is_ok());
        assert_eq!(read_limit("/nonexistent"), None);
    }
}
