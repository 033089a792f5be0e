//! Server configuration: a TOML file, overridden by environment variables and flags
//! (clap handles `MMSEARCH_*` variables and flags together; a flag wins over its variable).

use mmsearch_index::{HnswParams, Metric, SpaceSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Holds `store/` (RocksDB) and `index/` (generations).
    pub data_dir: PathBuf,
    /// Where `AdminService/Snapshot` writes (clients only name snapshots). Must be outside the
    /// data directory; default `snapshots` beside it. See `snapshot_root`.
    pub snapshot_dir: Option<PathBuf>,
    pub listen: String,
    pub spaces: Vec<SpaceConfig>,
    pub index: IndexConfig,
    pub limits: Limits,
    pub ingest: IngestConfig,
    pub fusion: crate::fuse::FusionConfig,
    /// Serve vector and item queries only, without loading models (`--no-models`).
    pub no_models: bool,
    pub encode: crate::encode::EncodeConfig,
    /// API keys and roles; on unless disabled explicitly.
    pub auth: crate::api::auth::AuthConfig,
    /// TLS on the gRPC port; plaintext when absent.
    pub tls: Option<crate::api::tls::TlsConfig>,
    /// Address of the operations HTTP port (`/metrics`, `/healthz`, `/readyz`); empty = off.
    pub metrics_listen: String,
    /// After SIGTERM, how long in-flight requests may take before the server exits anyway.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceConfig {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// HNSW links per node per layer (hnswlib's M).
    pub m: usize,
    pub ef_construction: usize,
    /// Default search beam width; a request may raise it.
    pub ef_search: usize,
    /// Spaces with fewer vectors than this get no graph: an exact scan is faster.
    pub min_graph_size: usize,
    /// Mutable-layer size (per space) that starts a background rebuild.
    pub max_fresh: usize,
    /// A filter matching at most this many items is answered by an exact scan.
    pub exact_scan_threshold: usize,
    /// Complete generations kept on disk (the one in use is always kept).
    pub keep_generations: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_top_k: u32,
    /// offset + top_k may not exceed this.
    pub max_window: u32,
    /// Largest gRPC message accepted (bytes); larger ones get RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Server-side cap on any request's deadline (ms); a client's shorter grpc-timeout wins.
    pub request_timeout_ms: u64,
    pub max_text_chars: usize,
    pub max_delete_ids: usize,
    /// Largest search beam a request may ask for: the beam is allocated up front (and widened
    /// up to 8× when tombstones crowd it), so an unchecked `ef` is a memory request.
    pub max_ef: u32,
    /// Requests in flight and queued per service (search, ingest, admin).
    pub concurrency: crate::api::admission::ConcurrencyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Items written (and WAL-synced) together when a stream has them ready.
    pub group_commit_max: usize,
    /// Dynamic batching of encoder calls across concurrent ingest streams.
    pub batch: crate::encode::batcher::BatcherConfig,
}


impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            snapshot_dir: None,
            listen: "127.0.0.1:50051".into(),
            spaces: vec![
                SpaceConfig { name: "shared".into(), dim: 384, metric: Metric::Cosine },
                SpaceConfig { name: "visual".into(), dim: 1280, metric: Metric::Cosine },
            ],
            index: IndexConfig::default(),
            limits: Limits::default(),
            ingest: IngestConfig::default(),
            fusion: crate::fuse::FusionConfig::default(),
            no_models: false,
            encode: crate::encode::EncodeConfig::default(),
            auth: Default::default(),
            tls: None,
            metrics_listen: String::new(),
            shutdown_grace_ms: 30_000,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
            min_graph_size: 256,
            max_fresh: 50_000,
            exact_scan_threshold: 2_000,
            keep_generations: 2,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_top_k: 1000,
            max_window: 10_000,
            max_message_bytes: 32 * 1024 * 1024,
            request_timeout_ms: 30_000,
            max_text_chars: 2_000,
            max_delete_ids: 10_000,
            max_ef: 10_000,
            concurrency: Default::default(),
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { group_commit_max: 256, batch: Default::default() }
    }
}


#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else { return Ok(Config::default()) };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// Everything a server checks before it starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_spaces()?;
        self.validate_serving()
    }

    /// The vector spaces: what a data directory (or a snapshot of one) must agree with.
    pub fn validate_spaces(&self) -> Result<(), ConfigError> {
        if self.spaces.is_empty() {
            return Err(ConfigError::Invalid("at least one [[spaces]] entry is required".into()));
        }
        let mut names = std::collections::HashSet::new();
        for s in &self.spaces {
            if s.dim == 0 || s.dim > 65_536 {
                return Err(ConfigError::Invalid(format!("space {}: dim must be 1..=65536", s.name)));
            }
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                return Err(ConfigError::Invalid(format!("space name {:?}: use [A-Za-z0-9_-]", s.name)));
            }
            if !names.insert(&s.name) {
                return Err(ConfigError::Invalid(format!("space {} defined twice", s.name)));
            }
        }
        Ok(())
    }

    fn validate_serving(&self) -> Result<(), ConfigError> {
        self.hnsw_params().validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if self.limits.max_top_k == 0 || self.limits.max_window < self.limits.max_top_k {
            return Err(ConfigError::Invalid("limits: need 0 < max_top_k <= max_window".into()));
        }
        self.auth.validate().map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.limits.concurrency.validate().map_err(ConfigError::Invalid)?;
        if self.ingest.group_commit_max == 0 {
            return Err(ConfigError::Invalid("ingest.group_commit_max must be > 0".into()));
        }
        // A snapshot in the data directory would share its fate, and a restore replaces what
        // is there.
        let snapshots = self.snapshot_root();
        if crate::collection::snapshot::is_inside(&snapshots, &self.data_dir) {
            return Err(ConfigError::Invalid(format!(
                "snapshot_dir {} is inside data_dir {}; put it beside the data directory",
                snapshots.display(),
                self.data_dir.display()
            )));
        }
        Ok(())
    }

    pub fn space_specs(&self) -> Vec<SpaceSpec> {
        self.spaces.iter().map(|s| SpaceSpec { name: s.name.clone(), dim: s.dim, metric: s.metric }).collect()
    }

    pub fn hnsw_params(&self) -> HnswParams {
        HnswParams { m: self.index.m, ef_construction: self.index.ef_construction, max_layer: 16 }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.data_dir.join("index")
    }

    /// The snapshot directory: `snapshot_dir`, or `snapshots` beside the data directory
    /// (`<data_dir>/../snapshots`). Absolute, because it is reported to clients and a relative
    /// path would mean whatever the server's working directory is.
    pub fn snapshot_root(&self) -> PathBuf {
        let root = match &self.snapshot_dir {
            Some(dir) => dir.clone(),
            None if self.data_dir.file_name().is_some() => self.data_dir.with_file_name("snapshots"),
            None => self.data_dir.join("..").join("snapshots"),
        };
        std::path::absolute(&root).unwrap_or(root)
    }
}
