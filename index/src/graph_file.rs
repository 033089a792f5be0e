//! The flat graph file: one HNSW graph with its vectors and ids, memory-mapped and searched in
//! place, never deserialised.
//!
//! Node `i` is row `i`: the `i`-th smallest id of the space, its vector row, its link list.
//! Everything is little-endian; every section starts 64-byte aligned.
//!
//! ```text
//! offset  field (header, 128 bytes)
//! 0       magic b"MMGRAPH1"
//! 8       format version u32 (= 1)
//! 12      metric u8 (1 cosine, 2 l2), builder u8 (1 hnsw_rs export, 2 native), 2 bytes zero
//! 16      dim u32            floats per vector
//! 20      m u32              link capacity per node on layers ≥ 1
//! 24      m0 u32             link capacity per node on layer 0 (2·m for both builders)
//! 28      max_level u32      highest layer; the entry point's level
//! 32      count u64          nodes
//! 40      entry u32          entry point (a node of layer max_level); ef_construction u32
//! 48      row_floats u32     floats per stored row: dim rounded up to 16 (64-byte rows)
//! 52      upper_nodes u32    nodes with level ≥ 1
//! 56      ids_off u64        [u64; count], strictly ascending
//! 64      vectors_off u64    [f32; count · row_floats], zero padded after dim
//! 72      layer0_off u64     [u32; count · (1 + m0)]: per node its link count, then m0 slots
//! 80      rank_off u64       [u32; count]: position among nodes with level ≥ 1, sorted by
//!                            (level desc, node asc), or u32::MAX for level-0-only nodes
//! 88      upper_off u64      level directory then, per level, CSR offsets and links
//! 96      file_len u64
//! 104     crc32 of ids, vectors, layer0, rank+upper sections, each with the padding that
//!         follows it (4 × u32)
//! 120     crc32 of header bytes 0..120 (u32), 4 bytes zero
//! ```
//! Upper layers are CSR over only the nodes that reach them, as Qdrant's graph-links file
//! does: ranking nodes by level descending makes the nodes of level ≥ l the ranks `0..n_l`, so
//! level l needs `n_l + 1` offsets. The directory at `upper_off` holds, for l = 1..=max_level,
//! `n_l u64, offsets_off u64, links_off u64`; offsets are u32 into that level's links.
//!
//! Opening ([`GraphFile::open`]) maps the file and checks the header (magic, version, header
//! checksum, metric, dim, file length, every section's place and size recomputed from the
//! counts), then the structure: ids ascending, link counts ≤ capacity, every neighbour id
//! below count and, on a layer ≥ 1, a node of that layer, the entry point on the top layer,
//! and the checksums of every section but the vectors (the graph is a few percent of the file
//! for real dimensions; the vectors' checksum is checked by [`GraphFile::verify_vectors`], which
//! snapshot verification runs). A failed check is an [`IndexError::Corrupt`]; nothing here
//! panics or exits on any file content.

use crate::error::{IndexError, IoContext, Result};
use crate::metric::Metric;
use memmap2::Mmap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[cfg(target_endian = "big")]
compile_error!("index files are little-endian and mapped in place");

pub const MAGIC: &[u8; 8] = b"MMGRAPH1";
pub const VERSION: u32 = 1;
const HEADER: usize = 128;
const ALIGN: usize = 64;
/// No level above this is ever written (hnsw_rs caps at 16; the native builder at 16 too).
pub const MAX_LEVELS: usize = 16;

/// Which builder produced a graph (recorded in the header, reported in status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Builder {
    /// hnsw_rs 0.3.5's parallel insert, exported ([`crate::export`]).
    HnswRs,
    /// This crate's implementation of hnswlib's algorithm ([`crate::builder`]).
    Native,
}

impl Builder {
    fn code(self) -> u8 {
        match self {
            Builder::HnswRs => 1,
            Builder::Native => 2,
        }
    }
}

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 1,
        Metric::L2 => 2,
    }
}

