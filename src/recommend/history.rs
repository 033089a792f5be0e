//! A user's interactions → one weight per item: kind weights, summed (and, for buy-again,
//! decayed by age), with the item's recency rank.

use super::RecommendConfig;
use crate::model::{Interaction, InteractionKind};
use std::collections::HashMap;

/// One item of a user's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub item_id: String,
    /// Sum of the interactions' kind weights.
    pub weight: f32,
    /// The same sum with each interaction decayed by its age (`half_life_days`): frequency ×
    /// recency, what buy-again ranks by.
    pub recent_weight: f32,
    /// The strongest kind of interaction with it (for reasons: "because you bought X").
    pub kind: InteractionKind,
    /// How many times it was bought ("buy again").
    pub purchases: u32,
    pub last_ms: i64,
    /// 0 for the most recently touched item, 1 for the one before, … (ties of `last_ms` go by
    /// the order the interactions were recorded in).
    pub rank: u32,
}

/// Weighs a user's interactions per item; the age of each is counted back from the user's
/// newest interaction (so a quiet user's history keeps its shape). Heaviest first.
pub fn weigh(events: &[Interaction], config: &RecommendConfig) -> Vec<Weighted> {
    let newest = events.iter().map(|e| e.ts_ms).max().unwrap_or(0);
    let mut by_item: HashMap<&str, (Weighted, usize)> = HashMap::new();
    for (n, e) in events.iter().enumerate() {
        let w = config.kind_weight(e.kind, e.dwell_ms);
        let mut recent = w;
        if config.half_life_days > 0.0 {
            let age_days = (newest - e.ts_ms) as f32 / 86_400_000.0;
            recent *= 0.5f32.powf(age_days / config.half_life_days);
        }
        let (entry, last_n) = by_item.entry(&e.item_id).or_insert_with(|| {
            (
                Weighted {
                    item_id: e.item_id.clone(),
                    weight: 0.0,
                    recent_weight: 0.0,
                    kind: e.kind,
                    purchases: 0,
                    last_ms: e.ts_ms,
                    rank: 0,
                },
                n,
            )
        });
        if (e.ts_ms, n) >= (entry.last_ms, *last_n) {
            *last_n = n;
        }
        entry.weight += w;
        entry.recent_weight += recent;
        if strength(e.kind) > strength(entry.kind) {
            entry.kind = e.kind;
        }
        entry.purchases += (e.kind == InteractionKind::Purchase) as u32;
        entry.last_ms = entry.last_ms.max(e.ts_ms);
    }
    let mut by_recency: Vec<(Weighted, usize)> = by_item.into_values().collect();
    by_recency.sort_by_key(|(w, n)| std::cmp::Reverse((w.last_ms, *n)));
    let mut out: Vec<Weighted> = by_recency
        .into_iter()
        .enumerate()
        .map(|(rank, (mut w, _))| {
            w.rank = rank as u32;
            w
        })
        .collect();
    out.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.item_id.cmp(&b.item_id))
    });
    out
}

fn strength(k: InteractionKind) -> u8 {
    match k {
        InteractionKind::View => 0,
        InteractionKind::Dwell => 1,
        InteractionKind::Click => 2,
        InteractionKind::Cart => 3,
        InteractionKind::Purchase => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(item: &str, kind: InteractionKind, day: i64) -> Interaction {
        Interaction {
            user_id: "u".into(),
            item_id: item.into(),
            kind,
            dwell_ms: 0,
            ts_ms: day * 86_400_000,
            key: String::new(),
        }
    }

    #[test]
    fn kinds_sum_and_decay() {
        let config = RecommendConfig {
            half_life_days: 10.0,
            ..Default::default()
        };
        let h = weigh(
            &[
                ev("a", InteractionKind::View, 0),
                ev("a", InteractionKind::Purchase, 10),
                ev("b", InteractionKind::Click, 10),
            ],
            &config,
        );
        assert_eq!(h[0].item_id, "a");
        assert!(
            (h[0].recent_weight - (0.5 * 1.0 + 8.0)).abs() < 1e-5,
            "{h:?}"
        );
        assert!((h[0].weight - 9.0).abs() < 1e-5, "{h:?}");
        assert_eq!((h[0].kind, h[0].purchases), (InteractionKind::Purchase, 1));
        assert!((h[1].weight - 2.0).abs() < 1e-6);
        // Both last touched on day 10: "b" was recorded later, so it is the more recent.
        assert_eq!((h[0].rank, h[1].rank), (1, 0));
    }
}
