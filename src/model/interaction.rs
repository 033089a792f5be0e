//! Shopper behaviour: one interaction of a user with an item, as recorded and as stored.

use serde::{Deserialize, Serialize};

/// Longest user id and idempotency key accepted (bytes).
pub const MAX_USER_ID_BYTES: usize = 256;
pub const MAX_KEY_BYTES: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InteractionKind {
    View,
    Click,
    Cart,
    Purchase,
    Dwell,
}

impl InteractionKind {
    pub const ALL: [InteractionKind; 5] = [
        InteractionKind::View,
        InteractionKind::Click,
        InteractionKind::Cart,
        InteractionKind::Purchase,
        InteractionKind::Dwell,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::View => "view",
            InteractionKind::Click => "click",
            InteractionKind::Cart => "cart",
            InteractionKind::Purchase => "purchase",
            InteractionKind::Dwell => "dwell",
        }
    }

    pub fn parse(s: &str) -> Option<InteractionKind> {
        InteractionKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Opaque; never logged in clear.
    pub user_id: String,
    pub item_id: String,
    pub kind: InteractionKind,
    pub dwell_ms: u32,
    /// Unix milliseconds.
    pub ts_ms: i64,
    /// Same (user, key) twice is stored once; empty = no dedup.
    pub key: String,
}

impl Interaction {
    /// Field checks; whether the item exists is the collection's to check.
    pub fn validate(&self) -> Result<(), String> {
        if self.user_id.is_empty() {
            return Err("user_id is empty".into());
        }
        if self.user_id.len() > MAX_USER_ID_BYTES {
            return Err(format!("user_id is longer than {MAX_USER_ID_BYTES} bytes"));
        }
        if self.item_id.is_empty() {
            return Err("item_id is empty".into());
        }
        if self.item_id.len() > super::MAX_ID_BYTES {
            return Err(format!(
                "item_id is longer than {} bytes",
                super::MAX_ID_BYTES
            ));
        }
        if self.key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "idempotency_key is longer than {MAX_KEY_BYTES} bytes"
            ));
        }
        if self.ts_ms < 0 {
            return Err(format!("timestamp {} is before 1970", self.ts_ms));
        }
        if self.kind == InteractionKind::Dwell && self.dwell_ms == 0 {
            return Err("a DWELL interaction needs dwell_ms > 0".into());
        }
        Ok(())
    }
}

/// A short, stable, non-reversible tag for a user id, for logs at info level.
pub fn user_tag(user_id: &str) -> String {
    // FNV-1a: enough to tell users apart in a log without printing who they are.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in user_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("u#{:08x}", (h >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Interaction {
        Interaction {
            user_id: "u".into(),
            item_id: "i".into(),
            kind: InteractionKind::View,
            dwell_ms: 0,
            ts_ms: 1,
            key: String::new(),
        }
    }

    #[test]
    fn validation() {
        assert!(ok().validate().is_ok());
        assert!(Interaction {
            user_id: String::new(),
            ..ok()
        }
        .validate()
        .is_err());
        assert!(Interaction {
            item_id: String::new(),
            ..ok()
        }
        .validate()
        .is_err());
        assert!(Interaction {
            kind: InteractionKind::Dwell,
            ..ok()
        }
        .validate()
        .is_err());
        assert!(Interaction {
            kind: InteractionKind::Dwell,
            dwell_ms: 5,
            ..ok()
        }
        .validate()
        .is_ok());
        assert!(Interaction { ts_ms: -1, ..ok() }.validate().is_err());
        assert_eq!(
            InteractionKind::parse("PURCHASE"),
            Some(InteractionKind::Purchase)
        );
        assert_ne!(user_tag("alice"), user_tag("bob"));
        assert!(!user_tag("alice").contains("alice"));
    }
}
