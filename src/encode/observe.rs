//! What the encoders report about their own work. They record no metrics themselves: whoever
//! loads [`super::Encoders`] hands in an observer (the server passes one that feeds its Prometheus
//! registry), everyone else gets [`NoopObserver`].

use std::time::Duration;

/// The kind of input a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Modality {
    Text,
    /// Search-query texts (batched apart from ingest's item texts).
    Query,
    Image,
    Voice,
    /// Header probe + keyframe and soundtrack extraction (FFmpeg), before the towers run.
    Video,
}

impl Modality {
    /// Lower-case name, for labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Query => "query",
            Modality::Image => "image",
            Modality::Voice => "voice",
            Modality::Video => "video",
        }
    }
}

/// Called from the encoding threads (blocking pool and batcher tasks), so keep it cheap.
pub trait EncodeObserver: Send + Sync {
    /// Bytes became model input — images decoded and preprocessed (once per call, for the
    /// whole batch), WAV decoded and resampled — in `elapsed`. Only successful decodes report.
    fn decoded(&self, _modality: Modality, _elapsed: Duration) {}

    /// The batcher is about to run `items` queued submissions of `modality` as one model call.
    fn batched(&self, _modality: Modality, _items: usize) {}
}

/// Reports nowhere; what [`super::Encoders::load`] uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl EncodeObserver for NoopObserver {}
