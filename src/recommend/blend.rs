//! Candidate sources → one ranked list. Each source's scores are scaled to 0..1 (over its own
//! list, from min(0, lowest) to its highest), weighted, and summed; every hit keeps a reason
//! per source that found it, with the history items that contributed most to that source's
//! score and their shares.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Collaborative,
    Content,
    BuyAgain,
    Popularity,
    /// Recommend by examples: nearness to the positive examples, distance from the negative.
    Positive,
    Negative,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Collaborative => "collaborative",
            Source::Content => "content",
            Source::BuyAgain => "buy_again",
            Source::Popularity => "popularity",
            Source::Positive => "positive",
            Source::Negative => "negative",
        }
    }
}

/// A source's candidates.
pub struct SourceList {
    pub source: Source,
    pub weight: f32,
    pub hits: Vec<Candidate>,
}

/// A candidate of one source: its raw score, and the history items that contributed most to
/// it (id, raw part, kind of interaction) out of `positive_total`, the sum of all positive
/// parts (the denominator of the shares; only the strongest parts need to be kept).
pub struct Candidate {
    pub id: String,
    pub score: f32,
    pub contributors: Vec<(String, f32, &'static str)>,
    pub positive_total: f32,
}

impl Candidate {
    /// A candidate whose contributors are all listed.
    pub fn new(
        id: String,
        score: f32,
        contributors: Vec<(String, f32, &'static str)>,
    ) -> Candidate {
        let positive_total = contributors.iter().map(|c| c.1.max(0.0)).sum();
        Candidate {
            id,
            score,
            contributors,
            positive_total,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Contributor {
    pub item_id: String,
    /// Share of the source's raw score for this hit (0..1).
    pub share: f32,
    /// "purchase", "view", …; empty for examples.
    pub kind: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub source: Source,
    /// weight × scaled score: this source's part of the hit's score.
    pub contribution: f32,
    pub because: Vec<Contributor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recommended {
    pub item_id: String,
    pub score: f32,
    /// Strongest first; their contributions add up to `score`.
    pub reasons: Vec<Reason>,
}

/// Contributors named per reason.
const TOP_CONTRIBUTORS: usize = 3;

/// Blends the lists, dropping what `keep` refuses, best first.
pub fn blend(lists: Vec<SourceList>, keep: impl Fn(&str) -> bool) -> Vec<Recommended> {
    let mut merged: HashMap<String, Recommended> = HashMap::new();
    for list in lists {
        if list.hits.is_empty() {
            continue;
        }
        let hi = list
            .hits
            .iter()
            .map(|h| h.score)
            .fold(f32::NEG_INFINITY, f32::max);
        let lo = list.hits.iter().map(|h| h.score).fold(0f32, f32::min);
        let span = hi - lo;
        for Candidate {
            id,
            score: raw,
            mut contributors,
            positive_total: total,
        } in list.hits
        {
            if !keep(&id) {
                continue;
            }
            let scaled = if span > 0.0 { (raw - lo) / span } else { 1.0 };
            let contribution = list.weight * scaled;
            contributors.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let because = contributors
                .into_iter()
                .take(TOP_CONTRIBUTORS)
                .filter(|c| c.1 > 0.0 && total > 0.0)
                .map(|(item_id, part, kind)| Contributor {
                    item_id,
                    share: part / total,
                    kind,
                })
                .collect();
            let r = merged.entry(id.clone()).or_insert_with(|| Recommended {
                item_id: id,
                score: 0.0,
                reasons: Vec::new(),
            });
            r.score += contribution;
            r.reasons.push(Reason {
                source: list.source,
                contribution,
                because,
            });
        }
    }
    let mut out: Vec<Recommended> = merged.into_values().collect();
    for r in &mut out {
        r.reasons
            .sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.item_id.cmp(&b.item_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_weighted_summed_with_reasons() {
        let cf = SourceList {
            source: Source::Collaborative,
            weight: 1.0,
            hits: vec![
                Candidate::new(
                    "x".into(),
                    4.0,
                    vec![("h1".into(), 3.0, "purchase"), ("h2".into(), 1.0, "view")],
                ),
                Candidate::new("y".into(), 2.0, vec![("h2".into(), 2.0, "view")]),
                Candidate::new("seen".into(), 9.0, vec![]),
            ],
        };
        let content = SourceList {
            source: Source::Content,
            weight: 0.5,
            hits: vec![
                Candidate::new("y".into(), 0.8, vec![]),
                Candidate::new("z".into(), 0.4, vec![]),
            ],
        };
        let out = blend(vec![cf, content], |id| id != "seen");
        let ids: Vec<&str> = out.iter().map(|r| r.item_id.as_str()).collect();
        // x: 4/9; y: 2/9 + 0.5; z: 0.5 * 0.4/0.8.
        assert_eq!(ids, vec!["y", "x", "z"]);
        let x = &out[1];
        assert!((x.score - 4.0 / 9.0).abs() < 1e-6);
        assert_eq!(
            x.reasons[0].because[0],
            Contributor {
                item_id: "h1".into(),
                share: 0.75,
                kind: "purchase"
            }
        );
        for r in &out {
            let sum: f32 = r.reasons.iter().map(|x| x.contribution).sum();
            assert!((sum - r.score).abs() < 1e-6);
        }
    }
}
