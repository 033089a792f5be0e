//! Reads: nearest-neighbour search over the base generation and the mutable layer, item and
//! vector lookups, and hydration of hits from the store.

use super::{Collection, CollectionError, Result};
use crate::model::{Entry, Item, SortBy, Version};
use mmsearch_index::{plan, Layer, Matching, PlanInput, Scored, SpaceView};

pub struct SearchOutcome {
    pub hits: Vec<Scored>,
    /// The matching set was small enough to scan exactly (or the graph came back short).
    pub exact: bool,
    /// The step that produced the answer: "graph", "graph_widened" or "exact".
    pub path: &'static str,
}

/// A hit with the stored version it points to.
pub struct Hydrated {
    pub scored: Scored,
    pub version: Version,
}

/// Live filter on catalogue entries, compiled by the query pipeline.
pub type EntryFilter<'a> = &'a (dyn Fn(&Entry) -> bool + Sync);

impl Collection {
    pub fn get(&self, id: &str) -> Result<Version> {
        self.store
            .get(id)?
            .ok_or_else(|| CollectionError::NotFound(id.to_string()))
    }

    /// The live seq of an item.
    /// The live item's thumbnail (JPEG), if it has one.
    pub fn thumbnail(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.store.thumbnail(id)?)
    }

    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.state.read().catalog.seq_of(id)
    }

    /// The prepared vector of an item in a space ("more like this").
    pub fn item_vector(&self, id: &str, space: &str) -> Result<(u64, Vec<f32>)> {
        self.spec(space)?;
        let seq = {
            let state = self.state.read();
            let seq = state
                .catalog
                .seq_of(id)
                .ok_or_else(|| CollectionError::NotFound(id.to_string()))?;
            if let Some(v) = state.fresh.get(space).and_then(|l| l.get(seq)) {
                return Ok((seq, v.to_vec()));
            }
            if let Some(v) = state.base.segment(space).and_then(|s| s.get(seq)) {
                return Ok((seq, v.to_vec()));
            }
            seq
        };
        match self.store.vector(seq, space)? {
            Some(v) => Ok((seq, v)),
            None => Err(CollectionError::NoVector {
                id: id.to_string(),
                space: space.to_string(),
            }),
        }
    }

    /// The stored versions of a page of hits, in order. A hit whose item was replaced or
    /// deleted since the search is stale and dropped.
    pub fn hydrate(&self, page: &[Scored]) -> Result<Vec<Hydrated>> {
        let named: Vec<(Scored, std::sync::Arc<str>)> = {
            let state = self.state.read();
            page.iter()
                .filter_map(|s| state.catalog.entry(s.id).map(|e| (*s, e.id.clone())))
                .collect()
        };
        let keys: Vec<&str> = named.iter().map(|(_, id)| &**id).collect();
        let versions = self.store.multi_get(&keys)?;
        Ok(named
            .into_iter()
            .zip(versions)
            .filter_map(|((scored, _), v)| match v {
                Some(version) if version.seq == scored.id => Some(Hydrated { scored, version }),
                _ => None,
            })
            .collect())
    }

    /// Nearest live items to a prepared query vector in one space, over the base generation
    /// and the mutable layer, honouring `filter` and skipping `exclude`. The index crate's
    /// planner decides how (graph, widened graph, exact scan) and sets the beam width from
    /// the requested `ef`; this only describes the catalogue to it.
    pub fn search(
        &self,
        space: &str,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<EntryFilter<'_>>,
        exclude: Option<u64>,
    ) -> Result<SearchOutcome> {
        let index = self.space_index(space)?;
        let spec = &self.specs[index];
        let bit = 1u64 << index;
        let state = self.state.read();
        let catalog = &state.catalog;
        let fresh = state
            .fresh
            .get(space)
            .ok_or_else(|| CollectionError::UnknownSpace(space.to_string()))?;
        let passes = |seq: u64, e: &Entry| Some(seq) != exclude && filter.is_none_or(|f| f(e));
        let accept = |seq: u64| catalog.entry(seq).is_some_and(|e| passes(seq, e));
        let live = catalog.live_in(index);
        let matching = match filter {
            None => Matching::All,
            // Small catalogues are counted; larger ones sampled (#7 brings a better estimate).
            Some(f) if live <= SAMPLE => Matching::Exact(catalog.sample(bit, SAMPLE, f).0),
            Some(f) => {
                let (matched, sampled) = catalog.sample(bit, SAMPLE, f);
                Matching::Sampled { matched, sampled }
            }
        };
        let plan = plan(
            &self.config.planner,
            &PlanInput {
                k,
                ef,
                live,
                matching,
            },
        );
        let mut layers: Vec<&dyn Layer> = vec![fresh];
        if let Some(base) = state.base.segment(space) {
            layers.push(base);
        }
        let view = SpaceView::new(spec.metric, layers);
        let mut candidates = || {
            catalog
                .iter()
                .filter(|(seq, e)| e.spaces & bit != 0 && passes(*seq, e))
                .map(|(seq, _)| seq)
                .collect()
        };
        let out = view.execute(&plan, query, &accept, &mut candidates);
        Ok(SearchOutcome {
            hits: out.hits,
            exact: out.exact,
            path: out.path.as_str(),
        })
    }
}

