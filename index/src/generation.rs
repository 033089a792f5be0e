//! Generations: immutable, self-describing index snapshots on disk.
//!
//! ```text
//! <root>/gen-00000000000000000007/        a complete generation (renamed into place last)
//!     MANIFEST.json                        written and fsynced after every data file
//!     <space>.graph                        spaces with a graph: the flat graph file (ids,
//!                                          vectors, links; see `graph_file`), mmapped — the
//!                                          only copy of the space's vectors in the generation
//!     <space>.vec                          spaces below `min_graph_size`: VectorFile (ids +
//!                                          prepared rows, mmapped), scanned exactly
//!     <space>.vec + <space>.hnsw.graph / .hnsw.data
//!                                          the format before the flat graph (hnsw_rs dump):
//!                                          still opened and served, and rebuilt in the flat
//!                                          format on start ([`Generation::is_legacy`])
//! <root>/gen-00000000000000000008.tmp      a build in progress or one that crashed: never loaded,
//!                                          removed at start
//! ```
//! A generation covers every store write with sequence number ≤ `snapshot_seq`; writes after
//! it live in the mutable layer until the next generation. Because a folder only gets its final
//! name after its manifest is durable, a crash at any point leaves either the previous
//! generation or the new one — never a half-written one under a loadable name.

use crate::builder::{self, BuildParams};
use crate::error::{IndexError, IoContext, Result};
use crate::graph::{HnswGraph, HnswParams};
use crate::graph_file::{Builder, GraphFile};
use crate::metric::Metric;
use crate::search::FlatGraph;
use crate::topk::Scored;
use crate::vectors::VectorFile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const PREFIX: &str = "gen-";
const MANIFEST: &str = "MANIFEST.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceSpec {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpaceManifest {
    pub spec: SpaceSpec,
    pub params: HnswParams,
    pub count: usize,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub generation: u64,
    pub snapshot_seq: u64,
    pub created_unix: u64,
    pub spaces: Vec<SpaceManifest>,
}

/// One space's part of a generation: a flat graph file, or (small spaces) a vector file
/// scanned exactly, or (generations written before the flat format) a vector file plus an
/// hnsw_rs graph.
pub struct BaseSegment {
    pub spec: SpaceSpec,
    /// Rows of a space without a flat graph (empty when `flat` holds them).
    pub vectors: VectorFile,
    /// The hnsw_rs graph of a legacy generation.
    pub graph: Option<HnswGraph>,
    pub flat: Option<FlatGraph>,
}

impl BaseSegment {
    fn empty(spec: &SpaceSpec) -> BaseSegment {
        BaseSegment {
            spec: spec.clone(),
            vectors: VectorFile::empty(spec.dim, spec.metric),
            graph: None,
            flat: None,
        }
    }

    pub fn len(&self) -> usize {
        self.flat.as_ref().map_or(self.vectors.len(), |f| f.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids held, ascending.
    pub fn ids(&self) -> &[u64] {
        self.flat
            .as_ref()
            .map_or(self.vectors.ids(), |f| f.file.ids())
    }

    /// The prepared vector of `id`.
    pub fn get(&self, id: u64) -> Option<&[f32]> {
        match &self.flat {
            Some(f) => f.file.node_of(id).map(|n| f.file.vector(n)),
            None => self.vectors.get(id),
        }
    }

    pub fn mapped_bytes(&self) -> usize {
        self.flat
            .as_ref()
            .map_or(self.vectors.mapped_bytes(), |f| f.file.file_bytes())
    }

    /// Nodes per graph layer (empty without a graph).
    pub fn layer_counts(&self) -> Vec<usize> {
        match (&self.flat, &self.graph) {
            (Some(f), _) => f.file.layer_counts(),
            (None, Some(g)) => g.layer_counts(),
            (None, None) => Vec::new(),
        }
    }

    /// Graph search (`ef` ≥ k), or an exact scan when the segment is too small to have a graph.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u64) -> bool,
    ) -> Vec<Scored> {
        match (&self.flat, &self.graph) {
            (Some(f), _) => f.search(query, k, ef, Some(accept)),
            (None, Some(g)) => g.search(query, k, ef, accept),
            (None, None) => self.vectors.scan(query, k, accept),
        }
    }
}

/// A loaded generation: every configured space, possibly empty.
pub struct Generation {
    pub id: u64,
    pub snapshot_seq: u64,
    pub dir: Option<PathBuf>,
    pub segments: BTreeMap<String, BaseSegment>,
}

impl Generation {
    /// Generation 0: nothing indexed yet, every write is in the mutable layer.
    pub fn empty(specs: &[SpaceSpec]) -> Generation {
        let segments = specs
            .iter()
            .map(|s| (s.name.clone(), BaseSegment::empty(s)))
            .collect();
        Generation {
            id: 0,
            snapshot_seq: 0,
            dir: None,
            segments,
        }
    }

