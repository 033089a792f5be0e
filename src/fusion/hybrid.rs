//! Hybrid search: one ranking from a vector hit list (cosines) and a lexical one (BM25
//! scores), whose scales have nothing in common.
//!
//! * Reciprocal rank fusion (RRF, Cormack et al. 2009): `2·((1 − w)·t/(k + r_vec) + w/(k + r_lex))`
//!   over ranks only, so the scales never meet; `w = 0.5, t = 1` is the classic unweighted sum
//!   and an item missing from a list gets nothing from it.
//! * Convex combination (the default): `(1 − w)·t^p·cos + w·c^p·(bm25 / bm25_top)`.
//!   - The cosine keeps its absolute scale (clamped to [0, 1]): how far the vector list's top
//!     stands above the rest is the vector side's own confidence. An item the vector list did
//!     not reach scores that list's lowest cosine (an upper bound), not 0 — otherwise the list's
//!     depth, not the query, would decide (at depth 20 the multilingual model's compressed
//!     cosines, ≈ 0.85 everywhere, made absence a 0.85 penalty).
//!   - The lexical list is scaled by its own best hit, and weighted by how confidently that
//!     best hit matched: `c` = its BM25 over what a match of every query word would score
//!     (`lexical::View::full_match`), the share of the query it explains. A brand or model code
//!     matched in full (c ≈ 1) moves its item up by up to `w`; a paraphrase whose best lexical
//!     hit shares one generic word (c ≈ 0.2) barely nudges the vector order.
//!   - `t` is how much of the query the text tower can read: the share of the query's letters
//!     in scripts it was trained on (1 for the multilingual set; for the English-only default
//!     set, Latin letters over all letters). An English-only tower embeds a Chinese query to a
//!     vector near every item alike (MRR 0.19 on the Chinese catalogue), and its cosines, not
//!     the lexical match, would then decide.
//!
//!   Measured on the Vendure catalogue with both model sets (BENCHMARKS.md, "Hybrid"): the
//!   earlier `(1 − w)·cos + w·share²` (w 0.5) lost 0.055 MRR to VECTOR on the English
//!   paraphrases (a partial lexical match of one generic title word, "ball", "desk", tipped a
//!   near-tie of cosines) and 0.27 to LEXICAL on Chinese queries with the English model.
//!
//! `w` is the lexical weight. Both lists are best first.

use super::Part;
use mmsearch_index::Scored;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HybridMethod {
    Rrf { k: f32 },
    Convex,
}

/// The fusion of one query: the method and the lexical weight `w` in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hybrid {
    pub method: HybridMethod,
    pub lexical_weight: f32,
    /// Convex: the power of `c`, the share of the query the best lexical hit explains.
    pub confidence_power: f32,
}

impl Hybrid {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.lexical_weight) {
            return Err(format!(
                "lexical weight {} must be in [0, 1]",
                self.lexical_weight
            ));
        }
        if !self.confidence_power.is_finite() || self.confidence_power < 0.0 {
            return Err(format!(
                "confidence power {} must be a finite number ≥ 0",
                self.confidence_power
            ));
        }
        if let HybridMethod::Rrf { k } = self.method {
            if !k.is_finite() || k < 0.0 {
                return Err(format!("rrf k {k} must be a finite number ≥ 0"));
            }
        }
        Ok(())
    }

    /// "rrf(k=60, w=0.5)" / "convex(w=0.3)", for `explain`.
    pub fn describe(&self) -> String {
        match self.method {
            HybridMethod::Rrf { k } => format!("rrf(k={k}, w={})", self.lexical_weight),
            HybridMethod::Convex => format!("convex(w={})", self.lexical_weight),
        }
    }
}

/// One fused hit: its place in each list and what each list added to `score`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusedHit {
    pub id: u64,
    pub score: f32,
    /// Score and 1-based rank in the vector list (rank 0: absent, score 0).
    pub vector: Part,
    pub lexical: Part,
    /// The terms of `score`: [vector, lexical].
    pub contribution: [f32; 2],
}