fn align(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Floats per stored row: 64-byte rows so a row never straddles more cache lines than needed.
pub fn row_floats(dim: usize) -> usize {
    dim.div_ceil(16) * 16
}

/// A graph ready to be written: what either builder produces.
pub struct GraphSource<'a> {
    pub metric: Metric,
    pub dim: usize,
    pub m: usize,
    pub m0: usize,
    pub ef_construction: usize,
    pub builder: Builder,
    /// Ascending ids, one per node.
    pub ids: &'a [u64],
    /// Node `i`'s prepared vector.
    pub vector: &'a (dyn Fn(usize) -> &'a [f32] + Sync),
    /// Level of every node.
    pub levels: &'a [u8],
    pub entry: u32,
    /// Fills `out` with node's neighbours on `level` (≤ the node's level), nearest first;
    /// at most m0 on layer 0 and m above.
    pub neighbours: &'a (dyn Fn(u32, usize, &mut Vec<u32>) + Sync),
}

/// Section positions, computed the same way by the writer and the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    ids_off: usize,
    vectors_off: usize,
    layer0_off: usize,
    rank_off: usize,
    upper_off: usize,
}

fn layout(count: usize, row_floats: usize, m0: usize) -> Layout {
    let ids_off = align(HEADER);
    let vectors_off = align(ids_off + count * 8);
    let layer0_off = align(vectors_off + count * row_floats * 4);
    let rank_off = align(layer0_off + count * (1 + m0) * 4);
    let upper_off = align(rank_off + count * 4);
    Layout {
        ids_off,
        vectors_off,
        layer0_off,
        rank_off,
        upper_off,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> IndexError {
    IndexError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Writes `src` to `path` (fsynced). Returns the file's length.
pub fn write(path: &Path, src: &GraphSource<'_>) -> Result<u64> {
    let count = src.ids.len();
    let param = |m: String| Err(IndexError::Parameter(m));
    if count == 0 || count >= u32::MAX as usize {
        return param(format!("a graph file holds 1..2^32-1 nodes, got {count}"));
    }
    if src.levels.len() != count {
        return param(format!("{} levels for {count} nodes", src.levels.len()));
    }
    if src.ids.windows(2).any(|w| w[0] >= w[1]) {
        return param("graph ids must be strictly ascending".into());
    }
    if src.dim == 0 || src.m == 0 || src.m0 < src.m || src.m0 > 1024 {
        return param(format!(
            "bad graph shape: dim {} m {} m0 {}",
            src.dim, src.m, src.m0
        ));
    }
    let max_level = src.levels.iter().copied().max().unwrap_or(0) as usize;
    if max_level >= MAX_LEVELS {
        return param(format!(
            "level {max_level} above the format's {}",
            MAX_LEVELS - 1
        ));
    }
    let entry = src.entry as usize;
    if entry >= count || src.levels[entry] as usize != max_level {
        return param(format!(
            "entry point {entry} is not a node of the top layer {max_level}"
        ));
    }
    let rf = row_floats(src.dim);
    let lay = layout(count, rf, src.m0);

    // Ranks: nodes of level ≥ 1 by (level desc, node asc); n_l = nodes of level ≥ l.
    let mut upper: Vec<u32> = (0..count as u32)
        .filter(|&i| src.levels[i as usize] > 0)
        .collect();
    upper.sort_by_key(|&i| (std::cmp::Reverse(src.levels[i as usize]), i));
    let mut rank = vec![u32::MAX; count];
    for (r, &node) in upper.iter().enumerate() {
        rank[node as usize] = r as u32;
    }
    let n_at = |l: usize| {
        upper
            .iter()
            .take_while(|&&i| src.levels[i as usize] as usize >= l)
            .count()
    };

    // Upper section in memory (small: about count/m nodes), offsets absolute in the file.
    let dir_len = max_level * 24;
    let mut upper_bytes: Vec<u8> = vec![0; dir_len];
    let mut buf = Vec::with_capacity(src.m0);
    for l in 1..=max_level {
        let n_l = n_at(l);
        let mut offsets = Vec::with_capacity(n_l + 1);
        let mut links: Vec<u32> = Vec::new();
        offsets.push(0u32);
        for &node in &upper[..n_l] {
            buf.clear();
            (src.neighbours)(node, l, &mut buf);
            if buf.len() > src.m {
                return param(format!(
                    "node {node} has {} links on level {l}, capacity {}",
                    buf.len(),
                    src.m
                ));
            }
            if let Some(&bad) = buf
                .iter()
                .find(|&&nb| nb as usize >= count || (src.levels[nb as usize] as usize) < l)
            {
                return param(format!(
                    "node {node} links to {bad}, not a node of level {l}"
                ));
            }
            links.extend_from_slice(&buf);
            offsets.push(links.len() as u32);
        }
        let offsets_off = lay.upper_off + upper_bytes.len();
        upper_bytes.extend_from_slice(bytemuck::cast_slice(&offsets));
        let links_off = lay.upper_off + upper_bytes.len();
        upper_bytes.extend_from_slice(bytemuck::cast_slice(&links));
        let d = (l - 1) * 24;
        upper_bytes[d..d + 8].copy_from_slice(&(n_l as u64).to_le_bytes());
        upper_bytes[d + 8..d + 16].copy_from_slice(&(offsets_off as u64).to_le_bytes());
        upper_bytes[d + 16..d + 24].copy_from_slice(&(links_off as u64).to_le_bytes());
    }
    let file_len = lay.upper_off + upper_bytes.len();

    let file = File::create(path).at(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    // The header goes last (its checksums follow the data): reserve it, then seek back.
    let mut pos = 0usize;
    let mut put = |w: &mut BufWriter<File>,
                   bytes: &[u8],
                   crc: Option<&mut crc32fast::Hasher>|
     -> Result<()> {
        if let Some(h) = crc {
            h.update(bytes);
        }
        pos += bytes.len();
        w.write_all(bytes).at(path)
    };
    let zeros = [0u8; ALIGN];
    put(&mut w, &[0u8; HEADER], None)?;
    let pad_to = |target: usize, pos: usize| target - pos;

    let mut crc_ids = crc32fast::Hasher::new();
    put(&mut w, &zeros[..pad_to(lay.ids_off, HEADER)], None)?;
    for chunk in src.ids.chunks(8192) {
        put(&mut w, bytemuck::cast_slice(chunk), Some(&mut crc_ids))?;
    }
    let here = lay.ids_off + count * 8;
    put(
        &mut w,
        &zeros[..pad_to(lay.vectors_off, here)],
        Some(&mut crc_ids),
    )?;

    let mut crc_vec = crc32fast::Hasher::new();
    let mut row = vec![0f32; rf];
    for i in 0..count {
        let v = (src.vector)(i);
        if v.len() != src.dim {
            return Err(IndexError::Dimension {
                expected: src.dim,
                got: v.len(),
            });
        }
        row[..src.dim].copy_from_slice(v);
        put(&mut w, bytemuck::cast_slice(&row), Some(&mut crc_vec))?;
    }
    let here = lay.vectors_off + count * rf * 4;
    put(
        &mut w,
        &zeros[..pad_to(lay.layer0_off, here)],
        Some(&mut crc_vec),
    )?;

    let mut crc_l0 = crc32fast::Hasher::new();
    let mut slots = vec![0u32; 1 + src.m0];
    for node in 0..count as u32 {
        buf.clear();
        (src.neighbours)(node, 0, &mut buf);
        if buf.len() > src.m0 {
            return param(format!(
                "node {node} has {} links on layer 0, capacity {}",
                buf.len(),
                src.m0
            ));
        }
        if let Some(&bad) = buf.iter().find(|&&nb| nb as usize >= count) {
            return param(format!("node {node} links to {bad} of {count}"));
        }
        slots.fill(0);
        slots[0] = buf.len() as u32;
        slots[1..1 + buf.len()].copy_from_slice(&buf);
        put(&mut w, bytemuck::cast_slice(&slots), Some(&mut crc_l0))?;
    }
    let here = lay.layer0_off + count * (1 + src.m0) * 4;
    put(
        &mut w,
        &zeros[..pad_to(lay.rank_off, here)],
        Some(&mut crc_l0),
    )?;

    let mut crc_up = crc32fast::Hasher::new();
    put(&mut w, bytemuck::cast_slice(&rank), Some(&mut crc_up))?;
    let here = lay.rank_off + count * 4;
    put(
        &mut w,
        &zeros[..pad_to(lay.upper_off, here)],
        Some(&mut crc_up),
    )?;
    put(&mut w, &upper_bytes, Some(&mut crc_up))?;
    debug_assert_eq!(pos, file_len);

    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12] = metric_code(src.metric);
    h[13] = src.builder.code();
    h[16..20].copy_from_slice(&(src.dim as u32).to_le_bytes());
    h[20..24].copy_from_slice(&(src.m as u32).to_le_bytes());
    h[24..28].copy_from_slice(&(src.m0 as u32).to_le_bytes());
    h[28..32].copy_from_slice(&(max_level as u32).to_le_bytes());
    h[32..40].copy_from_slice(&(count as u64).to_le_bytes());
    h[40..44].copy_from_slice(&src.entry.to_le_bytes());
    h[44..48].copy_from_slice(&(src.ef_construction as u32).to_le_bytes());
    h[48..52].copy_from_slice(&(rf as u32).to_le_bytes());
    h[52..56].copy_from_slice(&(upper.len() as u32).to_le_bytes());
    for (i, off) in [
        lay.ids_off,
        lay.vectors_off,
        lay.layer0_off,
        lay.rank_off,
        lay.upper_off,
        file_len,
    ]
    .iter()
    .enumerate()
    {
        h[56 + 8 * i..64 + 8 * i].copy_from_slice(&(*off as u64).to_le_bytes());
    }
    for (i, c) in [crc_ids, crc_vec, crc_l0, crc_up].into_iter().enumerate() {
        h[104 + 4 * i..108 + 4 * i].copy_from_slice(&c.finalize().to_le_bytes());
    }
    let hcrc = crc32fast::hash(&h[..120]);
    h[120..124].copy_from_slice(&hcrc.to_le_bytes());
    let mut file = w.into_inner().map_err(|e| IndexError::Io {
        path: path.into(),
        source: e.into_error(),
    })?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).at(path)?;
    file.write_all(&h).at(path)?;
    file.sync_all().at(path)?;
    Ok(file_len as u64)
}

/// One upper layer's CSR view (absolute byte offsets into the map).
#[derive(Debug, Clone, Copy, Default)]
struct UpperLevel {
    nodes: usize,
    offsets_off: usize,
    links_off: usize,
    links_len: usize,
}

/// A mapped, checked graph file.
pub struct GraphFile {
    map: Mmap,
    path: PathBuf,
    pub metric: Metric,
    pub builder: Builder,
    pub dim: usize,
    pub m: usize,
    pub m0: usize,
    pub ef_construction: usize,
    pub max_level: usize,
    pub entry: u32,
    count: usize,
    row_floats: usize,
    lay: Layout,
    levels: [UpperLevel; MAX_LEVELS],
    crc_vectors: u32,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

impl GraphFile {
    /// Maps and checks `path` (see the module docs for what is checked). `expect` is the
    /// space's dimension and metric; a file built for another shape is corrupt for it.
    pub fn open(path: &Path, expect_dim: usize, expect_metric: Metric) -> Result<GraphFile> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len() as usize;
        if len < HEADER {
            return Err(corrupt(
                path,
                format!("{len} bytes is shorter than the {HEADER}-byte header"),
            ));
        }
        // SAFETY: generation files are written once, fsynced, renamed into place and never
        // modified while mapped; a truncated or rewritten file fails the checks below.
        let map = unsafe { Mmap::map(&file) }.at(path)?;
        let mut hb = [0u8; HEADER];
        hb.copy_from_slice(&map[..HEADER]);
        let h = &hb[..];
        if &h[..8] != MAGIC {
            return Err(corrupt(path, "bad magic (not a graph file)"));
        }
        let version = u32_at(h, 8);
        if version != VERSION {
            return Err(corrupt(
                path,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        if crc32fast::hash(&h[..120]) != u32_at(h, 120) {
            return Err(corrupt(path, "header checksum mismatch"));
        }
        let metric = match h[12] {
            1 => Metric::Cosine,
            2 => Metric::L2,
            c => return Err(corrupt(path, format!("unknown metric code {c}"))),
        };
        let builder = match h[13] {
            1 => Builder::HnswRs,
            2 => Builder::Native,
            c => return Err(corrupt(path, format!("unknown builder code {c}"))),
        };
        let dim = u32_at(h, 16) as usize;
        let (m, m0, max_level) = (
            u32_at(h, 20) as usize,
            u32_at(h, 24) as usize,
            u32_at(h, 28) as usize,
        );
        let count = u64_at(h, 32) as usize;
        let entry = u32_at(h, 40);
        let ef_construction = u32_at(h, 44) as usize;
        let rf = u32_at(h, 48) as usize;
        let upper_nodes = u32_at(h, 52) as usize;
        if dim != expect_dim || metric != expect_metric {
            return Err(corrupt(
                path,
                format!(
                    "graph of {dim}-d {} vectors, space expects {expect_dim}-d {}",
                    metric.as_str(),
                    expect_metric.as_str()
                ),
            ));
        }
        if count == 0
            || count >= u32::MAX as usize
            || m == 0
            || m0 < m
            || m0 > 1024
            || max_level >= MAX_LEVELS
        {
            return Err(corrupt(
                path,
                format!("bad shape: count {count} m {m} m0 {m0} max_level {max_level}"),
            ));
        }
        if rf != row_floats(dim) || entry as usize >= count || upper_nodes > count {
            return Err(corrupt(
                path,
                format!("bad header: row_floats {rf} entry {entry} upper {upper_nodes}"),
            ));
        }
        let lay = layout(count, rf, m0);
        let stored: Vec<usize> = (0..6).map(|i| u64_at(h, 56 + 8 * i) as usize).collect();
        let want = [
            lay.ids_off,
            lay.vectors_off,
            lay.layer0_off,
            lay.rank_off,
            lay.upper_off,
        ];
        if stored[..5] != want {
            return Err(corrupt(
                path,
                format!(
                    "section offsets {:?} do not match the counts ({want:?})",
                    &stored[..5]
                ),
            ));
        }
        let file_len = stored[5];
        if file_len != len {
            return Err(corrupt(
                path,
                format!("file is {len} bytes, header says {file_len} (truncated or extended)"),
            ));
        }
        let dir_end = lay.upper_off + max_level * 24;
        if dir_end > len {
            return Err(corrupt(path, "level directory past the end of the file"));
        }
        let mut levels = [UpperLevel::default(); MAX_LEVELS];
        let mut expect_off = dir_end;
        let mut prev_nodes = upper_nodes;
        for (l, level) in levels.iter_mut().enumerate().take(max_level + 1).skip(1) {
            let d = lay.upper_off + (l - 1) * 24;
            let nodes = u64_at(&map, d) as usize;
            let offsets_off = u64_at(&map, d + 8) as usize;
            let links_off = u64_at(&map, d + 16) as usize;
            if nodes == 0 || nodes > prev_nodes || offsets_off != expect_off {
                return Err(corrupt(path, format!("level {l}: {nodes} nodes at {offsets_off}, expected ≤ {prev_nodes} at {expect_off}")));
            }
            let offsets_end = offsets_off
                .checked_add((nodes + 1) * 4)
                .filter(|&e| e <= len);
            if offsets_end != Some(links_off) {
                return Err(corrupt(
                    path,
                    format!("level {l}: links do not follow its offsets"),
                ));
            }
            let last = u32_at(&map, offsets_off + nodes * 4) as usize;
            let links_end = links_off.checked_add(last * 4).filter(|&e| e <= len);
            let Some(links_end) = links_end else {
                return Err(corrupt(
                    path,
                    format!("level {l}: links past the end of the file"),
                ));
            };
            *level = UpperLevel {
                nodes,
                offsets_off,
                links_off,
                links_len: last,
            };
            expect_off = links_end;
            prev_nodes = nodes;
        }
        if expect_off != len
            || (max_level > 0 && levels[1].nodes != upper_nodes)
            || (max_level == 0 && upper_nodes != 0)
        {
            return Err(corrupt(
                path,
                "upper layers do not fill the file as the directory says",
            ));
        }
        let g = GraphFile {
            crc_vectors: u32_at(h, 108),
            map,
            path: path.to_path_buf(),
            metric,
            builder,
            dim,
            m,
            m0,
            ef_construction,
            max_level,
            entry,
            count,
            row_floats: rf,
            lay,
            levels,
        };
        g.check_structure(u32_at(h, 104), u32_at(h, 112), u32_at(h, 116))?;
        Ok(g)
    }

    /// Checksums of the ids and links and the invariants the search relies on, so a search
    /// over an opened file never indexes out of bounds.
    fn check_structure(&self, crc_ids: u32, crc_l0: u32, crc_up: u32) -> Result<()> {
        let p = &self.path;
        let lay = &self.lay;
        // Each checksum covers its section and the padding up to the next one.
        let ids_bytes = &self.map[lay.ids_off..lay.vectors_off];
        let l0_bytes = &self.map[lay.layer0_off..lay.rank_off];
        let up_bytes = &self.map[lay.rank_off..];
        if crc32fast::hash(ids_bytes) != crc_ids {
            return Err(corrupt(p, "ids checksum mismatch"));
        }
        if crc32fast::hash(l0_bytes) != crc_l0 {
            return Err(corrupt(p, "layer-0 links checksum mismatch"));
        }
        if crc32fast::hash(up_bytes) != crc_up {
            return Err(corrupt(p, "upper-layer links checksum mismatch"));
        }
        if self.ids().windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt(p, "ids are not strictly ascending"));
        }
        let count = self.count as u32;
        let stride = 1 + self.m0;
        for (node, row) in self.layer0_table().chunks_exact(stride).enumerate() {
            let n = row[0] as usize;
            if n > self.m0 || row[1..1 + n].iter().any(|&nb| nb >= count) {
                return Err(corrupt(p, format!("node {node}: bad layer-0 link list")));
            }
        }
        let ranks = self.ranks();
        let upper_nodes = if self.max_level > 0 {
            self.levels[1].nodes
        } else {
            0
        };
        let mut seen = 0usize;
        for &r in ranks {
            if r != u32::MAX {
                if r as usize >= upper_nodes {
                    return Err(corrupt(p, format!("rank {r} of {upper_nodes} upper nodes")));
                }
                seen += 1;
            }
        }
        if seen != upper_nodes {
            return Err(corrupt(
                p,
                format!("{seen} ranked nodes, {upper_nodes} expected"),
            ));
        }
        for l in 1..=self.max_level {
            let lv = self.levels[l];
            let offsets = self.u32s(lv.offsets_off, lv.nodes + 1);
            if offsets[0] != 0
                || offsets
                    .windows(2)
                    .any(|w| w[0] > w[1] || (w[1] - w[0]) as usize > self.m)
            {
                return Err(corrupt(
                    p,
                    format!("level {l}: offsets not ascending or a list above m"),
                ));
            }
            for &nb in self.u32s(lv.links_off, lv.links_len) {
                if nb >= count || ranks[nb as usize] as usize >= lv.nodes {
                    return Err(corrupt(
                        p,
                        format!("level {l}: link to {nb}, not a node of that level"),
                    ));
                }
            }
        }
        if self.max_level > 0
            && ranks[self.entry as usize] as usize >= self.levels[self.max_level].nodes
        {
            return Err(corrupt(p, "entry point is not on the top layer"));
        }
        Ok(())
    }

    /// Reads the whole vector section and compares its checksum (slow: every byte of the
    /// file's largest part). Used when verifying copies, not on open.
    pub fn verify_vectors(&self) -> Result<()> {
        let s = &self.map[self.lay.vectors_off..self.lay.layer0_off];
        if crc32fast::hash(s) != self.crc_vectors {
            return Err(corrupt(&self.path, "vectors checksum mismatch"));
        }
        Ok(())
    }

    fn u32s(&self, off: usize, n: usize) -> &[u32] {
        bytemuck::cast_slice(&self.map[off..off + n * 4])
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

    pub fn file_bytes(&self) -> usize {
        self.map.len()
    }

    /// Ascending ids; node i holds `ids()[i]`.
    pub fn ids(&self) -> &[u64] {
        bytemuck::cast_slice(&self.map[self.lay.ids_off..self.lay.ids_off + self.count * 8])
    }

    pub fn node_of(&self, id: u64) -> Option<u32> {
        self.ids().binary_search(&id).ok().map(|i| i as u32)
    }

    /// The whole padded vector section.
    #[inline]
    pub(crate) fn vectors_raw(&self) -> &[f32] {
        bytemuck::cast_slice(
            &self.map
                [self.lay.vectors_off..self.lay.vectors_off + self.count * self.row_floats * 4],
        )
    }

    #[inline]
    pub fn row_floats(&self) -> usize {
        self.row_floats
    }

    /// Node's vector (dim floats, 64-byte aligned).
    #[inline]
    pub fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.row_floats;
        &self.vectors_raw()[start..start + self.dim]
    }

    #[inline]
    pub(crate) fn layer0_table(&self) -> &[u32] {
        self.u32s(self.lay.layer0_off, self.count * (1 + self.m0))
    }

    fn ranks(&self) -> &[u32] {
        self.u32s(self.lay.rank_off, self.count)
    }

    /// Node's neighbours on layer 0.
    #[inline]
    pub fn links0(&self, node: u32) -> &[u32] {
        let stride = 1 + self.m0;
        let row = &self.layer0_table()[node as usize * stride..(node as usize + 1) * stride];
        &row[1..1 + row[0] as usize]
    }

    /// Level of a node (0 for most).
    pub fn level(&self, node: u32) -> usize {
        let r = self.ranks()[node as usize];
        if r == u32::MAX {
            return 0;
        }
        (1..=self.max_level)
            .take_while(|&l| (r as usize) < self.levels[l].nodes)
            .last()
            .unwrap_or(0)
    }

    /// Node's neighbours on `level` ≥ 1; empty when the node is not on that level.
    #[inline]
    pub fn links_upper(&self, node: u32, level: usize) -> &[u32] {
        let r = self.ranks()[node as usize] as usize;
        let lv = self.levels[level];
        if r >= lv.nodes {
            return &[];
        }
        let offs = self.u32s(lv.offsets_off + r * 4, 2);
        let links = self.u32s(lv.links_off, lv.links_len);
        &links[offs[0] as usize..offs[1] as usize]
    }

    /// Nodes per layer, layer 0 first (status reporting).
    pub fn layer_counts(&self) -> Vec<usize> {
        let mut v = vec![self.count];
        v.extend((1..=self.max_level).map(|l| self.levels[l].nodes));
        v
    }
}
