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

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use ort::value::TensorRef;

use super::error::{EncodeError, Result};
use super::manifest::{Manifest, ModelKind};
use super::runtime::{Environment, SessionOptions, SessionPool};
use super::vecmath;

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
        Self { size: 224, resize: ResizeMode::Pad, mean: [127.0; 3], std: [128.0; 3], max_pixels: 40_000_000, fast_jpeg: true }
    }
}

fn too_large(w: u32, h: u32, max_pixels: u64) -> Option<EncodeError> {
    let px = u64::from(w) * u64::from(h);
    (px > max_pixels).then(|| {
        EncodeError::TooLarge(format!(
            "image is {w}x{h} = {:.1} MP, the limit is {:.1} MP",
            px as f64 / 1e6,
            max_pixels as f64 / 1e6
        ))
    })
}

/// Dimensions straight from the first header bytes, for formats where the `image` crate's
/// `into_dimensions` reads further than the size field (the png crate wants the chunks up to the
/// first IDAT): a bomb is then rejected as `TooLarge` even when the rest of the file is missing.
fn sniff_dimensions(b: &[u8]) -> Option<(u32, u32)> {
    let be32 = |i: usize| b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
    let be16 = |i: usize| b.get(i..i + 2).map(|s| u32::from(u16::from_be_bytes([s[0], s[1]])));
    let le16 = |i: usize| b.get(i..i + 2).map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])));
    if b.starts_with(b"\x89PNG\r\n\x1a\n") && b.get(12..16) == Some(&b"IHDR"[..]) {
        return Some((be32(16)?, be32(20)?));
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Some((le16(6)?, le16(8)?));
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        // walk the marker segments to the first SOFn
        let mut i = 2;
        while i + 4 <= b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let m = b[i + 1];
            if m == 0xFF {
                i += 1;
                continue;
            }
            let len = be16(i + 2)? as usize;
            if matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
                return Some((be16(i + 7)?, be16(i + 5)?));
            }
            i += 2 + len;
        }
    }
    None
}

/// Reads only the header: format and dimensions. Rejects unknown formats and sizes over the limit.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<(ImageFormat, u32, u32)> {
    if bytes.is_empty() {
        return Err(EncodeError::InvalidInput("empty image".into()));
    }
    if let Some((w, h)) = sniff_dimensions(bytes) {
        if let Some(e) = too_large(w, h, max_pixels) {
            return Err(e);
        }
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| EncodeError::InvalidInput(format!("unreadable image: {e}")))?;
    let format = reader
        .format()
        .ok_or_else(|| EncodeError::InvalidInput("not a supported image format (jpeg, png, webp, gif, bmp)".into()))?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt {format:?} header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(EncodeError::InvalidInput(format!("image has zero size ({w}x{h})")));
    }
    if let Some(e) = too_large(w, h, max_pixels) {
        return Err(e);
    }
    Ok((format, w, h))
}

/// Pixels of the largest buffer [`preprocess_rgb`] builds from a `w`×`h` image: the white
/// square canvas for pad, the resized image before the centre crop for crop, the
/// horizontally resized intermediate for squash.
fn working_pixels(w: u32, h: u32, cfg: &PreprocessConfig) -> u64 {
    let (w64, h64, s) = (u64::from(w), u64::from(h), u64::from(cfg.size));
    match cfg.resize {
        ResizeMode::Pad => w64.max(h64).pow(2),
        ResizeMode::Squash => w64.max(h64) * s,
        ResizeMode::Crop { padding } => {
            let target = f64::from(cfg.size + padding);
            let scale = target / f64::from(w.min(h).max(1));
            let nw = ((f64::from(w) * scale).round() as u64).max(s);
            let nh = ((f64::from(h) * scale).round() as u64).max(s);
            nw.saturating_mul(nh)
        }
    }
}

/// The pixel limit bounds the decode; this bounds what preprocessing builds from the decoded
/// image, which for a very elongated image within the pixel limit is far larger (a 1×40M PNG
/// pads to a 40M×40M canvas). Twice the pixel limit keeps ordinary photos (8000×5000 pads to
/// 64 MP under the default 40 MP) and rejects only extreme aspect ratios.
fn check_working_size(w: u32, h: u32, cfg: &PreprocessConfig) -> Result<()> {
    let work = working_pixels(w, h, cfg);
    // the floor keeps small pixel limits from refusing ordinary aspect ratios
    let limit = cfg.max_pixels.saturating_mul(2).max(16 * u64::from(cfg.size).pow(2));
    if work > limit {
        return Err(EncodeError::TooLarge(format!(
            "image is {w}x{h}: {:?} preprocessing would need a {:.1} MP buffer, the limit is {:.1} MP \
             (aspect ratio too extreme)",
            cfg.resize,
            work as f64 / 1e6,
            limit as f64 / 1e6
        )));
    }
    Ok(())
}

