//! The catalogue entry: the few fields of the live version of an item that filters read. Kept
//! in memory because filters run inside the HNSW traversal, once per visited node, where a
//! store read would dominate the search.

use super::Item;
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

impl Entry {
    /// `category` is passed in interned (most catalogues have few categories, shared by many items).
    pub fn new(item: &Item, category: Arc<str>, spaces: u64) -> Entry {
        Entry {
            id: Arc::from(item.id.as_str()),
            category,
            price: item.price,
            attributes: item.attributes.clone(),
            spaces,
        }
    }
}
