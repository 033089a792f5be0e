//! The query pipeline: validate → plan the mode → encode → search each space (the collection
//! plans the index work) and/or the lexical index → merge → page → hydrate.
//!
//! Modes ([`SearchMode`]): text and voice queries default to HYBRID — the vector list and the
//! lexical (BM25) list of the text or transcript, fused by [`crate::fusion::fuse_hybrid`] — and
//! may ask for VECTOR or LEXICAL alone; the other queries are VECTOR only. A request without a
//! query but with a filter or a sort order browses: the matching items in that order, with a
//! total count.
//!
//! Text and voice queries search the text-role space. Image queries search the text-role space
//! (the photo bridged into it) and the visual-role space (raw image features) and merge the two
//! lists with [`crate::fusion::merge_image_hits`]; video queries too, their keyframes and
//! transcript first fused into one vector per space ([`crate::fusion::fuse_video_query`]). Vector queries search the space they name
//! (default: the text-role space); item queries use the item's own stored vector ("more like
//! this") and exclude it.

use super::spaces::{Roles, SpaceRole};
use super::{blocking, PipelineError, QueryLimits};
use crate::collection::{Collection, Facets, HybridTitle, SearchOutcome};
use crate::encode::batcher::QueryBatcher;
use crate::encode::{EncodeError, Encoders};
use crate::fusion::{Hybrid, HybridMethod, Part};
use crate::model::{FilterSpec, SortBy, Version};
use mmsearch_index::SpaceSpec;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub enum Query {
    Text(String),
    Image(Vec<u8>),
    Audio(Vec<u8>),
    /// A video: keyframes + soundtrack.
    Video(Vec<u8>),
    ItemId(String),
    /// `space` empty = the text-role space.
    Vector {
        space: String,
        values: Vec<f32>,
    },
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: Option<Query>,
    pub top_k: u32,
    pub offset: u32,
    pub filter: FilterSpec,
    pub min_score: f32,
    /// Space for item queries; default: the text-role space.
    pub space: Option<String>,
    pub ef: Option<u32>,
    /// Attach an [`Explanation`] to every hit.
    pub explain: bool,
    /// `None`: HYBRID for text and voice, VECTOR for the rest.
    pub mode: Option<SearchMode>,
    /// HYBRID's fusion method and lexical weight; `None`: the configured ones (`[fusion]`).
    pub fusion: Option<FusionChoice>,
    pub lexical_weight: Option<f32>,
    /// Order of a browse (no query); `None` with a filter: newest first.
    pub sort: Option<SortBy>,
    /// Count facets (#13) over this many of the query's top candidates (over every match
    /// when browsing); `None`: no facets.
    pub facets: Option<u32>,
    /// Voice queries: the spoken language (a Whisper code such as "zh"); `None`: detected.
    pub speech_language: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    Vector,
    Lexical,
    Hybrid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusionChoice {
    Rrf,
    Convex,
}

impl SearchRequest {
    /// A request with the defaults a client gets when it leaves the other fields unset.
    pub fn new(query: Query, top_k: u32) -> SearchRequest {
        SearchRequest {
            query: Some(query),
            top_k,
            offset: 0,
            filter: FilterSpec::default(),
            min_score: f32::NEG_INFINITY,
            space: None,
            ef: None,
            explain: false,
            mode: None,
            fusion: None,
            lexical_weight: None,
            sort: None,
            facets: None,
            speech_language: None,
        }
    }
}

/// Candidates facets are counted over when the request says 0.
pub const DEFAULT_FACET_CANDIDATES: u32 = 200;
/// Most candidates facets may be counted over (a query's window is at least this deep then).
pub const MAX_FACET_CANDIDATES: u32 = 1000;

/// One space's part in a hit's score.
#[derive(Debug, Clone, PartialEq)]
pub struct SpaceScore {
    pub space: String,
    /// "text", "visual", or "" for a space without a role.
    pub role: &'static str,
    pub score: f32,
    /// Weight of this part in the final score.
    pub weight: f32,
    /// The item was not in this space's list: `score` is the list's lowest (an upper bound).
    pub estimated: bool,
    /// 1-based rank in this space's list; 0 when absent from it.
    pub rank: u32,
}

/// Why a hit scored what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// How candidates were found, per space searched ("graph", "graph_widened", "exact";
    /// joined with "+" for image queries, text-role space first; "+lexical" for HYBRID,
    /// "lexical" alone for LEXICAL, "browse" for a browse).
    pub plan: String,
    pub spaces: Vec<SpaceScore>,
    pub score: f32,
    /// Video queries: how frames and speech made the query vector.
    pub video: Option<VideoParts>,
    /// The lexical list's part (LEXICAL and HYBRID).
    pub lexical: Option<LexicalScore>,
    /// HYBRID: the fusion ("rrf(k=60, w=0.5)", "convex(w=0.5)") and what the vector list
    /// added to `score` (the lexical share is in `lexical`).
    pub fusion: Option<String>,
    pub vector_contribution: f32,
}