/// The lexical list of a HYBRID query: the vector list already carries the title (items embed
/// it), so title words are boosted (`[lexical] title_boost`) only by the share of the query the
/// text tower cannot read, `1 − vector_trust`. Measured on the Vendure paraphrases: with the full
/// boost a paraphrase's one generic title word ("ball", "desk") tipped near-ties of cosines
/// (HYBRID 0.92 against VECTOR's 0.965); on Chinese queries with the English-only tower the
/// lexical list alone decides and keeps LEXICAL's boost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HybridTitle {
    pub vector_trust: f32,
}

impl Collection {
    /// The `k` best live items for `text` by BM25 over the generation's and the fresh writes'
    /// lexical parts, honouring `filter`. For HYBRID (`hybrid`), title matches count like any
    /// field's to the extent the text tower reads the query (see [`HybridTitle`]).
    /// Also returns the score of a full match of `text` (see `lexical::View::full_match`), the
    /// scale that makes BM25 scores comparable across queries.
    pub fn search_text(
        &self,
        text: &str,
        k: usize,
        filter: Option<EntryFilter<'_>>,
        hybrid: Option<HybridTitle>,
    ) -> Result<(Vec<Scored>, f32)> {
        let mut config = self.config.lexical.clone();
        if let Some(h) = hybrid {
            let trust = h.vector_trust.clamp(0.0, 1.0);
            config.title_boost = 1.0 + (config.title_boost - 1.0) * (1.0 - trust);
        }
        let state = self.state.read();
        let view = crate::lexical::View::new(&state.lexical_base, &state.lexical_fresh);
        let catalog = &state.catalog;
        let accept = |seq: u64| {
            catalog
                .entry(seq)
                .is_some_and(|e| filter.is_none_or(|f| f(e)))
        };
        let hits = view.search(&config, text, k, &accept)?;
        Ok((hits, view.full_match(&config, text)?))
    }

    /// The highlighted fragment of `item` that matches `text` (see [`crate::lexical::snippet`]).
    pub fn snippet(&self, text: &str, item: &Item) -> Option<String> {
        crate::lexical::snippet(&self.config.lexical, text, item)
    }

    /// Browsing: the live items passing `filter`, ordered by `sort`, as the page
    /// `offset..offset + limit` and the total count. Scores are 0.
    pub fn browse(
        &self,
        filter: Option<EntryFilter<'_>>,
        sort: SortBy,
        offset: usize,
        limit: usize,
    ) -> (Vec<Scored>, u64) {
        let state = self.state.read();
        let mut matching: Vec<(u64, f64)> = state
            .catalog
            .iter()
            .filter(|(_, e)| filter.is_none_or(|f| f(e)))
            .map(|(seq, e)| (seq, e.price))
            .collect();
        let total = matching.len() as u64;
        // seq orders writes, so the highest seq is the newest version; ties on price by seq
        // keep pages stable.
        let by = |a: &(u64, f64), b: &(u64, f64)| match sort {
            SortBy::Newest => b.0.cmp(&a.0),
            SortBy::PriceAsc => a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)),
            SortBy::PriceDesc => b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)),
        };
        let end = (offset + limit).min(matching.len());
        if offset >= end {
            return (Vec::new(), total);
        }
        if end < matching.len() {
            matching.select_nth_unstable_by(end - 1, by);
            matching.truncate(end);
        }
        matching.sort_unstable_by(by);
        (
            matching[offset..]
                .iter()
                .map(|(seq, _)| Scored {
                    id: *seq,
                    score: 0.0,
                })
                .collect(),
            total,
        )
    }
}

/// Entries a filter is tried on to estimate how many it matches.
const SAMPLE: usize = 1024;
