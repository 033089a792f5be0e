//! Shoppers' interactions: recorded durably beside the items (the store's `interactions`
//! family), read per user or all at once, erased per user.

use super::{Collection, Result};
use crate::model::{Entry, Interaction};
pub use crate::store::Recorded;

impl Collection {
    /// Checks each interaction (fields, and that its item is in the catalogue), then writes the
    /// good ones in one WAL-synced batch. One entry per input: what became of it, or why it
    /// was rejected.
    pub fn record_interactions(
        &self,
        batch: &[Interaction],
    ) -> Result<Vec<std::result::Result<Recorded, String>>> {
        let checked: Vec<std::result::Result<(), String>> = {
            let state = self.state.read();
            batch
                .iter()
                .map(|i| {
                    i.validate()?;
                    match state.catalog.seq_of(&i.item_id) {
                        Some(_) => Ok(()),
                        None => Err(format!("unknown item {:?}", i.item_id)),
                    }
                })
                .collect()
        };
        let good: Vec<Interaction> = batch
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(i, _)| i.clone())
            .collect();
        let mut written = self.store.record_interactions(&good)?.into_iter();
        Ok(checked
            .into_iter()
            .map(|c| c.map(|()| written.next().unwrap_or(Recorded::Stored)))
            .collect())
    }

    /// One user's interactions, oldest first.
    pub fn user_interactions(&self, user: &str) -> Result<Vec<Interaction>> {
        Ok(self.store.user_interactions(user)?)
    }

    pub fn for_each_interaction(&self, f: impl FnMut(Interaction)) -> Result<()> {
        Ok(self.store.for_each_interaction(f)?)
    }

    pub fn interaction_count(&self) -> Result<u64> {
        Ok(self.store.interaction_count()?)
    }

    /// Erases a user's interactions and compacts them out of the store's live files (blocking:
    /// a flush and a compaction of the family).
    pub fn erase_user(&self, user: &str) -> Result<u64> {
        Ok(self.store.erase_user(user)?)
    }

    /// Deletes interactions older than `before_ms` (retention).
    pub fn expire_interactions(&self, before_ms: i64) -> Result<u64> {
        Ok(self.store.expire_interactions(before_ms)?)
    }

    /// The live catalogue entry of an item (filters), with its seq.
    pub fn entry_of(&self, id: &str) -> Option<(u64, Entry)> {
        self.with_entry(id, |seq, e| (seq, e.clone()))
    }

    /// `f` of a live item's seq and entry, without copying the entry: recommendation checks
    /// every candidate against the filter, and a clone per candidate was a tenth of its time.
    pub fn with_entry<R>(&self, id: &str, f: impl FnOnce(u64, &Entry) -> R) -> Option<R> {
        let state = self.state.read();
        let seq = state.catalog.seq_of(id)?;
        state.catalog.entry(seq).map(|e| f(seq, e))
    }

    /// Ids of every live item.
    pub fn live_ids(&self) -> Vec<String> {
        self.state
            .read()
            .catalog
            .iter()
            .map(|(_, e)| e.id.to_string())
            .collect()
    }
}
