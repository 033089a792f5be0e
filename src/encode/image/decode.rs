//! Bytes → 8-bit RGB: header probe and pixel limits first, then the decode (DCT-scaled for large
//! JPEGs), EXIF orientation, alpha composited on white.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};

use super::super::error::{EncodeError, Result};
use super::resize::working_pixels;
use super::{PreprocessConfig, ResizeMode};

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
    let be32 = |i: usize| {
        b.get(i..i + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    let be16 = |i: usize| {
        b.get(i..i + 2)
            .map(|s| u32::from(u16::from_be_bytes([s[0], s[1]])))
    };
    let le16 = |i: usize| {
        b.get(i..i + 2)
            .map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
    };
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
    let format = reader.format().ok_or_else(|| {
        EncodeError::InvalidInput("not a supported image format (jpeg, png, webp, gif, bmp)".into())
    })?;
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt {format:?} header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(EncodeError::InvalidInput(format!(
            "image has zero size ({w}x{h})"
        )));
    }
    if let Some(e) = too_large(w, h, max_pixels) {
        return Err(e);
    }
    Ok((format, w, h))
}

/// The pixel limit bounds the decode; this bounds what preprocessing builds from the decoded
/// image, which for a very elongated image within the pixel limit is far larger (a 1×40M PNG
/// pads to a 40M×40M canvas). Twice the pixel limit keeps ordinary photos (8000×5000 pads to
/// 64 MP under the default 40 MP) and rejects only extreme aspect ratios.
fn check_working_size(w: u32, h: u32, cfg: &PreprocessConfig) -> Result<()> {
    let work = working_pixels(w, h, cfg);
    // the floor keeps small pixel limits from refusing ordinary aspect ratios
    let limit = cfg
        .max_pixels
        .saturating_mul(2)
        .max(16 * u64::from(cfg.size).pow(2));
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
            Err(e) => {
                tracing::debug!(error = %e, "scaled JPEG decode failed; decoding at full size")
            }
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
fn decode_jpeg_scaled(
    bytes: &[u8],
    min_side: u32,
    use_long: bool,
    max_pixels: u64,
) -> Result<RgbImage> {
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    dec.read_info()
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt JPEG: {e}")))?;
    let info = dec
        .info()
        .ok_or_else(|| EncodeError::InvalidInput("corrupt JPEG header".into()))?;
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
    let pixels = dec
        .decode()
        .map_err(|e| EncodeError::InvalidInput(format!("corrupt JPEG: {e}")))?;
    let info = dec
        .info()
        .ok_or_else(|| EncodeError::InvalidInput("corrupt JPEG header".into()))?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let n = (sw * sh) as usize;
    let rgb: Vec<u8> = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .map(|c| c[0])
            .flat_map(|l| [l, l, l])
            .collect(),
        jpeg_decoder::PixelFormat::CMYK32 => {
            return Err(EncodeError::InvalidInput(
                "CMYK JPEG not handled by the fast path".into(),
            ))
        }
    };
    if rgb.len() != n * 3 {
        return Err(EncodeError::InvalidInput(
            "JPEG decoded to an unexpected size".into(),
        ));
    }
    // jpeg-decoder does not read EXIF orientation; take it from the full decoder's header parse,
    // which stops before the entropy-coded data.
    let mut img = DynamicImage::ImageRgb8(
        RgbImage::from_raw(sw, sh, rgb)
            .ok_or_else(|| EncodeError::Runtime("jpeg buffer size".into()))?,
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

#[cfg(test)]
mod tests {
    use super::super::preprocess_bytes;
    use super::*;

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
        png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
        let e = probe(&png, 40_000_000).unwrap_err();
        assert!(matches!(e, EncodeError::TooLarge(_)), "{e}");
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]));
        let mut out = Vec::new();
        DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn extreme_aspect_ratio_rejected_before_decoding() {
        // 1×100000 is within a 100 kP limit, but its pad canvas is 10^10 pixels (30 GB) and its
        // crop intermediate 6.4 G pixels: before the check this aborted on allocation.
        let tall = png(1, 100_000);
        for resize in [
            ResizeMode::Pad,
            ResizeMode::Crop { padding: 32 },
            ResizeMode::Squash,
        ] {
            let cfg = PreprocessConfig {
                resize,
                max_pixels: 100_000,
                ..Default::default()
            };
            let e = preprocess_bytes(&tall, &cfg).unwrap_err();
            assert!(matches!(e, EncodeError::TooLarge(_)), "{resize:?}: {e}");
            let t = preprocess_bytes(&png(400, 250), &cfg).unwrap();
            assert_eq!(t.len(), 3 * 224 * 224);
        }
    }
}
