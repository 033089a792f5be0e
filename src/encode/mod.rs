//! Encoders: text, image and voice → vectors (issue #3, Rust side).
//!
//! Everything here is **blocking** CPU/GPU work; async callers wrap calls in
//! `tokio::task::spawn_blocking`, or submit single items through [`batcher::EncodeBatcher`].
//!
//! Two kinds of vectors come out of this module (which index or space the caller stores them in is
//! not its business):
//! * **shared** — the text tower's output. Text queries, item titles and (through the ConSE bridge,
//!   or directly for a CLIP image tower) photos all land here, so text↔image search is a cosine.
//! * **visual** — the image classifier's pooled features (unit-normalised), for image→image
//!   "more like this"; absent with a CLIP image tower.
//!
//! Nor does it record metrics: decode times and batch sizes go to the [`EncodeObserver`] given to
//! [`Encoders::load_with`] (none with [`Encoders::load`]).
//!
//! Model files are described by `model.toml` manifests (see `models/MANIFEST.md`), one directory
//! per model under [`EncodeConfig::model_dir`].

pub mod audio;
pub mod batcher;
pub mod bridge;
pub mod clip;
pub mod error;
pub mod image;
pub mod manifest;
pub mod observe;
pub mod runtime;
pub mod text;
pub mod video;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use audio::Transcript;
pub use bridge::BridgeConfig;
pub use error::EncodeError;
pub use manifest::ModelKind;
pub use observe::{EncodeObserver, Modality, NoopObserver};
pub use runtime::Provider;

use audio::SpeechEncoder;
use bridge::Bridge;
use error::Result;
use image::ImageEncoder;
use manifest::Manifest;
use runtime::SessionOptions;
use text::TextEncoder;
pub use text::TextRole;
pub use video::VideoConfig;
use video::VideoDecoder;

/// Named sets of towers that share one vector space. Vectors made by one set mean nothing to
/// another, so the engine records which set wrote a data directory (see [`Encoders::vector_models`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelSet {
    /// all-MiniLM-L6-v2 (English) + EfficientNet-Lite0 through its ConSE bridge.
    #[default]
    Default,
    /// multilingual-e5-small (≈100 languages, `query: ` / `passage: ` prefixes) + the same image
    /// tower, with class prompts re-embedded by e5.
    Multilingual,
}

impl ModelSet {
    /// The text tower's directory under `model_dir`.
    pub fn text_model(self) -> &'static str {
        match self {
            ModelSet::Default => "text-minilm-l6-v2",
            ModelSet::Multilingual => "text-multilingual-e5-small",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ModelSet::Default => "default",
            ModelSet::Multilingual => "multilingual",
        }
    }
}

/// Trailing silence Whisper's encoder sees after a clip: the whole 30 s window by default.
/// Over the clip + 5 s, tiny.en answers 3.1× sooner and its word accuracy holds, but voice
/// retrieval on the espeak clips falls (BENCHMARKS.md, "Voice: Whisper over the clip").
const SPEECH_PAD_SECONDS: f32 = 30.0;

