//! WAV decoding (hound) to mono f32 and resampling to the model rate.
//!
//! Policy: only RIFF/WAVE PCM (8/16/24/32-bit int, 32-bit float) is accepted; anything else is
//! `InvalidInput`. Clips longer than the configured maximum (default 30 s, Whisper's window) are
//! **rejected** with `TooLarge` from the header, before any sample is read: a voice *query* that
//! long is almost certainly a mistake, and silently transcribing only its first 30 s would return
//! confident results for words the user never sees used.

use std::io::Cursor;

use super::super::error::{EncodeError, Result};

/// Mono samples in [-1, 1] and their rate.
#[derive(Debug, Clone)]
pub struct Pcm {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
}

impl Pcm {
    pub fn seconds(&self) -> f32 {
        self.samples.len() as f32 / self.sample_rate as f32
    }
}

/// Decodes a WAV file; stereo and multichannel audio is averaged to mono.
pub fn decode_wav(bytes: &[u8], max_seconds: f32) -> Result<Pcm> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(EncodeError::InvalidInput(
            "audio is not a WAV (RIFF/WAVE) file".into(),
        ));
    }
    let mut reader = hound::WavReader::new(Cursor::new(bytes))
        .map_err(|e| EncodeError::InvalidInput(format!("unreadable WAV: {e}")))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate < 1000 || spec.sample_rate > 384_000 {
        return Err(EncodeError::InvalidInput(format!(
            "unsupported WAV: {} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    let frames = reader.duration() as usize;
    let seconds = frames as f32 / spec.sample_rate as f32;
    if frames == 0 {
        return Err(EncodeError::InvalidInput("WAV contains no samples".into()));
    }
    if seconds > max_seconds {
        return Err(EncodeError::TooLarge(format!(
            "audio is {seconds:.1} s long; voice queries are limited to {max_seconds:.0} s"
        )));
    }
    let ch = spec.channels as usize;
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            let raw: Vec<f32> = reader
                .samples::<f32>()
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| EncodeError::InvalidInput(format!("corrupt WAV data: {e}")))?;
            if raw.iter().any(|x| !x.is_finite()) {
                return Err(EncodeError::InvalidInput(
                    "WAV contains NaN/inf samples".into(),
                ));
            }
            // Float PCM is nominally in [-1, 1]; clip like the reference's ffmpeg → s16 load.
            // Unclipped, a 3e38 sample summed in the channel average and the resampler to ±inf.
            raw.into_iter().map(|x| x.clamp(-1.0, 1.0)).collect()
        }
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| EncodeError::InvalidInput(format!("corrupt WAV data: {e}")))?
        }
        (fmt, bits) => {
            return Err(EncodeError::InvalidInput(format!(
                "unsupported WAV sample format {fmt:?} {bits}-bit"
            )));
        }
    };
    // hound stops at the data chunk's end; a truncated file just yields fewer frames
    let samples: Vec<f32> = if ch == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(ch)
            .map(|f| f.iter().sum::<f32>() / ch as f32)
            .collect()
    };
    if samples.is_empty() {
        return Err(EncodeError::InvalidInput("WAV contains no samples".into()));
    }
    if samples.iter().any(|x| !x.is_finite()) {
        return Err(EncodeError::InvalidInput(
            "WAV contains NaN/inf samples".into(),
        ));
    }
    Ok(Pcm {
        samples,
        sample_rate: spec.sample_rate,
    })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zero crossings of the sinc kept on each side of the centre (at the lower of the two rates).
