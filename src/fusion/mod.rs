//! Fusion: one item's evidence (title, optional description, photos) → the vectors the index
//! stores, the merge of a photo query's two hit lists, and ([`hybrid`]) the fusion of a text
//! query's vector and lexical lists. Plain vector math: it knows no
//! encoders, spaces or store; the pipeline binds its outputs to the spaces with the text and
//! visual roles.
//!
//! * text-role vector = normalise(w_text · T(text) + w_image · mean_p bridge(p)), where `text` is the title
//!   (plus the description when [`FusionConfig::include_description`] is set) and `bridge(p)` is
//!   each photo's shared-space vector (ConSE bridge or CLIP image tower). An item without photos
//!   gets `shared = T(text)`; weights can be overridden per item.
//!   The reference measured why both terms matter: on Vendure paraphrase queries, text alone gave
//!   MRR 0.87 and the 0.5/0.5 fusion 0.95–0.97, while the bridge alone gave only 0.57–0.63.
//! * visual-role vector = normalise(mean_p normalise(features(p))) — image→image similarity lives in the
//!   classifier's feature space, because bridge vectors are poor at it (F-MNIST P@10 0.81 vs ≤0.71).
//!   Absent when the item has no photo or the image tower is CLIP.
//!
//! * videos add two more terms to the text-role sum: `w_frames · mean_f bridge(f)` over their
//!   keyframes and `w_speech · T(transcript)` of their soundtrack ([`VideoWeights`]); their
//!   keyframes' features join the visual-role vector as one more source beside the photos
//!   (normalise(mean_unit(photos) + mean_unit(frames))), so eight frames do not outvote one photo.
//!   A term without evidence drops out and the others keep their ratio.
//! * a video *query* is encoded the same way, without a title: text-role =
//!   normalise(w_frames · mean frames + w_speech · T(transcript)), visual-role = mean_unit(frames),
//!   then searched and merged like a photo query ([`fuse_video_query`]).
//!
//! # Image queries: merging the two spaces
//!
//! A photo query yields both a shared vector (what the photo *is*, comparable with item texts) and
//! a visual vector (what it *looks like*). The search path queries both indexes and merges with
//! [`merge_image_hits`]: `score = α·cos_shared + (1 − α)·cos_visual` over the **union** of both candidate
//! lists (default α = 0.5). A candidate found in only one list has no score from the other; it is
//! given that list's lowest returned score (it ranked below the list's cut-off, so its true cosine
//! is at most that) — an optimistic-but-bounded guess. When exact scores matter more than a few
//! microseconds, the caller can instead fetch the stored vectors of such candidates and compute the
//! missing cosine exactly. Items with no photo have no visual vector and only ever appear through
//! the shared list. For a CLIP image tower (no visual space) use α = 1.

mod hybrid;

pub use hybrid::{fuse as fuse_hybrid, FusedHit, Hybrid, HybridMethod};

use mmsearch_index::metric::normalize;
use mmsearch_index::Scored;
use serde::{Deserialize, Serialize};

/// Relative weight of the text and photo evidence in an item's text-role vector. Only the
/// ratio matters (the result is renormalised).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    pub text: f32,
    pub image: f32,
}

impl Default for FusionWeights {
    fn default() -> Self {
        Self {
            text: 0.5,
            image: 0.5,
        }
    }
}

impl FusionWeights {
    /// Finite, ≥ 0 and not both 0: anything else would make a NaN or zero vector. The config
    /// is checked at start and per-item overrides at ingest (the item is rejected), so fusion
    /// itself only ever sees valid weights.
    pub fn validate(&self) -> Result<(), String> {
        let ok = |w: f32| w.is_finite() && w >= 0.0;
        if !ok(self.text) || !ok(self.image) || self.text + self.image <= 0.0 {
            return Err(format!(
                "fusion weights must be finite, ≥ 0 and not both 0 (got text {}, image {})",
                self.text, self.image
            ));
        }
        Ok(())
    }
}

/// Relative weight of a video's keyframes and its soundtrack's transcript, in items (beside the
/// title and photo terms of [`FusionWeights`]) and in video queries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VideoWeights {
    pub frames: f32,
    pub speech: f32,
}

