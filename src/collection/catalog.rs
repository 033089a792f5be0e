//! The live catalogue in memory: which version (seq) of each item is current, and its
//! [`Entry`] (the fields filters need).

use crate::model::Entry;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Catalog {
    by_id: HashMap<Arc<str>, u64>,
    by_seq: HashMap<u64, Entry>,
    /// Live entries with a vector in space i (bit i of `Entry::spaces`): the planner's `live`,
    /// kept current so a query never counts them.
    live_per_space: [usize; 64],
    /// Interned categories: most catalogues have few, shared by many items.
    categories: HashMap<String, Arc<str>>,
    /// Heap bytes of the entries' own strings (ids, attributes), kept current on insert and
    /// remove so the memory accounting never walks the catalogue.
    string_bytes: usize,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            by_id: HashMap::new(),
            by_seq: HashMap::new(),
            live_per_space: [0; 64],
            categories: HashMap::new(),
            string_bytes: 0,
        }
    }
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
            self.drop_seq(old);
        }
        self.count(entry.spaces, true);
        self.string_bytes += entry_string_bytes(&entry);
        self.by_seq.insert(seq, entry);
        old
    }

    pub fn remove(&mut self, id: &str) -> Option<u64> {
        let seq = self.by_id.remove(id)?;
        self.drop_seq(seq);
        Some(seq)
    }

    fn drop_seq(&mut self, seq: u64) {
        if let Some(e) = self.by_seq.remove(&seq) {
            self.count(e.spaces, false);
            self.string_bytes = self.string_bytes.saturating_sub(entry_string_bytes(&e));
        }
    }

    fn count(&mut self, spaces: u64, add: bool) {
        for (i, n) in self.live_per_space.iter_mut().enumerate() {
            if spaces & (1 << i) != 0 {
                *n = if add { *n + 1 } else { n.saturating_sub(1) };
            }
        }
    }

    /// Live items with a vector in space `index`.
    pub fn live_in(&self, index: usize) -> usize {
        self.live_per_space.get(index).copied().unwrap_or(0)
    }

    /// Tries `pred` on up to `n` live entries with a vector in space bit `bit`: (matched,
    /// sampled). Hash order is unrelated to an entry's fields, so the first `n` are a fair
    /// sample of them for the planner's estimate.
    pub fn sample(&self, bit: u64, n: usize, pred: impl Fn(&Entry) -> bool) -> (usize, usize) {
        self.by_seq
            .values()
            .filter(|e| e.spaces & bit != 0)
            .take(n)
            .fold((0, 0), |(m, s), e| (m + usize::from(pred(e)), s + 1))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.by_seq.iter().map(|(s, e)| (*s, e))
    }

    /// Heap bytes held: both maps at their capacity (hashbrown: key + value + 1 control byte a
    /// bucket) plus the entries' strings. An estimate of what the allocator handed out; the
    /// allocator's own overhead is not in it.
    pub fn heap_bytes(&self) -> usize {
        let by_id = self.by_id.capacity() * (std::mem::size_of::<(Arc<str>, u64)>() + 1);
        let by_seq = self.by_seq.capacity() * (std::mem::size_of::<(u64, Entry)>() + 1);
        by_id + by_seq + self.string_bytes
    }
}

/// An entry's own heap strings: the id's `Arc` allocation (two counters + bytes) and each
/// attribute pair's two `String`s (the `Vec` of pairs included). Categories are interned.
fn entry_string_bytes(e: &Entry) -> usize {
    16 + e.id.len()
        + e.attributes.capacity() * std::mem::size_of::<(String, String)>()
        + e.attributes
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity())
            .sum::<usize>()
}