    /// Whether a space of this generation is in the format before the flat graph (an hnsw_rs
    /// dump): the engine rebuilds such a generation on start.
    pub fn is_legacy(&self) -> bool {
        self.segments.values().any(|s| s.graph.is_some())
    }

    pub fn segment(&self, space: &str) -> Option<&BaseSegment> {
        self.segments.get(space)
    }

    /// Opens a complete generation folder. Every file must have the size its manifest records;
    /// small files and hnsw_rs dumps (hnsw_rs exits the process on some malformed inputs) are
    /// checksummed in full, flat graph files get `GraphFile::open`'s checks (header, structure,
    /// link checksums; the vector section's checksum is left to [`verify`]), so opening costs
    /// about the links, not the vectors. Spaces in `specs` that the generation lacks come up
    /// empty; a space whose dimension or metric changed makes the generation unusable.
    pub fn open(dir: &Path, specs: &[SpaceSpec]) -> Result<Generation> {
        let manifest = read_manifest(dir)?;
        let mut segments = BTreeMap::new();
        for spec in specs {
            let Some(sm) = manifest.spaces.iter().find(|s| s.spec.name == spec.name) else {
                segments.insert(spec.name.clone(), BaseSegment::empty(spec));
                continue;
            };
            if sm.spec != *spec {
                return Err(IndexError::Corrupt {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "space {} was built as {:?}, config now says {:?}",
                        spec.name, sm.spec, spec
                    ),
                });
            }
            let flat_name = flat_name(&spec.name);
            for f in &sm.files {
                if f.name == flat_name {
                    verify_size(&dir.join(&f.name), f)?;
                } else {
                    verify_file(&dir.join(&f.name), f)?;
                }
            }
            let has = |name: &str| sm.files.iter().any(|f| f.name == name);
            let mut seg = BaseSegment::empty(spec);
            if has(&flat_name) {
                let file = GraphFile::open(&dir.join(&flat_name), spec.dim, spec.metric)?;
                if file.len() != sm.count {
                    return Err(IndexError::Corrupt {
                        path: dir.join(&flat_name),
                        reason: format!("{} nodes, manifest says {}", file.len(), sm.count),
                    });
                }
                seg.flat = Some(FlatGraph::new(file));
            } else if sm.count > 0 {
                seg.vectors =
                    VectorFile::open(&dir.join(vec_name(&spec.name)), spec.dim, spec.metric)?;
                if has(&format!("{}.hnsw.graph", graph_base(&spec.name))) {
                    seg.graph = Some(HnswGraph::load(
                        dir,
                        &graph_base(&spec.name),
                        spec.metric,
                        sm.count,
                    )?);
                }
            }
            segments.insert(spec.name.clone(), seg);
        }
        Ok(Generation {
            id: manifest.generation,
            snapshot_seq: manifest.snapshot_seq,
            dir: Some(dir.to_path_buf()),
            segments,
        })
    }
}

/// Checks a complete generation folder without loading it: the manifest parses and every file
/// it lists has its recorded size and crc32 (every byte read, vectors included). Used to verify
/// copies (snapshots, restores).
pub fn verify(dir: &Path) -> Result<Manifest> {
    let manifest = read_manifest(dir)?;
    for space in &manifest.spaces {
        for f in &space.files {
            verify_file(&dir.join(&f.name), f)?;
        }
    }
    Ok(manifest)
}

/// The folder name of generation `id` (`gen-<20 digits>`).
pub fn dir_name(id: u64) -> String {
    gen_dir_name(id)
}

fn vec_name(space: &str) -> String {
    format!("{space}.vec")
}

fn flat_name(space: &str) -> String {
    format!("{space}.graph")
}

fn graph_base(space: &str) -> String {
    space.to_string()
}

fn gen_dir_name(id: u64) -> String {
    format!("{PREFIX}{id:020}")
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let bytes = fs::read(&path).at(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| IndexError::Corrupt {
        path,
        reason: e.to_string(),
    })
}