const ZEROS: f64 = 16.0;

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Band-limited resampling with a Hann-windowed sinc (16 zero crossings per side, cut-off at the
/// lower Nyquist). For rational ratios with a small numerator (every common rate → 16 kHz: 8k,
/// 11.025k, 22.05k, 44.1k, 48k, …) the filter is tabulated per output phase, so the cost is one
/// dot product of ~2·16·ratio taps per output sample; odd ratios fall back to computing taps on
/// the fly. Edges are zero-padded.
pub fn resample(x: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || x.is_empty() {
        return x.to_vec();
    }
    let (from, to) = (u64::from(from), u64::from(to));
    let g = gcd(from, to);
    let (up, down) = (to / g, from / g); // output n sits at input time n·down/up
    let cutoff = (to as f64 / from as f64).min(1.0); // relative to the input Nyquist
    let half = (ZEROS / cutoff).ceil() as i64; // taps on each side, in input samples
    let n_out = ((x.len() as u64 * to).div_ceil(from)) as usize;
    let taps = (2 * half + 1) as usize;
    let kernel = |d: f64| -> f64 {
        // d: distance in input samples
        let w = if d.abs() >= half as f64 {
            0.0
        } else {
            0.5 + 0.5 * (std::f64::consts::PI * d / half as f64).cos()
        };
        cutoff * sinc(cutoff * d) * w
    };
    let mut out = Vec::with_capacity(n_out);
    let table: Option<Vec<f32>> = if up <= 4096 {
        let mut t = vec![0f32; up as usize * taps];
        for ph in 0..up as usize {
            let frac = ph as f64 / up as f64;
            for k in 0..taps {
                let d = (k as i64 - half) as f64 - frac;
                t[ph * taps + k] = kernel(d) as f32;
            }
        }
        Some(t)
    } else {
        None
    };
    for n in 0..n_out as u64 {
        let pos = n * down;
        let base = (pos / up) as i64;
        let ph = (pos % up) as usize;
        let frac = ph as f64 / up as f64;
        let mut acc = 0f64;
        for k in 0..taps {
            let i = base + k as i64 - half;
            if i < 0 || i as usize >= x.len() {
                continue;
            }
            let w = match &table {
                Some(t) => f64::from(t[ph * taps + k]),
                None => kernel((k as i64 - half) as f64 - frac),
            };
            acc += f64::from(x[i as usize]) * w;
        }
        out.push(acc as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_sine_keeps_frequency() {
        let sr = 44_100u32;
        let x: Vec<f32> = (0..sr)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / sr as f32).sin())
            .collect();
        let y = resample(&x, sr, 16_000);
        assert_eq!(y.len(), 16_000);
        // compare the middle against the analytic 440 Hz sine at 16 kHz
        let err = (4000..12000)
            .map(|i| {
                (y[i] - (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()).abs()
            })
            .fold(0f32, f32::max);
        assert!(err < 0.01, "max err {err}");
    }

    fn float_wav(rate: u32, samples: &[f32]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        buf.into_inner()
    }

    #[test]
    fn float_samples_are_clipped_and_stay_finite_through_resampling() {
        let wav = float_wav(44_100, &[3e38, -3e38, 3e38, 0.5, 3e38, 3e38, 3e38, 3e38]);
        let pcm = decode_wav(&wav, 30.0).unwrap();
        assert_eq!(pcm.samples[..4], [1.0, -1.0, 1.0, 0.5]);
        assert!(resample(&pcm.samples, pcm.sample_rate, 16_000)
            .iter()
            .all(|x| x.is_finite()));
        let e = decode_wav(&float_wav(16_000, &[0.1, f32::INFINITY]), 30.0).unwrap_err();
        assert!(matches!(e, EncodeError::InvalidInput(_)), "{e}");
    }

    #[test]
    fn length_limit_is_read_from_the_header() {
        // a data chunk claiming 1 GB at 16 kHz mono 16-bit (9 hours) with 4 bytes present:
        // rejected as too long before any sample is read
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut buf = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let mut wav = buf.into_inner();
        let data = wav.windows(4).position(|w| w == b"data").unwrap();
        wav[data + 4..data + 8].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let e = decode_wav(&wav, 30.0).unwrap_err();
        assert!(matches!(e, EncodeError::TooLarge(_)), "{e}");
    }

    #[test]
    fn non_wav_rejected() {
        let e = decode_wav(b"hello, this is definitely text", 30.0).unwrap_err();
        assert!(matches!(e, EncodeError::InvalidInput(_)));
    }
}
