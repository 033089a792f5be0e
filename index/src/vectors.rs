//! `VectorFile`: a generation's prepared vectors, sorted by id, memory-mapped with memmap2.
//!
//! The HNSW graph answers approximate queries; this file answers the exact ones — lookups
//! of one vector by id ("more like this") and exact scans over the few ids a selective filter
//! leaves. Layout (little-endian, 8-byte aligned sections so the map can be viewed as slices):
//!
//! ```text
//! 0   magic  b"MMVEC001"
//! 8   dim    u32, metric u8, 3 bytes padding
//! 16  count  u64
//! 24  crc32 of everything after the 32-byte header, u32; 4 bytes padding
//! 32  ids    [u64; count]        ascending
//! ..  rows   [f32; count * dim]
//! ```

use crate::error::{IndexError, IoContext, Result};
use crate::metric::Metric;
use crate::topk::{Scored, TopK};
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[cfg(target_endian = "big")]
compile_error!("index files are little-endian and mapped in place");

const MAGIC: &[u8; 8] = b"MMVEC001";
const HEADER: usize = 32;

pub struct VectorFile {
    map: Option<Mmap>,
    dim: usize,
    count: usize,
    metric: Metric,
    path: PathBuf,
}

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 1,
        Metric::L2 => 2,
    }
}

impl VectorFile {
    /// Writes `(id, prepared vector)` pairs; `rows` must be sorted by id with no duplicates.
    pub fn write(path: &Path, dim: usize, metric: Metric, rows: &[(u64, &[f32])]) -> Result<()> {
        if rows.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(IndexError::Parameter(
                "vector rows must be sorted by unique id".into(),
            ));
        }
        let mut crc = crc32fast::Hasher::new();
        for (id, _) in rows {
            crc.update(&id.to_le_bytes());
        }
        for (_, v) in rows {
            if v.len() != dim {
                return Err(IndexError::Dimension {
                    expected: dim,
                    got: v.len(),
                });
            }
            crc.update(bytemuck::cast_slice(v));
        }
        let file = File::create(path).at(path)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(dim as u32).to_le_bytes());
        header[12] = metric_code(metric);
        header[16..24].copy_from_slice(&(rows.len() as u64).to_le_bytes());
        header[24..28].copy_from_slice(&crc.finalize().to_le_bytes());
        w.write_all(&header).at(path)?;
        for (id, _) in rows {
            w.write_all(&id.to_le_bytes()).at(path)?;
        }
        for (_, v) in rows {
            w.write_all(bytemuck::cast_slice(v)).at(path)?;
        }
        let file = w.into_inner().map_err(|e| IndexError::Io {
            path: path.into(),
            source: e.into_error(),
        })?;
        file.sync_all().at(path)?;
        Ok(())
    }

    /// Maps the file and verifies header, size and checksum before anything trusts it.
    pub fn open(path: &Path, expect_dim: usize, expect_metric: Metric) -> Result<VectorFile> {
        let corrupt = |reason: String| IndexError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len() as usize;
        if len < HEADER {
            return Err(corrupt(format!("{len} bytes is shorter than the header")));
        }
        // SAFETY: generation files are written once, fsynced, and never modified while mapped;
        // a truncated or rewritten file is caught by the size and checksum checks below.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        if &map[..8] != MAGIC {
            return Err(corrupt("bad magic".into()));
        }
        let dim = u32::from_le_bytes(map[8..12].try_into().unwrap_or_default()) as usize;
        let metric = match map[12] {
            1 => Metric::Cosine,
            2 => Metric::L2,
            other => return Err(corrupt(format!("unknown metric code {other}"))),
        };
        let count = u64::from_le_bytes(map[16..24].try_into().unwrap_or_default()) as usize;
        let stored_crc = u32::from_le_bytes(map[24..28].try_into().unwrap_or_default());
        if dim != expect_dim || metric != expect_metric {
            return Err(corrupt(format!(
                "file holds {dim}-d {} vectors, space expects {expect_dim}-d {}",
                metric.as_str(),
                expect_metric.as_str()
            )));
        }
        let want = HEADER + count * 8 + count * dim * 4;
        if len != want {
            return Err(corrupt(format!(
                "size {len} does not match {count} rows of dim {dim} ({want})"
            )));
        }
        let crc = crc32fast::hash(&map[HEADER..]);
        if crc != stored_crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(VectorFile {
            map: Some(map),
            dim,
            count,
            metric,
            path: path.to_path_buf(),
        })
    }

    /// An empty file stand-in for spaces that had no vectors at build time.
    pub fn empty(dim: usize, metric: Metric) -> VectorFile {
        VectorFile {
            map: None,
            dim,
            count: 0,
            metric,
            path: PathBuf::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn ids(&self) -> &[u64] {
        match &self.map {
            Some(m) => bytemuck::cast_slice(&m[HEADER..HEADER + self.count * 8]),
            None => &[],
        }
    }

    fn rows(&self) -> &[f32] {
        match &self.map {
            Some(m) => bytemuck::cast_slice(&m[HEADER + self.count * 8..]),
            None => &[],
        }
    }

    pub fn row(&self, index: usize) -> &[f32] {
        &self.rows()[index * self.dim..(index + 1) * self.dim]
    }

    pub fn get(&self, id: u64) -> Option<&[f32]> {
        self.ids().binary_search(&id).ok().map(|i| self.row(i))
    }

    /// Exact scan over a candidate list (ids not in this file are skipped).
    pub fn scan_ids(&self, query: &[f32], k: usize, candidates: &[u64]) -> Vec<Scored> {
        let ids = self.ids();
        let mut top = TopK::new(k);
        for &id in candidates {
            if let Ok(i) = ids.binary_search(&id) {
                top.push(id, self.metric.score(query, self.row(i)));
            }
        }
        top.into_sorted()
    }

    /// Exact scan over every row that passes `accept`.
    pub fn scan(&self, query: &[f32], k: usize, accept: &dyn Fn(u64) -> bool) -> Vec<Scored> {
        let mut top = TopK::new(k);
        for (i, &id) in self.ids().iter().enumerate() {
            if accept(id) {
                top.push(id, self.metric.score(query, self.row(i)));
            }
        }
        top.into_sorted()
    }

    pub fn mapped_bytes(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_detected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.vec");
        let a = [1.0f32, 0.0];
        let b = [0.0f32, 1.0];
        VectorFile::write(&p, 2, Metric::Cosine, &[(3, &a), (9, &b)]).unwrap();
        let f = VectorFile::open(&p, 2, Metric::Cosine).unwrap();
        assert_eq!(f.ids(), &[3, 9]);
        assert_eq!(f.get(9), Some(&b[..]));
        assert_eq!(f.scan(&[0.0, 1.0], 1, &|_| true)[0].id, 9);
        assert!(VectorFile::open(&p, 3, Metric::Cosine).is_err());
        drop(f);
        let mut bytes = std::fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&p, &bytes).unwrap();
        assert!(matches!(
            VectorFile::open(&p, 2, Metric::Cosine),
            Err(IndexError::Corrupt { .. })
        ));
    }
}
