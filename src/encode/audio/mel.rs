//! Whisper's log-mel front end, numerically following `models/build/whisper_lib.py::log_mel` (the
//! golden's reference): pad/trim to 30 s, reflect-pad n_fft/2, periodic Hann (rounded to f32 like
//! the reference's window), |rfft|², drop the last frame, slaney mel filters, log10 clamped to
//! max − 8, (x + 4)/4. Everything after the f32 samples is computed in f64 like the numpy code, so
//! quiet bins near the max − 8 floor do not pick up f32 FFT noise.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::super::error::{EncodeError, Result};

pub struct MelFrontEnd {
    n_fft: usize,
    hop: usize,
    n_mels: usize,
    n_samples: usize,
    n_frames: usize,
    /// [n_mels, n_fft/2+1] row-major, with each row's non-zero column range for a sparse product.
    filters: Vec<f32>,
    ranges: Vec<(usize, usize)>,
    window: Vec<f64>,
    fft: Arc<dyn Fft<f64>>,
}

impl MelFrontEnd {
    pub fn new(
        filters: Vec<f32>,
        n_mels: usize,
        n_fft: usize,
        hop: usize,
        n_samples: usize,
        n_frames: usize,
    ) -> Result<Self> {
        let bins = n_fft / 2 + 1;
        if filters.len() != n_mels * bins {
            return Err(EncodeError::Config(format!(
                "mel filters: {} floats, expected {n_mels}×{bins}",
                filters.len()
            )));
        }
        if hop == 0 || n_fft == 0 || n_samples / hop < n_frames {
            return Err(EncodeError::Config(
                "inconsistent mel front-end parameters".into(),
            ));
        }
        let ranges = (0..n_mels)
            .map(|m| {
                let row = &filters[m * bins..(m + 1) * bins];
                let first = row.iter().position(|&v| v != 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&v| v != 0.0).map_or(0, |p| p + 1);
                (first, last.max(first))
            })
            .collect();
        let window = (0..n_fft)
            .map(|n| {
                f64::from(
                    (0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos())
                        as f32,
                )
            })
            .collect();
        let fft = FftPlanner::<f64>::new().plan_fft_forward(n_fft);
        Ok(Self {
            n_fft,
            hop,
            n_mels,
            n_samples,
            n_frames,
            filters,
            ranges,
            window,
            fft,
        })
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    pub fn n_frames(&self) -> usize {
        self.n_frames
    }

    /// Samples per frame.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// 16 kHz mono samples → [n_mels × n_frames] row-major.
    pub fn compute(&self, audio: &[f32]) -> Vec<f32> {
        let pad = self.n_fft / 2;
        let mut a = vec![0f32; self.n_samples];
        let n = audio.len().min(self.n_samples);
        a[..n].copy_from_slice(&audio[..n]);
        // reflect padding (edge sample not repeated), as numpy's mode="reflect"
        let len = self.n_samples;
        let mut p = Vec::with_capacity(len + 2 * pad);
        p.extend((1..=pad).rev().map(|i| a[i.min(len - 1)]));
        p.extend_from_slice(&a);
        p.extend((0..pad).map(|i| a[len - 2 - i.min(len - 2)]));

        let bins = self.n_fft / 2 + 1;
        let mut power = vec![0f64; self.n_frames * bins];
        let mut buf = vec![Complex::new(0f64, 0f64); self.n_fft];
        let mut scratch = vec![Complex::new(0f64, 0f64); self.fft.get_inplace_scratch_len()];
        for f in 0..self.n_frames {
            let frame = &p[f * self.hop..f * self.hop + self.n_fft];
            for ((b, &x), &w) in buf.iter_mut().zip(frame).zip(&self.window) {
                *b = Complex::new(f64::from(x) * w, 0.0);
            }
            self.fft.process_with_scratch(&mut buf, &mut scratch);
            let row = &mut power[f * bins..(f + 1) * bins];
            for (r, c) in row.iter_mut().zip(&buf[..bins]) {
                *r = c.re * c.re + c.im * c.im;
            }
        }

        let mut mel = vec![0f64; self.n_mels * self.n_frames];
        for m in 0..self.n_mels {
            let (lo, hi) = self.ranges[m];
            let frow = &self.filters[m * bins + lo..m * bins + hi];
            for f in 0..self.n_frames {
                let prow = &power[f * bins + lo..f * bins + hi];
                let s: f64 = frow.iter().zip(prow).map(|(&a, &b)| f64::from(a) * b).sum();
                mel[m * self.n_frames + f] = s.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        mel.into_iter()
            .map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect()
    }
}
