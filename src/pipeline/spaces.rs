//! Vector spaces and their roles. A space's *name* is data (it keys stored vectors and API
//! requests); its *role* says which encoder output goes there:
//! - `text`: the shared embedding space — item texts, text and voice queries, and photos
//!   bridged (or CLIP-encoded) into it;
//! - `visual`: image features, for photo ↔ photo similarity.
//!
//! Spaces without a role hold only vectors that clients bring.

use mmsearch_index::{Metric, SpaceSpec};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpaceRole {
    #[serde(alias = "shared")]
    Text,
    Visual,
}

impl SpaceRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SpaceRole::Text => "text",
            SpaceRole::Visual => "visual",
        }
    }
}

/// One `[[spaces]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpaceConfig {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<SpaceRole>,
}

impl SpaceConfig {
    pub fn spec(&self) -> SpaceSpec {
        SpaceSpec {
            name: self.name.clone(),
            dim: self.dim,
            metric: self.metric,
        }
    }
}

/// The defaults: the text tower's 384-d space and EfficientNet-Lite0's 1280-d features.
pub fn default_spaces() -> Vec<SpaceConfig> {
    vec![
        SpaceConfig {
            name: "shared".into(),
            dim: 384,
            metric: Metric::Cosine,
            role: Some(SpaceRole::Text),
        },
        SpaceConfig {
            name: "visual".into(),
            dim: 1280,
            metric: Metric::Cosine,
            role: Some(SpaceRole::Visual),
        },
    ]
}

/// Names, dimensions and roles checked; what a data directory (or a snapshot) must agree with.
pub fn validate(spaces: &[SpaceConfig]) -> Result<(), String> {
    if spaces.is_empty() {
        return Err("at least one [[spaces]] entry is required".into());
    }
    if spaces.len() > 64 {
        return Err("at most 64 [[spaces]] entries".into());
    }
    let mut names = HashSet::new();
    let mut roles = HashSet::new();
    for s in spaces {
        if s.dim == 0 || s.dim > 65_536 {
            return Err(format!("space {}: dim must be 1..=65536", s.name));
        }
        if s.name.is_empty()
            || !s
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("space name {:?}: use [A-Za-z0-9_-]", s.name));
        }
        if !names.insert(&s.name) {
            return Err(format!("space {} defined twice", s.name));
        }
        if let Some(r) = s.role {
            if !roles.insert(r) {
                return Err(format!("two spaces have role {:?}", r.as_str()));
            }
        }
    }
    Ok(())
}

/// Spaces bound to their roles, as the search and ingest paths use them.
#[derive(Debug, Clone)]
pub struct Roles {
    text: Option<SpaceSpec>,
    visual: Option<SpaceSpec>,
}

impl Roles {
    /// Binds roles from the config. Configs written before roles existed name their spaces
    /// `shared` and `visual`; when no space has a role, those names take the roles (with a
    /// warning), so such configs keep working unchanged.
    pub fn bind(spaces: &[SpaceConfig]) -> Roles {
        let explicit = spaces.iter().any(|s| s.role.is_some());
        let role_of = |s: &SpaceConfig| match (explicit, s.role) {
            (true, r) => r,
            (false, _) if s.name == "shared" => Some(SpaceRole::Text),
            (false, _) if s.name == "visual" => Some(SpaceRole::Visual),
            (false, _) => None,
        };
        if !explicit && spaces.iter().any(|s| role_of(s).is_some()) {
            tracing::warn!("no [[spaces]] entry has a role; taking them from the names \"shared\" (text) and \"visual\" — add role = \"text\" / \"visual\" to the config");
        }
        let find = |r: SpaceRole| {
            spaces
                .iter()
                .find(|s| role_of(s) == Some(r))
                .map(SpaceConfig::spec)
        };
        Roles {
            text: find(SpaceRole::Text),
            visual: find(SpaceRole::Visual),
        }
    }

    pub fn text(&self) -> Option<&SpaceSpec> {
        self.text.as_ref()
    }

    pub fn visual(&self) -> Option<&SpaceSpec> {
        self.visual.as_ref()
    }

    pub fn get(&self, role: SpaceRole) -> Option<&SpaceSpec> {
        match role {
            SpaceRole::Text => self.text(),
            SpaceRole::Visual => self.visual(),
        }
    }

    /// The role of a space, by name.
    pub fn role_of(&self, space: &str) -> Option<SpaceRole> {
        [SpaceRole::Text, SpaceRole::Visual]
            .into_iter()
            .find(|&r| self.get(r).is_some_and(|s| s.name == space))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(name: &str, role: Option<SpaceRole>) -> SpaceConfig {
        SpaceConfig {
            name: name.into(),
            dim: 4,
            metric: Metric::Cosine,
            role,
        }
    }

    #[test]
    fn names_are_data() {
        let r = Roles::bind(&[
            space("words", Some(SpaceRole::Text)),
            space("looks", Some(SpaceRole::Visual)),
            space("shared", None),
        ]);
        assert_eq!(r.text().map(|s| s.name.as_str()), Some("words"));
        assert_eq!(r.visual().map(|s| s.name.as_str()), Some("looks"));
        assert_eq!(r.role_of("shared"), None);
        assert_eq!(r.role_of("looks"), Some(SpaceRole::Visual));
    }

    #[test]
    fn legacy_configs_take_roles_from_names() {
        let r = Roles::bind(&[space("shared", None), space("visual", None)]);
        assert_eq!(r.text().map(|s| s.name.as_str()), Some("shared"));
        assert_eq!(r.visual().map(|s| s.name.as_str()), Some("visual"));
        // one explicit role switches the inference off
        let r = Roles::bind(&[
            space("shared", None),
            space("pics", Some(SpaceRole::Visual)),
        ]);
        assert!(r.text().is_none());
    }

    #[test]
    fn validation() {
        assert!(validate(&default_spaces()).is_ok());
        assert!(validate(&[]).is_err());
        assert!(validate(&[
            space("a", Some(SpaceRole::Text)),
            space("b", Some(SpaceRole::Text))
        ])
        .is_err());
        assert!(validate(&[space("a", None), space("a", None)]).is_err());
        assert!(validate(&[space("a b", None)]).is_err());
        let parsed: SpaceConfig =
            toml::from_str("name = \"x\"\ndim = 3\nmetric = \"cosine\"\nrole = \"shared\"")
                .unwrap();
        assert_eq!(parsed.role, Some(SpaceRole::Text));
    }
}