/// `[fusion]` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FusionConfig {
    pub text_weight: f32,
    pub image_weight: f32,
    /// Embed "title. description" instead of the title alone. Off by default: long descriptions
    /// dilute the title (mean pooling) and the reference evaluated titles only.
    pub include_description: bool,
    /// α in [`merge_image_hits`] for photo queries.
    pub image_query_alpha: f32,
    /// Weight of a video's keyframes (bridged into the text-role space), items and queries.
    pub video_frame_weight: f32,
    /// Weight of a video's transcript (text tower), items and queries.
    pub video_speech_weight: f32,
    /// How HYBRID queries fuse the vector and lexical lists: "rrf" or "convex" ([`hybrid`]).
    pub hybrid_method: String,
    /// The lexical list's weight in [0, 1] (per request: `SearchRequest.lexical_weight`).
    pub hybrid_lexical_weight: f32,
    /// Convex: the power of the best lexical hit's share of the query that weighs the lexical
    /// list (higher: partial word matches count less).
    pub hybrid_confidence_power: f32,
    /// RRF's k: larger flattens the advantage of the top ranks.
    pub rrf_k: f32,
}

impl Default for FusionConfig {
    fn default() -> Self {
        Self {
            text_weight: 0.5,
            image_weight: 0.5,
            include_description: false,
            image_query_alpha: 0.5,
            video_frame_weight: 0.5,
            video_speech_weight: 0.5,
            // Measured on Vendure (BENCHMARKS.md, #12): convex 0.5 has the best union MRR and
            // keeps exact-token queries at LEXICAL's level; RRF loses on both.
            hybrid_method: "convex".into(),
            hybrid_lexical_weight: 0.3,
            hybrid_confidence_power: 4.0,
            rrf_k: 60.0,
        }
    }
}

impl FusionConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.weights().validate()?;
        let v = self.video_weights();
        let ok = |w: f32| w.is_finite() && w >= 0.0;
        if !ok(v.frames) || !ok(v.speech) || v.frames + v.speech <= 0.0 {
            return Err(format!(
                "fusion.video_frame_weight {} and video_speech_weight {} must be finite, ≥ 0 and not both 0",
                v.frames, v.speech
            ));
        }
        if !(0.0..=1.0).contains(&self.image_query_alpha) {
            return Err(format!(
                "fusion.image_query_alpha {} must be in [0, 1]",
                self.image_query_alpha
            ));
        }
        if !matches!(self.hybrid_method.as_str(), "rrf" | "convex") {
            return Err(format!(
                "fusion.hybrid_method {:?} must be \"rrf\" or \"convex\"",
                self.hybrid_method
            ));
        }
        self.hybrid().validate().map_err(|e| format!("fusion: {e}"))
    }

    /// The configured fusion of HYBRID queries (a request may override method and weight).
    pub fn hybrid(&self) -> Hybrid {
        let method = match self.hybrid_method.as_str() {
            "convex" => HybridMethod::Convex,
            _ => HybridMethod::Rrf { k: self.rrf_k },
        };
        Hybrid {
            method,
            lexical_weight: self.hybrid_lexical_weight,
            confidence_power: self.hybrid_confidence_power,
        }
    }

    pub fn weights(&self) -> FusionWeights {
        FusionWeights {
            text: self.text_weight,
            image: self.image_weight,
        }
    }

    pub fn video_weights(&self) -> VideoWeights {
        VideoWeights {
            frames: self.video_frame_weight,
            speech: self.video_speech_weight,
        }
    }

    /// The weights for one item: its overrides on top of the configured ones, validated.
    pub fn weights_for(
        &self,
        text_weight: Option<f32>,
        image_weight: Option<f32>,
    ) -> Result<FusionWeights, String> {
        let w = FusionWeights {
            text: text_weight.unwrap_or(self.text_weight),
            image: image_weight.unwrap_or(self.image_weight),
        };
        w.validate().map(|()| w)
    }

    /// The text that represents an item in the text-role space.
    pub fn item_text(&self, title: &str, description: &str) -> String {
        let title = title.trim();
        let description = description.trim();
        if !self.include_description || description.is_empty() {
            return title.to_string();
        }
        if title.is_empty() {
            description.to_string()
        } else if title.ends_with(['.', '!', '?', ':', ';']) {
            format!("{title} {description}")
        } else {
            format!("{title}. {description}")
        }
    }
}

