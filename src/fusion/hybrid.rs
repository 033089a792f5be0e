//! Hybrid search: one ranking from a vector hit list (cosines) and a lexical one (BM25
//! scores), whose scales have nothing in common.
//!
//! * Reciprocal rank fusion (RRF, Cormack et al. 2009): `2·((1 − w)/(k + r_vec) + w/(k + r_lex))`
//!   over ranks only, so the scales never meet; `w = 0.5` is the classic unweighted sum and an
//!   item missing from a list gets nothing from it.
//! * Convex combination: `(1 − w)·s_vec + w·min(1, s_lex / full)²`, absent = 0. Both terms keep
//!   an absolute scale, so a query's confidence carries into the fusion: the cosine as it is
//!   (clamped to [0, 1]; text-role spaces are cosine), and the BM25 score over `full`, what a
//!   match of every query word would score — the share of the query the item's words explain,
//!   squared so that a partial match (a paraphrase sharing one word) counts little and a full
//!   match (the brand and model asked for) counts fully.
//!   Min–max normalising each list (an earlier version) made the best lexical hit of a
//!   paraphrase query ("open notebook computer with a glowing screen", matched only on
//!   "computer") weigh as much as an exact brand match: on the Vendure paraphrases HYBRID fell
//!   to MRR 0.79–0.86 against VECTOR's 0.965. Without a usable `full` (≤ 0) the lexical list
//!   is min–max normalised.
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
}

impl Hybrid {
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.lexical_weight) {
            return Err(format!(
                "lexical weight {} must be in [0, 1]",
                self.lexical_weight
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

/// The union of both lists ranked by `h`, best first (ties by id), the best `window`.
pub fn fuse(
    vector: &[Scored],
    lexical: &[Scored],
    full: f32,
    h: Hybrid,
    window: usize,
) -> Vec<FusedHit> {
    let w = h.lexical_weight;
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
    let range = |l: &[Scored]| {
        let (lo, hi) = l
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), s| {
                (lo.min(s.score), hi.max(s.score))
            });
        (lo, hi - lo)
    };
    let ranges = [range(vector), range(lexical)];
    let term = |list: usize, p: Option<Part>| -> f32 {
        let Some(p) = p else { return 0.0 };
        let weight = if list == 0 { 1.0 - w } else { w };
        match h.method {
            HybridMethod::Rrf { k } => 2.0 * weight / (k + p.rank as f32),
            HybridMethod::Convex if list == 0 => weight * p.score.clamp(0.0, 1.0),
            HybridMethod::Convex if full > 0.0 => {
                let share = (p.score / full).clamp(0.0, 1.0);
                weight * share * share
            }
            HybridMethod::Convex => {
                let (lo, span) = ranges[list];
                weight
                    * if span > 0.0 {
                        (p.score - lo) / span
                    } else {
                        1.0
                    }
            }
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
    fn rrf_rewards_agreement() {
        let h = Hybrid {
            method: HybridMethod::Rrf { k: 60.0 },
            lexical_weight: 0.5,
        };
        let f = fuse(
            &[s(1, 0.9), s(2, 0.8)],
            &[s(2, 12.0), s(3, 9.0)],
            20.0,
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
    fn convex_keeps_each_list_on_an_absolute_scale() {
        let h = Hybrid {
            method: HybridMethod::Convex,
            lexical_weight: 0.5,
        };
        // full match 20: lexical shares 2 → 1.0 (clamped from 1.25), 3 → 0.75, 4 → 0.5, squared;
        // cosines as they are
        let f = fuse(
            &[s(1, 0.9), s(2, 0.5)],
            &[s(2, 25.0), s(3, 15.0), s(4, 10.0)],
            20.0,
            h,
            3,
        );
        assert_eq!(f.iter().map(|x| x.id).collect::<Vec<_>>(), vec![2, 1, 3]);
        assert!(
            (f[0].score - 0.75).abs() < 1e-6
                && (f[1].score - 0.45).abs() < 1e-6
                && (f[2].score - 0.28125).abs() < 1e-6
        );
        // A weak lexical match (a tenth of the query) does not outweigh a confident vector hit.
        let f = fuse(&[s(1, 0.7), s(2, 0.55)], &[s(2, 2.0)], 20.0, h, 3);
        assert_eq!(f[0].id, 1);
        // Without a full-match scale the lexical list is min–max normalised.
        let single = fuse(&[], &[s(7, 3.0)], 0.0, h, 3);
        assert_eq!(single[0].contribution, [0.0, 0.5]);
        assert!(Hybrid {
            lexical_weight: 1.5,
            ..h
        }
        .validate()
        .is_err());
        assert!(Hybrid {
            method: HybridMethod::Rrf { k: f32::NAN },
            lexical_weight: 0.5
        }
        .validate()
        .is_err());
    }
}
