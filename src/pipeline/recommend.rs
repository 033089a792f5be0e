//! The recommendation step: records behaviour, trains the model into an artefact swapped in
//! whole, and answers "for you", "more like these" and personalised search. The models and
//! the blend are `crate::recommend`'s; this gathers their inputs from the collection (history,
//! item vectors, candidates from the index) and hydrates what they return.

use super::search::{prepare_query_vector, SearchHit, SearchRequest, SearchResult, Searcher};
use super::spaces::Roles;
use super::{blocking, PipelineError};
use crate::collection::{Collection, Recorded};
use crate::encode::Encoders;
use crate::model::{user_tag, FilterSpec, Interaction, Version};
use crate::recommend::artefact::TrainingSet;
use crate::recommend::{
    blend, weigh, Candidate, Model, RecommendConfig, Recommended, Source, SourceList, Weighted,
};
use arc_swap::ArcSwapOption;
use mmsearch_index::metric::dot;
use mmsearch_index::Scored;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A hit of a recommendation, hydrated.
#[derive(Debug, Clone)]
pub struct RecommendHit {
    pub recommended: Recommended,
    pub version: Version,
}

#[derive(Debug, Clone)]
pub struct ForUserRequest {
    pub user_id: String,
    pub top_k: u32,
    pub offset: u32,
    pub filter: FilterSpec,
    pub exclude_seen: bool,
}

#[derive(Debug, Clone)]
pub enum ExampleInput {
    ItemId(String),
    /// `space` empty = the text-role space.
    Vector {
        space: String,
        values: Vec<f32>,
    },
    Text(String),
    Image(Vec<u8>),
    Audio(Vec<u8>),
}

#[derive(Debug, Clone)]
pub struct Example {
    pub input: ExampleInput,
    pub weight: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    AverageVector,
    BestScore,
    Collaborative,
}

#[derive(Debug, Clone)]
pub struct ExamplesRequest {
    pub positive: Vec<Example>,
    pub negative: Vec<Example>,
    pub strategy: Strategy,
    pub filter: FilterSpec,
    pub top_k: u32,
    pub offset: u32,
    pub min_score: f32,
    pub exclude_inputs: bool,
    pub ignore_missing_ids: bool,
}

/// A personalised hit's score, term by term: score = offset + Σ weight·value.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalParts {
    pub similarity: f32,
    pub personal: f32,
    pub alpha: f32,
}

impl PersonalParts {
    pub fn score(&self) -> f32 {
        (1.0 - self.alpha) * self.similarity + self.alpha * self.personal
    }
}

/// Training progress: phase, done, total.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainProgress {
    pub phase: &'static str,
    pub done: u64,
    pub total: u64,
    pub model: Option<ModelInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub version: u64,
    pub trained_at: i64,
    pub algorithm: String,
    pub interactions: u64,
    pub items: u32,
    pub users: u32,
}

impl ModelInfo {
    fn of(m: &Model) -> ModelInfo {
        ModelInfo {
            version: m.version,
            trained_at: m.trained_at,
            algorithm: m.algorithm.clone(),
            interactions: m.interactions,
            items: m.items.len() as u32,
            users: m.users,
        }
    }
}

