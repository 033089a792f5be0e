//! RGB → `size`×`size` → normalised CHW floats: Pillow's antialiased bicubic in its fixed-point
//! arithmetic, the pad / crop / squash modes, and the per-channel `(u8 − mean)/std`.

use image::RgbImage;

use super::super::error::{EncodeError, Result};
use super::PreprocessConfig;

/// Pixels of the largest buffer [`preprocess_rgb`] builds from a `w`×`h` image: the white
/// square canvas for pad, the resized image before the centre crop for crop, the
/// horizontally resized intermediate for squash.
pub(super) fn working_pixels(w: u32, h: u32, cfg: &PreprocessConfig) -> u64 {
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
            kk[xx * ksize + x] = if k < 0.0 {
                (-0.5 + f) as i32
            } else {
                (0.5 + f) as i32
            };
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
            "crop" => Ok(ResizeMode::Crop {
                padding: crop_padding,
            }),
            "squash" => Ok(ResizeMode::Squash),
            other => Err(EncodeError::Config(format!(
                "unknown resize mode {other:?} (pad | crop | squash)"
            ))),
        }
    }
}

fn resize_to_square(img: &RgbImage, s: u32, mode: ResizeMode) -> RgbImage {
    match mode {
        ResizeMode::Pad => {
            let sq = pad_square(img);
            if sq.dimensions() == (s, s) {
                sq
            } else {
                resize_bicubic(&sq, s, s)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_identity_and_constant() {
        let img = RgbImage::from_pixel(300, 200, image::Rgb([10, 200, 255]));
        let r = resize_bicubic(&img, 224, 150);
        assert!(r.pixels().all(|p| p.0 == [10, 200, 255]));
    }
}