/// Already-encoded evidence for one item (what the ingest path has after its batched model calls).
#[derive(Debug, Clone, Default)]
pub struct ItemEvidence<'a> {
    /// T(title [+ description]); `None` when the item has no text.
    pub text: Option<&'a [f32]>,
    /// Text-space vector of each photo (bridge or CLIP).
    pub photo_text_space: Vec<&'a [f32]>,
    /// Visual features of each photo (empty with a CLIP tower).
    pub photo_visual: Vec<&'a [f32]>,
    /// Text-space vector of each video keyframe (all the item's videos).
    pub frame_text_space: Vec<&'a [f32]>,
    /// Visual features of each video keyframe.
    pub frame_visual: Vec<&'a [f32]>,
    /// T(transcript) of each video that has speech.
    pub speech: Vec<&'a [f32]>,
}

/// Fused vectors of one item; either may be absent (no text and no photo → no text-role vector).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusedItem {
    pub text: Option<Vec<f32>>,
    pub visual: Option<Vec<f32>>,
}

/// Fusion of one item's evidence (see the module docs for the formula).
pub fn fuse_item(ev: &ItemEvidence<'_>, w: FusionWeights, v: VideoWeights) -> FusedItem {
    let text = ev.text.map(|t| vec![t]).unwrap_or_default();
    let terms = [
        (w.text, text.as_slice()),
        (w.image, &ev.photo_text_space[..]),
        (v.frames, &ev.frame_text_space[..]),
        (v.speech, &ev.speech[..]),
    ];
    let visual = [mean_unit(&ev.photo_visual), mean_unit(&ev.frame_visual)];
    let visual: Vec<&[f32]> = visual.iter().flatten().map(Vec::as_slice).collect();
    FusedItem {
        text: weighted_means(&terms).0,
        visual: mean_unit(&visual),
    }
}

/// A video query's vectors and the weights really used (a silent video's speech term is 0).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusedVideoQuery {
    pub text: Option<Vec<f32>>,
    pub visual: Option<Vec<f32>>,
    /// Effective weights of frames and speech, summing to 1 (for `explain`).
    pub weights: VideoWeights,
}

impl Default for VideoWeights {
    fn default() -> Self {
        VideoWeights {
            frames: 0.5,
            speech: 0.5,
        }
    }
}

/// A video query: keyframes (text-space and visual vectors) and, when it has speech, T(transcript).
pub fn fuse_video_query(
    frames_text: &[&[f32]],
    frames_visual: &[&[f32]],
    speech: Option<&[f32]>,
    v: VideoWeights,
) -> FusedVideoQuery {
    let speech: Vec<&[f32]> = speech.into_iter().collect();
    let (text, used) = weighted_means(&[(v.frames, frames_text), (v.speech, &speech)]);
    let sum: f32 = used.iter().sum();
    let weights = if sum > 0.0 {
        VideoWeights {
            frames: used[0] / sum,
            speech: used[1] / sum,
        }
    } else {
        VideoWeights {
            frames: 0.0,
            speech: 0.0,
        }
    };
    FusedVideoQuery {
        text,
        visual: mean_unit(frames_visual),
        weights,
    }
}

/// normalise(Σ w_i · mean(x_i)) over the terms that have vectors (of the first one's width); the
/// present terms keep their ratio, and when all of their weights are 0 they count equally (a
/// lone title is its own vector whatever its weight). Returns the weights used per term.
fn weighted_means(terms: &[(f32, &[&[f32]])]) -> (Option<Vec<f32>>, Vec<f32>) {
    let mut used = vec![0f32; terms.len()];
    let Some(dim) = terms.iter().find_map(|(_, xs)| xs.first().map(|x| x.len())) else {
        return (None, used);
    };
    let present: Vec<Vec<&[f32]>> = terms
        .iter()
        .map(|(_, xs)| xs.iter().copied().filter(|x| x.len() == dim).collect())
        .collect();
    let total: f32 = terms
        .iter()
        .zip(&present)
        .filter(|(_, p)| !p.is_empty())
        .map(|((w, _), _)| *w)
        .sum();
    let mut v = vec![0f32; dim];
    for (i, ((w, _), xs)) in terms.iter().zip(&present).enumerate() {
        if xs.is_empty() {
            continue;
        }
        used[i] = if total > 0.0 { *w } else { 1.0 };
        for x in xs {
            axpy(&mut v, used[i] / xs.len() as f32, x);
        }
    }
    (normalize(&mut v).then_some(v), used)
}