pub struct Recommender {
    collection: Arc<Collection>,
    encoders: Option<Arc<Encoders>>,
    roles: Roles,
    config: RecommendConfig,
    model: ArcSwapOption<Model>,
    dir: PathBuf,
    training: AtomicBool,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Recommender {
    /// Loads the newest model artefact in `dir`, if any (a broken one is logged and skipped:
    /// recommendations fall back to what needs no model until the next training).
    pub fn open(
        collection: Arc<Collection>,
        encoders: Option<Arc<Encoders>>,
        roles: Roles,
        config: RecommendConfig,
        dir: PathBuf,
    ) -> Recommender {
        let model = match Model::load_newest(&dir) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "recommendation model unreadable; train again");
                None
            }
        };
        if let Some(m) = &model {
            tracing::info!(version = m.version, algorithm = %m.algorithm, items = m.items.len(), "recommendation model loaded");
        }
        Recommender {
            collection,
            encoders,
            roles,
            config,
            model: ArcSwapOption::from(model.map(Arc::new)),
            dir,
            training: AtomicBool::new(false),
        }
    }

    pub fn config(&self) -> &RecommendConfig {
        &self.config
    }

    pub fn model_info(&self) -> Option<ModelInfo> {
        self.model.load().as_deref().map(ModelInfo::of)
    }

    /// Stores a batch of interactions (0 timestamps become now) durably; per input its outcome
    /// or why it was rejected.
    pub async fn record(
        &self,
        mut batch: Vec<Interaction>,
    ) -> Result<Vec<Result<Recorded, String>>, PipelineError> {
        let now = now_ms();
        for i in &mut batch {
            if i.ts_ms == 0 {
                i.ts_ms = now;
            }
        }
        let c = self.collection.clone();
        blocking(move || Ok(c.record_interactions(&batch)?)).await
    }

    pub async fn export(&self, user: String) -> Result<Vec<Interaction>, PipelineError> {
        check_user(&user)?;
        let c = self.collection.clone();
        blocking(move || Ok(c.user_interactions(&user)?)).await
    }

    pub async fn erase(&self, user: String) -> Result<u64, PipelineError> {
        check_user(&user)?;
        let c = self.collection.clone();
        let tag = user_tag(&user);
        let n = blocking(move || Ok(c.erase_user(&user)?)).await?;
        tracing::info!(user = %tag, erased = n, "user data erased");
        Ok(n)
    }

    /// Deletes interactions past the retention period (none configured: nothing).
    pub fn apply_retention(&self) -> Result<u64, PipelineError> {
        if self.config.retention_days == 0 {
            return Ok(0);
        }
        let before = now_ms() - self.config.retention_days as i64 * 86_400_000;
        Ok(self.collection.expire_interactions(before)?)
    }

    /// Trains a new model from the stored interactions (blocking), writes it as the next
    /// version's artefact and swaps it in. One training at a time.
    pub fn train(
        &self,
        mut progress: impl FnMut(TrainProgress),
    ) -> Result<ModelInfo, PipelineError> {
        if self.training.swap(true, Ordering::AcqRel) {
            return Err(PipelineError::Unavailable(
                "a training is already running".into(),
            ));
        }
        let result = self.train_inner(&mut progress);
        self.training.store(false, Ordering::Release);
        result
    }

    fn train_inner(
        &self,
        progress: &mut impl FnMut(TrainProgress),
    ) -> Result<ModelInfo, PipelineError> {
        let started = std::time::Instant::now();
        let expired = self.apply_retention()?;
        let total = self.collection.interaction_count()?;
        progress(TrainProgress {
            phase: "loading",
            done: 0,
            total,
            model: None,
        });
        let mut set = TrainingSet::default();
        let mut live: HashMap<String, bool> = HashMap::new();
        self.collection.for_each_interaction(|i| {
            // Items deleted from the catalogue are left out of the model.
            let alive = *live
                .entry(i.item_id.clone())
                .or_insert_with(|| self.collection.seq_of(&i.item_id).is_some());
            if alive {
                set.add(&i.user_id, &i.item_id);
            }
        })?;
        let n = set.items() as u64;
        let version = self.model.load().as_ref().map_or(0, |m| m.version) + 1;
        let trained_at = now_ms() / 1000;
        let centre = self
            .content_space()
            .map_or_else(Vec::new, |space| catalogue_mean(&self.collection, &space));
        let model = set.train(version, trained_at, &self.config, centre, |done, _| {
            progress(TrainProgress {
                phase: "training",
                done: done as u64,
                total: n,
                model: None,
            })
        });
        progress(TrainProgress {
            phase: "writing",
            done: n,
            total: n,
            model: None,
        });
        model
            .save(&self.dir, 2)
            .map_err(|e| PipelineError::Internal(format!("writing the model artefact: {e}")))?;
        let info = ModelInfo::of(&model);
        self.model.store(Some(Arc::new(model)));
        tracing::info!(
            version = info.version,
            algorithm = %info.algorithm,
            items = info.items,
            users = info.users,
            interactions = info.interactions,
            expired,
            seconds = started.elapsed().as_secs_f64(),
            "recommendation model trained"
        );
        progress(TrainProgress {
            phase: "done",
            done: n,
            total: n,
            model: Some(info.clone()),
        });
        Ok(info)
    }

    fn content_space(&self) -> Option<String> {
        self.roles.text().map(|s| s.name.clone())
    }

    /// "For you": collaborative neighbours of the user's history, the content user vector
    /// searched in the index, and (unless seen items are excluded) buy-again, blended; the
    /// most popular items for a user without usable history.
    pub async fn for_user(
        &self,
        req: ForUserRequest,
    ) -> Result<(Vec<RecommendHit>, u64), PipelineError> {
        check_user(&req.user_id)?;
        check_page(req.top_k, req.offset)?;
        req.filter
            .validate()
            .map_err(PipelineError::InvalidArgument)?;
        let model = self.model.load_full();
        let c = self.collection.clone();
        let config = self.config.clone();
        let space = self.content_space();
        blocking(move || {
            let events = c.user_interactions(&req.user_id)?;
            let history = weigh(&events, &config);
            let window = (req.offset + req.top_k) as usize;
            let want = window * config.candidates_factor
                + if req.exclude_seen { history.len() } else { 0 };
            let kinds: HashMap<&str, &'static str> = history
                .iter()
                .map(|h| (h.item_id.as_str(), h.kind.as_str()))
                .collect();
            let seen: HashSet<&str> = if req.exclude_seen {
                kinds.keys().copied().collect()
            } else {
                HashSet::new()
            };
            let mut lists = Vec::new();
            if let Some(m) = model.as_deref() {
                lists.push(collaborative(
                    m,
                    &crate::recommend::model_input(&history, config.collaborative_half_life_items),
                    want,
                    &kinds,
                    &seen,
                    config.blend_collaborative,
                ));
            }
            if let (Some(space), true) = (&space, config.blend_content > 0.0) {
                lists.push(content(
                    &c,
                    space,
                    &crate::recommend::model_input(&history, config.content_half_life_items),
                    centre(model.as_deref()),
                    &req.filter,
                    want,
                    &kinds,
                    &seen,
                    config.blend_content,
                )?);
            }
            if !req.exclude_seen && config.blend_buy_again > 0.0 {
                lists.push(buy_again(&history, config.blend_buy_again));
            }
            if lists.iter().all(|l| l.hits.is_empty()) {
                if let Some(m) = model.as_deref() {
                    lists = vec![popularity(m, 1.0)];
                }
            }
            let ranked = blend(lists, |id| {
                !seen.contains(id) && passes(&c, &req.filter, id)
            });
            let hits = hydrate(
                &c,
                ranked,
                req.offset as usize,
                req.top_k as usize,
                f32::NEG_INFINITY,
            )?;
            Ok((hits, model.as_ref().map_or(0, |m| m.version)))
        })
        .await
    }

    /// Items like the positive examples and unlike the negative ones.
    pub async fn by_examples(
        &self,
        req: ExamplesRequest,
    ) -> Result<(Vec<RecommendHit>, u64), PipelineError> {
        check_page(req.top_k, req.offset)?;
        req.filter
            .validate()
            .map_err(PipelineError::InvalidArgument)?;
        if req.positive.is_empty()
            && !(req.strategy == Strategy::AverageVector && !req.negative.is_empty())
        {
            return Err(PipelineError::InvalidArgument(
                "no positive examples".into(),
            ));
        }
        if req.min_score.is_nan() {
            return Err(PipelineError::InvalidArgument(
                "min_score must be a number".into(),
            ));
        }
        for e in req.positive.iter().chain(&req.negative) {
            if !(e.weight.is_finite() && e.weight > 0.0) {
                return Err(PipelineError::InvalidArgument(format!(
                    "example weight {} must be > 0",
                    e.weight
                )));
            }
        }
        let model = self.model.load_full();
        let version = model.as_ref().map_or(0, |m| m.version);
        let space = match self.content_space() {
            Some(s) => s,
            None if req.strategy == Strategy::Collaborative => String::new(),
            None => {
                return Err(PipelineError::Unimplemented(
                    "example recommendations need a text-role space".into(),
                ))
            }
        };
        // Unknown item ids, all at once.
        let ids: Vec<&str> = req
            .positive
            .iter()
            .chain(&req.negative)
            .filter_map(|e| match &e.input {
                ExampleInput::ItemId(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| self.collection.seq_of(id).is_none())
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() && !req.ignore_missing_ids {
            return Err(PipelineError::NotFound(format!(
                "unknown example items: {missing:?}"
            )));
        }
        let inputs: HashSet<String> = ids.iter().map(|s| s.to_string()).collect();
        let window = (req.offset + req.top_k) as usize;
        let want = window * self.config.candidates_factor + inputs.len();
        let c = self.collection.clone();

        if req.strategy == Strategy::Collaborative {
            let m = model.ok_or_else(|| {
                PipelineError::FailedPrecondition(
                    "COLLABORATIVE needs a trained model (admin train)".into(),
                )
            })?;
            let weigh_examples = |list: &[Example]| -> Vec<Weighted> {
                list.iter()
                    .filter_map(|e| match &e.input {
                        ExampleInput::ItemId(id) if !missing.contains(id) => Some(Weighted {
                            item_id: id.clone(),
                            weight: e.weight,
                            recent_weight: e.weight,
                            kind: crate::model::InteractionKind::Purchase,
                            purchases: 0,
                            last_ms: 0,
                            rank: 0,
                        }),
                        _ => None,
                    })
                    .collect()
            };
            let pos = weigh_examples(&req.positive);
            if pos.is_empty() {
                return Err(PipelineError::InvalidArgument(
                    "COLLABORATIVE takes item ids as positive examples".into(),
                ));
            }
            let neg = weigh_examples(&req.negative);
            let no_kinds = HashMap::new();
            let none = HashSet::new();
            let mut list = collaborative(&m, &pos, want, &no_kinds, &none, 1.0);
            list.source = Source::Positive;
            let mut lists = vec![list];
            if !neg.is_empty() {
                let mut n = collaborative(&m, &neg, want, &no_kinds, &none, 1.0);
                n.source = Source::Negative;
                n.weight = -1.0;
                lists.push(n);
            }
            let exclude = req.exclude_inputs;
            return blocking(move || {
                let ranked = blend(lists, |id| {
                    !(exclude && inputs.contains(id)) && passes(&c, &req.filter, id)
                });
                Ok((
                    hydrate(
                        &c,
                        ranked,
                        req.offset as usize,
                        req.top_k as usize,
                        req.min_score,
                    )?,
                    version,
                ))
            })
            .await;
        }

        let mut pos = Vec::new();
        for e in &req.positive {
            if let Some(v) = self.example_vector(e, &space, &missing).await? {
                pos.push((example_name(e), v, e.weight));
            }
        }
        let mut neg = Vec::new();
        for e in &req.negative {
            if let Some(v) = self.example_vector(e, &space, &missing).await? {
                neg.push((example_name(e), v, e.weight));
            }
        }
        if pos.is_empty() && neg.is_empty() {
            return Err(PipelineError::NotFound("none of the examples exist".into()));
        }
        let strategy = req.strategy;
        blocking(move || {
            let keep = |id: &str| !(req.exclude_inputs && inputs.contains(id));
            let ranked = match strategy {
                Strategy::AverageVector => {
                    let mut q = vec![0f32; pos.first().or(neg.first()).map_or(0, |p| p.1.len())];
                    for (_, v, w) in &pos {
                        q.iter_mut().zip(v).for_each(|(a, b)| *a += w * b);
                    }
                    for (_, v, w) in &neg {
                        q.iter_mut().zip(v).for_each(|(a, b)| *a -= w * b);
                    }
                    let q = crate::recommend::user_vector(&[(&q, 1.0)], None).ok_or_else(|| {
                        PipelineError::InvalidArgument("the examples cancel out".into())
                    })?;
                    scored_by_examples(
                        &c,
                        &space,
                        &[(String::new(), q, 1.0)],
                        &pos,
                        &neg,
                        want,
                        &req.filter,
                        keep,
                    )?
                }
                Strategy::BestScore => {
                    // Over-fetch around every positive example, then rescore each candidate by
                    // its best positive minus its best negative similarity.
                    scored_by_examples(&c, &space, &pos, &pos, &neg, want, &req.filter, keep)?
                }
                Strategy::Collaborative => unreachable!("handled above"),
            };
            Ok((
                hydrate(
                    &c,
                    ranked,
                    req.offset as usize,
                    req.top_k as usize,
                    req.min_score,
                )?,
                version,
            ))
        })
        .await
    }

    async fn example_vector(
        &self,
        e: &Example,
        space: &str,
        missing: &[String],
    ) -> Result<Option<Vec<f32>>, PipelineError> {
        let specs = self.collection.specs().to_vec();
        let enc = || {
            self.encoders.clone().ok_or_else(|| {
                PipelineError::Unimplemented(
                    "text, image and voice examples need the encoders".into(),
                )
            })
        };
        let v = match &e.input {
            ExampleInput::ItemId(id) if missing.contains(id) => return Ok(None),
            ExampleInput::ItemId(id) => {
                let (c, id, s) = (self.collection.clone(), id.clone(), space.to_string());
                blocking(move || Ok(c.item_vector(&id, &s)?.1)).await?
            }
            ExampleInput::Vector { space: s, values } => {
                let s = if s.is_empty() { space } else { s.as_str() };
                if s != space {
                    return Err(PipelineError::InvalidArgument(format!(
                        "example vectors must be in space {space:?}"
                    )));
                }
                prepare_query_vector(&specs, s, values)?
            }
            ExampleInput::Text(t) => {
                if t.trim().is_empty() {
                    return Err(PipelineError::InvalidArgument(
                        "text example is empty".into(),
                    ));
                }
                let (enc, t) = (enc()?, t.clone());
                let v = blocking(move || Ok(enc.embed_queries(&[t.as_str()])?)).await?;
                prepare_query_vector(&specs, space, v.first().map_or(&[][..], |v| v))?
            }
            ExampleInput::Image(bytes) => {
                let (enc, b) = (enc()?, bytes.clone());
                let v = blocking(move || Ok(enc.embed_images(&[b.as_slice()])?)).await?;
                prepare_query_vector(&specs, space, v.first().map_or(&[][..], |v| &v.shared))?
            }
            ExampleInput::Audio(bytes) => {
                let (enc, b) = (enc()?, bytes.clone());
                let v = blocking(move || {
                    let t = enc.transcribe(&b)?;
                    Ok(enc.embed_queries(&[t.text.trim()])?)
                })
                .await?;
                prepare_query_vector(&specs, space, v.first().map_or(&[][..], |v| v))?
            }
        };
        Ok(Some(v))
    }

    /// Personalised search: the query's top `rerank_window` candidates re-ranked by
    /// (1 − α)·similarity + α·(u·v); nothing outside them is added.
    pub async fn personalised_search(
        &self,
        searcher: &Searcher,
        mut req: SearchRequest,
        user: String,
        alpha: f32,
        deadline: Option<std::time::Instant>,
    ) -> Result<(SearchResult, Vec<Option<PersonalParts>>), PipelineError> {
        check_user(&user)?;
        if !(0.0..=1.0).contains(&alpha) {
            return Err(PipelineError::InvalidArgument(format!(
                "personalization {alpha} must be within [0, 1]"
            )));
        }
        let (offset, top_k, min_score) = (req.offset as usize, req.top_k as usize, req.min_score);
        super::search::validate_request(&req, searcher.limits())?;
        req.top_k = (req.offset + req.top_k)
            .max(self.config.rerank_window)
            .min(searcher.limits().max_top_k);
        req.offset = 0;
        req.min_score = f32::NEG_INFINITY;
        let mut result = searcher.search_until(req, deadline).await?;
        let Some(space) = self.content_space() else {
            return Err(PipelineError::Unimplemented(
                "personalised search needs a text-role space".into(),
            ));
        };
        let c = self.collection.clone();
        let config = self.config.clone();
        let hits = std::mem::take(&mut result.hits);
        let model = self.model.load_full();
        let ranked = blocking(move || {
            let history = crate::recommend::model_input(
                &weigh(&c.user_interactions(&user)?, &config),
                config.content_half_life_items,
            );
            let vectors = history_vectors(&c, &space, &history);
            let u = crate::recommend::user_vector(
                &vectors
                    .iter()
                    .map(|(_, v, w)| (v.as_slice(), *w))
                    .collect::<Vec<_>>(),
                centre(model.as_deref()),
            );
            let mut ranked: Vec<(SearchHit, PersonalParts)> = hits
                .into_iter()
                .map(|h| {
                    let personal = match &u {
                        Some(u) => c
                            .item_vector(&h.id, &space)
                            .map_or(0.0, |(_, v)| dot(u, &v)),
                        None => 0.0,
                    };
                    let parts = PersonalParts {
                        similarity: h.score,
                        personal,
                        alpha,
                    };
                    (h, parts)
                })
                .collect();
            ranked.sort_by(|a, b| {
                b.1.score()
                    .total_cmp(&a.1.score())
                    .then_with(|| a.0.id.cmp(&b.0.id))
            });
            Ok(ranked)
        })
        .await?;
        let mut parts = Vec::new();
        for (mut h, p) in ranked
            .into_iter()
            .skip(offset)
            .filter(|(_, p)| p.score() >= min_score)
            .take(top_k)
        {
            h.score = p.score();
            if let Some(e) = h.explanation.as_mut() {
                e.score = h.score;
            }
            parts.push(Some(p));
            result.hits.push(h);
        }
        Ok((result, parts))
    }
}

fn check_user(user: &str) -> Result<(), PipelineError> {
    if user.is_empty() {
        return Err(PipelineError::InvalidArgument("user_id is empty".into()));
    }
    if user.len() > crate::model::MAX_USER_ID_BYTES {
        return Err(PipelineError::InvalidArgument(format!(
            "user_id is longer than {} bytes",
            crate::model::MAX_USER_ID_BYTES
        )));
    }
    Ok(())
}

fn check_page(top_k: u32, offset: u32) -> Result<(), PipelineError> {
    if top_k == 0 || top_k > 1000 || offset > 10_000 {
        return Err(PipelineError::InvalidArgument(
            "need 1 <= top_k <= 1000 and offset <= 10000".into(),
        ));
    }
    Ok(())
}

fn example_name(e: &Example) -> String {
    match &e.input {
        ExampleInput::ItemId(id) => id.clone(),
        ExampleInput::Text(t) => format!("text:{t}"),
        ExampleInput::Vector { .. } => "vector".into(),
        ExampleInput::Image(_) => "image".into(),
        ExampleInput::Audio(_) => "voice".into(),
    }
}

fn passes(c: &Collection, filter: &FilterSpec, id: &str) -> bool {
    c.with_entry(id, |_, e| filter.is_empty() || filter.matches(e))
        .unwrap_or(false)
}

/// Σ over history items h of w_h·B[h][j]. Scores and, per candidate, its strongest parts (for
/// the reasons) accumulate per touched item in one flat array, indexed through `slot`: a list
/// per candidate would cost an allocation per part.
fn collaborative(
    m: &Model,
    history: &[Weighted],
    want: usize,
    kinds: &HashMap<&str, &'static str>,
    seen: &HashSet<&str>,
    weight: f32,
) -> SourceList {
    const TOP: usize = 3;
    struct Acc {
        j: u32,
        score: f32,
        positive: f32,
        top: [(u32, f32); TOP],
    }
    // Only the touched items get an accumulator: at 100k items, arrays over the whole model
    // cost more to fill per request than the history's neighbour lists to walk. `slot` is
    // zeroed memory (0 = untouched), so untouched pages are never written.
    let mut slot = vec![0u32; m.items.len()];
    let mut acc: Vec<Acc> = Vec::new();
    for h in history {
        let Some(i) = m.item_index(&h.item_id) else {
            continue;
        };
        for &(j, b) in &m.neighbours[i as usize] {
            let part = h.weight * b;
            let s = &mut slot[j as usize];
            if *s == 0 {
                acc.push(Acc {
                    j,
                    score: 0.0,
                    positive: 0.0,
                    top: [(u32::MAX, 0.0); TOP],
                });
                *s = acc.len() as u32;
            }
            let a = &mut acc[*s as usize - 1];
            a.score += part;
            if part > 0.0 {
                a.positive += part;
                let weakest = (0..TOP)
                    .min_by(|&x, &y| a.top[x].1.total_cmp(&a.top[y].1))
                    .unwrap_or(0);
                if part > a.top[weakest].1 {
                    a.top[weakest] = (i, part);
                }
            }
        }
    }
    let mut ranked: Vec<(u32, f32)> = acc
        .iter()
        .filter(|a| !seen.contains(m.item_id(a.j)))
        .map(|a| (a.j, a.score))
        .collect();
    // Filtered items are dropped after this cut, so keep a margin.
    crate::recommend::knn::keep_top(&mut ranked, want * 2);
    let hits = ranked
        .into_iter()
        .map(|(j, s)| {
            let a = &acc[slot[j as usize] as usize - 1];
            let contributors = a
                .top
                .iter()
                .filter(|(i, _)| *i != u32::MAX)
                .map(|&(i, p)| {
                    let id = m.item_id(i);
                    (id.to_string(), p, kinds.get(id).copied().unwrap_or(""))
                })
                .collect();
            Candidate {
                id: m.item_id(a.j).to_string(),
                score: s,
                contributors,
                positive_total: a.positive,
            }
        })
        .collect();
    SourceList {
        source: Source::Collaborative,
        weight,
        hits,
    }
}

/// The model's catalogue mean, when it has one.
fn centre(m: Option<&Model>) -> Option<&[f32]> {
    m.map(|m| m.centre.as_slice()).filter(|c| !c.is_empty())
}

/// The mean of the live items' vectors in `space` (empty when none has one).
fn catalogue_mean(c: &Collection, space: &str) -> Vec<f32> {
    let mut sum: Vec<f64> = Vec::new();
    let mut count = 0usize;
    for id in c.live_ids() {
        let Ok((_, v)) = c.item_vector(&id, space) else {
            continue;
        };
        if sum.is_empty() {
            sum = vec![0.0; v.len()];
        }
        if v.len() == sum.len() {
            sum.iter_mut().zip(&v).for_each(|(s, x)| *s += *x as f64);
            count += 1;
        }
    }
    sum.iter()
        .map(|s| (s / count.max(1) as f64) as f32)
        .collect()
}

/// The history items' vectors in `space`, with their weights (items without one skipped).
fn history_vectors(
    c: &Collection,
    space: &str,
    history: &[Weighted],
) -> Vec<(String, Vec<f32>, f32)> {
    history
        .iter()
        .filter_map(|h| {
            c.item_vector(&h.item_id, space)
                .ok()
                .map(|(_, v)| (h.item_id.clone(), v, h.weight))
        })
        .collect()
}

/// Nearest items to the user vector u_i; each hit's reason names the history items whose
/// w_h·(v_h·v_j) made most of it.
#[allow(clippy::too_many_arguments)]
fn content(
    c: &Collection,
    space: &str,
    history: &[Weighted],
    centre: Option<&[f32]>,
    filter: &FilterSpec,
    want: usize,
    kinds: &HashMap<&str, &'static str>,
    seen: &HashSet<&str>,
    weight: f32,
) -> Result<SourceList, PipelineError> {
    let vectors = history_vectors(c, space, history);
    let pairs: Vec<(&[f32], f32)> = vectors.iter().map(|(_, v, w)| (v.as_slice(), *w)).collect();
    let Some(u) = crate::recommend::user_vector(&pairs, centre) else {
        return Ok(SourceList {
            source: Source::Content,
            weight,
            hits: Vec::new(),
        });
    };
    let pred = |e: &crate::model::Entry| filter.matches(e);
    let filter_ref: Option<&(dyn Fn(&crate::model::Entry) -> bool + Sync)> =
        (!filter.is_empty()).then_some(&pred);
    let out = c.search(space, &u, want, None, filter_ref, None)?;
    let names = c.hydrate(&out.hits)?;
    let hits = names
        .into_iter()
        .filter(|h| !seen.contains(h.version.item.id.as_str()))
        .map(|h| {
            let id = h.version.item.id;
            let contributors = match c.item_vector(&id, space) {
                Ok((_, v)) => vectors
                    .iter()
                    .map(|(hid, hv, w)| {
                        (
                            hid.clone(),
                            w * dot(hv, &v),
                            kinds.get(hid.as_str()).copied().unwrap_or(""),
                        )
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            Candidate::new(id, h.scored.score, contributors)
        })
        .collect();
    Ok(SourceList {
        source: Source::Content,
        weight,
        hits,
    })
}

fn buy_again(history: &[Weighted], weight: f32) -> SourceList {
    let hits = history
        .iter()
        .filter(|h| h.purchases > 0)
        .map(|h| {
            Candidate::new(
                h.item_id.clone(),
                h.recent_weight,
                vec![(h.item_id.clone(), h.recent_weight, "purchase")],
            )
        })
        .collect();
    SourceList {
        source: Source::BuyAgain,
        weight,
        hits,
    }
}

fn popularity(m: &Model, weight: f32) -> SourceList {
    let hits = m
        .popular
        .iter()
        .map(|&(i, n)| Candidate::new(m.item_id(i).to_string(), n, Vec::new()))
        .collect();
    SourceList {
        source: Source::Popularity,
        weight,
        hits,
    }
}

/// Candidates near the `queries` (over-fetched per query), rescored by their best positive
/// similarity minus their best negative one (weights applied), as one source list.
#[allow(clippy::too_many_arguments)]
fn scored_by_examples(
    c: &Collection,
    space: &str,
    queries: &[(String, Vec<f32>, f32)],
    pos: &[(String, Vec<f32>, f32)],
    neg: &[(String, Vec<f32>, f32)],
    want: usize,
    filter: &FilterSpec,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<Recommended>, PipelineError> {
    let pred = |e: &crate::model::Entry| filter.matches(e);
    let filter_ref: Option<&(dyn Fn(&crate::model::Entry) -> bool + Sync)> =
        (!filter.is_empty()).then_some(&pred);
    let mut seen = HashSet::new();
    let mut candidates: Vec<Scored> = Vec::new();
    for (_, q, _) in queries {
        for h in c.search(space, q, want, None, filter_ref, None)?.hits {
            if seen.insert(h.id) {
                candidates.push(h);
            }
        }
    }
    let mut out = Vec::new();
    for h in c.hydrate(&candidates)? {
        let id = h.version.item.id;
        if !keep(&id) {
            continue;
        }
        let Ok((_, v)) = c.item_vector(&id, space) else {
            continue;
        };
        let best = |list: &[(String, Vec<f32>, f32)]| {
            list.iter()
                .map(|(name, e, w)| (name.clone(), w * dot(e, &v)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        let (p, n) = (best(pos), best(neg));
        let mut reasons = Vec::new();
        let mut score = 0.0;
        if let Some((name, s)) = p {
            score += s;
            let because = vec![crate::recommend::Contributor {
                item_id: name,
                share: 1.0,
                kind: "",
            }];
            reasons.push(crate::recommend::Reason {
                source: Source::Positive,
                contribution: s,
                because,
            });
        }
        if let Some((name, s)) = n {
            score -= s;
            let because = vec![crate::recommend::Contributor {
                item_id: name,
                share: 1.0,
                kind: "",
            }];
            reasons.push(crate::recommend::Reason {
                source: Source::Negative,
                contribution: -s,
                because,
            });
        }
        out.push(Recommended {
            item_id: id,
            score,
            reasons,
        });
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.item_id.cmp(&b.item_id))
    });
    Ok(out)
}

/// The page of a ranked list, hydrated (items deleted meanwhile are dropped).
fn hydrate(
    c: &Collection,
    ranked: Vec<Recommended>,
    offset: usize,
    top_k: usize,
    min_score: f32,
) -> Result<Vec<RecommendHit>, PipelineError> {
    let page: Vec<(u64, Recommended)> = ranked
        .into_iter()
        .filter(|r| r.score >= min_score)
        .skip(offset)
        .take(top_k)
        .filter_map(|r| c.with_entry(&r.item_id, |seq, _| seq).map(|seq| (seq, r)))
        .collect();
    let scored: Vec<Scored> = page
        .iter()
        .map(|(seq, r)| Scored {
            id: *seq,
            score: r.score,
        })
        .collect();
    let mut by_seq: HashMap<u64, Recommended> = page.into_iter().collect();
    Ok(c.hydrate(&scored)?
        .into_iter()
        .filter_map(|h| {
            by_seq.remove(&h.scored.id).map(|recommended| RecommendHit {
                recommended,
                version: h.version,
            })
        })
        .collect())
}
