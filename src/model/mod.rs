//! The domain's plain data: the item (as written, as stored, as returned), the catalogue entry
//! derived from it, the filter over entries, shoppers' interactions with items, and which script a
//! character is written in. Knows nothing else of the crate; every layer
//! from the wire conversion down to the store uses these types.

mod entry;
mod filter;
mod interaction;
mod item;
mod script;

pub use entry::Entry;
pub use filter::{FilterSpec, SortBy};
pub use interaction::{user_tag, Interaction, InteractionKind, MAX_KEY_BYTES, MAX_USER_ID_BYTES};
pub use item::{
    Item, NewItem, Version, MAX_ATTRIBUTES, MAX_ID_BYTES, MAX_IMAGES_PER_ITEM, MAX_TEXT_BYTES,
};
pub use script::is_cjk;
