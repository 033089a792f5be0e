//! The mutable layer: vectors written since the base generation, searched exactly.
//!
//! Fresh writes must be searchable immediately, and an HNSW insert costs far more than a
//! row append. Keeping them in a flat, exactly-scanned table bounds their cost by the
//! layer's size, which the engine keeps small by folding it into a new generation
//! (a rebuild) once it passes a configured size.

use crate::metric::Metric;
use crate::topk::{Scored, TopK};
use std::collections::HashMap;

pub struct FlatLayer {
    dim: usize,
    metric: Metric,
    ids: Vec<u64>,
    rows: Vec<f32>,
    position: HashMap<u64, usize>,
}

impl FlatLayer {
    pub fn new(dim: usize, metric: Metric) -> Self {
        FlatLayer {
            dim,
            metric,
            ids: Vec::new(),
            rows: Vec::new(),
            position: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Heap bytes held (capacities, not lengths: what the allocator gave out), for the memory
    /// accounting. The id → row map is counted at hashbrown's 8-byte key + 8-byte value + 1
    /// control byte per bucket.
    pub fn heap_bytes(&self) -> usize {
        self.rows.capacity() * 4 + self.ids.capacity() * 8 + self.position.capacity() * 17
    }

    /// Adds a prepared vector (see [`Metric::prepare`]). Re-adding an id replaces its row.
    pub fn insert(&mut self, id: u64, prepared: &[f32]) {
        debug_assert_eq!(prepared.len(), self.dim);
        if let Some(&pos) = self.position.get(&id) {
            self.rows[pos * self.dim..(pos + 1) * self.dim].copy_from_slice(prepared);
            return;
        }
        self.position.insert(id, self.ids.len());
        self.ids.push(id);
        self.rows.extend_from_slice(prepared);
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let Some(pos) = self.position.remove(&id) else {
            return false;
        };
        let last = self.ids.len() - 1;
        if pos != last {
            let moved = self.ids[last];
            self.ids.swap(pos, last);
            let (head, tail) = self.rows.split_at_mut(last * self.dim);
            head[pos * self.dim..(pos + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
            self.position.insert(moved, pos);
        }
        self.ids.pop();
        self.rows.truncate(last * self.dim);
        true
    }

    pub fn get(&self, id: u64) -> Option<&[f32]> {
        self.position
            .get(&id)
            .map(|&p| &self.rows[p * self.dim..(p + 1) * self.dim])
    }

    /// Removes every row whose id is at or below `seq` (they now live in a generation).
    pub fn retain_newer_than(&mut self, seq: u64) {
        let stale: Vec<u64> = self.ids.iter().copied().filter(|&id| id <= seq).collect();
        for id in stale {
            self.remove(id);
        }
        // What the layer grew to before the rebuild is not needed after it; keeping the capacity
        // would hold the peak for good (and the memory budget counts capacity).
        self.rows.shrink_to_fit();
        self.ids.shrink_to_fit();
        self.position.shrink_to_fit();
    }

    pub fn search(&self, query: &[f32], k: usize, accept: &dyn Fn(u64) -> bool) -> Vec<Scored> {
        let mut top = TopK::new(k);
        for (i, &id) in self.ids.iter().enumerate() {
            if accept(id) {
                top.push(
                    id,
                    self.metric
                        .score(query, &self.rows[i * self.dim..(i + 1) * self.dim]),
                );
            }
        }
        top.into_sorted()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &[f32])> {
        self.ids
            .iter()
            .enumerate()
            .map(move |(i, &id)| (id, &self.rows[i * self.dim..(i + 1) * self.dim]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_search() {
        let mut f = FlatLayer::new(2, Metric::Cosine);
        f.insert(1, &[1.0, 0.0]);
        f.insert(2, &[0.0, 1.0]);
        f.insert(3, &[0.6, 0.8]);
        assert_eq!(f.search(&[1.0, 0.0], 1, &|_| true)[0].id, 1);
        assert!(f.remove(1));
        assert!(!f.remove(1));
        assert_eq!(f.get(3), Some(&[0.6f32, 0.8][..]));
        assert_eq!(f.search(&[1.0, 0.0], 1, &|_| true)[0].id, 3);
        assert_eq!(f.search(&[1.0, 0.0], 5, &|id| id == 2).len(), 1);
        f.retain_newer_than(2);
        assert_eq!(f.len(), 1);
    }
}
