//! What the server has acknowledged, and the deterministic content of every write.
//!
//! Each id is written by exactly one writer task, one request at a time, so the latest
//! acknowledged write is unambiguous. A write marks its ids busy and bumps their epoch before it
//! is sent and again when it is acknowledged; a check that saw the same epoch before and after
//! its requests observed a settled id, any other check is discarded as raced.

use mmsearch::pb;
use parking_lot::Mutex;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const SPACE: &str = "shared";
pub const CATEGORIES: usize = 8;
const CLUSTERS: usize = 32;
/// Per-dimension noise around a cluster centre: items of a cluster have cosine ≈ 0.75, close
/// enough for "more like this" and filters to be meaningful, far enough for self-queries to be unique.
const SPREAD: f32 = 0.03;

const WORDS: [&str; 24] = [
    "red",
    "blue",
    "leather",
    "wooden",
    "wireless",
    "running",
    "gaming",
    "indoor",
    "vintage",
    "compact",
    "steel",
    "cotton",
    "shoes",
    "sofa",
    "mouse",
    "camera",
    "plant",
    "stool",
    "gloves",
    "lamp",
    "backpack",
    "kettle",
    "jacket",
    "headphones",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// Acknowledged with this revision's content.
    Live(u32),
    /// An acknowledged delete (or a delete answered "not found").
    Deleted,
    /// A write whose outcome the server did not report (the request failed): not checkable
    /// until the next acknowledged write of the id.
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slot {
    pub expect: Expect,
    /// Next revision number to write.
    pub next_rev: u32,
    /// Written as text only (the server's encoder made its vector).
    pub text: bool,
    #[serde(skip)]
    pub busy: bool,
    #[serde(skip)]
    pub epoch: u64,
}

#[derive(Default, Serialize, Deserialize)]
pub struct ModelData {
    pub slots: HashMap<String, Slot>,
    /// Every id ever written, for uniform sampling.
    pub ids: Vec<String>,
}

pub struct Model {
    pub seed: u64,
    centres: Vec<Vec<f32>>,
    data: Mutex<ModelData>,
}

/// A snapshot of one id's expectation, taken when it was not busy.
#[derive(Debug, Clone)]
pub struct Settled {
    pub id: String,
    pub expect: Expect,
    pub text: bool,
    pub epoch: u64,
}

impl Model {
    pub fn new(seed: u64, dim: usize, data: ModelData) -> Model {
        let mut rng = Rng64::new(seed ^ 0xC1A5_7E25);
        let centres = (0..CLUSTERS)
            .map(|_| normalise((0..dim).map(|_| rng.gauss()).collect()))
            .collect();
        Model {
            seed,
            centres,
            data: Mutex::new(data),
        }
    }

    pub fn id(&self, writer: usize, n: u64) -> String {
        format!("s{}-w{writer}-{n}", self.seed)
    }

    /// Ids owned by `writer` (from a loaded state), and the next free number.
    pub fn owned(&self, writer: usize) -> (Vec<String>, u64) {
        let prefix = format!("s{}-w{writer}-", self.seed);
        let data = self.data.lock();
        let mut mine: Vec<(u64, String)> = data
            .ids
            .iter()
            .filter_map(|id| {
                id.strip_prefix(&prefix)
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, id.clone()))
            })
            .collect();
        mine.sort();
        let next = mine.last().map_or(0, |(n, _)| n + 1);
        (mine.into_iter().map(|(_, id)| id).collect(), next)
    }

    /// Reserves the next revision of each id for a write and marks them busy. New ids are
    /// registered. Returns the revisions in order (an id listed twice gets two revisions).
    pub fn begin_write(&self, ids: &[(String, bool)]) -> Vec<u32> {
        let mut data = self.data.lock();
        let mut revs = Vec::with_capacity(ids.len());
        for (id, text) in ids {
            if !data.slots.contains_key(id) {
                data.ids.push(id.clone());
                data.slots.insert(
                    id.clone(),
                    Slot {
                        expect: Expect::Unknown,
                        next_rev: 0,
                        text: *text,
                        busy: false,
                        epoch: 0,
                    },
                );
            }
            let slot = data.slots.get_mut(id).expect("registered above");
            slot.busy = true;
            slot.epoch += 1;
            slot.text = *text;
            revs.push(slot.next_rev);
            slot.next_rev += 1;
        }
        revs
    }

    /// Records the outcome of a write begun with [`Model::begin_write`].
    pub fn end_write(&self, outcomes: &[(String, Expect)]) {
        let mut data = self.data.lock();
        for (id, expect) in outcomes {
            if let Some(slot) = data.slots.get_mut(id) {
                slot.busy = false;
                slot.epoch += 1;
                slot.expect = *expect;
            }
        }
    }

    /// Marks ids busy for a delete; returns their expectation before it.
    pub fn begin_delete(&self, ids: &[String]) -> Vec<Option<Expect>> {
        let mut data = self.data.lock();
        ids.iter()
            .map(|id| {
                data.slots.get_mut(id).map(|slot| {
                    slot.busy = true;
                    slot.epoch += 1;
                    slot.expect
                })
            })
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<Slot> {
        self.data.lock().slots.get(id).cloned()
    }

    /// A random id that is not being written right now, with what it should look like.
    pub fn sample_settled(&self, rng: &mut impl Rng) -> Option<Settled> {
        let data = self.data.lock();
        for _ in 0..8 {
            if data.ids.is_empty() {
                return None;
            }
            let id = &data.ids[rng.random_range(0..data.ids.len())];
            let slot = &data.slots[id];
            if !slot.busy && slot.expect != Expect::Unknown {
                return Some(Settled {
                    id: id.clone(),
                    expect: slot.expect,
                    text: slot.text,
                    epoch: slot.epoch,
                });
            }
        }
        None
    }

    /// True when `s` still describes its id: nothing was written to it since the snapshot.
    pub fn still(&self, s: &Settled) -> bool {
        self.data
            .lock()
            .slots
            .get(&s.id)
            .is_some_and(|slot| !slot.busy && slot.epoch == s.epoch)
    }

    /// Every settled id, for the final full verification (no writers are running then).
    pub fn all_settled(&self) -> (Vec<Settled>, usize) {
        let data = self.data.lock();
        let mut unknown = 0;
        let mut out = Vec::with_capacity(data.ids.len());
        for id in &data.ids {
            let slot = &data.slots[id];
            if slot.expect == Expect::Unknown || slot.busy {
                unknown += 1;
            } else {
                out.push(Settled {
                    id: id.clone(),
                    expect: slot.expect,
                    text: slot.text,
                    epoch: slot.epoch,
                });
            }
        }
        (out, unknown)
    }

    pub fn counts(&self) -> (usize, usize) {
        let data = self.data.lock();
        let live = data
            .slots
            .values()
            .filter(|s| matches!(s.expect, Expect::Live(_)))
            .count();
        (data.ids.len(), live)
    }

    pub fn export(&self) -> serde_json::Value {
        serde_json::to_value(&*self.data.lock()).unwrap_or_default()
    }

    /// The item written as revision `rev` of `id`.
    pub fn item(&self, id: &str, rev: u32, text: bool) -> pb::Item {
        let h = fnv(self.seed, id, rev);
        let mut attributes = HashMap::new();
        attributes.insert("uid".to_string(), id.to_string());
        attributes.insert("rev".to_string(), rev.to_string());
        let title = if text {
            // Words the text model knows, so the encoder does real work.
            let w = |k: u64| WORDS[((h >> (k * 5)) % WORDS.len() as u64) as usize];
            format!("{} {} {} {id} r{rev}", w(0), w(1), w(2))
        } else {
            format!("soak {id} r{rev}")
        };
        pb::Item {
            id: id.to_string(),
            title,
            category: category(h),
            price: (h % 100_000) as f64 / 100.0,
            attributes,
            vectors: if text {
                Vec::new()
            } else {
                vec![pb::Vector {
                    space: SPACE.into(),
                    values: self.vector(id, rev),
                }]
            },
            ..Default::default()
        }
    }

    /// The precomputed vector of revision `rev` of `id`.
    pub fn vector(&self, id: &str, rev: u32) -> Vec<f32> {
        let h = fnv(self.seed, id, rev);
        let mut rng = Rng64::new(h);
        let centre = &self.centres[(h % CLUSTERS as u64) as usize];
        normalise(centre.iter().map(|c| c + SPREAD * rng.gauss()).collect())
    }

    /// A query vector near a random cluster.
    pub fn query_vector(&self, rng: &mut impl Rng) -> Vec<f32> {
        let centre = &self.centres[rng.random_range(0..CLUSTERS)];
        let mut r = Rng64::new(rng.random());
        normalise(centre.iter().map(|c| c + SPREAD * r.gauss()).collect())
    }
}

pub fn category(h: u64) -> String {
    format!("cat{}", (h >> 20) % CATEGORIES as u64)
}

fn fnv(seed: u64, id: &str, rev: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in id.bytes().chain(rev.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalise (splitmix64) so nearby ids give unrelated streams.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// xorshift64*: a fixed generator, so a seed gives the same vectors in every build.
struct Rng64(u64);

impl Rng64 {
    fn new(seed: u64) -> Rng64 {
        Rng64(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    fn gauss(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

fn normalise(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / n).collect()
}