/// A video query's keyframe count and the frame/speech weights used (they sum to 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoParts {
    pub frames: u32,
    pub frame_weight: f32,
    pub speech_weight: f32,
    pub seconds: f32,
}

/// The lexical list's part in a hit's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LexicalScore {
    pub bm25: f32,
    /// 1-based rank in the lexical list; 0 when absent from it.
    pub rank: u32,
    /// What it added to the hit's score.
    pub contribution: f32,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub id: String,
    pub score: f32,
    pub version: Version,
    pub explanation: Option<Explanation>,
    /// LEXICAL and HYBRID: the description (or title) fragment matching the query's words,
    /// matches in `<b>…</b>`, HTML-escaped.
    pub snippet: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Timing {
    pub encode_us: u64,
    pub search_us: u64,
    pub hydrate_us: u64,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub transcript: Option<String>,
    pub timing: Timing,
    pub exact: bool,
    /// Browse: how many items match the filter.
    pub total: Option<u64>,
    /// When the request asked for them.
    pub facets: Option<Facets>,
}

pub struct Searcher {
    collection: Arc<Collection>,
    encoders: Option<Arc<Encoders>>,
    roles: Roles,
    limits: QueryLimits,
    image_query_alpha: f32,
    video_weights: crate::fusion::VideoWeights,
    hybrid: Hybrid,
    /// Concurrent text queries share model calls through it; without it each query runs its
    /// own call on the blocking pool.
    queries: Option<QueryBatcher>,
}

/// The query after encoding: prepared vectors bound to spaces.
enum Encoded {
    Single {
        space: SpaceSpec,
        vector: Vec<f32>,
        exclude: Option<u64>,
        transcript: Option<String>,
    },
    /// A photo, or a video (then with its transcript and how its vectors were made).
    Image {
        text: Option<(SpaceSpec, Vec<f32>)>,
        visual: Option<(SpaceSpec, Vec<f32>)>,
        transcript: Option<String>,
        video: Option<VideoParts>,
    },
}

/// A ranked candidate. `parts[i]` is its score and rank in the list of `Candidates::spaces[i]`;
/// plain numbers, so ranking a large window allocates nothing per candidate.
#[derive(Clone, Copy)]
struct Candidate {
    id: u64,
    score: f32,
    parts: [Part; 2],
    /// Rank 0: not in the lexical list (or no lexical search).
    lexical: Part,
    /// What the vector and lexical lists added to `score` (HYBRID).
    shares: [f32; 2],
}

const NO_PART: Part = Part {
    score: 0.0,
    rank: 0,
};

/// A space a query searched, and its weight in the final score.
struct Searched {
    name: String,
    role: &'static str,
    weight: f32,
}

struct Candidates {
    ranked: Vec<Candidate>,
    /// At most two: the space of a single-space query, or an image query's text and visual.
    spaces: [Option<Searched>; 2],
    plan: String,
    transcript: Option<String>,
    exact: bool,
    video: Option<VideoParts>,
    /// HYBRID's fusion, described.
    fusion: Option<String>,
    /// Whether the lexical list was searched (LEXICAL, HYBRID).
    lexical: bool,
}

impl Candidates {
    /// The page's explanations, built only when asked for: names and strings are per hit.
    fn explain(&self, c: &Candidate) -> Explanation {
        let spaces = self
            .spaces
            .iter()
            .zip(c.parts)
            .filter_map(|(s, p)| {
                s.as_ref().map(|s| SpaceScore {
                    space: s.name.clone(),
                    role: s.role,
                    score: p.score,
                    weight: s.weight,
                    estimated: p.rank == 0,
                    rank: p.rank,
                })
            })
            .collect();
        Explanation {
            plan: self.plan.clone(),
            spaces,
            score: c.score,
            video: self.video,
            lexical: self.lexical.then_some(LexicalScore {
                bm25: c.lexical.score,
                rank: c.lexical.rank,
                contribution: c.shares[1],
            }),
            fusion: self.fusion.clone(),
            vector_contribution: c.shares[0],
        }
    }
}

impl Searcher {
    pub fn new(
        collection: Arc<Collection>,
        encoders: Option<Arc<Encoders>>,
        roles: Roles,
        limits: QueryLimits,
        image_query_alpha: f32,
        hybrid: Hybrid,
    ) -> Searcher {
        let video_weights = crate::fusion::FusionConfig::default().video_weights();
        Searcher {
            collection,
            encoders,
            roles,
            limits,
            image_query_alpha,
            hybrid,
            video_weights,
            queries: None,
        }
    }

