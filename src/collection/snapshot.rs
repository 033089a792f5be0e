//! Snapshots: a consistent, self-verifying copy of the collection (a RocksDB checkpoint plus
//! the index generation in use), and `restore`, which brings a data directory back from one.
//!
//! Snapshots live in one server-configured directory (`snapshot_dir`, outside the data
//! directory) and a client only names them; it never picks a server path. Each is a folder:
//!
//! ```text
//! <snapshot_dir>/<name>/
//!   SNAPSHOT.json            format, last_seq, generation + its snapshot_seq, spaces, model ids,
//!                            and every file below with bytes + crc32; written last
//!   store/                   RocksDB checkpoint (hard links to the immutable SSTs where possible)
//!   index/gen-<20 digits>/   the generation in use (hard links, or copies across file systems)
//! ```
//! The folder is assembled as `.<name>.tmp` and renamed into place only when complete, so a
//! folder named `<name>` is always a whole snapshot. (Names never start with '.', so a staging
//! folder cannot collide with a snapshot.)
//!
//! Why it is consistent: a generation holds every vector live at its `snapshot_seq` S_g, and a
//! server replays the store's vectors with seq > S_g at start. The generation is pinned first
//! and the store is checkpointed after, so the checkpoint's last seq S_c ≥ S_g. A version live
//! at S_c with seq ≤ S_g was already live at S_g (a seq never comes back once replaced or
//! deleted), so the generation has it; a version with seq > S_g has its vector row in the
//! checkpoint and is replayed. Base vectors no longer live at S_c are tombstones, exactly as in
//! the running server. (Checkpointing first would let a rebuild swap in a generation with
//! S_g > S_c in between; versions replaced after S_c would then be in neither part.)

use super::{Collection, Result};
use mmsearch_index::generation;
use mmsearch_index::SpaceSpec;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The snapshot's manifest, at the top of the snapshot folder.
pub const MANIFEST_FILE: &str = "SNAPSHOT.json";
/// Present in a data directory while `restore` replaces its contents; the server refuses to
/// open a data directory that has it.
pub const RESTORE_MARKER: &str = "RESTORE_IN_PROGRESS";
const FORMAT: u32 = 1;
const STORE_DIR: &str = "store";
const INDEX_DIR: &str = "index";
const STAGING_DIR: &str = ".restore-staging";
const REPLACED_DIR: &str = ".restore-replaced";
/// Longest snapshot name: a single path component on every common file system, with room for
/// the staging folder's `.` + `.tmp`.
pub const MAX_NAME_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot name {0:?}: use 1-{max} characters of [A-Za-z0-9._-], not starting with '.' and without \"..\"", max = MAX_NAME_LEN)]
    BadName(String),
    #[error("snapshot target must be an absolute directory path on the server, got {0:?}")]
    BadTarget(PathBuf),
    #[error("snapshot target {0} is inside the data directory (it would share its fate; pick a path outside)")]
    InsideDataDir(PathBuf),
    #[error("snapshot target {0} already exists and is not empty")]
    TargetExists(PathBuf),
    #[error(
        "{0} exists: another snapshot into it is running or was interrupted (remove it to retry)"
    )]
    TmpExists(PathBuf),
    #[error("cannot write snapshot target {path}: {source}")]
    Target {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a usable snapshot: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("data directory {0} is not empty (restore --force replaces its store and index)")]
    DataDirNotEmpty(PathBuf),
    #[error("data directory {0} is in use by a running server (its store is locked)")]
    DataDirInUse(PathBuf),
    #[error("data directory {0} holds an interrupted restore; run `mmsearch restore` into it again (with --force)")]
    InterruptedRestore(PathBuf),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

type SResult<T> = std::result::Result<T, SnapshotError>;

trait At<T> {
    fn at(self, path: &Path) -> SResult<T>;
    fn target(self, path: &Path) -> SResult<T>;
}

