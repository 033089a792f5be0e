//! The engine: one value that opens the store, recovers the index, loads the encoders and
//! wires the collection, searcher and ingester. The server, the tools and the tests all start
//! mmsearch through [`Engine::open`], so what they run is the same thing.

use crate::collection::{
    Collection, CollectionConfig, CollectionError, IndexConfig, LexicalConfig, MemoryConfig,
    ModelRef, SnapshotInfo, Stats, StoreConfig,
};
use crate::encode::{EncodeConfig, EncodeError, EncodeObserver, Encoders, Modality, ModelInfo};
use crate::fusion::FusionConfig;
use crate::pipeline::reembed::ReembedReport;
use crate::pipeline::spaces::{self, Roles, SpaceConfig, SpaceRole};
use crate::pipeline::{IngestConfig, Ingester, QueryLimits, Recommender, Searcher};
use crate::recommend::RecommendConfig;
use crate::telemetry::http::{StateGauges, StateSource};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Everything the engine needs (the CLI assembles it from the config file's sections).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Holds `store/` (RocksDB) and `index/` (generations).
    pub data_dir: PathBuf,
    /// Where snapshots are written (clients only name them); `None`: `snapshots` beside the
    /// data directory. Must be outside it.
    pub snapshot_dir: Option<PathBuf>,
    pub spaces: Vec<SpaceConfig>,
    pub index: IndexConfig,
    /// RocksDB's memory (`[store]`).
    pub store: StoreConfig,
    /// The process's memory budget (`[memory]`).
    pub memory: MemoryConfig,
    pub ingest: IngestConfig,
    pub fusion: FusionConfig,
    /// How text is matched lexically (`[lexical]`).
    pub lexical: LexicalConfig,
    pub encode: EncodeConfig,
    /// Serve vector and item queries only, without loading models.
    pub no_models: bool,
    pub limits: QueryLimits,
    /// Open a data directory whose vectors other models made, instead of refusing; only for
    /// re-encoding it ([`Engine::reembed`]).
    pub allow_model_change: bool,
    /// `[recommend]`: behaviour weights, the collaborative model, the blend.
    pub recommend: RecommendConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: PathBuf::from("data"),
            snapshot_dir: None,
            spaces: spaces::default_spaces(),
            index: IndexConfig::default(),
            store: StoreConfig::default(),
            memory: MemoryConfig::default(),
            ingest: IngestConfig::default(),
            fusion: FusionConfig::default(),
            lexical: LexicalConfig::default(),
            encode: EncodeConfig::default(),
            no_models: false,
            limits: QueryLimits::default(),
            allow_model_change: false,
            recommend: RecommendConfig::default(),
        }
    }
}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), EngineError> {
        let invalid = EngineError::Config;
        spaces::validate(&self.spaces).map_err(invalid)?;
        // With the request limit the planner will get, not a default one.
        self.index
            .validate(self.limits.max_ef as usize)
            .map_err(invalid)?;
        self.store.validate().map_err(invalid)?;
        self.memory.validate().map_err(invalid)?;
        if let Some(limit) = self.memory.effective_limit() {
            // RocksDB's caches fill up to their caps whatever the writes do; they must leave
            // room for everything else.
            let rocksdb = self.store.block_cache_bytes + self.store.memtable_budget_bytes;
            if rocksdb as f64 > limit as f64 * 0.5 {
                return Err(invalid(format!(
                    "store.block_cache_bytes + store.memtable_budget_bytes ({} MiB) exceed half of the memory limit ({} MiB)",
                    rocksdb >> 20,
                    limit >> 20
                )));
            }
        }
        self.limits.validate().map_err(invalid)?;
        self.fusion.validate().map_err(invalid)?;
        self.recommend.validate().map_err(invalid)?;
        self.lexical.validate().map_err(invalid)?;
        if self.ingest.group_commit_max == 0 {
            return Err(invalid("ingest.group_commit_max must be > 0".into()));
        }
        // A snapshot in the data directory would share its fate, and a restore replaces what
        // is there.
        let snapshots = self.snapshot_root();
        if crate::collection::snapshot::is_inside(&snapshots, &self.data_dir) {
            return Err(invalid(format!(
                "snapshot_dir {} is inside data_dir {}; put it beside the data directory",
                snapshots.display(),
                self.data_dir.display()
            )));
        }
        Ok(())
    }

    /// The snapshot directory: `snapshot_dir`, or `snapshots` beside the data directory
    /// (`<data_dir>/../snapshots`). Absolute, because it is reported to clients and a relative
    /// path would mean whatever the server's working directory is.
    pub fn snapshot_root(&self) -> PathBuf {
        let root = match &self.snapshot_dir {
            Some(dir) => dir.clone(),
            None if self.data_dir.file_name().is_some() => {
                self.data_dir.with_file_name("snapshots")
            }
            None => self.data_dir.join("..").join("snapshots"),
        };
        std::path::absolute(&root).unwrap_or(root)
    }

    pub fn collection(&self) -> CollectionConfig {
        CollectionConfig {
            data_dir: self.data_dir.clone(),
            snapshot_root: self.snapshot_root(),
            spaces: self.spaces.iter().map(SpaceConfig::spec).collect(),
            index: self.index.clone(),
            planner: self.index.planner(self.limits.max_ef as usize),
            store: self.store.clone(),
            memory: self.memory.clone(),
            lexical: self.lexical.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid config: {0}")]
    Config(String),
    #[error("loading models (run models/setup.sh, or serve with --no-models for vector-only search): {0}")]
    Models(#[from] EncodeError),
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error("engine task failed: {0}")]
    Task(String),
    #[error(
        "data directory {data_dir} holds vectors made by [{stored}], but the configured models are [{loaded}]; \
         vectors of different models cannot be compared. Re-encode the catalogue once with \
         `mmsearch admin reembed --config <this config>` (offline; then start the server), or serve \
         with the models that made them (encode.set / encode.text_model)"
    )]
    ModelsChanged {
        data_dir: String,
        stored: String,
        loaded: String,
    },
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