fn file_entry(path: &Path) -> Result<FileEntry> {
    let mut f = fs::File::open(path).at(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).at(path)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(FileEntry {
        name,
        bytes,
        crc32: hasher.finalize(),
    })
}

fn verify_size(path: &Path, want: &FileEntry) -> Result<()> {
    let bytes = fs::metadata(path).at(path)?.len();
    if bytes != want.bytes {
        return Err(IndexError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("expected {} bytes, found {bytes}", want.bytes),
        });
    }
    Ok(())
}

fn verify_file(path: &Path, want: &FileEntry) -> Result<()> {
    let got = file_entry(path)?;
    if got.bytes != want.bytes || got.crc32 != want.crc32 {
        return Err(IndexError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "expected {} bytes crc {:08x}, found {} bytes crc {:08x}",
                want.bytes, want.crc32, got.bytes, got.crc32
            ),
        });
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Complete generation ids under `root`, ascending.
pub fn list_generations(root: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => {
            return Err(IndexError::Io {
                path: root.to_path_buf(),
                source: e,
            })
        }
    };
    for entry in entries {
        let entry = entry.at(root)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(num) = name.strip_prefix(PREFIX) {
            if let Ok(id) = num.parse::<u64>() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

pub fn generation_dir(root: &Path, id: u64) -> PathBuf {
    root.join(gen_dir_name(id))
}

/// Removes folders of builds that never completed (crash or failure mid-rebuild).
pub fn remove_incomplete(root: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return Ok(removed);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(PREFIX) && name.contains(".tmp") {
            let p = entry.path();
            fs::remove_dir_all(&p).at(&p)?;
            removed.push(p);
        }
    }
    Ok(removed)
}

/// Keeps the newest `keep` complete generations (and always `in_use`); deletes the rest.
/// Mapped files of a deleted generation stay valid until unmapped (POSIX unlink semantics).
pub fn prune(root: &Path, keep: usize, in_use: u64) -> Result<Vec<u64>> {
    let ids = list_generations(root)?;
    let mut removed = Vec::new();
    let cut = ids.len().saturating_sub(keep);
    for &id in &ids[..cut] {
        if id == in_use {
            continue;
        }
        let p = generation_dir(root, id);
        fs::remove_dir_all(&p).at(&p)?;
        removed.push(id);
    }
    Ok(removed)
}

/// Builds a generation in a `.tmp` folder and publishes it with one rename.
pub struct GenerationWriter {
    root: PathBuf,
    tmp: PathBuf,
    manifest: Manifest,
}

impl GenerationWriter {
    pub fn create(root: &Path, generation: u64, snapshot_seq: u64) -> Result<GenerationWriter> {
        fs::create_dir_all(root).at(root)?;
        let tmp = root.join(format!(
            "{}.tmp-{}",
            gen_dir_name(generation),
            std::process::id()
        ));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        fs::create_dir(&tmp).at(&tmp)?;
        let created_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(GenerationWriter {
            root: root.to_path_buf(),
            tmp,
            manifest: Manifest {
                generation,
                snapshot_seq,
                created_unix,
                spaces: Vec::new(),
            },
        })
    }

    /// The folder being built: companions of the graphs (the lexical index) are written into
    /// it so the one rename publishes them together.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Writes one space: from `min_graph_size` rows on, a flat graph file built by
    /// `params.builder` (the file holds the vectors too); below, a vector file scanned exactly.
    /// `rows` hold prepared vectors sorted by id.
    pub fn add_space(
        &mut self,
        spec: &SpaceSpec,
        params: &HnswParams,
        rows: &[(u64, &[f32])],
        min_graph_size: usize,
        progress: &mut dyn FnMut(usize),
    ) -> Result<()> {
        let mut files = Vec::new();
        if rows.len() >= min_graph_size.max(1) {
            let path = self.tmp.join(flat_name(&spec.name));
            write_graph(&path, spec, params, rows, progress)?;
            files.push(file_entry(&path)?);
        } else {
            if !rows.is_empty() {
                let vec_path = self.tmp.join(vec_name(&spec.name));
                VectorFile::write(&vec_path, spec.dim, spec.metric, rows)?;
                files.push(file_entry(&vec_path)?);
            }
            progress(rows.len());
        }
        self.manifest.spaces.push(SpaceManifest {
            spec: spec.clone(),
            params: *params,
            count: rows.len(),
            files,
        });
        Ok(())
    }

    /// Writes one space in the format before the flat graph (vector file + hnsw_rs dump), as
    /// older releases did: for tests of the migration on start, not for new generations.
    #[doc(hidden)]
    pub fn add_space_legacy(
        &mut self,
        spec: &SpaceSpec,
        params: &HnswParams,
        rows: &[(u64, &[f32])],
    ) -> Result<()> {
        let mut files = Vec::new();
        let vec_path = self.tmp.join(vec_name(&spec.name));
        VectorFile::write(&vec_path, spec.dim, spec.metric, rows)?;
        files.push(file_entry(&vec_path)?);
        let graph = HnswGraph::build(spec.metric, params, rows, &mut |_| {})?;
        let base = graph_base(&spec.name);
        graph.dump(&self.tmp, &base)?;
        for suffix in ["hnsw.graph", "hnsw.data"] {
            let p = self.tmp.join(format!("{base}.{suffix}"));
            fs::File::open(&p).and_then(|f| f.sync_all()).at(&p)?;
            files.push(file_entry(&p)?);
        }
        let params = HnswParams {
            builder: Builder::HnswRs,
            ..*params
        };
        self.manifest.spaces.push(SpaceManifest {
            spec: spec.clone(),
            params,
            count: rows.len(),
            files,
        });
        Ok(())
    }

    /// Makes the generation durable and visible; returns its final folder.
    pub fn commit(self) -> Result<PathBuf> {
        let mpath = self.tmp.join(MANIFEST);
        let json = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| IndexError::Parameter(format!("manifest encoding: {e}")))?;
        fs::write(&mpath, json).at(&mpath)?;
        fs::File::open(&mpath)
            .and_then(|f| f.sync_all())
            .at(&mpath)?;
        sync_dir(&self.tmp)?;
        let dest = generation_dir(&self.root, self.manifest.generation);
        fs::rename(&self.tmp, &dest).at(&dest)?;
        sync_dir(&self.root)?;
        Ok(dest)
    }

    /// Drops the unfinished folder (e.g. the rebuild failed).
    pub fn abandon(self) {
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

/// Builds a graph over `rows` with `params.builder` and writes it as a flat graph file.
fn write_graph(
    path: &Path,
    spec: &SpaceSpec,
    params: &HnswParams,
    rows: &[(u64, &[f32])],
    progress: &mut dyn FnMut(usize),
) -> Result<u64> {
    params.validate()?;
    match params.builder {
        Builder::Native => {
            let refs: Vec<&[f32]> = rows.iter().map(|r| r.1).collect();
            let ids: Vec<u64> = rows.iter().map(|r| r.0).collect();
            let bp = BuildParams {
                m: params.m,
                ef_construction: params.ef_construction,
                threads: 0,
                seed: 0x5eed,
            };
            // The caller's progress callback is not Sync: the workers count, this thread reports.
            let done = AtomicUsize::new(0);
            let finished = AtomicBool::new(false);
            let reporter = std::thread::current();
            let graph = std::thread::scope(|s| {
                let worker = s.spawn(|| {
                    let r = builder::build(spec.metric, spec.dim, &refs, &bp, &|d| {
                        done.store(d, Ordering::Relaxed)
                    });
                    finished.store(true, Ordering::Release);
                    reporter.unpark();
                    r
                });
                while !finished.load(Ordering::Acquire) {
                    std::thread::park_timeout(std::time::Duration::from_millis(200));
                    progress(done.load(Ordering::Relaxed));
                }
                worker
                    .join()
                    .unwrap_or_else(|_| Err(IndexError::Parameter("graph build panicked".into())))
            })?;
            progress(rows.len());
            graph.write(path, &ids, &refs)
        }
        Builder::HnswRs => {
            let graph = HnswGraph::build(spec.metric, params, rows, progress)?;
            crate::export::write(path, &graph, params, spec.dim, rows)
        }
    }
}

/// Generations that failed verification, newest first, with the reason.
pub type Skipped = Vec<(u64, IndexError)>;

/// Opens the newest generation that verifies, skipping (and reporting) broken ones.
pub fn open_newest(root: &Path, specs: &[SpaceSpec]) -> Result<(Option<Generation>, Skipped)> {
    let mut skipped = Vec::new();
    for id in list_generations(root)?.into_iter().rev() {
        match Generation::open(&generation_dir(root, id), specs) {
            Ok(g) => return Ok((Some(g), skipped)),
            Err(e) => skipped.push((id, e)),
        }
    }
    Ok((None, skipped))
}
