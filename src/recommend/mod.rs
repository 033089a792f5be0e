//! Recommendation models, as plain computation: how behaviour becomes weights
//! ([`history`]), the collaborative models trained from it ([`ease`] for catalogues up to
//! `ease_max_items`, [`knn`] item-kNN cosine beyond), the content user vector ([`user_vector`]),
//! and the blend of candidate sources into one ranked list with reasons ([`blend`]). The
//! trained [`Model`] is a versioned artefact ([`artefact`]). Knows the domain model only; the
//! pipeline feeds it interactions and vectors and searches the index with what it returns.

pub mod artefact;
pub mod blend;
pub mod ease;
pub mod history;
pub mod knn;

pub use artefact::Model;
pub use blend::{blend, Candidate, Contributor, Reason, Recommended, Source, SourceList};
pub use history::{weigh, Weighted};

use crate::model::InteractionKind;
use serde::{Deserialize, Serialize};

// Defaults measured on the two benches (BENCHMARKS.md, "Recommendation (issue #11)"): one
// set of values for both, none per data set.
const HALF_LIFE_DAYS: f32 = 120.0;
const COLLABORATIVE_HALF_LIFE_ITEMS: f32 = 100.0;

/// `[recommend]`: how behaviour is weighed, which model is trained, how sources are blended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecommendConfig {
    /// Weight of one interaction of each kind.
    pub weight_view: f32,
    pub weight_click: f32,
    pub weight_cart: f32,
    pub weight_purchase: f32,
    /// A DWELL interaction weighs this per 30 s on the item, at most 4×.
    pub weight_dwell: f32,
    /// Buy-again ranks a user's items by their interactions' weights, each halved every this
    /// many days back from the user's newest interaction (frequency × recency); 0 = no decay.
    pub half_life_days: f32,
    /// Recency as the models see a history: the k-th most recently touched item weighs
    /// 0.5^(k / half-life) (0 = no decay). Counted in items, not days, because what a user did
    /// last says most about what comes next however long ago it was (ratings arrive in sessions).
    pub collaborative_half_life_items: f32,
    pub content_half_life_items: f32,
    /// EASE's L2 regulariser.
    pub ease_lambda: f32,
    /// Up to this many items (that have interactions) EASE is trained (a dense n×n inverse:
    /// n² floats of memory, n³ work); beyond it item-kNN.
    pub ease_max_items: usize,
    /// Neighbours kept per item by the trained model (model memory ≤ items × this × 8 bytes:
    /// 40 MB at 5,000 EASE items). With recency-weighted histories the weaker and negative
    /// EASE weights matter: 200 lost NDCG on both benches, 1,000 is within noise of all of them.
    pub neighbours: usize,
    /// Threads of the EASE inverse; 0 = every core.
    pub train_threads: usize,
    /// Items a model keeps by popularity (users without history).
    pub popular: usize,
    /// Blend weights of the candidate sources (each source's scores are first scaled to 0..1).
    pub blend_collaborative: f32,
    pub blend_content: f32,
    pub blend_buy_again: f32,
    /// Candidates each source contributes before blending, as a multiple of the page's end.
    pub candidates_factor: usize,
    /// Interactions older than this are deleted at training and by the periodic retention
    /// pass; 0 = kept forever.
    pub retention_days: u32,
    /// Retrain this often in the background; 0 = only on request.
    pub retrain_every_secs: u64,
    /// Personalised search re-ranks at most this many of the query's top candidates.
    pub rerank_window: u32,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        RecommendConfig {
            weight_view: 1.0,
            weight_click: 2.0,
            weight_cart: 4.0,
            weight_purchase: 8.0,
            weight_dwell: 1.0,
            half_life_days: HALF_LIFE_DAYS,
            collaborative_half_life_items: COLLABORATIVE_HALF_LIFE_ITEMS,
            content_half_life_items: 5.0,
            ease_lambda: 200.0,
            ease_max_items: 5_000,
            neighbours: 1000,
            train_threads: 0,
            popular: 1000,
            blend_collaborative: 1.0,
            blend_content: 0.1,
            blend_buy_again: 10.0,
            candidates_factor: 4,
            retention_days: 0,
            retrain_every_secs: 0,
            rerank_window: 100,
        }
    }
}