impl<T> At<T> for io::Result<T> {
    fn at(self, path: &Path) -> SResult<T> {
        self.map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
    fn target(self, path: &Path) -> SResult<T> {
        self.map_err(|source| SnapshotError::Target {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A model the snapshot's vectors were made with (text/image vectors are only comparable with
/// queries encoded by the same models).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub id: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Relative to the snapshot folder, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub crc32: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotManifest {
    pub format: u32,
    pub mmsearch_version: String,
    pub created_unix: u64,
    /// The last write sequence the store checkpoint contains (0 = none).
    pub last_seq: u64,
    /// The index generation included (0 = none yet: everything is replayed from the store).
    pub generation: u64,
    /// The generation covers writes up to this seq; later ones are replayed from the store.
    pub generation_snapshot_seq: u64,
    pub spaces: Vec<SpaceSpec>,
    pub models: Vec<ModelRef>,
    pub files: Vec<SnapshotFile>,
}

impl SnapshotManifest {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

pub struct SnapshotInfo {
    /// The snapshot's name: the folder's name under the snapshot directory.
    pub name: String,
    pub dir: PathBuf,
    pub manifest: SnapshotManifest,
    /// Size of all files in the snapshot.
    pub bytes: u64,
    /// Of those, bytes shared with the data directory through hard links (no new disk space).
    pub linked_bytes: u64,
    pub seconds: f64,
}

pub struct RestoreReport {
    pub manifest: SnapshotManifest,
    pub bytes: u64,
    pub seconds: f64,
}

impl Collection {
    /// Writes a consistent snapshot into the configured snapshot directory, as `name` (see
    /// [`check_name`]; must not exist yet) or, without one, as
    /// `snapshot-<UTC time>-v<last version it contains>`.
    pub fn snapshot(&self, name: Option<&str>, models: Vec<ModelRef>) -> Result<SnapshotInfo> {
        let root = self.config.snapshot_root();
        match name {
            Some(name) => {
                check_name(name)?;
                let target = root.join(name);
                self.snapshot_into(&target, |_| target.clone(), models)
            }
            None => {
                // The version is only known once the store is checkpointed, so the folder is
                // staged under the time alone and gets its full name when it is published.
                let stem = format!("snapshot-{}", utc_stamp(unix_now()));
                self.snapshot_into(
                    &root.join(&stem),
                    |m| root.join(format!("{stem}-v{}", m.last_seq)),
                    models,
                )
            }
        }
    }

    /// Stages the snapshot for `staged_as` and publishes it at `final_path(manifest)`.
    fn snapshot_into(
        &self,
        staged_as: &Path,
        final_path: impl FnOnce(&SnapshotManifest) -> PathBuf,
        models: Vec<ModelRef>,
    ) -> Result<SnapshotInfo> {
        let started = Instant::now();
        let tmp = prepare_target(staged_as, &self.config.data_dir)?;
        let written = self.write_snapshot(&tmp, models).and_then(|m| {
            let target = final_path(&m);
            if target != staged_as {
                check_free(&target)?;
            }
            // rename(2) replaces an empty directory, so an empty `target` is fine too.
            fs::rename(&tmp, &target).target(&target)?;
            Ok((m, target))
        });
        match written {
            Ok((manifest, target)) => {
                if let Some(parent) = target.parent() {
                    sync_dir(parent)?;
                }
                let (bytes, linked_bytes) = sizes(&target, &manifest)?;
                let name = target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok(SnapshotInfo {
                    name,
                    dir: target,
                    manifest,
                    bytes,
                    linked_bytes,
                    seconds: started.elapsed().as_secs_f64(),
                })
            }
            Err(e) => {
                if let Err(rm) = fs::remove_dir_all(&tmp) {
                    tracing::warn!(path = %tmp.display(), error = %rm, "could not remove a failed snapshot");
                }
                Err(e)
            }
        }
    }

    fn write_snapshot(&self, tmp: &Path, models: Vec<ModelRef>) -> Result<SnapshotManifest> {
        let index_dir = tmp.join(INDEX_DIR);
        fs::create_dir(&index_dir).target(&index_dir)?;
        // 1. Pin the generation in use and link its files while no rebuild can prune it.
        let base = {
            let _no_prune = self.generation_files.lock();
            let base = self.state.read().base.clone();
            if let Some(dir) = &base.dir {
                let dest = index_dir.join(generation::dir_name(base.id));
                fs::create_dir(&dest).target(&dest)?;
                for entry in fs::read_dir(dir).at(dir)? {
                    let entry = entry.at(dir)?;
                    if entry.file_type().at(&entry.path())?.is_file() {
                        link_or_copy(&entry.path(), &dest.join(entry.file_name())).target(&dest)?;
                    }
                }
            }
            base
        };
        // 2. Checkpoint the store after the pin (see the module comment). Holding the writer
        //    lock makes the covered seq exact; writers wait only for a memtable flush + links.
        let store_dir = tmp.join(STORE_DIR);
        let last_seq = {
            let next_seq = self.writer.lock();
            self.store.checkpoint(&store_dir)?;
            next_seq.saturating_sub(1)
        };
        if last_seq < base.snapshot_seq {
            return Err(SnapshotError::Invalid {
                path: tmp.to_path_buf(),
                reason: format!(
                    "store seq {last_seq} is older than generation seq {}",
                    base.snapshot_seq
                ),
            }
            .into());
        }
        // 3. Checksum (and fsync) every file, then write the manifest last.
        let mut files = Vec::new();
        for rel in list_files(tmp)? {
            let path = tmp.join(&rel);
            let (bytes, crc32) = checksum(&path, true).at(&path)?;
            files.push(SnapshotFile {
                path: rel,
                bytes,
                crc32,
            });
        }
        for dir in dirs_under(tmp)? {
            sync_dir(&dir)?;
        }
        let manifest = SnapshotManifest {
            format: FORMAT,
            mmsearch_version: env!("CARGO_PKG_VERSION").to_string(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            last_seq,
            generation: base.id,
            generation_snapshot_seq: base.snapshot_seq,
            spaces: self.specs.clone(),
            models,
            files,
        };
        let mpath = tmp.join(MANIFEST_FILE);
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| SnapshotError::Io {
            path: mpath.clone(),
            source: io::Error::other(e),
        })?;
        write_synced(&mpath, &json).target(&mpath)?;
        sync_dir(tmp)?;
        Ok(manifest)
    }
}

/// Whether `name` may name a snapshot: a single, visible path component of
/// `[A-Za-z0-9._-]`, so it cannot climb out of the snapshot directory or shadow a staging folder.
pub fn check_name(name: &str) -> SResult<()> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        // The name is echoed to the client; a few characters past the limit show enough.
        Err(SnapshotError::BadName(
            name.chars().take(MAX_NAME_LEN + 8).collect(),
        ))
    }
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time (UTC, proleptic Gregorian calendar).
fn utc_stamp(unix_secs: u64) -> String {
    let (days, secs) = (unix_secs / 86_400, unix_secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Refuses a target that exists, unless it is an empty directory.
fn check_free(target: &Path) -> SResult<()> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            if fs::read_dir(target).target(target)?.next().is_some() {
                return Err(SnapshotError::TargetExists(target.to_path_buf()));
            }
            Ok(())
        }
        Ok(_) => Err(SnapshotError::TargetExists(target.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SnapshotError::Target {
            path: target.to_path_buf(),
            source: e,
        }),
    }
}

/// Checks the target and creates its staging folder `.<name>.tmp` beside it; returns the latter.
fn prepare_target(target: &Path, data_dir: &Path) -> SResult<PathBuf> {
    let name = match target.file_name() {
        Some(n) if target.is_absolute() => n.to_string_lossy().into_owned(),
        _ => return Err(SnapshotError::BadTarget(target.to_path_buf())),
    };
    if is_inside(target, data_dir) {
        return Err(SnapshotError::InsideDataDir(target.to_path_buf()));
    }
    check_free(target)?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).target(parent)?;
    }
    let tmp = target.with_file_name(format!(".{name}.tmp"));
    match fs::create_dir(&tmp) {
        Ok(()) => Ok(tmp),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(SnapshotError::TmpExists(tmp)),
        Err(e) => Err(SnapshotError::Target {
            path: tmp,
            source: e,
        }),
    }
}

/// Whether `path` lies inside `dir` (or is `dir`). Either may not exist yet: symlinks of the
/// part that exists are followed, the rest is taken as written.
pub fn is_inside(path: &Path, dir: &Path) -> bool {
    match (resolve(path), resolve(dir)) {
        (Some(path), Some(dir)) => path.starts_with(dir),
        _ => false,
    }
}

/// `path` made absolute with its longest existing prefix canonicalised and the missing rest
/// applied lexically.
fn resolve(path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let path = std::path::absolute(path).ok()?;
    let mut existing = path.as_path();
    let mut missing = Vec::new();
    while fs::symlink_metadata(existing).is_err() {
        let parent = existing.parent()?;
        missing.push(existing.components().next_back()?);
        existing = parent;
    }
    let mut resolved = fs::canonicalize(existing).ok()?;
    for c in missing.into_iter().rev() {
        match c {
            Component::Normal(name) => resolved.push(name),
            Component::ParentDir => {
                resolved.pop();
            }
            _ => {}
        }
    }
    Some(resolved)
}

fn link_or_copy(src: &Path, dst: &Path) -> io::Result<()> {
    // Generation files are immutable once published, so sharing the inode is safe.
    if fs::hard_link(src, dst).is_err() {
        fs::copy(src, dst)?;
    }
    Ok(())
}

/// Every regular file under `root`, relative and `/`-separated, sorted.
fn list_files(root: &Path) -> SResult<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> SResult<()> {
        for entry in fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let path = entry.path();
            let kind = entry.file_type().at(&path)?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

fn checksum(path: &Path, sync: bool) -> io::Result<(u64, u32)> {
    let mut f = fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    if sync {
        f.sync_all()?;
    }
    Ok((bytes, hasher.finalize()))
}

fn sizes(dir: &Path, manifest: &SnapshotManifest) -> SResult<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut linked = 0;
    for f in &manifest.files {
        let path = dir.join(&f.path);
        if fs::metadata(&path).at(&path)?.nlink() > 1 {
            linked += f.bytes;
        }
    }
    Ok((manifest.bytes(), linked))
}

fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn sync_dir(dir: &Path) -> SResult<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

fn invalid(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and checks a snapshot folder: the manifest, the exact set of files with their sizes
/// and crc32s, and the generation's own manifest. Returns the snapshot manifest.
pub fn verify(snapshot: &Path) -> SResult<SnapshotManifest> {
    let mpath = snapshot.join(MANIFEST_FILE);
    let bytes = match fs::read(&mpath) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(invalid(
                snapshot,
                format!("no {MANIFEST_FILE} (an incomplete or foreign folder)"),
            ))
        }
        Err(e) => {
            return Err(SnapshotError::Io {
                path: mpath,
                source: e,
            })
        }
    };
    let manifest: SnapshotManifest = serde_json::from_slice(&bytes)
        .map_err(|e| invalid(&mpath, format!("manifest does not parse: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(
            &mpath,
            format!(
                "format {} (this mmsearch reads format {FORMAT})",
                manifest.format
            ),
        ));
    }
    // The folder must hold exactly the listed files, each intact.
    let on_disk: Vec<String> = list_files(snapshot)?
        .into_iter()
        .filter(|p| p != MANIFEST_FILE)
        .collect();
    let mut listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    listed.sort_unstable();
    if let Some(extra) = on_disk
        .iter()
        .find(|p| listed.binary_search(&p.as_str()).is_err())
    {
        return Err(invalid(snapshot, format!("unlisted file {extra}")));
    }
    for f in &manifest.files {
        let rel = Path::new(&f.path);
        let top = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let safe = rel
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !safe || !matches!(top.as_deref(), Some(STORE_DIR) | Some(INDEX_DIR)) {
            return Err(invalid(
                snapshot,
                format!("manifest lists an unexpected path {:?}", f.path),
            ));
        }
        let path = snapshot.join(rel);
        let (bytes, crc32) = match checksum(&path, false) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(invalid(snapshot, format!("missing file {}", f.path)))
            }
            Err(e) => return Err(SnapshotError::Io { path, source: e }),
        };
        if bytes != f.bytes || crc32 != f.crc32 {
            return Err(invalid(
                snapshot,
                format!(
                    "{}: expected {} bytes crc {:08x}, found {bytes} bytes crc {crc32:08x}",
                    f.path, f.bytes, f.crc32
                ),
            ));
        }
    }
    let generations = generation::list_generations(&snapshot.join(INDEX_DIR))
        .map_err(|e| invalid(snapshot, e.to_string()))?;
    if manifest.generation == 0 {
        if !generations.is_empty() {
            return Err(invalid(
                snapshot,
                format!("manifest says no generation, found {generations:?}"),
            ));
        }
    } else {
        if generations != [manifest.generation] {
            return Err(invalid(
                snapshot,
                format!(
                    "manifest says generation {}, found {generations:?}",
                    manifest.generation
                ),
            ));
        }
        let gdir = snapshot
            .join(INDEX_DIR)
            .join(generation::dir_name(manifest.generation));
        let gm = generation::verify(&gdir).map_err(|e| invalid(snapshot, e.to_string()))?;
        if gm.generation != manifest.generation
            || gm.snapshot_seq != manifest.generation_snapshot_seq
        {
            return Err(invalid(
                &gdir,
                format!(
                    "generation manifest says id {} seq {}, snapshot says {} {}",
                    gm.generation,
                    gm.snapshot_seq,
                    manifest.generation,
                    manifest.generation_snapshot_seq
                ),
            ));
        }
        if gm.snapshot_seq > manifest.last_seq {
            return Err(invalid(
                &gdir,
                format!(
                    "generation covers seq {} beyond the store's {}",
                    gm.snapshot_seq, manifest.last_seq
                ),
            ));
        }
    }
    if !snapshot.join(STORE_DIR).join("CURRENT").is_file() {
        return Err(invalid(
            snapshot,
            "store/ is not a RocksDB checkpoint (no CURRENT)",
        ));
    }
    Ok(manifest)
}