/// Decodes to 8-bit RGB with alpha composited on white and EXIF orientation applied.
pub fn decode_rgb(bytes: &[u8], cfg: &PreprocessConfig) -> Result<RgbImage> {
    let (format, w, h) = probe(bytes, cfg.max_pixels)?;
    // pad keeps the whole longer side in view; crop/squash are limited by the shorter side
    let use_long = cfg.resize == ResizeMode::Pad;
    let side = if use_long { w.max(h) } else { w.min(h) };
    if format == ImageFormat::Jpeg && cfg.fast_jpeg && side >= 4 * cfg.size {
        let denom = jpeg_scale_denom(side, 2 * cfg.size);
        check_working_size(w.div_ceil(denom), h.div_ceil(denom), cfg)?;
        match decode_jpeg_scaled(bytes, 2 * cfg.size, use_long, cfg.max_pixels) {
            Ok(img) => return Ok(img),
            // zune-jpeg (below) is more tolerant of odd files than jpeg-decoder; try it before giving up
            Err(e) => tracing::debug!(error = %e, "scaled JPEG decode failed; decoding at full size"),
        }
    }
    check_working_size(w, h, cfg)?;
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // 4 bytes/px output plus decoder scratch; a hard cap so a lying header cannot balloon memory
    limits.max_alloc = Some(cfg.max_pixels.saturating_mul(8).max(64 << 20));
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt {format:?} image: {e}")))?;
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder)
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt {format:?} image: {e}")))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(to_rgb_on_white(img))
}

/// The largest of 8, 4, 2, 1 that keeps `side / denom` ≥ `min_side`.
fn jpeg_scale_denom(side: u32, min_side: u32) -> u32 {
    let mut denom = 8u32;
    while denom > 1 && side.div_ceil(denom) < min_side {
        denom /= 2;
    }
    denom
}

/// DCT-domain downscaled decode: the smallest of 1/8..1/1 whose longer (or shorter, with
/// `!use_long`) side is still ≥ `min_side`, so the final bicubic step still downsamples ≥ 2×.
fn decode_jpeg_scaled(bytes: &[u8], min_side: u32, use_long: bool, max_pixels: u64) -> Result<RgbImage> {
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    dec.read_info().map_err(|e| EncodeError::InvalidInput(format!("corrupt JPEG: {e}")))?;
    let info = dec.info().ok_or_else(|| EncodeError::InvalidInput("corrupt JPEG header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    // jpeg-decoder parses the header itself; a file whose frames disagree with what the probe
    // saw must not get past the limits through this path
    if let Some(e) = too_large(w, h, max_pixels) {
        return Err(e);
    }
    let side = if use_long { w.max(h) } else { w.min(h) };
    let denom = jpeg_scale_denom(side, min_side);
    let req_w = w.div_ceil(denom).min(u32::from(u16::MAX)) as u16;
    let req_h = h.div_ceil(denom).min(u32::from(u16::MAX)) as u16;
    let (sw, sh) = dec
        .scale(req_w, req_h)
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt JPEG: {e}")))?;
    let pixels = dec.decode().map_err(|e| EncodeError::InvalidInput(format!("corrupt JPEG: {e}")))?;
    let info = dec.info().ok_or_else(|| EncodeError::InvalidInput("corrupt JPEG header".into()))?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let n = (sw * sh) as usize;
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => {
            pixels.chunks_exact(2).map(|c| c[0]).flat_map(|l| [l, l, l]).collect()
        }
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err(EncodeError::InvalidInput("CMYK JPEG not handled by the fast path".into()))
        }
    };
    if rgb.len() != n * 3 {
        return Err(EncodeError::InvalidInput("JPEG decoded to an unexpected size".into()));
    }
    // jpeg-decoder does not read EXIF orientation; take it from the full decoder's header parse,
    // which stops before the entropy-coded data.
    let mut img = DynamicImage::ImageRgb8(
        RgbImage::from_raw(sw, sh, rgb).ok_or_else(|| EncodeError::Runtime("jpeg buffer size".into()))?,
    );
    if let Ok(mut d) = image::codecs::jpeg::JpegDecoder::new(Cursor::new(bytes)) {
        if let Ok(o) = d.orientation() {
            img.apply_orientation(o);
        }
    }
    Ok(img.into_rgb8())
}