/// `[encode]` section of the server config. Every field has a default, so an empty section works
/// once `models/setup.sh` has run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeConfig {
    /// Root holding one directory per model (each with a `model.toml`).
    /// Default: `$MMSEARCH_MODELS`, else `$HOME/.cache/mmsearch/models`.
    pub model_dir: PathBuf,
    /// `libonnxruntime.so` to load. Default: `$ORT_DYLIB_PATH`, else
    /// `<model_dir>/onnxruntime/lib/libonnxruntime.so.*`.
    pub ort_dylib: Option<PathBuf>,
    /// `cpu` or `cuda`. CUDA that fails to initialise falls back to CPU with a warning;
    /// [`Encoders::models`] reports what is really in use.
    pub provider: Provider,
    /// ORT intra-op threads per session (0 = one per core).
    pub intra_threads: usize,
    /// Independent sessions per graph, i.e. how many requests one model serves in parallel.
    /// Each costs a copy of the weights.
    pub sessions_per_model: usize,
    /// Which towers to serve (`"default"` | `"multilingual"`); picks the text model unless
    /// `text_model` names one.
    pub set: ModelSet,
    /// Directory names under `model_dir`. `text_model` unset: the set's text tower.
    pub text_model: Option<String>,
    pub image_model: String,
    /// `None` (or `""`, since TOML has no null) disables voice queries
    /// ([`Encoders::transcribe`] → `ModelUnavailable`).
    pub speech_model: Option<String>,
    /// Overrides for the ConSE bridge (defaults come from the image model's manifest).
    pub bridge: BridgeConfig,
    /// Images with more pixels are rejected from their header (`TooLarge`).
    pub max_image_pixels: u64,
    /// Audio longer than this is rejected (`TooLarge`); capped at the model window (30 s).
    pub max_audio_seconds: f32,
    /// Whisper's encoder runs over the clip plus this much trailing silence instead of the
    /// 30 s window it was trained on (whisper.cpp's `audio_ctx`), when the model was exported
    /// to allow it (`min_frames` in its manifest). 30 = always the whole window.
    pub speech_pad_seconds: f32,
    /// Hash every model file against its manifest at load (~0.5 s for the default set).
    pub verify_checksums: bool,
    /// Decode large JPEGs at 1/2–1/8 scale in the DCT domain (several × faster, tiny drift).
    pub fast_jpeg: bool,
    /// Wrap text *queries* in the image model's `query_template` ("a photo of a {}") in
    /// [`Encoders::embed_queries`]. Item texts are never templated.
    pub query_template: bool,
    /// Video items and queries (`[encode.video]`): FFmpeg limits and the keyframe budget.
    pub video: VideoConfig,
    /// Batching of concurrent text queries (`[encode.query_batch]`); `max_wait_ms` 0 adds no
    /// latency: a batch is what queued while the previous one ran. `max_batch` 0: no batching,
    /// each query runs its own model call.
    pub query_batch: batcher::BatcherConfig,
}

impl EncodeConfig {
    /// The text tower's directory name: `text_model`, else the set's.
    pub fn text_model_dir(&self) -> String {
        self.text_model
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| self.set.text_model().to_string())
    }
}

/// `$MMSEARCH_MODELS`, else `$HOME/.cache/mmsearch/models`.
pub fn default_model_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("MMSEARCH_MODELS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/mmsearch/models")
}

impl Default for EncodeConfig {
    fn default() -> Self {
        Self {
            model_dir: default_model_dir(),
            ort_dylib: None,
            provider: Provider::Cpu,
            intra_threads: 0,
            sessions_per_model: 1,
            set: ModelSet::Default,
            text_model: None,
            image_model: "image-effnet-lite0".into(),
            speech_model: Some("whisper-tiny-en".into()),
            bridge: BridgeConfig::default(),
            max_image_pixels: 40_000_000,
            max_audio_seconds: 30.0,
            speech_pad_seconds: SPEECH_PAD_SECONDS,
            verify_checksums: true,
            fast_jpeg: true,
            query_template: true,
            video: VideoConfig::default(),
            query_batch: batcher::BatcherConfig {
                max_batch: 32,
                max_wait_ms: 0,
                queue: 1024,
            },
        }
    }
}

/// Vectors for one photo.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageVectors {
    /// Unit vector in the shared (text) space: bridge(logits) or the CLIP image embedding.
    pub shared: Vec<f32>,
    /// Unit-normalised classifier features for image→image similarity; `None` for CLIP towers.
    pub visual: Option<Vec<f32>>,
}

/// Vectors for one video: its keyframes through the image tower, its soundtrack through Whisper.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoVectors {
    pub frames: Vec<ImageVectors>,
    /// What was said; `None` for a silent video, no audio stream, or no speech model.
    pub transcript: Option<Transcript>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub id: String,
    pub kind: ModelKind,
    /// Provider the sessions really run on (after any CUDA → CPU fallback).
    pub provider_in_use: Provider,
    /// Output width: shared dim for text/bridge/CLIP, features dim for the classifier, 0 for speech.
    pub dim: usize,
}

pub struct Encoders {
    text: TextEncoder,
    /// The text tower read only English in training (the default set's MiniLM).
    text_english_only: bool,
    image: ImageEncoder,
    bridge: Option<Bridge>,
    speech: Option<SpeechEncoder>,
    query_template: Option<String>,
    max_audio_seconds: f32,
    video: VideoDecoder,
    observer: Arc<dyn EncodeObserver>,
}

