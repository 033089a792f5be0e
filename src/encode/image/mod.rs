//! Image decoding and preprocessing for the image tower.
//!
//! The recipe is the one the Python reference (`bridge.py::preprocess`, "pad" mode) used to pick the
//! bridge parameters, and the one the golden files are generated with:
//! 1. decode to RGB; anything with alpha is composited onto white (PIL `alpha_composite` integer math);
//! 2. paste centred on a white square canvas of side max(w, h);
//! 3. resize to `size`×`size` with PIL's antialiased BICUBIC (Catmull-Rom, a = −0.5, filter support
//!    scaled by the downscale factor), re-implemented here in PIL's 22-bit fixed point with an 8-bit
//!    intermediate so that PNG inputs give the same tensor as Pillow bit for bit;
//! 4. `(u8 − mean)/std` per channel (default 127/128), NCHW float32.
//!
//! Limits are checked from the header before any pixel is decoded, so a 50 MP bomb costs
//! microseconds. Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale in the DCT domain (the
//! `jpeg-decoder` crate), like PIL's `draft`; this changes pixels slightly (the reference measured
//! bridge-vector cosine 0.9998) and cuts decode time several-fold, so it is on by default and
//! switched off for the bit-exactness tests.
//!
//! The stages live in their own files: [`decode`] (header probe, pixel limits, decoding to RGB on
//! white, the DCT-scaled JPEG path), [`resize`] (Pillow-exact bicubic, pad / crop / squash,
//! normalisation into the CHW tensor) and this file (the configuration, the glue and the model
//! run).

pub mod decode;
pub mod resize;
pub mod thumbnail;

use ort::value::TensorRef;

use super::error::{EncodeError, Result};
use super::manifest::{Manifest, ModelKind};
use super::runtime::{Environment, SessionOptions, SessionPool};
use mmsearch_index::metric::normalized;

pub use decode::{decode_rgb, probe, to_rgb_on_white};
pub use resize::{pad_square, preprocess_rgb, resize_bicubic, ResizeMode};
pub use thumbnail::{thumbnail, THUMBNAIL_SIDE};

/// How the image tower wants its input.
#[derive(Debug, Clone)]
pub struct PreprocessConfig {
    pub size: u32,
    pub resize: ResizeMode,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub max_pixels: u64,
    /// Decode big JPEGs at reduced scale (DCT-domain), keeping the longer side ≥ 2×`size`.
    pub fast_jpeg: bool,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            size: 224,
            resize: ResizeMode::Pad,
            mean: [127.0; 3],
            std: [128.0; 3],
            max_pixels: 40_000_000,
            fast_jpeg: true,
        }
    }
}

/// Bytes → CHW tensor data.
pub fn preprocess_bytes(bytes: &[u8], cfg: &PreprocessConfig) -> Result<Vec<f32>> {
    let img = decode_rgb(bytes, cfg)?;
    let mut out = vec![0f32; 3 * (cfg.size * cfg.size) as usize];
    preprocess_rgb(&img, cfg, &mut out);
    Ok(out)
}

/// What one image-tower run returns per image; which fields are set depends on the kind.
#[derive(Debug, Clone, Default)]
pub struct ImageOutputs {
    /// image_classifier: class logits [classes].
    pub logits: Option<Vec<f32>>,
    /// image_classifier: pooled features [dim], raw (not normalised).
    pub features: Option<Vec<f32>>,
    /// clip_image: unit embedding in the shared space.
    pub embeds: Option<Vec<f32>>,
}

/// Largest batch given to one `run`; bigger requests are split.
const MAX_RUN_BATCH: usize = 32;

pub struct ImageEncoder {
    pub(crate) manifest: Manifest,
    pool: SessionPool,
    pub(crate) prep: PreprocessConfig,
    input: String,
    outputs: Vec<String>,
}

