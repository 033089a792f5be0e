//! Compiles a request's filter into a predicate over catalogue entries.

use super::Entry;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilterSpec {
    /// Any of these categories (exact match); empty = all.
    pub categories: Vec<String>,
    pub price_min: Option<f64>,
    pub price_max: Option<f64>,
    /// All of these attributes must match exactly.
    pub attributes: Vec<(String, String)>,
}

impl FilterSpec {
    pub fn is_empty(&self) -> bool {
        self.categories.is_empty()
            && self.price_min.is_none()
            && self.price_max.is_none()
            && self.attributes.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        for p in [self.price_min, self.price_max].into_iter().flatten() {
            if !p.is_finite() {
                return Err("price bounds must be finite numbers".into());
            }
        }
        if let (Some(lo), Some(hi)) = (self.price_min, self.price_max) {
            if lo > hi {
                return Err(format!("price_min {lo} is greater than price_max {hi}"));
            }
        }
        Ok(())
    }

    pub fn matches(&self, e: &Entry) -> bool {
        if !self.categories.is_empty() && !self.categories.iter().any(|c| **c == *e.category) {
            return false;
        }
        if self.price_min.is_some_and(|lo| e.price < lo)
            || self.price_max.is_some_and(|hi| e.price > hi)
        {
            return false;
        }
        self.attributes
            .iter()
            .all(|(k, v)| e.attributes.iter().any(|(ek, ev)| ek == k && ev == v))
    }
}

/// The order of a browse (a request with no query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortBy {
    /// Most recently written first.
    #[default]
    Newest,
    PriceAsc,
    PriceDesc,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn matches_all_clauses() {
        let e = Entry {
            id: Arc::from("a"),
            category: Arc::from("photo"),
            price: 50.0,
            attributes: vec![("brand".into(), "Acme".into())],
            spaces: 1,
        };
        let mut f = FilterSpec {
            categories: vec!["photo".into(), "x".into()],
            ..Default::default()
        };
        assert!(f.matches(&e));
        f.price_max = Some(49.9);
        assert!(!f.matches(&e));
        f.price_max = Some(50.0);
        f.attributes = vec![("brand".into(), "Acme".into())];
        assert!(f.matches(&e));
        f.attributes.push(("color".into(), "red".into()));
        assert!(!f.matches(&e));
        assert!(FilterSpec {
            price_min: Some(2.0),
            price_max: Some(1.0),
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