fn load_manifest(root: &Path, name: &str, verify: bool) -> Result<Manifest> {
    let dir = root.join(name);
    if !dir.join("model.toml").is_file() {
        let found = manifest::discover(root)
            .map(|m| m.into_keys().collect::<Vec<_>>())
            .unwrap_or_default();
        return Err(EncodeError::ModelUnavailable(format!(
            "no model.toml in {} (models found: {found:?}; run models/setup.sh)",
            dir.display()
        )));
    }
    Manifest::load(&dir, verify)
}

impl Encoders {
    /// Loads every configured model. Fails fast (`ModelUnavailable` / `Config`) if a file is
    /// missing, a checksum differs, or the towers' dimensions do not agree. Reports to no one
    /// (see [`Self::load_with`]).
    pub fn load(cfg: &EncodeConfig) -> Result<Self> {
        Self::load_with(cfg, Arc::new(NoopObserver))
    }

    /// [`Self::load`] with an observer that hears about decode times here and batch sizes in
    /// the [`batcher::EncodeBatcher`]s spawned on these encoders.
    pub fn load_with(cfg: &EncodeConfig, observer: Arc<dyn EncodeObserver>) -> Result<Self> {
        cfg.video.validate().map_err(EncodeError::Config)?;
        let env = runtime::environment(cfg.ort_dylib.as_deref(), &cfg.model_dir)?;
        let opts = SessionOptions {
            provider: cfg.provider,
            intra_threads: cfg.intra_threads,
            sessions: cfg.sessions_per_model.max(1),
        };
        let tm = load_manifest(&cfg.model_dir, &cfg.text_model_dir(), cfg.verify_checksums)?;
        let im = load_manifest(&cfg.model_dir, &cfg.image_model, cfg.verify_checksums)?;
        match (tm.kind, im.kind) {
            (ModelKind::Text, ModelKind::ImageClassifier) | (ModelKind::ClipText, ModelKind::ClipImage) => {}
            (t, i) => {
                return Err(EncodeError::Config(format!(
                    "text model {} ({t}) cannot be paired with image model {} ({i}): use text + image_classifier, or clip_text + clip_image",
                    tm.id, im.id
                )))
            }
        }
        let (bridge, query_template) = if im.kind == ModelKind::ImageClassifier {
            // Class prompts embedded by this text model for this classifier live in the text
            // model's manifest (the multilingual set); otherwise the classifier's own table,
            // which must have been embedded with this text model.
            let (b, prompts) = match tm.bridge.as_ref().filter(|b| b.image_model == im.id) {
                Some(b) => (b, tm.path(&b.class_prompts)),
                None => {
                    let b = im.bridge.as_ref().ok_or_else(|| {
                        EncodeError::Config(format!(
                            "{}: image_classifier manifest has no [bridge] table",
                            im.id
                        ))
                    })?;
                    if !b.text_model.is_empty() && b.text_model != tm.id {
                        return Err(EncodeError::Config(format!(
                            "{}'s class prompts were embedded with {}, but the text model is {} (and its manifest has no [bridge] for {})",
                            im.id, b.text_model, tm.id, im.id
                        )));
                    }
                    (b, im.path(&b.class_prompts))
                }
            };
            if b.dim != tm.dim {
                return Err(EncodeError::Config(format!(
                    "bridge dim {} ≠ text dim {}",
                    b.dim, tm.dim
                )));
            }
            let e = manifest::read_f32(&prompts, Some(b.classes * b.dim))?;
            let top_k = cfg.bridge.top_k.or(b.top_k).unwrap_or(20);
            let t = cfg.bridge.temperature.or(b.temperature).unwrap_or(2.0);
            let bridge = Bridge::new(e, b.classes, b.dim, top_k, t)?;
            let qt = if cfg.query_template {
                b.query_template.clone()
            } else {
                None
            };
            (Some(bridge), qt)
        } else {
            clip::check_pair(&tm, &im)?;
            (None, None)
        };
        let text = TextEncoder::load(&env, tm, &opts)?;
        let image = ImageEncoder::load(&env, im, &opts, cfg.max_image_pixels, cfg.fast_jpeg)?;
        let speech = match cfg.speech_model.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(name) => {
                let sm = load_manifest(&cfg.model_dir, name, cfg.verify_checksums)?;
                Some(SpeechEncoder::load(
                    &env,
                    sm,
                    &opts,
                    cfg.speech_pad_seconds,
                )?)
            }
            None => None,
        };
        let video = VideoDecoder::new(cfg.video.clone());
        Ok(Self {
            text,
            text_english_only: cfg.text_model_dir() == ModelSet::Default.text_model(),
            image,
            bridge,
            speech,
            query_template,
            max_audio_seconds: cfg.max_audio_seconds,
            video,
            observer,
        })
    }

    /// The observer given at load.
    pub fn observer(&self) -> &Arc<dyn EncodeObserver> {
        &self.observer
    }

    /// The share of `query`'s letters and digits in scripts the text tower was trained on: 1
    /// for a multilingual tower (or a query without letters); for the English-only one, the
    /// non-CJK share. Hybrid search weighs the vector list by it: an English-only tower maps a
    /// Chinese query near every item alike.
    pub fn text_readable_share(&self, query: &str) -> f32 {
        if !self.text_english_only {
            return 1.0;
        }
        let (mut all, mut cjk) = (0usize, 0usize);
        for c in query.chars().filter(|c| c.is_alphanumeric()) {
            all += 1;
            cjk += usize::from(crate::model::is_cjk(c));
        }
        if all == 0 {
            1.0
        } else {
            1.0 - cjk as f32 / all as f32
        }
    }

    /// Item texts (titles, descriptions) → unit vectors in the shared space. Any empty text fails
    /// the whole call with `InvalidInput`.
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.text.embed(texts, TextRole::Passage)
    }

    /// Search queries → shared space. Same as [`Self::embed_texts`] except that the text model's
    /// query prefix is used instead of its passage prefix (e5), and, with the bridge, the query is
    /// first wrapped in the manifest's `query_template` ("a photo of a {}"), which is how the class
    /// prompts on the image side were phrased (the reference measured a small gain).
    pub fn embed_queries(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match &self.query_template {
            Some(t) if t.contains("{}") => {
                if let Some(i) = texts.iter().position(|q| q.trim().is_empty()) {
                    return Err(EncodeError::InvalidInput(format!("query #{i} is empty")));
                }
                let owned: Vec<String> = texts
                    .iter()
                    .map(|q| t.replacen("{}", q.trim(), 1))
                    .collect();
                let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
                self.text.embed(&refs, TextRole::Query)
            }
            _ => self.text.embed(texts, TextRole::Query),
        }
    }

    /// Photos (encoded bytes: JPEG/PNG/WebP/GIF/BMP) → shared + visual vectors. One bad image
    /// fails the call (`InvalidInput` / `TooLarge`, naming its index); the batcher isolates
    /// failures per item.
    pub fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<ImageVectors>> {
        let outs = self.image_outputs(images)?;
        self.image_vectors(outs)
    }

    /// Same as [`Self::embed_images`] from an already-preprocessed NCHW tensor (tests, tools).
    pub fn embed_image_tensor(&self, data: &[f32], n: usize) -> Result<Vec<ImageVectors>> {
        let outs = self.image.run_tensor(data, n)?;
        self.image_vectors(outs)
    }

    fn image_vectors(&self, outs: Vec<image::ImageOutputs>) -> Result<Vec<ImageVectors>> {
        outs.into_iter()
            .map(|o| {
                if let Some(shared) = o.embeds {
                    return Ok(ImageVectors {
                        shared,
                        visual: None,
                    });
                }
                let bridge = self
                    .bridge
                    .as_ref()
                    .ok_or_else(|| EncodeError::Runtime("classifier without bridge".into()))?;
                let logits = o
                    .logits
                    .ok_or_else(|| EncodeError::Runtime("image model returned no logits".into()))?;
                let shared = bridge.project(&logits)?;
                let visual = o.features.map(mmsearch_index::metric::normalized);
                Ok(ImageVectors { shared, visual })
            })
            .collect()
    }

    /// Raw image-tower outputs (classifier logits and features, or the CLIP embedding), which
    /// [`Self::embed_images`] turns into vectors; the golden tests compare them directly.
    pub fn image_outputs(&self, images: &[&[u8]]) -> Result<Vec<image::ImageOutputs>> {
        let started = Instant::now();
        let data = self.image.preprocess(images)?;
        self.observer.decoded(Modality::Image, started.elapsed());
        self.image.run_tensor(&data, images.len())
    }

    pub fn image_encoder(&self) -> &ImageEncoder {
        &self.image
    }

    pub fn text_encoder(&self) -> &TextEncoder {
        &self.text
    }

    pub fn speech_encoder(&self) -> Option<&SpeechEncoder> {
        self.speech.as_ref()
    }

    pub fn bridge(&self) -> Option<&Bridge> {
        self.bridge.as_ref()
    }

    /// WAV bytes → transcript. Audio over `max_audio_seconds` is rejected (`TooLarge`), never
    /// silently trimmed; non-WAV bytes are `InvalidInput`; no speech model → `ModelUnavailable`.
    pub fn transcribe(&self, audio: &[u8]) -> Result<Transcript> {
        self.transcribe_in(audio, None)
    }

    /// [`Self::transcribe`] with the spoken language given (a Whisper code such as "zh")
    /// instead of detected; an unknown code, or any but "en" for an English-only model, is
    /// `InvalidInput`.
    pub fn transcribe_in(&self, audio: &[u8], language: Option<&str>) -> Result<Transcript> {
        let s = self.speech.as_ref().ok_or_else(|| {
            EncodeError::ModelUnavailable("no speech model configured (encode.speech_model)".into())
        })?;
        let started = Instant::now();
        let (samples, audio_seconds) = s.wav_samples(audio, self.max_audio_seconds)?;
        self.observer.decoded(Modality::Voice, started.elapsed());
        s.transcribe_samples(&samples, audio_seconds, language)
    }

    /// Video bytes (any container FFmpeg reads) → keyframe vectors and the soundtrack's
    /// transcript. Limits are checked from the header first (`TooLarge`); an unreadable file, one
    /// without a video stream, or a decoder that overruns its deadline is `InvalidInput`; no
    /// FFmpeg → `ModelUnavailable`. Without a speech model the soundtrack is skipped.
    pub fn embed_video(&self, bytes: &[u8]) -> Result<VideoVectors> {
        let started = Instant::now();
        let window = self.speech.as_ref().map_or(0.0, |s| s.window_seconds());
        let decoded = self.video.decode(bytes, window)?;
        self.observer.decoded(Modality::Video, started.elapsed());
        let refs: Vec<&[u8]> = decoded.frames.iter().map(Vec::as_slice).collect();
        let frames = self.embed_images(&refs)?;
        let transcript = match (&self.speech, decoded.audio) {
            (Some(s), Some(samples)) if !samples.is_empty() => {
                let seconds = samples.len() as f32 / 16_000.0;
                let mut t = s.transcribe_samples(&samples, seconds, None)?;
                t.audio_seconds = decoded.info.seconds as f32;
                // only the first `speech_seconds` (at most the model window) are transcribed
                t.trimmed =
                    decoded.info.seconds as f32 > self.video.config().speech_seconds.min(window);
                Some(t).filter(|t| !t.text.trim().is_empty())
            }
            _ => None,
        };
        Ok(VideoVectors {
            frames,
            transcript,
            seconds: decoded.info.seconds,
        })
    }

    pub fn video_decoder(&self) -> &VideoDecoder {
        &self.video
    }

    /// What made the vectors: the text tower (which also fixes the bridge's class prompts) and
    /// the image tower, as `text=<id> image=<id>`. A data directory remembers this; vectors of
    /// another value live in a different space.
    pub fn vector_models(&self) -> String {
        format!(
            "text={} image={}",
            self.text.manifest.id, self.image.manifest.id
        )
    }

    /// Width of the shared space (text tower output).
    pub fn shared_dim(&self) -> usize {
        self.text.dim()
    }

    /// Width of the visual space, `None` with a CLIP image tower.
    pub fn visual_dim(&self) -> Option<usize> {
        match self.image.manifest.kind {
            ModelKind::ImageClassifier => Some(self.image.manifest.dim),
            _ => None,
        }
    }

    pub fn models(&self) -> Vec<ModelInfo> {
        let mut v = vec![
            ModelInfo {
                id: self.text.manifest.id.clone(),
                kind: self.text.manifest.kind,
                provider_in_use: self.text.pool().provider_in_use(),
                dim: self.text.dim(),
            },
            ModelInfo {
                id: self.image.manifest.id.clone(),
                kind: self.image.manifest.kind,
                provider_in_use: self.image.pool().provider_in_use(),
                dim: self.image.manifest.dim,
            },
        ];
        if let Some(s) = &self.speech {
            v.push(ModelInfo {
                id: s.manifest.id.clone(),
                kind: s.manifest.kind,
                provider_in_use: s.model.encoder_pool().provider_in_use(),
                dim: 0,
            });
        }
        v
    }
}

// `Encoders` is shared across blocking tasks behind an `Arc`.
#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Encoders>();
}
