//! Facet counts for the shopper page's category and price filters: over a query's candidates
//! (the ranked seqs the caller passes) or over every item a browse filter matches (exact).
//! Read from the in-memory catalogue, so counting costs no store reads.

use super::read::EntryFilter;
use super::Collection;
use crate::model::Entry;
use std::collections::HashMap;

/// Upper edges of the price ranges; the last range (from the last edge) is open-ended. Fixed
/// rather than derived from the data so that a range means the same on every page.
const PRICE_EDGES: [f64; 10] = [
    10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facets {
    /// (category, count), most frequent first, ties by name; items without a category are
    /// not counted here.
    pub categories: Vec<(String, u64)>,
    /// (min, max, count) with min ≤ price < max, ascending; `max = None`: no upper bound.
    /// Empty ranges are left out.
    pub price_ranges: Vec<(f64, Option<f64>, u64)>,
    /// How many items were counted.
    pub counted: u64,
}

#[derive(Default)]
struct Counter {
    categories: HashMap<String, u64>,
    prices: [u64; PRICE_EDGES.len() + 1],
    counted: u64,
}

impl Counter {
    fn add(&mut self, e: &Entry) {
        self.counted += 1;
        if !e.category.is_empty() {
            *self.categories.entry(e.category.to_string()).or_default() += 1;
        }
        let bucket = PRICE_EDGES
            .iter()
            .position(|edge| e.price < *edge)
            .unwrap_or(PRICE_EDGES.len());
        self.prices[bucket] += 1;
    }

    fn finish(self) -> Facets {
        let mut categories: Vec<(String, u64)> = self.categories.into_iter().collect();
        categories.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let price_ranges = self
            .prices
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let min = if i == 0 { 0.0 } else { PRICE_EDGES[i - 1] };
                (min, PRICE_EDGES.get(i).copied(), *n)
            })
            .collect();
        Facets {
            categories,
            price_ranges,
            counted: self.counted,
        }
    }
}

impl Collection {
    /// Counts over the given live versions (a query's candidates); versions no longer live
    /// are skipped.
    pub fn facets_of(&self, seqs: &[u64]) -> Facets {
        let state = self.state.read();
        let mut c = Counter::default();
        for e in seqs.iter().filter_map(|s| state.catalog.entry(*s)) {
            c.add(e);
        }
        c.finish()
    }

    /// Counts over every live item the filter matches (a browse).
    pub fn facets_matching(&self, filter: Option<EntryFilter<'_>>) -> Facets {
        let state = self.state.read();
        let mut c = Counter::default();
        for (_, e) in state.catalog.iter() {
            if filter.is_none_or(|f| f(e)) {
                c.add(e);
            }
        }
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn entry(category: &str, price: f64) -> Entry {
        Entry {
            id: Arc::from("x"),
            category: Arc::from(category),
            price,
            attributes: Vec::new(),
            spaces: 1,
        }
    }

    #[test]
    fn counts_categories_by_frequency_and_prices_by_range() {
        let mut c = Counter::default();
        for (cat, price) in [
            ("photo", 49.9),
            ("photo", 120.0),
            ("garden", 9.99),
            ("", 10.0),
            ("garden", 20_000.0),
            ("photo", 50.0),
        ] {
            c.add(&entry(cat, price));
        }
        let f = c.finish();
        assert_eq!(f.counted, 6);
        assert_eq!(
            f.categories,
            vec![("photo".to_string(), 3), ("garden".to_string(), 2)]
        );
        assert_eq!(
            f.price_ranges,
            vec![
                (0.0, Some(10.0), 1),
                (10.0, Some(25.0), 1),
                (25.0, Some(50.0), 1),
                (50.0, Some(100.0), 1),
                (100.0, Some(250.0), 1),
                (10000.0, None, 1),
            ]
        );
    }
}
