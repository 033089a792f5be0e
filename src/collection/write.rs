//! Writes: a group of items or deletes becomes one WAL-synced RocksDB batch, then is applied to
//! the in-memory state (catalogue + mutable layer), so a search never sees an undurable write.

use super::{space_bits, Collection, Result};
use crate::model::{Entry, Item, Version};
use crate::store::WriteOp;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// An item ready to be written: its metadata and its prepared vectors by space.
#[derive(Debug, Clone)]
pub struct PreparedItem {
    pub item: Item,
    pub vectors: Vec<(String, Vec<f32>)>,
    /// A small JPEG of the first photo, served to the web pages.
    pub thumbnail: Option<Vec<u8>>,
}

impl PreparedItem {
    /// What writing it adds to memory, roughly: its rows in a mutable layer and in RocksDB's
    /// memtable (twice), its metadata in the memtable and the catalogue.
    fn memory_estimate(&self) -> u64 {
        let rows: usize = self.vectors.iter().map(|(_, v)| v.len() * 4 + 32).sum();
        let meta = self.item.id.len()
            + self.item.title.len()
            + self.item.description.len()
            + self.item.category.len()
            + self
                .item
                .attributes
                .iter()
                .map(|(k, v)| k.len() + v.len() + 48)
                .sum::<usize>();
        let thumb = self.thumbnail.as_ref().map_or(0, Vec::len);
        (2 * rows + 2 * meta + 2 * thumb + 256) as u64
    }
}

impl Collection {
    /// Writes a group of items durably, then makes them searchable. Returns their seqs.
    pub fn upsert(self: &Arc<Self>, items: Vec<PreparedItem>) -> Result<Vec<u64>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        self.admit_write(items.iter().map(PreparedItem::memory_estimate).sum())?;
        let seqs = {
            let mut next_seq = self.writer.lock();
            // The seq is known only under the writer lock, so versions are built here, whole.
            let mut thumbnails = Vec::with_capacity(items.len());
            let versions: Vec<(Version, Vec<(String, Vec<f32>)>)> = items
                .into_iter()
                .zip(*next_seq..)
                .map(|(p, seq)| {
                    let spaces = p.vectors.iter().map(|(s, _)| s.clone()).collect();
                    thumbnails.push(p.thumbnail);
                    (
                        Version {
                            item: p.item,
                            seq,
                            spaces,
                        },
                        p.vectors,
                    )
                })
                .collect();
            // Within one group the same id may appear twice; the later one wins.
            let replaced: Vec<Option<u64>> = {
                let state = self.state.read();
                let mut in_group: HashMap<&str, u64> = HashMap::new();
                versions
                    .iter()
                    .map(|(v, _)| {
                        in_group
                            .insert(&v.item.id, v.seq)
                            .or_else(|| state.catalog.seq_of(&v.item.id))
                    })
                    .collect()
            };
            let new_next = *next_seq + versions.len() as u64;
            let ops: Vec<WriteOp<'_>> = versions
                .iter()
                .zip(&replaced)
                .zip(&thumbnails)
                .map(|(((version, vectors), r), thumbnail)| WriteOp::Put {
                    version,
                    vectors,
                    replaces_seq: *r,
                    thumbnail: thumbnail.as_deref(),
                })
                .collect();
            self.store.write(&ops, new_next)?;
            *next_seq = new_next;
            // Searchable lexically before the catalogue makes the versions live (a search
            // filters by liveness), so an acknowledged write is found both ways.
            let lexical_fresh = self.state.read().lexical_fresh.clone();
            lexical_fresh.add(versions.iter().map(|(v, _)| (v.seq, &v.item)))?;

            let mut state = self.state.write();
            let mut assigned = Vec::with_capacity(versions.len());
            for (version, vectors) in versions {
                let category = state.catalog.intern_category(&version.item.category);
                let entry = Entry::new(
                    &version.item,
                    category,
                    space_bits(&self.specs, &version.spaces),
                );
                if let Some(old) = state.catalog.insert(version.seq, entry) {
                    for layer in state.fresh.values_mut() {
                        layer.remove(old);
                    }
                }
                for (space, row) in &vectors {
                    if let Some(layer) = state.fresh.get_mut(space) {
                        layer.insert(version.seq, row);
                    }
                }
                assigned.push(version.seq);
            }
            assigned
        };
        self.maybe_compact();
        Ok(seqs)
    }

    /// Deletes items durably; returns how many existed and the ids that did not.
    pub fn delete(&self, ids: &[String]) -> Result<(usize, Vec<String>)> {
        let next_seq = self.writer.lock();
        let mut found = Vec::new();
        let mut missing = Vec::new();
        {
            let state = self.state.read();
            let mut seen = HashSet::new();
            for id in ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
                match state.catalog.seq_of(id) {
                    Some(seq) => found.push((id.clone(), seq)),
                    None => missing.push(id.clone()),
                }
            }
        }
        if !found.is_empty() {
            let ops: Vec<WriteOp<'_>> = found
                .iter()
                .map(|(id, seq)| WriteOp::Delete { id, seq: *seq })
                .collect();
            self.store.write(&ops, *next_seq)?;
            let mut state = self.state.write();
            for (id, seq) in &found {
                state.catalog.remove(id);
                for layer in state.fresh.values_mut() {
                    layer.remove(*seq);
                }
            }
        }
        Ok((found.len(), missing))
    }
}