impl ImageEncoder {
    pub fn load(
        env: &Environment,
        manifest: Manifest,
        opts: &SessionOptions,
        max_pixels: u64,
        fast_jpeg: bool,
    ) -> Result<Self> {
        let p = &manifest.preprocess;
        let (crop_padding, default_input, default_outputs) = match manifest.kind {
            ModelKind::ImageClassifier => (32, "image", vec!["logits", "features"]),
            ModelKind::ClipImage => (0, "pixel_values", vec!["image_embeds"]),
            k => {
                return Err(EncodeError::Config(format!(
                    "{} is a {k} model, not an image model",
                    manifest.id
                )))
            }
        };
        if let Some(bg) = &p.background {
            if bg != "white" {
                return Err(EncodeError::Config(format!(
                    "{}: background {bg:?} unsupported (white only)",
                    manifest.id
                )));
            }
        }
        let prep = PreprocessConfig {
            size: p.size.unwrap_or(224),
            resize: ResizeMode::parse(p.resize.as_deref(), crop_padding)?,
            mean: p.mean.unwrap_or([127.0; 3]),
            std: p.std.unwrap_or([128.0; 3]),
            max_pixels,
            fast_jpeg,
        };
        if prep.std.contains(&0.0) {
            return Err(EncodeError::Config(format!(
                "{}: std must be non-zero",
                manifest.id
            )));
        }
        let model_path = manifest.file_by_role("model", "model.onnx");
        let pool = SessionPool::load(env, &model_path, opts)?;
        let input = manifest.input(0, default_input);
        let outputs: Vec<String> = if manifest.io.outputs.is_empty() {
            default_outputs.iter().map(|s| s.to_string()).collect()
        } else {
            manifest.io.outputs.clone()
        };
        let graph_out = pool.output_names();
        for o in &outputs {
            if !graph_out.contains(o) {
                return Err(EncodeError::Config(format!(
                    "{}: graph has no output {o:?} (has {graph_out:?})",
                    manifest.id
                )));
            }
        }
        Ok(Self {
            manifest,
            pool,
            prep,
            input,
            outputs,
        })
    }

    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.prep
    }

    /// Every image decoded and preprocessed into one NCHW tensor for [`Self::run_tensor`], so
    /// that one bad image fails the call before any model time is spent; with several images
    /// the error names the index of the bad one.
    pub fn preprocess(&self, images: &[&[u8]]) -> Result<Vec<f32>> {
        let per = 3 * (self.prep.size * self.prep.size) as usize;
        let mut data = vec![0f32; per * images.len()];
        for (i, bytes) in images.iter().enumerate() {
            let img = decode_rgb(bytes, &self.prep).map_err(|e| match e {
                EncodeError::InvalidInput(m) if images.len() > 1 => {
                    EncodeError::InvalidInput(format!("image #{i}: {m}"))
                }
                EncodeError::TooLarge(m) if images.len() > 1 => {
                    EncodeError::TooLarge(format!("image #{i}: {m}"))
                }
                e => e,
            })?;
            preprocess_rgb(&img, &self.prep, &mut data[i * per..(i + 1) * per]);
        }
        Ok(data)
    }

    /// Runs already-preprocessed NCHW data for `n` images.
    pub fn run_tensor(&self, data: &[f32], n: usize) -> Result<Vec<ImageOutputs>> {
        let s = self.prep.size as usize;
        let per = 3 * s * s;
        if data.len() != per * n {
            return Err(EncodeError::InvalidInput(format!(
                "tensor has {} floats, expected {n}×3×{s}×{s}",
                data.len()
            )));
        }
        let mut out = Vec::with_capacity(n);
        for chunk in data.chunks(per * MAX_RUN_BATCH) {
            let b = chunk.len() / per;
            let tensor = TensorRef::from_array_view(([b, 3, s, s], chunk))
                .map_err(|e| EncodeError::runtime("image tensor", e))?;
            let mut cols: Vec<Vec<f32>> = Vec::with_capacity(self.outputs.len());
            self.pool.with(|sess| -> Result<()> {
                let res = sess
                    .run(ort::inputs![self.input.as_str() => tensor])
                    .map_err(|e| EncodeError::runtime("image model run", e))?;
                for name in &self.outputs {
                    let v = res
                        .get(name)
                        .ok_or_else(|| EncodeError::Runtime(format!("missing output {name}")))?;
                    let (shape, d) = v
                        .try_extract_tensor::<f32>()
                        .map_err(|e| EncodeError::runtime("image output", e))?;
                    if shape.len() != 2 || shape[0] as usize != b {
                        return Err(EncodeError::Runtime(format!(
                            "output {name} has shape {shape:?}, batch {b}"
                        )));
                    }
                    cols.push(d.to_vec());
                }
                Ok(())
            })?;
            for i in 0..b {
                let mut o = ImageOutputs::default();
                for (name, col) in self.outputs.iter().zip(&cols) {
                    let w = col.len() / b;
                    let row = col[i * w..(i + 1) * w].to_vec();
                    match (self.manifest.kind, name.as_str()) {
                        (ModelKind::ClipImage, _) => o.embeds = Some(normalized(row)),
                        (_, n) if n.contains("logit") => o.logits = Some(row),
                        _ => o.features = Some(row),
                    }
                }
                out.push(o);
            }
        }
        Ok(out)
    }
}