pub struct Engine {
    collection: Arc<Collection>,
    encoders: Option<Arc<Encoders>>,
    searcher: Searcher,
    ingester: Ingester,
    recommender: Arc<Recommender>,
    roles: Roles,
    config: EngineConfig,
    started: Instant,
}

impl Engine {
    /// Loads the configured models, unless `no_models` (blocking: seconds). The encoders report
    /// decode times and batch sizes to the process's metrics.
    pub fn load_encoders(config: &EngineConfig) -> Result<Option<Arc<Encoders>>, EngineError> {
        if config.no_models {
            return Ok(None);
        }
        let enc = Encoders::load_with(&config.encode, Arc::new(EncodeMetrics))?;
        for m in enc.models() {
            tracing::info!(id = %m.id, kind = ?m.kind, provider = ?m.provider_in_use, dim = m.dim, "model loaded");
        }
        Ok(Some(Arc::new(enc)))
    }

    /// Opens the collection and wires the pipelines around `encoders` (already loaded, so a
    /// process can share one set between engines). Must run inside a tokio runtime.
    pub async fn open(
        config: EngineConfig,
        encoders: Option<Arc<Encoders>>,
    ) -> Result<Engine, EngineError> {
        config.validate()?;
        let roles = Roles::bind(&config.spaces);
        if let Some(enc) = &encoders {
            check_dims(&roles, enc)?;
        }
        let collection_config = config.collection();
        let collection = tokio::task::spawn_blocking(move || Collection::open(collection_config))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??;
        if let Some(enc) = &encoders {
            check_vector_models(&collection, enc, &config)?;
        }
        let mut searcher = Searcher::new(
            collection.clone(),
            encoders.clone(),
            roles.clone(),
            config.limits.clone(),
            config.fusion.image_query_alpha,
            config.fusion.hybrid(),
        )
        .with_video_weights(config.fusion.video_weights());
        if let Some(enc) = encoders
            .as_ref()
            .filter(|_| config.encode.query_batch.max_batch > 0)
        {
            searcher = searcher.with_query_batcher(crate::encode::batcher::QueryBatcher::spawn(
                enc.clone(),
                &config.encode.query_batch,
            ));
        }
        let ingester = Ingester::new(
            collection.clone(),
            encoders.clone(),
            roles.clone(),
            config.fusion.clone(),
            &config.ingest.batch,
        );
        // Models are loaded and the generation mapped: what writes do not grow is known now.
        collection.set_memory_baseline(crate::telemetry::rss_bytes());
        if let Some(limit) = collection.memory_use().limit {
            let m = collection.memory_use();
            tracing::info!(
                limit_mib = limit >> 20,
                accounted_mib = m.accounted() >> 20,
                baseline_mib = m.baseline >> 20,
                "memory budget"
            );
        }
        let (c, e, r, rc, dir) = (
            collection.clone(),
            encoders.clone(),
            roles.clone(),
            config.recommend.clone(),
            config.data_dir.join("recommend"),
        );
        let recommender = Arc::new(
            tokio::task::spawn_blocking(move || Recommender::open(c, e, r, rc, dir))
                .await
                .map_err(|e| EngineError::Task(e.to_string()))?,
        );
        spawn_retraining(&recommender);
        Ok(Engine {
            collection,
            encoders,
            searcher,
            ingester,
            recommender,
            roles,
            config,
            started: Instant::now(),
        })
    }

