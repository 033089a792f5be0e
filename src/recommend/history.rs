//! A user's interactions → one weight per item: kind weights, summed, decayed by age.

use super::RecommendConfig;
use crate::model::{Interaction, InteractionKind};
use std::collections::HashMap;

/// One item of a user's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighted {
    pub item_id: String,
    /// Sum of the interactions' kind weights, each decayed by its age.
    pub weight: f32,
    /// The strongest kind of interaction with it (for reasons: "because you bought X").
    pub kind: InteractionKind,
    /// How many times it was bought ("buy again").
    pub purchases: u32,
    pub last_ms: i64,
}

/// Weighs a user's interactions per item; the age of each is counted back from the user's
/// newest interaction (so a quiet user's history keeps its shape). Heaviest first.
pub fn weigh(events: &[Interaction], config: &RecommendConfig) -> Vec<Weighted> {
    let newest = events.iter().map(|e| e.ts_ms).max().unwrap_or(0);
    let mut by_item: HashMap<&str, Weighted> = HashMap::new();
    for e in events {
        let mut w = config.kind_weight(e.kind, e.dwell_ms);
        if config.half_life_days > 0.0 {
            let age_days = (newest - e.ts_ms) as f32 / 86_400_000.0;
            w *= 0.5f32.powf(age_days / config.half_life_days);
        }
        let entry = by_item.entry(&e.item_id).or_insert_with(|| Weighted {
            item_id: e.item_id.clone(),
            weight: 0.0,
            kind: e.kind,
            purchases: 0,
            last_ms: e.ts_ms,
        });
        entry.weight += w;
        if strength(e.kind) > strength(entry.kind) {
            entry.kind = e.kind;
        }
        entry.purchases += (e.kind == InteractionKind::Purchase) as u32;
        entry.last_ms = entry.last_ms.max(e.ts_ms);
    }
    let mut out: Vec<Weighted> = by_item.into_values().collect();
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
        assert!((h[0].weight - (0.5 * 1.0 + 8.0)).abs() < 1e-5, "{h:?}");
        assert_eq!((h[0].kind, h[0].purchases), (InteractionKind::Purchase, 1));
        assert!((h[1].weight - 2.0).abs() < 1e-6);
    }
}
