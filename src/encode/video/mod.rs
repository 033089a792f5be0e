//! Video: container bytes → a few keyframes (encoded BMP, for the image tower) and the soundtrack
//! (16 kHz mono samples, for Whisper). Decoding is FFmpeg's (`ffprobe` + `ffmpeg` from the
//! distribution), run as a contained subprocess ([`run`]): a hung or crashing decoder is killed
//! or dies on its own, never taking the server with it.
//!
//! 1. **Header first.** `ffprobe` reads the container header; duration, resolution and streams
//!    are checked against [`VideoConfig`] before a single frame is decoded, so a 2-hour or 8K
//!    upload costs milliseconds. No video stream, no duration, or an unreadable container is
//!    `InvalidInput`; over a limit is `TooLarge`.
//! 2. **Keyframes.** One pass of FFmpeg's `select` filter keeps the first frame, every scene
//!    change (`scene > scene_threshold`, at least `min_gap_seconds` apart) and a uniform sample
//!    every `duration / max_frames` seconds, capped at `max_frames`; kept frames are scaled to at
//!    most `frame_side` pixels and written as BMP to a pipe.
//! 3. **Soundtrack.** The first audio stream, first `speech_seconds` (the Whisper window), as
//!    16-bit mono PCM on a pipe. Runs beside step 2 in its own process.

pub mod run;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{EncodeError, Result};
use run::{ChildLimits, RunError};

/// `[encode.video]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VideoConfig {
    /// Programs to run (looked up on `PATH` unless absolute).
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// Larger uploads are rejected before anything runs.
    pub max_bytes: usize,
    /// Longer videos (by the container header) are rejected.
    pub max_seconds: f64,
    /// Larger frames (width × height, by the header) are rejected.
    pub max_pixels: u64,
    /// Keyframes kept per video (scene changes + uniform sampling share this budget).
    pub max_frames: usize,
    /// FFmpeg's scene score above which a frame counts as a cut.
    pub scene_threshold: f32,
    /// Cuts closer than this to the previous kept frame are skipped (flashes, fades).
    pub min_gap_seconds: f32,
    /// Longer side of the kept frames; the image tower resizes to 224 anyway.
    pub frame_side: u32,
    /// Soundtrack transcribed (from the start); capped at the speech model's window.
    pub speech_seconds: f32,
    /// Wall-clock deadline of each FFmpeg process; it is killed then.
    pub timeout_seconds: f32,
    /// Address-space limit of each FFmpeg process (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// FFmpeg's own decoding threads per process.
    pub threads: u32,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            max_bytes: 64 << 20,
            max_seconds: 300.0,
            max_pixels: 3840 * 2160,
            max_frames: 8,
            scene_threshold: 0.3,
            min_gap_seconds: 0.5,
            frame_side: 448,
            speech_seconds: 30.0,
            timeout_seconds: 30.0,
            memory_bytes: 2 << 30,
            threads: 2,
        }
    }
}

impl VideoConfig {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.max_frames == 0 || self.max_frames > 64 {
            return Err(format!(
                "encode.video.max_frames {} must be in 1..=64",
                self.max_frames
            ));
        }
        if !(self.max_seconds > 0.0 && self.timeout_seconds > 0.0 && self.speech_seconds >= 0.0) {
            return Err(
                "encode.video: max_seconds and timeout_seconds must be > 0, speech_seconds ≥ 0"
                    .into(),
            );
        }
        if self.frame_side < 32 || self.memory_bytes < (64 << 20) {
            return Err("encode.video: frame_side ≥ 32 and memory_bytes ≥ 64 MiB".into());
        }
        Ok(())
    }
}

/// What the container header says.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
}

/// A decoded video: its keyframes and soundtrack, ready for the towers.
#[derive(Debug, Clone)]
pub struct DecodedVideo {
    pub info: VideoInfo,
    /// BMP files, in time order.
    pub frames: Vec<Vec<u8>>,
    /// 16 kHz mono, at most `speech_seconds`; `None` without an audio stream.
    pub audio: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

pub struct VideoDecoder {
    cfg: VideoConfig,
}

impl VideoDecoder {
    pub fn new(cfg: VideoConfig) -> Self {
        Self { cfg }
    }

    pub fn config(&self) -> &VideoConfig {
        &self.cfg
    }

    fn limits(&self, max_output: usize) -> ChildLimits {
        let wall = Duration::from_secs_f32(self.cfg.timeout_seconds);
        ChildLimits {
            wall,
            memory_bytes: self.cfg.memory_bytes,
            // CPU time may exceed wall time with threads; the wall deadline is the real bound
            cpu_seconds: (self.cfg.timeout_seconds.ceil() as u64 + 1)
                * (self.cfg.threads.max(1) as u64 + 1),
            max_output,
        }
    }