    /// [`Self::load_encoders`] then [`Self::open`].
    pub async fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        let cfg = config.clone();
        let encoders = tokio::task::spawn_blocking(move || Engine::load_encoders(&cfg))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))??;
        Engine::open(config, encoders).await
    }

    pub fn searcher(&self) -> &Searcher {
        &self.searcher
    }

    pub fn ingester(&self) -> &Ingester {
        &self.ingester
    }

    pub fn recommender(&self) -> &Arc<Recommender> {
        &self.recommender
    }

    pub fn collection(&self) -> &Arc<Collection> {
        &self.collection
    }

    pub fn encoders(&self) -> Option<&Arc<Encoders>> {
        self.encoders.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn roles(&self) -> &Roles {
        &self.roles
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    pub fn models(&self) -> Vec<ModelInfo> {
        self.encoders
            .as_ref()
            .map(|e| e.models())
            .unwrap_or_default()
    }

    /// Collection statistics (blocking: walks the catalogue).
    pub fn stats(&self) -> Stats {
        self.collection.stats()
    }

    /// A consistent snapshot of the data under the snapshot directory, named `name` (or a
    /// generated name), recording the models the vectors were made with (blocking).
    pub fn snapshot(&self, name: Option<&str>) -> Result<SnapshotInfo, CollectionError> {
        let models = self
            .models()
            .into_iter()
            .map(|m| ModelRef {
                id: m.id,
                kind: m.kind.as_str().to_string(),
            })
            .collect();
        self.collection.snapshot(name, models)
    }

    /// Re-encodes every stored item with the loaded models (after a model-set switch, on an
    /// engine opened with `allow_model_change`), then records them as the data directory's
    /// models, unless some item could not be re-encoded (then, as while it runs, the directory is
    /// marked unfinished and every server refuses it until a reembed completes). `progress(done, total)` after each group.
    /// The caller rebuilds the index afterwards so the graph holds only the new vectors.
    pub async fn reembed(
        &self,
        progress: impl FnMut(usize, usize),
    ) -> Result<ReembedReport, EngineError> {
        let enc = self
            .encoders
            .as_ref()
            .ok_or_else(|| EngineError::Config("re-encoding needs the models loaded".into()))?;
        let loaded = enc.vector_models();
        // Until every item is re-encoded the directory holds vectors of both sets; recording that
        // makes every server refuse it (and points at reembed) should this run stop half-way.
        self.collection
            .set_vector_models(&format!("{loaded}, re-encoding unfinished"))?;
        let report = crate::pipeline::reembed::reembed(
            &self.collection,
            &self.ingester,
            &self.roles,
            progress,
        )
        .await?;
        if report.rejected.is_empty() {
            self.collection.set_vector_models(&loaded)?;
        }
        Ok(report)
    }

    /// Persists everything in memory (clean shutdown; blocking).
    pub fn flush(&self) -> Result<(), CollectionError> {
        self.collection.flush()
    }
}

impl StateSource for Engine {
    fn state(&self) -> StateGauges {
        let s = self.collection.stats();
        let m = self.collection.memory_use();
        StateGauges {
            items: s.items as u64,
            generation: s.generation,
            layers: s
                .spaces
                .iter()
                .map(|x| {
                    (
                        x.spec.name.clone(),
                        x.base_vectors as u64,
                        x.fresh_vectors as u64,
                        x.tombstones as u64,
                    )
                })
                .collect(),
            memory: vec![
                ("rocksdb_block_cache", s.store_memory.block_cache),
                ("rocksdb_memtables", s.store_memory.memtables_total()),
                ("rocksdb_table_readers", s.store_memory.table_readers),
                ("rocksdb_pinned_blocks", s.store_memory.block_cache_pinned),
                ("mutable_layers", m.mutable_layers),
                ("catalogue", m.catalogue),
                ("rebuild_reserve", m.rebuild_reserve),
                ("baseline", m.baseline),
                ("accounted", m.accounted()),
                ("limit", m.limit.unwrap_or(0)),
            ],
            mapped_bytes: s.mapped_bytes as u64,
            rebuild_running: s.rebuilding,
            rebuild_progress: self
                .collection
                .rebuild_progress()
                .map(|p| (p.done, p.total)),
        }
    }
}

/// Retrains the recommendation model (and applies the retention period) every
/// `retrain_every_secs`, when set. The task holds only a weak reference: it ends with the engine.
fn spawn_retraining(recommender: &Arc<Recommender>) {
    let every = recommender.config().retrain_every_secs;
    if every == 0 {
        return;
    }
    let weak = Arc::downgrade(recommender);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(r) = weak.upgrade() else { return };
            let outcome = tokio::task::spawn_blocking(move || r.train(|_| {})).await;
            if let Ok(Err(e)) = outcome {
                tracing::warn!(error = %e, "periodic retraining failed");
            }
        }
    });
}

