//! Retrieval metrics over ranked result lists.
//!
//! Definitions follow the Python reference (`shared/reference/bridge/bridge.py::rank_metrics`), so the
//! numbers are comparable: R@k is the share of queries with at least one relevant item in the top k
//! (hit rate, not the share of relevant items found), MRR is the mean of 1/rank of the first
//! relevant item. A query whose relevant items are not in the returned list counts as a miss
//! (reciprocal rank 0); the suites ask for the whole collection where MRR must be exact.

use std::collections::BTreeMap;

/// 1-based rank of the first relevant id in `ranked`, or `None` when none is there.
pub fn first_relevant_rank<S: AsRef<str>>(
    ranked: &[S],
    relevant: impl Fn(&str) -> bool,
) -> Option<usize> {
    ranked
        .iter()
        .position(|id| relevant(id.as_ref()))
        .map(|p| p + 1)
}

/// R@1/5/10 and MRR from one rank per query.
pub fn rank_metrics(ranks: &[Option<usize>]) -> BTreeMap<String, f64> {
    let n = ranks.len().max(1) as f64;
    let hit = |k: usize| ranks.iter().filter(|r| r.is_some_and(|r| r <= k)).count() as f64 / n;
    let mrr = ranks
        .iter()
        .map(|r| r.map_or(0.0, |r| 1.0 / r as f64))
        .sum::<f64>()
        / n;
    BTreeMap::from([
        ("R@1".to_string(), hit(1)),
        ("R@5".to_string(), hit(5)),
        ("R@10".to_string(), hit(10)),
        ("MRR".to_string(), mrr),
    ])
}

/// Share of `retrieved` labels equal to the query's label, averaged over queries (P@k with k =
/// the list length the caller asked for; a short list counts its missing slots as misses).
pub fn precision_at(k: usize, per_query: &[(String, Vec<String>)]) -> f64 {
    if per_query.is_empty() || k == 0 {
        return 0.0;
    }
    let hits: usize = per_query
        .iter()
        .map(|(label, got)| got.iter().take(k).filter(|g| *g == label).count())
        .sum();
    hits as f64 / (per_query.len() * k) as f64
}

/// Lower-case words of a transcript or caption: letters and digits only, so punctuation and
/// capitalisation (which Whisper adds freely) do not count as errors.
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Word error rate of `hypothesis` against `reference` (Levenshtein over [`words`]), capped at 1.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let r = words(reference);
    let h = words(hypothesis);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    (prev[h.len()] as f64 / r.len() as f64).min(1.0)
}

/// Transcript equals the reference after [`words`] normalisation.
pub fn transcript_exact(reference: &str, hypothesis: &str) -> bool {
    words(reference) == words(hypothesis)
}

/// A single spoken word was heard: the transcript, without articles and spaces, is the word
/// (spaces and underscores removed too, so "palm tree" matches "palmtree").
pub fn word_heard(word: &str, hypothesis: &str) -> bool {
    let squash = |ws: Vec<String>| -> String {
        ws.into_iter()
            .filter(|w| !matches!(w.as_str(), "a" | "an" | "the"))
            .collect::<Vec<_>>()
            .join("")
    };
    let want = squash(words(word));
    !want.is_empty() && squash(words(hypothesis)) == want
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_hit_rates() {
        let m = rank_metrics(&[Some(1), Some(3), Some(7), None]);
        assert_eq!(m["R@1"], 0.25);
        assert_eq!(m["R@5"], 0.5);
        assert_eq!(m["R@10"], 0.75);
        assert!((m["MRR"] - (1.0 + 1.0 / 3.0 + 1.0 / 7.0) / 4.0).abs() < 1e-12);
        assert_eq!(
            first_relevant_rank(&["a", "b", "c"], |id| id == "c" || id == "b"),
            Some(2)
        );
        assert_eq!(first_relevant_rank(&["a"], |id| id == "z"), None);
    }

    #[test]
    fn precision_counts_short_lists_as_misses() {
        let q = vec![("x".to_string(), vec!["x".to_string(), "y".to_string()])];
        assert_eq!(precision_at(4, &q), 0.25);
    }

    #[test]
    fn transcripts() {
        assert_eq!(
            word_error_rate("red boxing gloves", "Red Marking Gloves."),
            1.0 / 3.0
        );
        assert_eq!(word_error_rate("wireless mouse", "wireless mouse."), 0.0);
        assert!(transcript_exact("camera on a tripod", "Camera on a tripod"));
        assert!(!transcript_exact(
            "a laptop computer",
            "The laptop computer."
        ));
        assert!(word_heard("palmtree", "Palm tree."));
        assert!(word_heard("hat", "A hat."));
        assert!(!word_heard("hat", "Hot."));
    }
}