    fn failed(&self, what: &str, e: RunError) -> EncodeError {
        match e {
            RunError::Spawn(err) => EncodeError::ModelUnavailable(format!(
                "cannot run {what} ({err}); install FFmpeg (deploy/install-deps.sh) or set encode.video.{what}"
            )),
            RunError::Timeout(d) => EncodeError::InvalidInput(format!(
                "video decoding ({what}) did not finish within {:.1} s and was stopped",
                d.as_secs_f32()
            )),
            RunError::OutputTooLarge(n) => EncodeError::TooLarge(format!("{what} produced more than {n} bytes")),
            RunError::Failed { status, stderr } => {
                EncodeError::InvalidInput(format!("not a decodable video ({what}: {status}: {stderr})"))
            }
            RunError::Io(err) => EncodeError::Runtime(format!("{what}: {err}")),
        }
    }

    /// Reads the header and checks the limits; decodes nothing.
    pub fn probe(&self, bytes: &[u8]) -> Result<VideoInfo> {
        let input = self.input(bytes)?;
        self.probe_file(&input)
    }

    fn input(&self, bytes: &[u8]) -> Result<std::fs::File> {
        if bytes.is_empty() {
            return Err(EncodeError::InvalidInput("video is empty".into()));
        }
        if bytes.len() > self.cfg.max_bytes {
            return Err(EncodeError::TooLarge(format!(
                "video of {} bytes; at most {}",
                bytes.len(),
                self.cfg.max_bytes
            )));
        }
        run::memfd(bytes).map_err(|e| EncodeError::Runtime(format!("memfd: {e}")))
    }

    fn probe_file(&self, input: &std::fs::File) -> Result<VideoInfo> {
        let args: Vec<String> = [
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            "file:/dev/stdin",
        ]
        .map(String::from)
        .to_vec();
        let out = run::run(&self.cfg.ffprobe, &args, input, self.limits(1 << 20))
            .map_err(|e| self.failed("ffprobe", e))?;
        let p: Probe = serde_json::from_slice(&out).map_err(|e| {
            EncodeError::InvalidInput(format!("not a decodable video (ffprobe output: {e})"))
        })?;
        let video = p
            .streams
            .iter()
            .find(|s| s.codec_type.as_deref() == Some("video") && s.width.unwrap_or(0) > 0)
            .ok_or_else(|| EncodeError::InvalidInput("no video stream in the file".into()))?;
        let has_audio = p
            .streams
            .iter()
            .any(|s| s.codec_type.as_deref() == Some("audio"));
        let num = |s: &Option<String>| {
            s.as_deref()
                .and_then(|d| d.parse::<f64>().ok())
                .filter(|d| d.is_finite() && *d > 0.0)
        };
        let seconds = p
            .format
            .as_ref()
            .and_then(|f| num(&f.duration))
            .or_else(|| num(&video.duration))
            .ok_or_else(|| {
                EncodeError::InvalidInput("the container header states no duration".into())
            })?;
        let (width, height) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
        if seconds > self.cfg.max_seconds {
            return Err(EncodeError::TooLarge(format!(
                "video of {seconds:.1} s; at most {} s",
                self.cfg.max_seconds
            )));
        }
        if width as u64 * height as u64 > self.cfg.max_pixels {
            return Err(EncodeError::TooLarge(format!(
                "{width}×{height} video; at most {} pixels per frame",
                self.cfg.max_pixels
            )));
        }
        Ok(VideoInfo {
            seconds,
            width,
            height,
            has_audio,
        })
    }

    /// Header check, then keyframes and soundtrack (in two processes side by side).
    /// `speech_window` caps the soundtrack (the speech model's window); 0 skips it.
    pub fn decode(&self, bytes: &[u8], speech_window: f32) -> Result<DecodedVideo> {
        let input = self.input(bytes)?;
        let info = self.probe_file(&input)?;
        let speech_seconds = self.cfg.speech_seconds.min(speech_window);
        let want_audio = info.has_audio && speech_seconds > 0.0;
        let (frames, audio) = std::thread::scope(|s| {
            let audio = want_audio.then(|| s.spawn(|| self.soundtrack(&input, speech_seconds)));
            let frames = self.keyframes(&input, &info);
            let audio = match audio {
                Some(h) => h
                    .join()
                    .unwrap_or_else(|_| {
                        Err(EncodeError::Runtime("soundtrack thread panicked".into()))
                    })
                    .map(Some),
                None => Ok(None),
            };
            (frames, audio)
        });
        let frames = frames?;
        if frames.is_empty() {
            return Err(EncodeError::InvalidInput(
                "no frame could be decoded from the video".into(),
            ));
        }
        Ok(DecodedVideo {
            info,
            frames,
            audio: audio?,
        })
    }