/// Replaces `data_dir`'s store and index with a verified copy of `snapshot`.
///
/// Refuses a non-empty data directory unless `force`, and always refuses one whose store a
/// running server holds. The copy is staged inside the data directory (so the final renames
/// stay on one file system even when it is a mount point) under a marker file that stops a
/// server from opening a half-restored directory; the marker goes last.
pub fn restore(
    snapshot: &Path,
    data_dir: &Path,
    force: bool,
    expect_spaces: Option<&[SpaceSpec]>,
) -> SResult<RestoreReport> {
    let started = Instant::now();
    let manifest = verify(snapshot)?;
    if let Some(specs) = expect_spaces {
        if specs != manifest.spaces.as_slice() {
            return Err(invalid(
                snapshot,
                format!(
                    "its spaces {:?} differ from the config's {:?}",
                    manifest.spaces, specs
                ),
            ));
        }
    }
    let marker = data_dir.join(RESTORE_MARKER);
    let had_marker = marker.exists();
    match fs::read_dir(data_dir) {
        Ok(mut entries) => {
            let non_empty = entries.next().is_some();
            if had_marker && !force {
                return Err(SnapshotError::InterruptedRestore(data_dir.to_path_buf()));
            }
            if non_empty && !force {
                return Err(SnapshotError::DataDirNotEmpty(data_dir.to_path_buf()));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(SnapshotError::Io {
                path: data_dir.to_path_buf(),
                source: e,
            })
        }
    }
    let store = data_dir.join(STORE_DIR);
    if store_locked(&store).at(&store)? {
        return Err(SnapshotError::DataDirInUse(data_dir.to_path_buf()));
    }
    fs::create_dir_all(data_dir).at(data_dir)?;
    write_synced(
        &marker,
        b"mmsearch restore in progress; rerun it to finish\n",
    )
    .at(&marker)?;
    sync_dir(data_dir)?;

    let staging = data_dir.join(STAGING_DIR);
    let replaced = data_dir.join(REPLACED_DIR);
    if let Err(e) = stage(snapshot, &manifest, &staging, &replaced) {
        // Nothing of the data directory was touched yet: leave it as it was (including the
        // marker of an earlier interrupted restore).
        let _ = fs::remove_dir_all(&staging);
        if !had_marker {
            let _ = fs::remove_file(&marker);
        }
        return Err(e);
    }

    fs::create_dir(&replaced).at(&replaced)?;
    for name in [STORE_DIR, INDEX_DIR] {
        let current = data_dir.join(name);
        if current.exists() {
            fs::rename(&current, replaced.join(name)).at(&current)?;
        }
    }
    for name in [STORE_DIR, INDEX_DIR] {
        fs::rename(staging.join(name), data_dir.join(name)).at(&data_dir.join(name))?;
    }
    sync_dir(data_dir)?;
    fs::remove_file(&marker).at(&marker)?;
    sync_dir(data_dir)?;
    for leftover in [&staging, &replaced] {
        if let Err(e) = fs::remove_dir_all(leftover) {
            tracing::warn!(path = %leftover.display(), error = %e, "could not remove restore leftovers");
        }
    }
    Ok(RestoreReport {
        bytes: manifest.bytes(),
        manifest,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Copies the snapshot's files into `staging` and checks the copy. Copies, not links:
/// RocksDB may rewrite its MANIFEST/WAL files in the restored store, and the snapshot must stay
/// intact for the next restore.
fn stage(
    snapshot: &Path,
    manifest: &SnapshotManifest,
    staging: &Path,
    replaced: &Path,
) -> SResult<()> {
    for leftover in [staging, replaced] {
        if leftover.exists() {
            fs::remove_dir_all(leftover).at(leftover)?;
        }
    }
    fs::create_dir(staging).at(staging)?;
    for f in &manifest.files {
        let src = snapshot.join(&f.path);
        let dst = staging.join(&f.path);
        if let Some(parent) = dst.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        fs::copy(&src, &dst).at(&dst)?;
        let (bytes, crc32) = checksum(&dst, true).at(&dst)?;
        if bytes != f.bytes || crc32 != f.crc32 {
            return Err(SnapshotError::Io {
                path: dst,
                source: io::Error::other("copy does not match the snapshot"),
            });
        }
    }
    fs::create_dir_all(staging.join(INDEX_DIR)).at(staging)?;
    for dir in dirs_under(staging)? {
        sync_dir(&dir)?;
    }
    let last_seq = crate::store::last_seq_at(&staging.join(STORE_DIR))
        .map_err(|e| invalid(snapshot, format!("store checkpoint does not open: {e}")))?;
    if last_seq != manifest.last_seq {
        return Err(invalid(
            snapshot,
            format!(
                "store holds seq {last_seq}, manifest says {}",
                manifest.last_seq
            ),
        ));
    }
    Ok(())
}

fn dirs_under(root: &Path) -> SResult<Vec<PathBuf>> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let dir = out[i].clone();
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            if entry.file_type().at(&entry.path())?.is_dir() {
                out.push(entry.path());
            }
        }
        i += 1;
    }
    Ok(out)
}

/// Whether another process holds RocksDB's lock on `store` (RocksDB takes an fcntl write lock
/// on `store/LOCK` for as long as it has the database open).
fn store_locked(store: &Path) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let lock = store.join("LOCK");
    let file = match fs::OpenOptions::new().read(true).write(true).open(&lock) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    // SAFETY: `flock` is plain old data; F_GETLK only writes into the struct we pass, and the
    // descriptor is valid for the lifetime of `file`.
    let mut query: libc::flock = unsafe { std::mem::zeroed() };
    query.l_type = libc::F_WRLCK as libc::c_short;
    query.l_whence = libc::SEEK_SET as libc::c_short;
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut query) };
    if rc == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(query.l_type != libc::F_UNLCK as libc::c_short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare_target(target: &Path) -> SResult<PathBuf> {
        super::prepare_target(target, Path::new("/nonexistent-data-dir"))
    }

    #[test]
    fn target_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir_all(data.join("index")).unwrap();
        let inside = super::prepare_target(&data.join("index/../snap"), &data);
        assert!(matches!(inside, Err(SnapshotError::InsideDataDir(_))));
        assert!(matches!(
            super::prepare_target(&data.join("new/deeper"), &data),
            Err(SnapshotError::InsideDataDir(_))
        ));
        assert!(matches!(
            prepare_target(Path::new("relative/snap")),
            Err(SnapshotError::BadTarget(_))
        ));
        let full = tmp.path().join("full");
        fs::create_dir(&full).unwrap();
        fs::write(full.join("x"), b"x").unwrap();
        assert!(matches!(
            prepare_target(&full),
            Err(SnapshotError::TargetExists(_))
        ));
        let file = tmp.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(matches!(
            prepare_target(&file),
            Err(SnapshotError::TargetExists(_))
        ));
        // Under a regular file: the parent cannot be created.
        match prepare_target(&file.join("snap")) {
            Err(SnapshotError::Target { source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::NotADirectory)
            }
            other => panic!(
                "expected a target error, got {:?}",
                other.map(|p| p.display().to_string())
            ),
        }
        let empty = tmp.path().join("a/b/empty");
        let made = prepare_target(&empty).unwrap();
        assert_eq!(made, tmp.path().join("a/b/.empty.tmp"));
        assert!(matches!(
            prepare_target(&empty),
            Err(SnapshotError::TmpExists(_))
        ));
    }

    #[test]
    fn names() {
        for good in [
            "s1",
            "nightly-2026.11.28",
            "A_b-c.d",
            "x".repeat(MAX_NAME_LEN).as_str(),
        ] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            ".hidden",
            ".",
            "..",
            "a..b",
            "a/b",
            "/abs",
            "a\\b",
            "sp ace",
            "é",
            "a\0",
            "x".repeat(MAX_NAME_LEN + 1).as_str(),
        ] {
            assert!(
                matches!(check_name(bad), Err(SnapshotError::BadName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(1_700_000_000), "20231114T221320Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(4_102_444_799), "20991231T235959Z");
    }

    #[test]
    fn inside_follows_what_exists_and_reads_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        // Neither exists yet.
        assert!(is_inside(&data.join("snaps"), &data));
        assert!(is_inside(&data, &data));
        assert!(!is_inside(&tmp.path().join("snapshots"), &data));
        assert!(!is_inside(&data.join("../snapshots"), &data));
        assert!(is_inside(&data.join("x/../../data/y"), &data));
        // A symlink into the data directory counts as inside.
        fs::create_dir(&data).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&data, &link).unwrap();
        assert!(is_inside(&link.join("snaps"), &data));
    }
}
