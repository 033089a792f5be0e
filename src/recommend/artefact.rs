//! The trained model: item-item neighbours and popularity, versioned, written as one file
//! (`<dir>/model-<version>.bin`: format byte + bincode) that is swapped in whole.
//!
//! It holds aggregates only (which items go together, how popular each is), no user ids: a
//! user erased since training is still counted in them until the next training.

use super::RecommendConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

// 2: `centre` added.
const FORMAT: u8 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub version: u64,
    /// Unix seconds.
    pub trained_at: i64,
    /// "ease" or "item_knn".
    pub algorithm: String,
    pub items: Vec<String>,
    /// Per item: its strongest successors (index into `items`, weight), best first.
    pub neighbours: Vec<Vec<(u32, f32)>>,
    /// The most popular items (index, users who interacted), most popular first.
    pub popular: Vec<(u32, f32)>,
    pub interactions: u64,
    pub users: u32,
    /// The mean of the catalogue's vectors in the text-role space when the model was trained
    /// (content only, no behaviour): the content user vector is taken relative to it. Empty
    /// when there was no such space or no item.
    pub centre: Vec<f32>,
    #[serde(skip)]
    index: HashMap<String, u32>,
}

/// Interactions gathered for training: item ids interned, one deduplicated item list per user.
#[derive(Default)]
pub struct TrainingSet {
    items: Vec<String>,
    index: HashMap<String, u32>,
    users: HashMap<String, Vec<u32>>,
    interactions: u64,
}

impl TrainingSet {
    pub fn add(&mut self, user: &str, item: &str) {
        let next = self.items.len() as u32;
        let i = *self.index.entry(item.to_string()).or_insert_with(|| next);
        if i == next {
            self.items.push(item.to_string());
        }
        match self.users.get_mut(user) {
            Some(list) => list.push(i),
            None => {
                self.users.insert(user.to_string(), vec![i]);
            }
        }
        self.interactions += 1;
    }

    pub fn interactions(&self) -> u64 {
        self.interactions
    }

    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// Trains the collaborative model: EASE up to `ease_max_items` items, item-kNN beyond.
    /// `progress(done, total)` is called as it goes.
    pub fn train(
        self,
        version: u64,
        trained_at: i64,
        config: &RecommendConfig,
        centre: Vec<f32>,
        mut progress: impl FnMut(usize, usize),
    ) -> Model {
        let n = self.items.len();
        let users: Vec<Vec<u32>> = self
            .users
            .into_values()
            .map(|mut l| {
                l.sort_unstable();
                l.dedup();
                l
            })
            .collect();
        let mut counts = vec![0f32; n];
        for l in &users {
            for &i in l {
                counts[i as usize] += 1.0;
            }
        }
        let mut popular: Vec<(u32, f32)> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u32, *c))
            .collect();
        super::knn::keep_top(&mut popular, config.popular);
        let (algorithm, neighbours) = if n <= config.ease_max_items {
            (
                "ease",
                super::ease::train(
                    &users,
                    n,
                    config.ease_lambda,
                    config.neighbours,
                    threads(config.train_threads),
                    |k| progress(k, n),
                ),
            )
        } else {
            (
                "item_knn",
                super::knn::train(&users, n, config.neighbours, |k| progress(k, n)),
            )
        };
        progress(n, n);
        Model {
            version,
            trained_at,
            algorithm: algorithm.into(),
            index: self.index,
            items: self.items,
            neighbours,
            popular,
            interactions: self.interactions,
            users: users.len() as u32,
            centre,
        }
    }
}

fn threads(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

impl Model {
    pub fn item_index(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn item_id(&self, i: u32) -> &str {
        &self.items[i as usize]
    }

    fn path(dir: &Path, version: u64) -> PathBuf {
        dir.join(format!("model-{version:020}.bin"))
    }

    /// Writes the artefact durably (temporary file, fsync, rename, fsync of the folder), then
    /// removes all but the newest `keep` artefacts.
    pub fn save(&self, dir: &Path, keep: usize) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = Self::path(dir, self.version);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let mut bytes = vec![FORMAT];
        bytes.extend(
            bincode::serde::encode_to_vec(self, bincode::config::standard())
                .map_err(std::io::Error::other)?,
        );
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(dir)?.sync_all()?;
        let mut versions = Self::versions(dir)?;
        versions.sort_unstable_by(|a, b| b.cmp(a));
        for old in versions.into_iter().skip(keep.max(1)) {
            let _ = std::fs::remove_file(Self::path(dir, old));
        }
        Ok(path)
    }

    fn versions(dir: &Path) -> std::io::Result<Vec<u64>> {
        let mut out = Vec::new();
        if !dir.exists() {
            return Ok(out);
        }
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some(v) = name
                .strip_prefix("model-")
                .and_then(|s| s.strip_suffix(".bin"))
                .and_then(|s| s.parse().ok())
            {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The newest artefact in `dir`, if any.
    pub fn load_newest(dir: &Path) -> std::io::Result<Option<Model>> {
        let Some(version) = Self::versions(dir)?.into_iter().max() else {
            return Ok(None);
        };
        let bytes = std::fs::read(Self::path(dir, version))?;
        let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
        if bytes.first() != Some(&FORMAT) {
            return Err(bad(format!("model {version}: unknown format")));
        }
        let (mut m, _): (Model, usize) =
            bincode::serde::decode_from_slice(&bytes[1..], bincode::config::standard())
                .map_err(|e| bad(e.to_string()))?;
        m.index = m
            .items
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        Ok(Some(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_saves_and_loads() {
        let mut t = TrainingSet::default();
        for u in 0..10 {
            t.add(&format!("u{u}"), "a");
            t.add(&format!("u{u}"), "b");
            if u < 3 {
                t.add(&format!("u{u}"), "c");
            }
        }
        let m = t.train(7, 1, &RecommendConfig::default(), vec![0.5], |_, _| {});
        assert_eq!(
            (m.algorithm.as_str(), m.users, m.interactions),
            ("ease", 10, 23)
        );
        let a = m.item_index("a").unwrap();
        assert_eq!(m.item_id(m.neighbours[a as usize][0].0), "b");
        assert_eq!(m.popular.len(), 3);
        let dir = tempfile::tempdir().unwrap();
        m.save(dir.path(), 2).unwrap();
        let knn = RecommendConfig {
            ease_max_items: 1,
            ..Default::default()
        };
        let mut t2 = TrainingSet::default();
        t2.add("x", "a");
        t2.add("x", "b");
        let m2 = t2.train(8, 2, &knn, Vec::new(), |_, _| {});
        assert_eq!(m2.algorithm, "item_knn");
        m2.save(dir.path(), 1).unwrap();
        let back = Model::load_newest(dir.path()).unwrap().unwrap();
        assert_eq!(back.version, 8);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(back.item_index("b"), Some(1));
        assert!(back.centre.is_empty() && m.centre == vec![0.5]);
    }
}