    /// The `select` expression of the keyframe pass (see the module docs).
    pub fn select_filter(&self, seconds: f64) -> String {
        let c = &self.cfg;
        let interval = (seconds / c.max_frames as f64).max(c.min_gap_seconds as f64);
        let side = c.frame_side;
        format!(
            "select='eq(n\\,0)+gt(scene\\,{t})*gte(t-prev_selected_t\\,{gap})+gte(t-prev_selected_t\\,{interval:.3})',\
             scale='min({side}\\,iw)':'min({side}\\,ih)':force_original_aspect_ratio=decrease:force_divisible_by=2",
            t = c.scene_threshold,
            gap = c.min_gap_seconds,
        )
    }

    /// The FFmpeg arguments of the keyframe pass (also what the benchmark runs alone).
    pub fn keyframe_args(&self, seconds: f64) -> Vec<String> {
        let c = &self.cfg;
        let mut a: Vec<String> = ["-nostdin", "-v", "error", "-threads"]
            .map(String::from)
            .to_vec();
        a.push(c.threads.to_string());
        a.extend(
            [
                "-i",
                "file:/dev/stdin",
                "-map",
                "0:v:0",
                "-an",
                "-sn",
                "-dn",
                "-vf",
            ]
            .map(String::from),
        );
        a.push(self.select_filter(seconds));
        a.extend(["-fps_mode", "vfr", "-frames:v"].map(String::from));
        a.push(c.max_frames.to_string());
        a.extend(["-f", "image2pipe", "-c:v", "bmp", "pipe:1"].map(String::from));
        a
    }

    fn keyframes(&self, input: &std::fs::File, info: &VideoInfo) -> Result<Vec<Vec<u8>>> {
        let side = self.cfg.frame_side as usize;
        let per_frame = side * side * 3 + 4096;
        let out = run::run(
            &self.cfg.ffmpeg,
            &self.keyframe_args(info.seconds),
            input,
            self.limits(per_frame * self.cfg.max_frames),
        )
        .map_err(|e| self.failed("ffmpeg", e))?;
        split_bmps(&out)
    }

    fn soundtrack(&self, input: &std::fs::File, seconds: f32) -> Result<Vec<f32>> {
        let mut a: Vec<String> = [
            "-nostdin",
            "-v",
            "error",
            "-i",
            "file:/dev/stdin",
            "-map",
            "0:a:0",
            "-vn",
            "-sn",
            "-dn",
            "-t",
        ]
        .map(String::from)
        .to_vec();
        a.push(format!("{seconds:.3}"));
        a.extend(["-ac", "1", "-ar", "16000", "-f", "s16le", "pipe:1"].map(String::from));
        let max = (seconds as usize + 1) * 16_000 * 2 + 4096;
        let out = run::run(&self.cfg.ffmpeg, &a, input, self.limits(max))
            .map_err(|e| self.failed("ffmpeg", e))?;
        Ok(out
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
            .collect())
    }
}

/// Splits FFmpeg's `image2pipe` BMP stream into files (each starts with "BM" and its size).
pub fn split_bmps(mut data: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut frames = Vec::new();
    while !data.is_empty() {
        if data.len() < 6 || &data[..2] != b"BM" {
            return Err(EncodeError::Runtime(
                "ffmpeg wrote something other than BMP frames".into(),
            ));
        }
        let size = u32::from_le_bytes([data[2], data[3], data[4], data[5]]) as usize;
        if size < 6 || size > data.len() {
            return Err(EncodeError::Runtime(
                "truncated BMP frame from ffmpeg".into(),
            ));
        }
        frames.push(data[..size].to_vec());
        data = &data[size..];
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_stream_is_split_and_checked() {
        let bmp = |n: u8| {
            let mut b = b"BM".to_vec();
            b.extend(10u32.to_le_bytes());
            b.extend([n; 4]);
            b
        };
        let mut s = bmp(1);
        s.extend(bmp(2));
        assert_eq!(split_bmps(&s).unwrap(), vec![bmp(1), bmp(2)]);
        assert!(split_bmps(&s[..13]).is_err());
        assert!(split_bmps(b"PNG...").is_err());
    }

    #[test]
    fn filter_budget_follows_duration() {
        let d = VideoDecoder::new(VideoConfig::default());
        // 10 s over 8 frames: one uniform sample every 1.25 s
        assert!(
            d.select_filter(10.0).contains("prev_selected_t\\,1.250"),
            "{}",
            d.select_filter(10.0)
        );
        // very short: never closer than min_gap_seconds
        assert!(d.select_filter(1.0).contains("prev_selected_t\\,0.500"));
    }
}