    /// Text queries go through `b` (one model call for the queries that arrive together).
    pub fn with_query_batcher(mut self, b: QueryBatcher) -> Searcher {
        self.queries = Some(b);
        self
    }

    /// Frame and speech weights of video queries (`[fusion] video_*_weight`).
    pub fn with_video_weights(mut self, w: crate::fusion::VideoWeights) -> Searcher {
        self.video_weights = w;
        self
    }

    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    pub async fn search(&self, req: SearchRequest) -> Result<SearchResult, PipelineError> {
        self.search_until(req, None).await
    }

    /// Like [`Self::search`], but model work that has not started by `deadline` is skipped:
    /// a caller that has given up must not keep an encoder busy (queued requests would
    /// otherwise run long after their clients left).
    pub async fn search_until(
        &self,
        req: SearchRequest,
        deadline: Option<Instant>,
    ) -> Result<SearchResult, PipelineError> {
        validate_request(&req, &self.limits)?;
        let page_end = (req.offset + req.top_k) as usize;
        // Facets are counted over the top candidates, so the search looks at least that deep.
        let window = page_end.max(req.facets.unwrap_or(0) as usize);
        let ef = req.ef.map(|e| e as usize);
        let filter = (!req.filter.is_empty()).then_some(req.filter.clone());
        let mut timing = Timing::default();
        let Some(query) = req.query.clone() else {
            return self.browse(req, filter).await;
        };
        let (mode, hybrid) = self.plan_mode(&req, &query)?;

        let started = Instant::now();
        let mut lexical_text = match &query {
            Query::Text(t) if mode != SearchMode::Vector => Some(t.clone()),
            _ => None,
        };
        let encoded = match mode {
            SearchMode::Lexical if lexical_text.is_some() => None,
            _ => Some(
                self.encode(
                    query,
                    req.space.as_deref(),
                    req.speech_language.as_deref(),
                    deadline,
                )
                .await?,
            ),
        };
        // A voice query's transcript is its text for the lexical list (and the response).
        let heard = match &encoded {
            Some(Encoded::Single {
                transcript: Some(t),
                ..
            }) => Some(t.clone()),
            _ => None,
        };
        if mode != SearchMode::Vector && heard.is_some() {
            lexical_text = heard.clone();
        }
        timing.encode_us = started.elapsed().as_micros() as u64;
        crate::telemetry::observe_stage("encode", started.elapsed());

        let started = Instant::now();
        let collection = self.collection.clone();
        let roles = self.roles.clone();
        let alpha = self.image_query_alpha;
        let text = lexical_text.clone();
        let trust = match (&lexical_text, &self.encoders) {
            (Some(t), Some(e)) => e.text_readable_share(t),
            _ => 1.0,
        };
        let candidates = blocking(move || {
            let predicate = filter
                .as_ref()
                .map(|f| move |e: &crate::model::Entry| f.matches(e));
            let pred_ref = predicate
                .as_ref()
                .map(|p| p as &(dyn Fn(&crate::model::Entry) -> bool + Sync));
            // Fusion looks past the page: an item ranked just below it in one list may be the
            // best of both.
            let depth = if mode == SearchMode::Hybrid {
                window.max(HYBRID_DEPTH)
            } else {
                window
            };
            let search = |space: &SpaceSpec,
                          vector: &[f32],
                          exclude: Option<u64>|
             -> Result<SearchOutcome, PipelineError> {
                Ok(collection.search(&space.name, vector, depth, ef, pred_ref, exclude)?)
            };
            let vector = encoded
                .filter(|_| mode != SearchMode::Lexical)
                .map(|e| run(&roles, e, depth, alpha, search))
                .transpose()?;
            // In HYBRID the vector list already carries the title (items embed it), so the
            // lexical list scores title words like any other field's rather than double — to
            // the extent the text tower can read the query.
            let title_boost = (mode == SearchMode::Hybrid).then_some(HybridTitle {
                vector_trust: trust,
            });
            let lexical = text
                .map(|t| collection.search_text(&t, depth, pred_ref, title_boost))
                .transpose()?;
            combine(vector, lexical, hybrid, trust, window)
        })
        .await?;
        timing.search_us = started.elapsed().as_micros() as u64;
        crate::telemetry::observe_stage("search", started.elapsed());
        let facets = req.facets.map(|n| {
            let seqs: Vec<u64> = candidates
                .ranked
                .iter()
                .filter(|c| c.score >= req.min_score)
                .take(n as usize)
                .map(|c| c.id)
                .collect();
            self.collection.facets_of(&seqs)
        });

        let started = Instant::now();
        let page: Vec<(Candidate, Option<Explanation>)> = candidates
            .ranked
            .iter()
            .skip(req.offset as usize)
            .filter(|c| c.score >= req.min_score)
            .take(req.top_k as usize)
            .map(|c| (*c, req.explain.then(|| candidates.explain(c))))
            .collect();
        let hits = self.hydrate(page, lexical_text).await?;
        timing.hydrate_us = started.elapsed().as_micros() as u64;
        crate::telemetry::observe_stage("hydrate", started.elapsed());
        Ok(SearchResult {
            hits,
            transcript: candidates.transcript.or(heard),
            timing,
            exact: candidates.exact,
            total: None,
            facets,
        })
    }