impl RecommendConfig {
    pub fn validate(&self) -> Result<(), String> {
        let weights = [
            self.weight_view,
            self.weight_click,
            self.weight_cart,
            self.weight_purchase,
            self.weight_dwell,
        ];
        let blend = [
            self.blend_collaborative,
            self.blend_content,
            self.blend_buy_again,
        ];
        if weights
            .iter()
            .chain(&blend)
            .chain([
                &self.half_life_days,
                &self.collaborative_half_life_items,
                &self.content_half_life_items,
            ])
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return Err("recommend: weights and half_life_days must be finite and >= 0".into());
        }
        if !(self.ease_lambda.is_finite() && self.ease_lambda > 0.0) {
            return Err("recommend.ease_lambda must be > 0".into());
        }
        if self.neighbours == 0 || self.candidates_factor == 0 || self.rerank_window == 0 {
            return Err(
                "recommend: neighbours, candidates_factor and rerank_window must be > 0".into(),
            );
        }
        Ok(())
    }

    pub fn kind_weight(&self, kind: InteractionKind, dwell_ms: u32) -> f32 {
        match kind {
            InteractionKind::View => self.weight_view,
            InteractionKind::Click => self.weight_click,
            InteractionKind::Cart => self.weight_cart,
            InteractionKind::Purchase => self.weight_purchase,
            InteractionKind::Dwell => {
                self.weight_dwell * (dwell_ms as f32 / 30_000.0).clamp(0.1, 4.0)
            }
        }
    }
}

/// A history as a model's input: each item's weight compressed to ln(1 + w) (the tenth
/// purchase of an item says less than the first) and decayed by its recency rank.
pub fn model_input(history: &[Weighted], half_life_items: f32) -> Vec<Weighted> {
    history
        .iter()
        .map(|h| {
            let mut w = h.weight.max(0.0).ln_1p();
            if half_life_items > 0.0 {
                w *= 0.5f32.powf(h.rank as f32 / half_life_items);
            }
            Weighted {
                weight: w,
                ..h.clone()
            }
        })
        .collect()
}

/// The content user vector u_i: the weighted mean of the vectors of the items the user
/// interacted with, each taken relative to `centre` (the catalogue's mean vector, when known),
/// at unit length (`None` when nothing has a vector or it cancels out).
///
/// Why the centre: text embeddings share one large common direction (every title is "a movie",
/// "a product"), so a plain mean of a user's items points mostly at it and ranks the items
/// closest to the catalogue's average first. Removing the mean leaves what sets the user's items
/// apart. Searching the index with the centred u ranks exactly as centred item vectors would:
/// u·(v − m) differs from u·v by u·m, the same for every item.
pub fn user_vector(items: &[(&[f32], f32)], centre: Option<&[f32]>) -> Option<Vec<f32>> {
    let dim = items.first()?.0.len();
    let mut u = vec![0f32; dim];
    let mut total = 0f32;
    for (v, w) in items {
        if v.len() == dim {
            for (a, b) in u.iter_mut().zip(v.iter()) {
                *a += w * b;
            }
            total += w;
        }
    }
    if let Some(m) = centre.filter(|m| m.len() == dim) {
        for (a, b) in u.iter_mut().zip(m) {
            *a -= total * b;
        }
    }
    let norm = mmsearch_index::metric::dot(&u, &u).sqrt();
    if !(norm.is_finite() && norm > 1e-12) {
        return None;
    }
    u.iter_mut().for_each(|x| *x /= norm);
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_input_compresses_and_decays_by_rank() {
        let h = |id: &str, weight: f32, rank: u32| Weighted {
            item_id: id.into(),
            weight,
            kind: InteractionKind::Purchase,
            recent_weight: weight,
            purchases: 1,
            last_ms: 0,
            rank,
        };
        let x = model_input(&[h("a", 8.0, 0), h("b", 8.0, 2)], 2.0);
        assert!((x[0].weight - 9f32.ln()).abs() < 1e-6);
        assert!((x[1].weight - 0.5 * 9f32.ln()).abs() < 1e-6);
        assert_eq!(model_input(&[h("b", 8.0, 2)], 0.0)[0].weight, 9f32.ln());
    }

    #[test]
    fn user_vector_is_the_weighted_mean_at_unit_length() {
        let a = [1.0, 0.0];
        let b = [0.0, 1.0];
        let u = user_vector(&[(&a, 3.0), (&b, 1.0)], None).unwrap();
        assert!((u[0] - 0.9486833).abs() < 1e-6 && (u[1] - 0.3162278).abs() < 1e-6);
        assert!(user_vector(&[], None).is_none());
        assert!(user_vector(&[(&a, 1.0), (&[-1.0, 0.0], 1.0)], None).is_none());
        // Relative to a centre (0.5, 0.5): 3·(0.5, −0.5) + 1·(−0.5, 0.5) = (1, −1).
        let u = user_vector(&[(&a, 3.0), (&b, 1.0)], Some(&[0.5, 0.5])).unwrap();
        assert!((u[0] - 0.70710677).abs() < 1e-6 && (u[1] + 0.70710677).abs() < 1e-6);
        assert!(RecommendConfig::default().validate().is_ok());
        assert!(RecommendConfig {
            ease_lambda: 0.0,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
