//! CLIP-style dual encoders (`clip_text` + `clip_image`): both towers emit unit vectors in one
//! space, so there is no bridge and no separate visual space. The towers themselves run through
//! [`super::text::TextEncoder`] (fixed-length padded ids → `text_embeds`) and
//! [`super::image::ImageEncoder`] (crop preprocessing with the manifest's mean/std →
//! `image_embeds`); this module only checks that two manifests really are a pair.

use super::error::{EncodeError, Result};
use super::manifest::{Manifest, ModelKind};

/// The two manifests must name each other (`pair = …`) and agree on `dim`: vectors from
/// different CLIP checkpoints are not comparable even when the widths happen to match.
pub fn check_pair(text: &Manifest, image: &Manifest) -> Result<()> {
    if text.kind != ModelKind::ClipText || image.kind != ModelKind::ClipImage {
        return Err(EncodeError::Config(format!(
            "{} / {} are not a clip_text / clip_image pair",
            text.id, image.id
        )));
    }
    if text.dim != image.dim {
        return Err(EncodeError::Config(format!(
            "CLIP towers disagree on dim: {} vs {}",
            text.dim, image.dim
        )));
    }
    let named = |m: &Manifest, other: &Manifest| m.pair.as_deref().is_none_or(|p| p == other.id);
    if !named(text, image) || !named(image, text) {
        return Err(EncodeError::Config(format!(
            "CLIP towers are not paired: {} pairs with {:?}, {} pairs with {:?}",
            text.id, text.pair, image.id, image.pair
        )));
    }
    Ok(())
}