/// What the encoders report, into the process's metrics: decode times as
/// `stage_duration_seconds{stage="decode"}` (every modality), batch sizes as
/// `encode_batch_size{modality}`. The engine is where encoders and telemetry meet, so neither
/// knows the other.
struct EncodeMetrics;

impl EncodeObserver for EncodeMetrics {
    fn decoded(&self, _modality: Modality, elapsed: std::time::Duration) {
        crate::telemetry::observe_stage("decode", elapsed);
    }

    fn batched(&self, modality: Modality, items: usize) {
        crate::telemetry::observe_encode_batch(modality.as_str(), items);
    }
}

/// Vectors remember the models that made them: a data directory written by other models is
/// refused (unless re-encoding), one that never recorded them records the loaded ones.
fn check_vector_models(
    collection: &Collection,
    enc: &Encoders,
    config: &EngineConfig,
) -> Result<(), EngineError> {
    let loaded = enc.vector_models();
    match collection.vector_models()? {
        Some(stored) if stored == loaded => Ok(()),
        Some(_) if config.allow_model_change => Ok(()),
        Some(stored) => Err(EngineError::ModelsChanged {
            data_dir: config.data_dir.display().to_string(),
            stored,
            loaded,
        }),
        None => {
            if collection.stats().items > 0 {
                tracing::warn!(models = %loaded, "data directory did not record its models (written by an older version); assuming the loaded ones made its vectors");
            }
            Ok(collection.set_vector_models(&loaded)?)
        }
    }
}

/// The role spaces must have the widths the models produce.
fn check_dims(roles: &Roles, enc: &Encoders) -> Result<(), EngineError> {
    let produced = [
        (SpaceRole::Text, Some(enc.shared_dim())),
        (SpaceRole::Visual, enc.visual_dim()),
    ];
    for (role, dim) in produced {
        if let (Some(space), Some(d)) = (roles.get(role), dim) {
            if space.dim != d {
                return Err(EngineError::Config(format!(
                    "space {} (role {}) is configured with dim {} but the models produce {d}",
                    space.name,
                    role.as_str(),
                    space.dim
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_root_defaults_beside_the_data_directory() {
        let with = |data: &str, snaps: Option<&str>| EngineConfig {
            data_dir: data.into(),
            snapshot_dir: snaps.map(PathBuf::from),
            ..EngineConfig::default()
        };
        assert_eq!(
            with("/srv/mms/data", None).snapshot_root(),
            Path::new("/srv/mms/snapshots")
        );
        assert_eq!(
            with("/srv/mms/data/", None).snapshot_root(),
            Path::new("/srv/mms/snapshots")
        );
        assert_eq!(
            with("/srv/mms/data", Some("/backups/mms")).snapshot_root(),
            Path::new("/backups/mms")
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(with("data", None).snapshot_root(), cwd.join("snapshots"));
        assert_eq!(
            with("/srv/mms/data", Some("snaps")).snapshot_root(),
            cwd.join("snaps")
        );
        assert!(with("/srv/mms/data", None).validate().is_ok());
        let inside = with("/srv/mms/data", Some("/srv/mms/data/snapshots")).validate();
        assert!(matches!(inside, Err(EngineError::Config(m)) if m.contains("inside data_dir")));
    }

    #[test]
    fn the_planner_is_validated_with_the_request_limit_it_gets() {
        let mut c = EngineConfig {
            data_dir: "/srv/mms/data".into(),
            ..EngineConfig::default()
        };
        assert!(c.validate().is_ok());
        assert_eq!(c.collection().planner.max_ef, c.limits.max_ef as usize);
        c.limits.max_ef = 30; // below index.ef_search (64)
        assert!(matches!(c.validate(), Err(EngineError::Config(m)) if m.contains("max_ef")));
    }

    #[test]
    fn encoder_reports_become_metrics() {
        EncodeMetrics.decoded(Modality::Image, std::time::Duration::from_millis(2));
        EncodeMetrics.batched(Modality::Text, 3);
        let text = crate::telemetry::render();
        assert!(
            text.contains("mmsearch_stage_duration_seconds_bucket{stage=\"decode\""),
            "{text}"
        );
        assert!(
            text.contains("mmsearch_encode_batch_size_bucket{modality=\"text\""),
            "{text}"
        );
    }
}