/// The union of both lists ranked by `h`, best first (ties by vector cosine, then id), the best
/// `window`. `full` is the BM25 of a match of every query word; `vector_trust` in [0, 1] scales
/// the vector list's weight (the share of the query the text tower can read).
pub fn fuse(
    vector: &[Scored],
    lexical: &[Scored],
    full: f32,
    vector_trust: f32,
    h: Hybrid,
    window: usize,
) -> Vec<FusedHit> {
    let w = h.lexical_weight;
    let trust = vector_trust.clamp(0.0, 1.0);
    let mut m: HashMap<u64, [Option<Part>; 2]> =
        HashMap::with_capacity(vector.len() + lexical.len());
    for (list, hits) in [vector, lexical].into_iter().enumerate() {
        for (i, s) in hits.iter().enumerate() {
            m.entry(s.id).or_default()[list].get_or_insert(Part {
                score: s.score,
                rank: i as u32 + 1,
            });
        }
    }
    let cos = |x: f32| x.clamp(0.0, 1.0);
    // What an item beyond the vector list's depth can at most have scored there.
    let vector_floor = vector
        .iter()
        .map(|s| cos(s.score))
        .fold(None, |lo: Option<f32>, c| {
            Some(lo.map_or(c, |lo| lo.min(c)))
        });
    let lexical_top = lexical.first().map_or(0.0, |s| s.score);
    let confidence = if full > 0.0 {
        (lexical_top / full).clamp(0.0, 1.0)
    } else {
        1.0
    };
    // Both lists are weighed by a share of the query to the same power: what the text tower can
    // read, what the best lexical hit matched. (With t alone, the two Latin letters of
    // 能玩3A大作的台式机 gave the English-only tower's near-random cosines t = 0.2 of their
    // weight, more than the Chinese lexical match's c⁴.)
    let trust = match h.method {
        HybridMethod::Convex => trust.powf(h.confidence_power),
        HybridMethod::Rrf { .. } => trust,
    };
    let weights = [(1.0 - w) * trust, w];
    let term = |list: usize, p: Option<Part>| -> f32 {
        let weight = weights[list];
        match (h.method, p) {
            (HybridMethod::Rrf { k }, Some(p)) => 2.0 * weight / (k + p.rank as f32),
            (HybridMethod::Rrf { .. }, None) => 0.0,
            (HybridMethod::Convex, Some(p)) if list == 0 => weight * cos(p.score),
            (HybridMethod::Convex, None) if list == 0 => weight * vector_floor.unwrap_or(0.0),
            (HybridMethod::Convex, Some(p)) if lexical_top > 0.0 => {
                weight
                    * confidence.powf(h.confidence_power)
                    * (p.score / lexical_top).clamp(0.0, 1.0)
            }
            (HybridMethod::Convex, _) => 0.0,
        }
    };
    let absent = Part {
        score: 0.0,
        rank: 0,
    };
    let mut out: Vec<FusedHit> = m
        .into_iter()
        .map(|(id, [v, l])| {
            let contribution = [term(0, v), term(1, l)];
            FusedHit {
                id,
                score: contribution[0] + contribution[1],
                vector: v.unwrap_or(absent),
                lexical: l.unwrap_or(absent),
                contribution,
            }
        })
        .collect();
    let cosine = |f: &FusedHit| {
        if f.vector.rank > 0 {
            f.vector.score
        } else {
            f32::NEG_INFINITY
        }
    };
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(cosine(b).total_cmp(&cosine(a)))
            .then(a.id.cmp(&b.id))
    });
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
    fn rrf_rewards_agreement() {
        let h = Hybrid {
            method: HybridMethod::Rrf { k: 60.0 },
            lexical_weight: 0.5,
            confidence_power: 2.0,
        };
        let f = fuse(
            &[s(1, 0.9), s(2, 0.8)],
            &[s(2, 12.0), s(3, 9.0)],
            20.0,
            1.0,
            h,
            10,
        );
        assert_eq!(f.iter().map(|x| x.id).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert!((f[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert_eq!((f[1].vector.rank, f[1].lexical.rank), (1, 0));
        assert_eq!(f[1].contribution[1], 0.0);
        // all weight on the lexical list: its order, and vector-only items score 0
        let lex = fuse(
            &[s(1, 0.9)],
            &[s(3, 9.0), s(2, 8.0)],
            20.0,
            1.0,
            Hybrid {
                lexical_weight: 1.0,
                ..h
            },
            10,
        );
        assert_eq!(lex.iter().map(|x| x.id).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(lex[2].score, 0.0);
    }

    #[test]
    fn convex_weighs_the_lexical_list_by_how_fully_its_best_hit_matched() {
        let h = Hybrid {
            method: HybridMethod::Convex,
            lexical_weight: 0.5,
            confidence_power: 2.0,
        };
        // Best lexical hit matches the whole query (25 ≥ full 20): confidence 1, the list is
        // scaled by its top (2 → 1, 3 → 0.6, 4 → 0.2); items the vector list did not reach
        // score its lowest cosine (0.5).
        let f = fuse(
            &[s(1, 0.9), s(2, 0.5)],
            &[s(2, 25.0), s(3, 15.0), s(4, 5.0)],
            20.0,
            1.0,
            h,
            4,
        );
        assert_eq!(f.iter().map(|x| x.id).collect::<Vec<_>>(), vec![2, 3, 1, 4]);
        for (hit, want) in f.iter().zip([0.75, 0.55, 0.45, 0.35]) {
            assert!((hit.score - want).abs() < 1e-6, "{hit:?}");
        }
        assert_eq!(f[1].vector.rank, 0);
        assert!((f[1].contribution[0] - 0.25).abs() < 1e-6);
        // A best lexical hit explaining a tenth of the query does not outweigh a confident
        // vector hit…
        let f = fuse(&[s(1, 0.7), s(2, 0.55)], &[s(2, 2.0)], 20.0, 1.0, h, 3);
        assert_eq!(f[0].id, 1);
        // …one explaining all of it does.
        let f = fuse(&[s(1, 0.7), s(2, 0.6)], &[s(2, 20.0)], 20.0, 1.0, h, 3);
        assert_eq!(f[0].id, 2);
        // A query the text tower cannot read (trust 0): the lexical list decides, the cosine
        // only orders what it left tied.
        let f = fuse(
            &[s(1, 0.9), s(2, 0.5), s(3, 0.4)],
            &[s(2, 5.0)],
            20.0,
            0.0,
            h,
            3,
        );
        assert_eq!(f.iter().map(|x| x.id).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert_eq!(f[1].score, 0.0);
        // Without a full-match scale the best lexical hit counts as a full match.
        let single = fuse(&[], &[s(7, 3.0)], 0.0, 1.0, h, 3);
        assert_eq!(single[0].contribution, [0.0, 0.5]);
        assert!(Hybrid {
            lexical_weight: 1.5,
            ..h
        }
        .validate()
        .is_err());
        assert!(Hybrid {
            method: HybridMethod::Rrf { k: f32::NAN },
            ..h
        }
        .validate()
        .is_err());
    }
}