    /// The planning step of modes: the request's mode (or the query's default) and fusion,
    /// checked against what the query can do.
    fn plan_mode(
        &self,
        req: &SearchRequest,
        query: &Query,
    ) -> Result<(SearchMode, Hybrid), PipelineError> {
        let texty = matches!(query, Query::Text(_) | Query::Audio(_));
        let mode = req.mode.unwrap_or(if texty {
            SearchMode::Hybrid
        } else {
            SearchMode::Vector
        });
        if mode != SearchMode::Vector && !texty {
            return Err(PipelineError::InvalidArgument(format!(
                "mode {mode:?} needs a text or voice query; image, vector and item queries are VECTOR only"
            )));
        }
        if mode != SearchMode::Lexical && self.encoders.is_none() && matches!(query, Query::Text(_))
        {
            return Err(PipelineError::Unimplemented(format!(
                "{mode:?} text queries need the encoders; this server runs without models (mode LEXICAL needs none)"
            )));
        }
        let mut hybrid = self.hybrid;
        match req.fusion {
            Some(FusionChoice::Convex) => hybrid.method = HybridMethod::Convex,
            Some(FusionChoice::Rrf) if hybrid.method == HybridMethod::Convex => {
                hybrid.method = HybridMethod::Rrf { k: DEFAULT_RRF_K }
            }
            _ => {}
        }
        if let Some(w) = req.lexical_weight {
            hybrid.lexical_weight = w;
        }
        hybrid.validate().map_err(PipelineError::InvalidArgument)?;
        Ok((mode, hybrid))
    }

    /// A request without a query: the items passing the filter in the requested order.
    async fn browse(
        &self,
        req: SearchRequest,
        filter: Option<FilterSpec>,
    ) -> Result<SearchResult, PipelineError> {
        let started = Instant::now();
        let collection = self.collection.clone();
        let sort = req.sort.unwrap_or_default();
        let (offset, top_k) = (req.offset as usize, req.top_k as usize);
        let want_facets = req.facets.is_some();
        let (page, total, facets) = blocking(move || {
            let predicate = filter
                .as_ref()
                .map(|f| move |e: &crate::model::Entry| f.matches(e));
            let pred_ref = predicate
                .as_ref()
                .map(|p| p as &(dyn Fn(&crate::model::Entry) -> bool + Sync));
            let (page, total) = collection.browse(pred_ref, sort, offset, top_k);
            let facets = want_facets.then(|| collection.facets_matching(pred_ref));
            Ok((page, total, facets))
        })
        .await?;
        let search_us = started.elapsed().as_micros() as u64;
        let candidates = Candidates {
            ranked: Vec::new(),
            spaces: [None, None],
            plan: "browse".into(),
            transcript: None,
            exact: true,
            video: None,
            fusion: None,
            lexical: false,
        };
        let page = page
            .into_iter()
            .map(|s| {
                let c = Candidate {
                    id: s.id,
                    score: 0.0,
                    parts: [NO_PART; 2],
                    lexical: NO_PART,
                    shares: [0.0; 2],
                };
                (c, req.explain.then(|| candidates.explain(&c)))
            })
            .collect();
        let started = Instant::now();
        let hits = self.hydrate(page, None).await?;
        let timing = Timing {
            encode_us: 0,
            search_us,
            hydrate_us: started.elapsed().as_micros() as u64,
        };
        Ok(SearchResult {
            hits,
            transcript: None,
            timing,
            exact: true,
            total: Some(total),
            facets,
        })
    }

    fn encoders(&self, what: &str) -> Result<Arc<Encoders>, PipelineError> {
        self.encoders.clone().ok_or_else(|| {
            PipelineError::Unimplemented(format!(
                "{what} queries need the encoders; this server runs without models"
            ))
        })
    }

    fn role_space(&self, role: SpaceRole, what: &str) -> Result<SpaceSpec, PipelineError> {
        self.roles.get(role).cloned().ok_or_else(|| {
            PipelineError::Unimplemented(format!(
                "{what} queries need a space with role {:?}; none is configured in [[spaces]]",
                role.as_str()
            ))
        })
    }

