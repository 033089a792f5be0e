//! The live catalogue in memory: which version (seq) of each item is current, plus the few
//! fields filters need. Kept in memory because filters run inside the HNSW traversal, once
//! per visited node, where a RocksDB read would dominate the search.

use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Entry {
    pub id: Arc<str>,
    pub category: Arc<str>,
    pub price: f64,
    pub attributes: Vec<(String, String)>,
    /// Bit i set = the item has a vector in configured space i.
    pub spaces: u64,
}

#[derive(Default)]
pub struct Catalog {
    by_id: HashMap<Arc<str>, u64>,
    by_seq: HashMap<u64, Entry>,
    /// Interned categories: most catalogues have few, shared by many items.
    categories: HashMap<String, Arc<str>>,
}

impl Catalog {
    pub fn len(&self) -> usize {
        self.by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_seq.is_empty()
    }

    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        self.by_seq.get(&seq)
    }

    pub fn is_live(&self, seq: u64) -> bool {
        self.by_seq.contains_key(&seq)
    }

    pub fn intern_category(&mut self, category: &str) -> Arc<str> {
        if let Some(c) = self.categories.get(category) {
            return c.clone();
        }
        let c: Arc<str> = Arc::from(category);
        self.categories.insert(category.to_string(), c.clone());
        c
    }

    /// Makes `seq` the live version of `entry.id`; returns the seq it replaced.
    pub fn insert(&mut self, seq: u64, entry: Entry) -> Option<u64> {
        let old = self.by_id.insert(entry.id.clone(), seq);
        if let Some(old) = old {
            self.by_seq.remove(&old);
        }
        self.by_seq.insert(seq, entry);
        old
    }

    pub fn remove(&mut self, id: &str) -> Option<u64> {
        let seq = self.by_id.remove(id)?;
        self.by_seq.remove(&seq);
        Some(seq)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.by_seq.iter().map(|(s, e)| (*s, e))
    }
}