/// Alpha-composites onto opaque white with Pillow's integer arithmetic (`AlphaComposite.c`,
/// 7-bit precision, `SHIFTFORDIV255` rounding) so RGBA PNGs match the Python reference exactly.
pub fn to_rgb_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p[3]);
        if a == 0 {
            o.0 = [255, 255, 255];
            continue;
        }
        let coef1 = a * 128; // a*255*255*128 / (255*255), exact for an opaque white background
        let coef2 = 255 * 128 - coef1;
        for c in 0..3 {
            let tmp = u32::from(p[c]) * coef1 + 255 * coef2 + (0x80 << 7);
            o[c] = ((((tmp >> 8) + tmp) >> 8) >> 7) as u8;
        }
    }
    out
}

/// Centres the image on a white square canvas of side max(w, h).
pub fn pad_square(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    if w == h {
        return img.clone();
    }
    let s = w.max(h);
    let mut c = RgbImage::from_pixel(s, s, image::Rgb([255, 255, 255]));
    let (x0, y0) = ((s - w) / 2, (s - h) / 2);
    image::imageops::replace(&mut c, img, i64::from(x0), i64::from(y0));
    c
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for BICUBIC over the full box.
fn coeffs(in_size: u32, out_size: u32) -> (usize, Vec<(usize, usize)>, Vec<i32>) {
    let scale = f64::from(in_size) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut kk = vec![0i32; out_size as usize * ksize];
    let mut w = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero; the clamp makes that equal to floor here
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
        let n = xmax.saturating_sub(xmin);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            *wx = bicubic((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for x in 0..n {
            let k = if ww != 0.0 { w[x] / ww } else { w[x] };
            let f = k * f64::from(1u32 << PRECISION_BITS);
            kk[xx * ksize + x] = if k < 0.0 { (-0.5 + f) as i32 } else { (0.5 + f) as i32 };
        }
        bounds.push((xmin, n));
    }
    (ksize, bounds, kk)
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow-compatible `Image.resize((w, h), BICUBIC)` for RGB: horizontal pass then vertical
/// pass, each rounded to u8, exactly as `ImagingResampleInner` does it.
pub fn resize_bicubic(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    let src = img.as_raw();
    let tmp: Vec<u8> = if out_w != in_w {
        let (ksize, bounds, kk) = coeffs(in_w, out_w);
        let mut t = vec![0u8; out_w as usize * in_h as usize * 3];
        for y in 0..in_h as usize {
            let row = &src[y * in_w as usize * 3..(y + 1) * in_w as usize * 3];
            let orow = &mut t[y * out_w as usize * 3..(y + 1) * out_w as usize * 3];
            for (xx, &(xmin, n)) in bounds.iter().enumerate() {
                let k = &kk[xx * ksize..xx * ksize + n];
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (i, &kv) in k.iter().enumerate() {
                    let p = (xmin + i) * 3;
                    acc[0] += i32::from(row[p]) * kv;
                    acc[1] += i32::from(row[p + 1]) * kv;
                    acc[2] += i32::from(row[p + 2]) * kv;
                }
                orow[xx * 3] = clip8(acc[0]);
                orow[xx * 3 + 1] = clip8(acc[1]);
                orow[xx * 3 + 2] = clip8(acc[2]);
            }
        }
        t
    } else {
        src.to_vec()
    };
    let stride = out_w as usize * 3;
    let out: Vec<u8> = if out_h != in_h {
        let (ksize, bounds, kk) = coeffs(in_h, out_h);
        let mut o = vec![0u8; stride * out_h as usize];
        let mut acc = vec![0i32; stride];
        for (yy, &(ymin, n)) in bounds.iter().enumerate() {
            acc.fill(1i32 << (PRECISION_BITS - 1));
            let k = &kk[yy * ksize..yy * ksize + n];
            for (i, &kv) in k.iter().enumerate() {
                let row = &tmp[(ymin + i) * stride..(ymin + i + 1) * stride];
                for (a, &p) in acc.iter_mut().zip(row) {
                    *a += i32::from(p) * kv;
                }
            }
            for (dst, &a) in o[yy * stride..(yy + 1) * stride].iter_mut().zip(&acc) {
                *dst = clip8(a);
            }
        }
        o
    } else {
        tmp
    };
    // sizes are consistent by construction
    RgbImage::from_raw(out_w, out_h, out).unwrap_or_else(|| RgbImage::new(out_w, out_h))
}

/// How a non-square image becomes `size`×`size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// White square canvas, then resize: keeps the whole product visible (cut-outs on white).
    Pad,
    /// Shorter side to `size + padding`, centre crop (`padding` 32 for the TF classifiers, 0 for CLIP).
    Crop { padding: u32 },
    /// Resize to `size`×`size` ignoring aspect ratio.
    Squash,
}

impl ResizeMode {
    pub fn parse(s: Option<&str>, crop_padding: u32) -> Result<Self> {
        match s.unwrap_or("pad") {
            "pad" => Ok(ResizeMode::Pad),
            "crop" => Ok(ResizeMode::Crop { padding: crop_padding }),
            "squash" => Ok(ResizeMode::Squash),
            other => Err(EncodeError::Config(format!("unknown resize mode {other:?} (pad | crop | squash)"))),
        }
    }
}

fn resize_to_square(img: &RgbImage, s: u32, mode: ResizeMode) -> RgbImage {
    match mode {
        ResizeMode::Pad => {
            let sq = pad_square(img);
            if sq.dimensions() == (s, s) { sq } else { resize_bicubic(&sq, s, s) }
        }
        ResizeMode::Squash => resize_bicubic(img, s, s),
        ResizeMode::Crop { padding } => {
            let (w, h) = img.dimensions();
            let target = f64::from(s + padding);
            let scale = target / f64::from(w.min(h));
            let nw = ((f64::from(w) * scale).round() as u32).max(s);
            let nh = ((f64::from(h) * scale).round() as u32).max(s);
            let r = resize_bicubic(img, nw, nh);
            let (l, t) = ((nw - s) / 2, (nh - s) / 2);
            image::imageops::crop_imm(&r, l, t, s, s).to_image()
        }
    }
}

/// resize (per mode) → normalise, written as CHW into `out` (len 3·size·size).
pub fn preprocess_rgb(img: &RgbImage, cfg: &PreprocessConfig, out: &mut [f32]) {
    let s = cfg.size;
    let r = resize_to_square(img, s, cfg.resize);
    let plane = (s * s) as usize;
    for (i, p) in r.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(p[c]) - cfg.mean[c]) / cfg.std[c];
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
    pub fn load(env: &Environment, manifest: Manifest, opts: &SessionOptions, max_pixels: u64, fast_jpeg: bool) -> Result<Self> {
        let p = &manifest.preprocess;
        let (crop_padding, default_input, default_outputs) = match manifest.kind {
            ModelKind::ImageClassifier => (32, "image", vec!["logits", "features"]),
            ModelKind::ClipImage => (0, "pixel_values", vec!["image_embeds"]),
            k => return Err(EncodeError::Config(format!("{} is a {k} model, not an image model", manifest.id))),
        };
        if let Some(bg) = &p.background {
            if bg != "white" {
                return Err(EncodeError::Config(format!("{}: background {bg:?} unsupported (white only)", manifest.id)));
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
            return Err(EncodeError::Config(format!("{}: std must be non-zero", manifest.id)));
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
                return Err(EncodeError::Config(format!("{}: graph has no output {o:?} (has {graph_out:?})", manifest.id)));
            }
        }
        Ok(Self { manifest, pool, prep, input, outputs })
    }

    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    pub fn preprocess_config(&self) -> &PreprocessConfig {
        &self.prep
    }

    /// Decodes and preprocesses every image first (so one bad image fails the call before any
    /// model time is spent), then runs the graph in batches.
    pub fn encode_bytes(&self, images: &[&[u8]]) -> Result<Vec<ImageOutputs>> {
        let per = 3 * (self.prep.size * self.prep.size) as usize;
        let mut data = vec![0f32; per * images.len()];
        let started = std::time::Instant::now();
        for (i, bytes) in images.iter().enumerate() {
            let img = decode_rgb(bytes, &self.prep).map_err(|e| match e {
                EncodeError::InvalidInput(m) if images.len() > 1 => EncodeError::InvalidInput(format!("image #{i}: {m}")),
                EncodeError::TooLarge(m) if images.len() > 1 => EncodeError::TooLarge(format!("image #{i}: {m}")),
                e => e,
            })?;
            preprocess_rgb(&img, &self.prep, &mut data[i * per..(i + 1) * per]);
        }
        crate::telemetry::observe_stage("decode", started.elapsed());
        self.run_tensor(&data, images.len())
    }

    /// Runs already-preprocessed NCHW data for `n` images.
    pub fn run_tensor(&self, data: &[f32], n: usize) -> Result<Vec<ImageOutputs>> {
        let s = self.prep.size as usize;
        let per = 3 * s * s;
        if data.len() != per * n {
            return Err(EncodeError::InvalidInput(format!("tensor has {} floats, expected {n}×3×{s}×{s}", data.len())));
        }
        let mut out = Vec::with_capacity(n);
        for chunk in data.chunks(per * MAX_RUN_BATCH) {
            let b = chunk.len() / per;
            let tensor = TensorRef::from_array_view(([b, 3, s, s], chunk)).map_err(|e| EncodeError::runtime("image tensor", e))?;
            let mut cols: Vec<Vec<f32>> = Vec::with_capacity(self.outputs.len());
            self.pool.with(|sess| -> Result<()> {
                let res = sess
                    .run(ort::inputs![self.input.as_str() => tensor])
                    .map_err(|e| EncodeError::runtime("image model run", e))?;
                for name in &self.outputs {
                    let v = res.get(name).ok_or_else(|| EncodeError::Runtime(format!("missing output {name}")))?;
                    let (shape, d) = v.try_extract_tensor::<f32>().map_err(|e| EncodeError::runtime("image output", e))?;
                    if shape.len() != 2 || shape[0] as usize != b {
                        return Err(EncodeError::Runtime(format!("output {name} has shape {shape:?}, batch {b}")));
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
                        (ModelKind::ClipImage, _) => o.embeds = Some(vecmath::normalized(row)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_constant() {
        let img = RgbImage::from_pixel(300, 200, image::Rgb([10, 200, 255]));
        let r = resize_bicubic(&img, 224, 150);
        assert!(r.pixels().all(|p| p.0 == [10, 200, 255]));
    }

    #[test]
    fn composite_matches_pillow_formula() {
        let mut img = image::RgbaImage::new(1, 3);
        img.put_pixel(0, 0, image::Rgba([0, 0, 0, 0]));
        img.put_pixel(0, 1, image::Rgba([0, 0, 0, 255]));
        img.put_pixel(0, 2, image::Rgba([0, 100, 200, 128]));
        let out = to_rgb_on_white(DynamicImage::ImageRgba8(img));
        assert_eq!(out.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(0, 1).0, [0, 0, 0]);
        // Pillow: Image.alpha_composite(white, (0,100,200,128)) -> (127, 177, 227)
        assert_eq!(out.get_pixel(0, 2).0, [127, 177, 227]);
    }

    #[test]
    fn bomb_rejected_from_header() {
        // 8000x6250 PNG header with no pixel data
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&8000u32.to_be_bytes());
        ihdr.extend_from_slice(&6250u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        let e = probe(&png, 40_000_000).unwrap_err();
        assert!(matches!(e, EncodeError::TooLarge(_)), "{e}");
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img).write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        out
    }

    #[test]
    fn extreme_aspect_ratio_rejected_before_decoding() {
        // 1×100000 is within a 100 kP limit, but its pad canvas is 10^10 pixels (30 GB) and its
        // crop intermediate 6.4 G pixels: before the check this aborted on allocation.
        let tall = png(1, 100_000);
        for resize in [ResizeMode::Pad, ResizeMode::Crop { padding: 32 }, ResizeMode::Squash] {
            let cfg = PreprocessConfig { resize, max_pixels: 100_000, ..Default::default() };
            let e = preprocess_bytes(&tall, &cfg).unwrap_err();
            assert!(matches!(e, EncodeError::TooLarge(_)), "{resize:?}: {e}");
            let t = preprocess_bytes(&png(400, 250), &cfg).unwrap();
            assert_eq!(t.len(), 3 * 224 * 224);
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
}