    /// The space a vector or item query names, or the text-role space.
    fn named_space(&self, name: Option<&str>) -> Result<SpaceSpec, PipelineError> {
        match name.filter(|s| !s.is_empty()) {
            Some(n) => Ok(self.collection.spec(n)?.clone()),
            None => self.role_space(SpaceRole::Text, "vector and item"),
        }
    }

    async fn encode(
        &self,
        query: Query,
        item_space: Option<&str>,
        speech_language: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Encoded, PipelineError> {
        match query {
            Query::Vector { space, values } => {
                let space = self.named_space(Some(&space))?;
                let vector =
                    prepare_query_vector(std::slice::from_ref(&space), &space.name, &values)?;
                Ok(Encoded::Single {
                    space,
                    vector,
                    exclude: None,
                    transcript: None,
                })
            }
            Query::ItemId(id) => {
                let space = self.named_space(item_space)?;
                let collection = self.collection.clone();
                let name = space.name.clone();
                let (seq, vector) =
                    blocking(move || Ok(collection.item_vector(&id, &name)?)).await?;
                Ok(Encoded::Single {
                    space,
                    vector,
                    exclude: Some(seq),
                    transcript: None,
                })
            }
            Query::Text(text) => {
                let space = self.role_space(SpaceRole::Text, "text")?;
                let enc = self.encoders("text")?;
                let vector = match &self.queries {
                    Some(b) => {
                        check_deadline(deadline)?;
                        let embed = b.embed_query(text);
                        match deadline {
                            Some(d) => tokio::time::timeout_at(d.into(), embed)
                                .await
                                .map_err(|_| EncodeError::DeadlineExceeded)??,
                            None => embed.await?,
                        }
                    }
                    None => first(
                        encode_blocking(deadline, move || enc.embed_queries(&[text.as_str()]))
                            .await?,
                    )?,
                };
                let vector = prepare_encoded(&space, vector)?;
                Ok(Encoded::Single {
                    space,
                    vector,
                    exclude: None,
                    transcript: None,
                })
            }
            Query::Audio(bytes) => {
                let space = self.role_space(SpaceRole::Text, "voice")?;
                let enc = self.encoders("voice")?;
                let language = speech_language.map(str::to_owned);
                let (transcript, vector) = encode_blocking(deadline, move || {
                    let t = enc.transcribe_in(&bytes, language.as_deref())?;
                    if t.text.trim().is_empty() {
                        return Err(EncodeError::InvalidInput(
                            "no speech recognised in the audio".into(),
                        ));
                    }
                    check_deadline(deadline)?;
                    let v = enc.embed_queries(&[t.text.trim()])?;
                    Ok((t.text, v))
                })
                .await?;
                let vector = prepare_encoded(&space, first(vector)?)?;
                Ok(Encoded::Single {
                    space,
                    vector,
                    exclude: None,
                    transcript: Some(transcript),
                })
            }
            Query::Image(bytes) => {
                let (text, visual) = (self.roles.text().cloned(), self.roles.visual().cloned());
                if text.is_none() && visual.is_none() {
                    return Err(PipelineError::Unimplemented(
                        "image queries need a space with role \"text\" or \"visual\"; none is configured in [[spaces]]".into(),
                    ));
                }
                let enc = self.encoders("image")?;
                let vectors =
                    encode_blocking(deadline, move || enc.embed_images(&[bytes.as_slice()]))
                        .await?;
                let v = vectors
                    .into_iter()
                    .next()
                    .ok_or_else(|| PipelineError::Internal("encoder returned nothing".into()))?;
                let text = match text {
                    Some(space) => Some((space.clone(), prepare_encoded(&space, v.shared)?)),
                    None => None,
                };
                let visual = match (visual, v.visual) {
                    (Some(space), Some(features)) => {
                        Some((space.clone(), prepare_encoded(&space, features)?))
                    }
                    _ => None,
                };
                Ok(Encoded::Image {
                    text,
                    visual,
                    transcript: None,
                    video: None,
                })
            }
            Query::Video(bytes) => self.encode_video(bytes, deadline).await,
        }
    }

    async fn encode_video(
        &self,
        bytes: Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<Encoded, PipelineError> {
        let (text, visual) = (self.roles.text().cloned(), self.roles.visual().cloned());
        if text.is_none() && visual.is_none() {
            return Err(PipelineError::Unimplemented(
                "video queries need a space with role \"text\" or \"visual\"; none is configured in [[spaces]]".into(),
            ));
        }
        let enc = self.encoders("video")?;
        let (v, speech) = encode_blocking(deadline, move || {
            let v = enc.embed_video(&bytes)?;
            let speech = match &v.transcript {
                Some(t) => Some(first_vec(enc.embed_queries(&[t.text.trim()])?)?),
                None => None,
            };
            Ok((v, speech))
        })
        .await?;
        let shared: Vec<&[f32]> = v.frames.iter().map(|f| f.shared.as_slice()).collect();
        let feats: Vec<&[f32]> = v
            .frames
            .iter()
            .filter_map(|f| f.visual.as_deref())
            .collect();
        let fused =
            crate::fusion::fuse_video_query(&shared, &feats, speech.as_deref(), self.video_weights);
        let parts = VideoParts {
            frames: v.frames.len() as u32,
            frame_weight: fused.weights.frames,
            speech_weight: fused.weights.speech,
            seconds: v.seconds as f32,
        };
        let text = match (text, fused.text) {
            (Some(space), Some(t)) => Some((space.clone(), prepare_encoded(&space, t)?)),
            _ => None,
        };
        let visual = match (visual, fused.visual) {
            (Some(space), Some(f)) => Some((space.clone(), prepare_encoded(&space, f)?)),
            _ => None,
        };
        Ok(Encoded::Image {
            text,
            visual,
            transcript: v.transcript.map(|t| t.text),
            video: Some(parts),
        })
    }

    async fn hydrate(
        &self,
        page: Vec<(Candidate, Option<Explanation>)>,
        text: Option<String>,
    ) -> Result<Vec<SearchHit>, PipelineError> {
        let collection = self.collection.clone();
        blocking(move || {
            let scored: Vec<mmsearch_index::Scored> = page
                .iter()
                .map(|(c, _)| mmsearch_index::Scored {
                    id: c.id,
                    score: c.score,
                })
                .collect();
            let hydrated = collection.hydrate(&scored)?;
            let mut explanations: std::collections::HashMap<u64, Explanation> = page
                .into_iter()
                .filter_map(|(c, e)| Some((c.id, e?)))
                .collect();
            Ok(hydrated
                .into_iter()
                .map(|h| SearchHit {
                    snippet: text
                        .as_deref()
                        .and_then(|t| collection.snippet(t, &h.version.item)),
                    id: h.version.item.id.clone(),
                    score: h.scored.score,
                    explanation: explanations.remove(&h.scored.id),
                    version: h.version,
                })
                .collect())
        })
        .await
    }
}

/// Searches the encoded query's spaces and ranks the candidates (blocking).
fn run(
    roles: &Roles,
    encoded: Encoded,
    window: usize,
    alpha: f32,
    search: impl Fn(&SpaceSpec, &[f32], Option<u64>) -> Result<SearchOutcome, PipelineError>,
) -> Result<Candidates, PipelineError> {
    let searched = |space: &SpaceSpec, weight: f32| Searched {
        name: space.name.clone(),
        role: roles.role_of(&space.name).map_or("", SpaceRole::as_str),
        weight,
    };
    match encoded {
        Encoded::Single {
            space,
            vector,
            exclude,
            transcript,
        } => {
            let out = search(&space, &vector, exclude)?;
            let absent = Part {
                score: 0.0,
                rank: 0,
            };
            let ranked = out
                .hits
                .iter()
                .enumerate()
                .map(|(i, h)| Candidate {
                    id: h.id,
                    score: h.score,
                    parts: [
                        Part {
                            score: h.score,
                            rank: i as u32 + 1,
                        },
                        absent,
                    ],
                    lexical: NO_PART,
                    shares: [h.score, 0.0],
                })
                .collect();
            Ok(Candidates {
                ranked,
                spaces: [Some(searched(&space, 1.0)), None],
                plan: out.path.to_string(),
                transcript,
                exact: out.exact,
                video: None,
                fusion: None,
                lexical: false,
            })
        }
        Encoded::Image {
            text,
            visual,
            transcript,
            video,
        } => {
            let t = text.as_ref().map(|(s, v)| search(s, v, None)).transpose()?;
            let v = visual
                .as_ref()
                .map(|(s, v)| search(s, v, None))
                .transpose()?;
            // Without one of the two spaces the other carries the whole score.
            let alpha = match (&t, &v) {
                (Some(_), None) => 1.0,
                (None, Some(_)) => 0.0,
                _ => alpha,
            };
            let empty = Vec::new();
            let (t_hits, v_hits) = (
                t.as_ref().map_or(&empty, |o| &o.hits),
                v.as_ref().map_or(&empty, |o| &o.hits),
            );
            let ranked = crate::fusion::merge_image_hits(t_hits, v_hits, alpha, window)
                .into_iter()
                .map(|m| Candidate {
                    id: m.id,
                    score: m.score,
                    parts: [m.text, m.visual],
                    lexical: NO_PART,
                    shares: [m.score, 0.0],
                })
                .collect();
            let outcomes: Vec<&SearchOutcome> =
                [t.as_ref(), v.as_ref()].into_iter().flatten().collect();
            Ok(Candidates {
                ranked,
                spaces: [
                    text.as_ref().map(|(s, _)| searched(s, alpha)),
                    visual.as_ref().map(|(s, _)| searched(s, 1.0 - alpha)),
                ],
                plan: outcomes
                    .iter()
                    .map(|o| o.path)
                    .collect::<Vec<_>>()
                    .join("+"),
                transcript,
                exact: outcomes.iter().all(|o| o.exact),
                video,
                fusion: None,
                lexical: false,
            })
        }
    }
}

/// Candidates per list a HYBRID query fuses (at least; more when the page reaches deeper).
const HYBRID_DEPTH: usize = 20;
/// RRF's k when a request asks for RRF over a server configured for convex fusion.
const DEFAULT_RRF_K: f32 = 60.0;

/// The mode's ranking: the vector candidates, the lexical list, or their fusion.
fn combine(
    vector: Option<Candidates>,
    lexical: Option<(Vec<mmsearch_index::Scored>, f32)>,
    hybrid: Hybrid,
    vector_trust: f32,
    window: usize,
) -> Result<Candidates, PipelineError> {
    match (vector, lexical) {
        (Some(mut v), None) => {
            v.ranked.truncate(window);
            Ok(v)
        }
        (None, Some((lex, _))) => Ok(Candidates {
            ranked: lex
                .iter()
                .take(window)
                .enumerate()
                .map(|(i, h)| Candidate {
                    id: h.id,
                    score: h.score,
                    parts: [NO_PART; 2],
                    lexical: Part {
                        score: h.score,
                        rank: i as u32 + 1,
                    },
                    shares: [0.0, h.score],
                })
                .collect(),
            spaces: [None, None],
            plan: "lexical".into(),
            transcript: None,
            exact: true,
            video: None,
            fusion: None,
            lexical: true,
        }),
        (Some(v), Some((lex, full_match))) => {
            let list: Vec<mmsearch_index::Scored> = v
                .ranked
                .iter()
                .map(|c| mmsearch_index::Scored {
                    id: c.id,
                    score: c.score,
                })
                .collect();
            let ranked =
                crate::fusion::fuse_hybrid(&list, &lex, full_match, vector_trust, hybrid, window)
                    .into_iter()
                    .map(|f| Candidate {
                        id: f.id,
                        score: f.score,
                        parts: [f.vector, NO_PART],
                        lexical: f.lexical,
                        shares: f.contribution,
                    })
                    .collect();
            Ok(Candidates {
                ranked,
                plan: format!("{}+lexical", v.plan),
                fusion: Some(hybrid.describe()),
                lexical: true,
                ..v
            })
        }
        (None, None) => Err(PipelineError::Internal(
            "a search planned neither a vector nor a lexical list".into(),
        )),
    }
}

/// Checks a request against the configured limits before any encoder or index work; needs no
/// engine, so the API layer's input handling can be exercised (and fuzzed) on its own.
pub fn validate_request(req: &SearchRequest, limits: &QueryLimits) -> Result<(), PipelineError> {
    let invalid = |m: String| Err(PipelineError::InvalidArgument(m));
    if req.top_k == 0 {
        return invalid("top_k must be at least 1".into());
    }
    if req.top_k > limits.max_top_k {
        return invalid(format!(
            "top_k {} exceeds the limit {}",
            req.top_k, limits.max_top_k
        ));
    }
    let window = req.offset as u64 + req.top_k as u64;
    if window > limits.max_window as u64 {
        return invalid(format!(
            "offset + top_k = {window} exceeds the limit {}",
            limits.max_window
        ));
    }
    if let Some(n) = req.facets.filter(|&n| n == 0 || n > MAX_FACET_CANDIDATES) {
        return invalid(format!(
            "facet_candidates {n} must be in 1..={MAX_FACET_CANDIDATES}"
        ));
    }
    if let Some(ef) = req.ef.filter(|&ef| ef > limits.max_ef) {
        return invalid(format!("ef {ef} exceeds the limit {}", limits.max_ef));
    }
    // NEG_INFINITY means "no threshold" (the wire's unset 0.0 maps to it).
    if req.min_score.is_nan() || req.min_score == f32::INFINITY {
        return invalid("min_score must be a finite number".into());
    }
    req.filter
        .validate()
        .map_err(PipelineError::InvalidArgument)?;
    if let Some(w) = req.lexical_weight.filter(|w| !(0.0..=1.0).contains(w)) {
        return invalid(format!("lexical_weight {w} must be in [0, 1]"));
    }
    if req.query.is_some() && req.sort.is_some() {
        return invalid(
            "sort orders a browse (a request without a query); query results are ranked by score"
                .into(),
        );
    }
    match &req.query {
        None if req.filter.is_empty() && req.sort.is_none() => invalid(
            "empty query: set one of text, image, audio, video, item_id, vector — or browse with a filter or a sort".into(),
        ),
        None => Ok(()),
        Some(Query::Text(t)) if t.trim().is_empty() => invalid("text query is empty".into()),
        Some(Query::Text(t)) if t.chars().count() > limits.max_text_chars => {
            invalid(format!("text query is longer than {} characters", limits.max_text_chars))
        }
        Some(Query::Image(b)) if b.is_empty() => invalid("image query is empty".into()),
        Some(Query::Audio(b)) if b.is_empty() => invalid("audio query is empty".into()),
        Some(Query::Video(b)) if b.is_empty() => invalid("video query is empty".into()),
        Some(Query::ItemId(id)) if id.is_empty() => invalid("item_id is empty".into()),
        Some(Query::Vector { values, .. }) if values.is_empty() => invalid("vector query has no values".into()),
        _ => Ok(()),
    }
}

/// A client-supplied query vector, checked against its space and normalised as the space's
/// metric wants it.
pub fn prepare_query_vector(
    specs: &[SpaceSpec],
    space: &str,
    values: &[f32],
) -> Result<Vec<f32>, PipelineError> {
    let spec = specs
        .iter()
        .find(|s| s.name == space)
        .ok_or_else(|| crate::collection::CollectionError::UnknownSpace(space.to_string()))?;
    spec.metric
        .prepare(spec.dim, values)
        .map_err(|e| PipelineError::InvalidArgument(format!("vector for space {space:?}: {e}")))
}

/// An encoder's output made ready for its space. A mismatch is the server's configuration
/// (the roles' dimensions are checked against the models at start), never the client's.
fn prepare_encoded(space: &SpaceSpec, v: Vec<f32>) -> Result<Vec<f32>, PipelineError> {
    space.metric.prepare(space.dim, &v).map_err(|e| {
        PipelineError::Internal(format!(
            "encoder output does not fit space {:?}: {e} (check [[spaces]] against the models)",
            space.name
        ))
    })
}

/// Runs model work on the blocking pool unless the deadline passed while it waited there.
async fn encode_blocking<T: Send + 'static>(
    deadline: Option<Instant>,
    f: impl FnOnce() -> Result<T, EncodeError> + Send + 'static,
) -> Result<T, PipelineError> {
    blocking(move || {
        check_deadline(deadline)?;
        Ok(f()?)
    })
    .await
}

fn check_deadline(deadline: Option<Instant>) -> Result<(), EncodeError> {
    match deadline {
        Some(d) if Instant::now() >= d => Err(EncodeError::DeadlineExceeded),
        _ => Ok(()),
    }
}

fn first_vec(v: Vec<Vec<f32>>) -> Result<Vec<f32>, EncodeError> {
    v.into_iter()
        .next()
        .ok_or_else(|| EncodeError::Runtime("text encoder returned no vector".into()))
}

fn first(v: Vec<Vec<f32>>) -> Result<Vec<f32>, PipelineError> {
    v.into_iter()
        .next()
        .ok_or_else(|| PipelineError::Internal("encoder returned no vector".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_is_bounded() {
        let limits = QueryLimits::default();
        let req = |ef| SearchRequest {
            ef,
            ..SearchRequest::new(Query::Text("shoes".into()), 10)
        };
        assert!(validate_request(&req(Some(limits.max_ef)), &limits).is_ok());
        assert!(validate_request(&req(None), &limits).is_ok());
        // u32::MAX used to reach hnsw_rs, which allocates the beam with capacity ef
        let e = validate_request(&req(Some(u32::MAX)), &limits).unwrap_err();
        assert!(
            matches!(e, PipelineError::InvalidArgument(ref m) if m.contains("ef")),
            "{e}"
        );
    }

    #[test]
    fn query_vector_is_checked_against_its_space() {
        let specs = [SpaceSpec {
            name: "c".into(),
            dim: 2,
            metric: mmsearch_index::Metric::Cosine,
        }];
        assert_eq!(
            prepare_query_vector(&specs, "c", &[3.0, 4.0]).unwrap(),
            vec![0.6, 0.8]
        );
        assert!(matches!(
            prepare_query_vector(&specs, "x", &[1.0, 0.0]),
            Err(PipelineError::Collection(_))
        ));
        assert!(matches!(
            prepare_query_vector(&specs, "c", &[1.0]),
            Err(PipelineError::InvalidArgument(_))
        ));
    }
}
