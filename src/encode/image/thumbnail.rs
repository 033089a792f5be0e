//! Thumbnails for display (#13): the first photo of an item, shrunk to fit a square and stored
//! as a small JPEG, so the web pages never need the original photos (which are not stored).

use super::decode::decode_rgb;
use super::PreprocessConfig;
use crate::encode::error::{EncodeError, Result};

/// Longest side of a thumbnail: a results-grid card is about 200 CSS pixels wide, and 320
/// keeps it sharp on 1.5× screens at ~10–20 KB.
pub const THUMBNAIL_SIDE: u32 = 320;
const QUALITY: u8 = 80;

/// Decodes `bytes` under the same pixel limit as the image tower, shrinks the image to fit
/// `side`×`side` (never enlarges) and encodes it as JPEG.
pub fn thumbnail(bytes: &[u8], side: u32, max_pixels: u64) -> Result<Vec<u8>> {
    let cfg = PreprocessConfig {
        // Large JPEGs are decoded at a DCT scale that keeps the longer side ≥ 2 × size.
        size: side.div_ceil(2).max(1),
        max_pixels,
        ..PreprocessConfig::default()
    };
    let img = decode_rgb(bytes, &cfg)?;
    let (w, h) = img.dimensions();
    let scale = (side as f64 / w.max(h) as f64).min(1.0);
    let (tw, th) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let small = if (tw, th) == (w, h) {
        img
    } else {
        image::imageops::resize(&img, tw, th, image::imageops::FilterType::Triangle)
    };
    let mut out = Vec::with_capacity(16 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, QUALITY)
        .encode_image(&small)
        .map_err(|e| EncodeError::InvalidInput(format!("thumbnail: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinks_to_fit_and_keeps_the_aspect_ratio() {
        let big = image::RgbImage::from_pixel(1200, 600, image::Rgb([200, 30, 30]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(big)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let jpeg = thumbnail(&png, 320, 40_000_000).unwrap();
        let t = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((t.width(), t.height()), (320, 160));
        assert!(jpeg.len() < 20_000, "{} bytes", jpeg.len());
        assert!(thumbnail(b"not an image", 320, 40_000_000).is_err());
    }
}
