//! Voice queries: WAV bytes → 16 kHz mono → log-mel → Whisper greedy transcript.

pub mod mel;
pub mod wav;
pub mod whisper;

use serde::Serialize;

use super::error::{EncodeError, Result};
use super::manifest::{read_f32, Manifest, ModelKind};
use super::runtime::{Environment, SessionOptions};
use mel::MelFrontEnd;
use whisper::WhisperModel;

/// A transcription result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    pub text: String,
    /// Length of the submitted audio.
    pub audio_seconds: f32,
    /// Whether only part of the audio was transcribed. Always `false` under the current policy,
    /// which rejects audio over the limit instead of trimming it (kept so a "trim" policy can be
    /// added without an API change).
    pub trimmed: bool,
    /// Whisper's P(no speech); when it is high and the decoded text is unsure, `text` is empty.
    pub no_speech_prob: f32,
    /// Language the multilingual model detected (e.g. "zh"); `None` for English-only models.
    pub language: Option<String>,
}

pub struct SpeechEncoder {
    pub(crate) manifest: Manifest,
    pub(crate) front: MelFrontEnd,
    pub(crate) model: WhisperModel,
    sample_rate: u32,
    window_seconds: f32,
    /// `(min_frames, pad_frames)` when the encoder may run over the clip alone.
    clip_window: Option<(usize, usize)>,
}

impl SpeechEncoder {
    /// `pad_seconds`: trailing silence the encoder sees after the clip, when the model allows
    /// a window shorter than 30 s (`[encode] speech_pad_seconds`).
    pub fn load(
        env: &Environment,
        manifest: Manifest,
        opts: &SessionOptions,
        pad_seconds: f32,
    ) -> Result<Self> {
        if !(pad_seconds.is_finite() && pad_seconds >= 0.0) {
            return Err(EncodeError::Config(format!(
                "encode.speech_pad_seconds must be >= 0, got {pad_seconds}"
            )));
        }
        if manifest.kind != ModelKind::Whisper {
            return Err(EncodeError::Config(format!(
                "{} is a {} model, not whisper",
                manifest.id, manifest.kind
            )));
        }
        let p = &manifest.preprocess;
        let n_mels = p.n_mels.unwrap_or(80);
        let n_fft = p.n_fft.unwrap_or(400);
        let hop = p.hop.unwrap_or(160);
        let sample_rate = p.sample_rate.unwrap_or(16_000);
        let n_samples = p.n_samples.unwrap_or(480_000);
        let n_frames = p.n_frames.unwrap_or(3000);
        let filters_path = match &p.mel_filters {
            Some(f) => manifest.path(f),
            None => manifest.file_by_role("mel_filters", "mel_filters.f32"),
        };
        let filters = read_f32(&filters_path, Some(n_mels * (n_fft / 2 + 1)))?;
        let front = MelFrontEnd::new(filters, n_mels, n_fft, hop, n_samples, n_frames)?;
        let model = WhisperModel::load(env, &manifest, opts)?;
        let window_seconds = n_samples as f32 / sample_rate as f32;
        let pad_frames = (pad_seconds * sample_rate as f32 / hop as f32).ceil() as usize;
        let clip_window = p
            .min_frames
            .filter(|&m| m > 0 && m < n_frames)
            .map(|m| (m, pad_frames));
        Ok(Self {
            manifest,
            front,
            model,
            sample_rate,
            window_seconds,
            clip_window,
        })
    }

    /// The model's window; longer audio cannot be transcribed in one pass.
    pub fn window_seconds(&self) -> f32 {
        self.window_seconds
    }

    /// WAV bytes → mono samples at the model rate (for [`Self::transcribe_samples`]), and the
    /// submitted audio's length in seconds. Audio longer than `max_seconds` (or than the model
    /// window) is `TooLarge`.
    pub fn wav_samples(&self, bytes: &[u8], max_seconds: f32) -> Result<(Vec<f32>, f32)> {
        // a single 30 s window is all this decoder handles, whatever the config says
        let limit = max_seconds.min(self.window_seconds);
        let pcm = wav::decode_wav(bytes, limit)?;
        let samples = wav::resample(&pcm.samples, pcm.sample_rate, self.sample_rate);
        Ok((samples, pcm.seconds()))
    }

    /// Log-mel [n_mels × n_frames] of 16 kHz mono samples.
    pub fn log_mel(&self, samples: &[f32]) -> Vec<f32> {
        self.front.compute(samples)
    }

    /// Greedy decoding of a log-mel as returned by [`Self::log_mel`].
    pub fn decode_mel(&self, mel: &[f32]) -> Result<whisper::Decoded> {
        self.model
            .decode(mel, self.front.n_mels(), self.front.n_frames(), None)
    }

    /// Mel frames the encoder runs over for `samples` samples: the clip and its padding,
    /// rounded up to even (the second convolution has stride 2), at least the smallest window
    /// the export was checked at; the whole window when the model has no shorter one.
    pub fn frames_for(&self, samples: usize) -> usize {
        let n = self.front.n_frames();
        match self.clip_window {
            Some((min, pad)) => (samples.div_ceil(self.front.hop()) + pad)
                .next_multiple_of(2)
                .clamp(min, n),
            None => n,
        }
    }

    /// Samples must already be mono at the model rate. `language`: see [`whisper::WhisperModel::decode`].
    pub fn transcribe_samples(
        &self,
        samples: &[f32],
        audio_seconds: f32,
        language: Option<&str>,
    ) -> Result<Transcript> {
        let (n_mels, n) = (self.front.n_mels(), self.front.n_frames());
        let full = self.front.compute(samples);
        let t = self.frames_for(samples.len());
        // The first t frames of the full window's log-mel are the clip's: the padding is
        // silence, which never raises the maximum the log-mel is clamped under.
        let mel: Vec<f32> = if t < n {
            full.chunks(n).flat_map(|row| &row[..t]).copied().collect()
        } else {
            full
        };
        let d = self.model.decode(&mel, n_mels, t, language)?;
        if d.truncated {
            tracing::warn!(
                tokens = d.tokens.len(),
                "whisper hit max_new_tokens without end-of-text"
            );
        }
        Ok(Transcript {
            text: d.text,
            audio_seconds,
            trimmed: false,
            no_speech_prob: d.no_speech_prob,
            language: d.language,
        })
    }
}