/// normalise(mean of normalise(x)); `None` for no input or a degenerate mean.
fn mean_unit(xs: &[&[f32]]) -> Option<Vec<f32>> {
    let dim = xs.first()?.len();
    let mut v = vec![0f32; dim];
    let xs: Vec<&[f32]> = xs.iter().copied().filter(|x| x.len() == dim).collect();
    for x in &xs {
        let mut u = x.to_vec();
        if normalize(&mut u) {
            axpy(&mut v, 1.0 / xs.len() as f32, &u);
        }
    }
    normalize(&mut v).then_some(v)
}

/// `acc += w · v`
fn axpy(acc: &mut [f32], w: f32, v: &[f32]) {
    acc.iter_mut().zip(v).for_each(|(a, x)| *a += w * x);
}

/// How one list contributed to a merged image-query score (for `explain`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub score: f32,
    /// 1-based rank in its list; 0 when the id was absent and `score` is the list's floor.
    pub rank: u32,
}

/// One merged hit with both parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merged {
    pub id: u64,
    pub score: f32,
    pub text: Part,
    pub visual: Part,
}

/// Merges the text-space and visual-space hit lists of a photo query (see the module docs).
/// Returns the union sorted by `α·s_text + (1 − α)·s_visual`, best first (ties by id), the best
/// `window` of them.
pub fn merge_image_hits(
    text: &[Scored],
    visual: &[Scored],
    alpha: f32,
    window: usize,
) -> Vec<Merged> {
    use std::collections::HashMap;
    let floor = |l: &[Scored]| l.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    // an empty list has no floor; its term then contributes 0
    let absent = |l: &[Scored]| Part {
        score: Some(floor(l)).filter(|f| f.is_finite()).unwrap_or(0.0),
        rank: 0,
    };
    let (ft, fv) = (absent(text), absent(visual));
    let mut m: HashMap<u64, (Option<Part>, Option<Part>)> =
        HashMap::with_capacity(text.len() + visual.len());
    // Lists are best first, so the first occurrence of an id is its best.
    for (i, h) in text.iter().enumerate() {
        m.entry(h.id).or_default().0.get_or_insert(Part {
            score: h.score,
            rank: i as u32 + 1,
        });
    }
    for (i, h) in visual.iter().enumerate() {
        m.entry(h.id).or_default().1.get_or_insert(Part {
            score: h.score,
            rank: i as u32 + 1,
        });
    }
    let mut out: Vec<Merged> = m
        .into_iter()
        .map(|(id, (t, v))| {
            let (t, v) = (t.unwrap_or(ft), v.unwrap_or(fv));
            Merged {
                id,
                score: alpha * t.score + (1.0 - alpha) * v.score,
                text: t,
                visual: v,
            }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out.truncate(window);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(id: u64, score: f32) -> Scored {
        Scored { id, score }
    }

    #[test]
    fn no_photo_is_text() {
        let f = fuse_item(
            &ItemEvidence {
                text: Some(&[0.6, 0.8]),
                ..Default::default()
            },
            FusionWeights::default(),
            VideoWeights::default(),
        );
        assert_eq!(f.text, Some(vec![0.6, 0.8]));
        assert!(f.visual.is_none());
    }

    #[test]
    fn half_half() {
        let ev = ItemEvidence {
            text: Some(&[1.0, 0.0]),
            photo_text_space: vec![&[0.0, 1.0]],
            photo_visual: vec![&[3.0, 4.0]],
            ..Default::default()
        };
        let f = fuse_item(&ev, FusionWeights::default(), VideoWeights::default());
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let t = f.text.expect("text");
        assert!((t[0] - r).abs() < 1e-6 && (t[1] - r).abs() < 1e-6);
        let v = f.visual.expect("visual");
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(
            fuse_item(
                &ItemEvidence::default(),
                FusionWeights::default(),
                VideoWeights::default()
            ),
            FusedItem::default()
        );
    }

    #[test]
    fn video_terms_join_with_their_weights() {
        // title (1,0,0), one keyframe bridged to (0,1,0), speech (0,0,1); frames weigh 2, speech 1
        let ev = ItemEvidence {
            text: Some(&[1.0, 0.0, 0.0]),
            frame_text_space: vec![&[0.0, 1.0, 0.0], &[0.0, 1.0, 0.0]],
            speech: vec![&[0.0, 0.0, 1.0]],
            photo_visual: vec![&[1.0, 0.0]],
            frame_visual: vec![&[0.0, 2.0], &[0.0, 3.0], &[0.0, 1.0]],
            ..Default::default()
        };
        let f = fuse_item(
            &ev,
            FusionWeights {
                text: 1.0,
                image: 5.0,
            },
            VideoWeights {
                frames: 2.0,
                speech: 1.0,
            },
        );
        let t = f.text.unwrap();
        let n = (1.0f32 + 4.0 + 1.0).sqrt();
        assert!(
            (t[0] - 1.0 / n).abs() < 1e-6
                && (t[1] - 2.0 / n).abs() < 1e-6
                && (t[2] - 1.0 / n).abs() < 1e-6,
            "{t:?}"
        );
        // photos and frames are one source each in the visual vector, whatever their counts
        let r = std::f32::consts::FRAC_1_SQRT_2;
        let v = f.visual.unwrap();
        assert!((v[0] - r).abs() < 1e-6 && (v[1] - r).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn silent_video_query_is_frames_only() {
        let q = fuse_video_query(
            &[&[0.0, 2.0]],
            &[&[3.0, 4.0]],
            None,
            VideoWeights {
                frames: 0.3,
                speech: 0.7,
            },
        );
        assert_eq!(q.text, Some(vec![0.0, 1.0]));
        assert_eq!(
            q.weights,
            VideoWeights {
                frames: 1.0,
                speech: 0.0
            }
        );
        let q = fuse_video_query(
            &[&[0.0, 1.0]],
            &[],
            Some(&[1.0, 0.0]),
            VideoWeights {
                frames: 0.25,
                speech: 0.75,
            },
        );
        let t = q.text.unwrap();
        assert!((t[0] / t[1] - 3.0).abs() < 1e-5, "{t:?}");
        assert_eq!(
            q.weights,
            VideoWeights {
                frames: 0.25,
                speech: 0.75
            }
        );
        assert!(q.visual.is_none());
        assert!(FusionConfig {
            video_frame_weight: 0.0,
            video_speech_weight: 0.0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn bad_weights_are_refused_not_replaced() {
        let cfg = FusionConfig::default();
        assert!(cfg.weights_for(Some(0.0), Some(0.0)).is_err());
        assert!(cfg.weights_for(Some(f32::NAN), None).is_err());
        assert!(cfg.weights_for(Some(-1.0), None).is_err());
        assert_eq!(
            cfg.weights_for(Some(2.0), None),
            Ok(FusionWeights {
                text: 2.0,
                image: 0.5
            })
        );
        assert!(FusionConfig {
            text_weight: 0.0,
            image_weight: 0.0,
            ..cfg.clone()
        }
        .validate()
        .is_err());
        assert!(FusionConfig {
            image_query_alpha: 1.5,
            ..cfg
        }
        .validate()
        .is_err());
    }

    #[test]
    fn item_text_joins_description_only_when_asked() {
        let on = FusionConfig {
            include_description: true,
            ..Default::default()
        };
        assert_eq!(
            FusionConfig::default().item_text(" Tripod ", "Steady."),
            "Tripod"
        );
        assert_eq!(on.item_text("Tripod", " Steady. "), "Tripod. Steady.");
        assert_eq!(on.item_text("Tripod!", "Steady."), "Tripod! Steady.");
        assert_eq!(on.item_text("", "Steady."), "Steady.");
    }

    #[test]
    fn merge_union() {
        let m = merge_image_hits(&[s(1, 0.9), s(2, 0.5)], &[s(2, 0.9), s(3, 0.8)], 0.5, 10);
        // 2: .5*.5+.5*.9 = .70 ; 1: .5*.9 + .5*.8(floor) = .85 ; 3: .5*.5(floor) + .5*.8 = .65
        assert_eq!(m.iter().map(|h| h.id).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!((m[0].score - 0.85).abs() < 1e-6);
        assert_eq!((m[0].text.rank, m[0].visual.rank), (1, 0));
        assert_eq!((m[1].text.rank, m[1].visual.rank), (2, 1));
        let one = merge_image_hits(&[s(1, 0.9)], &[s(2, 0.8)], 0.5, 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].id, 1);
        // an empty list contributes 0
        let m = merge_image_hits(&[s(4, 0.6)], &[], 0.5, 10);
        assert!((m[0].score - 0.3).abs() < 1e-6);
    }
}
