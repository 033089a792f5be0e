//! The configuration file: a TOML file, overridden by environment variables and flags (clap
//! handles `MMSEARCH_*` variables and flags together; a flag wins over its variable).
//!
//! This module only gathers the sections each component owns and hands each its own:
//! [`Config::engine`] and [`Config::server`]. Nothing below the CLI reads it.

use crate::collection::{IndexConfig, LexicalConfig, MemoryConfig, StoreConfig};
use crate::encode::EncodeConfig;
use crate::engine::EngineConfig;
use crate::fusion::FusionConfig;
use crate::pipeline::{IngestConfig, QueryLimits, SpaceConfig};
use crate::recommend::RecommendConfig;
use crate::server::auth::AuthConfig;
use crate::server::runtime::RuntimeConfig;
use crate::server::tls::TlsConfig;
use crate::server::web::WebConfig;
use crate::server::{ServerConfig, ServerLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// Where `AdminService/Snapshot` writes (clients only name snapshots). Must be outside the
    /// data directory; default `snapshots` beside it.
    pub snapshot_dir: Option<PathBuf>,
    pub listen: String,
    pub spaces: Vec<SpaceConfig>,
    pub index: IndexConfig,
    /// RocksDB's memory.
    pub store: StoreConfig,
    /// The process's memory budget.
    pub memory: MemoryConfig,
    pub limits: Limits,
    pub ingest: IngestConfig,
    pub fusion: FusionConfig,
    /// Recommendation: behaviour weights, model, blend, retention.
    pub recommend: RecommendConfig,
    /// Lexical (BM25) matching: typo tolerance, title boost, snippets.
    pub lexical: LexicalConfig,
    pub no_models: bool,
    pub encode: EncodeConfig,
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
    pub metrics_listen: String,
    pub shutdown_grace_ms: u64,
    /// Threads: tokio's workers and blocking pool.
    pub runtime: RuntimeConfig,
    /// The web pages and browser access (CORS origins).
    pub web: WebConfig,
}

/// `[limits]`: the request limits the pipelines check and the transport's limits, in one
/// section of the file as users know it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Limits {
    #[serde(flatten)]
    pub query: QueryLimits,
    #[serde(flatten)]
    pub server: ServerLimits,
    /// Keys neither part knows: refused by [`Config::validate`] (flattened sections cannot
    /// use `deny_unknown_fields`).
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, toml::Value>,
}

impl Default for Config {
    fn default() -> Self {
        let engine = EngineConfig::default();
        let server = ServerConfig::default();
        Config {
            data_dir: engine.data_dir,
            snapshot_dir: engine.snapshot_dir,
            listen: server.listen,
            spaces: engine.spaces,
            index: engine.index,
            store: engine.store,
            memory: engine.memory,
            limits: Limits {
                query: engine.limits,
                server: server.limits,
                unknown: BTreeMap::new(),
            },
            ingest: engine.ingest,
            fusion: engine.fusion,
            recommend: engine.recommend,
            lexical: engine.lexical,
            no_models: engine.no_models,
            encode: engine.encode,
            auth: server.auth,
            tls: server.tls,
            metrics_listen: server.metrics_listen,
            shutdown_grace_ms: server.shutdown_grace_ms,
            runtime: server.runtime,
            web: server.web,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Everything a server checks before it starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = self.limits.unknown.keys().next() {
            return Err(ConfigError::Invalid(format!("unknown key limits.{key}")));
        }
        self.engine()
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.server().validate().map_err(ConfigError::Invalid)
    }

    /// The vector spaces alone: what a data directory (or a snapshot of one) must agree with.
    pub fn validate_spaces(&self) -> Result<(), ConfigError> {
        crate::pipeline::spaces::validate(&self.spaces).map_err(ConfigError::Invalid)
    }

    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            data_dir: self.data_dir.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            spaces: self.spaces.clone(),
            index: self.index.clone(),
            store: self.store.clone(),
            memory: self.memory.clone(),
            ingest: self.ingest.clone(),
            fusion: self.fusion.clone(),
            lexical: self.lexical.clone(),
            encode: self.encode.clone(),
            no_models: self.no_models,
            limits: self.limits.query.clone(),
            allow_model_change: false,
            recommend: self.recommend.clone(),
        }
    }

    pub fn server(&self) -> ServerConfig {
        ServerConfig {
            listen: self.listen.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            metrics_listen: self.metrics_listen.clone(),
            shutdown_grace_ms: self.shutdown_grace_ms,
            limits: self.limits.server.clone(),
            runtime: self.runtime.clone(),
            web: self.web.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_split_between_pipeline_and_server() {
        let text = "[auth]\nenabled = false\n[limits]\nmax_top_k = 5\nmax_message_bytes = 1000\nmax_ef = 300\n\
                    [limits.concurrency]\nsearch = { max_in_flight = 3, max_queued = 9 }\n";
        let c: Config = toml::from_str(text).expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.engine().limits.max_top_k, 5);
        assert_eq!(
            c.engine().limits.max_window,
            QueryLimits::default().max_window
        );
        assert_eq!(c.server().limits.max_message_bytes, 1000);
        assert_eq!(c.server().limits.concurrency.search.max_in_flight, 3);
        // max_ef is a request limit and the planner's cap
        assert_eq!(c.engine().collection().planner.max_ef, 300);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let c: Config = toml::from_str("[limits]\nmax_topk = 5\n").expect("parse");
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("limits.max_topk"), "{e}");
        assert!(toml::from_str::<Config>("[index]\nefsearch = 5\n").is_err());
        assert!(toml::from_str::<Config>("bogus = 1\n").is_err());
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/mmsearch.example.toml");
        let c = Config::load(Some(&path)).expect("load");
        let mut c = c.clone();
        c.auth.enabled = false;
        c.validate().expect("valid");
    }
}
