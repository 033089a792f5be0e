//! Conversions between the wire types (`pb`) and the domain types of each layer.

use crate::collection::{RebuildProgress, SnapshotInfo, Stats};
use crate::encode::ModelInfo;
use crate::model::{FilterSpec, Item, NewItem, SortBy, Version};
use crate::pb;
use crate::pipeline::{
    Explanation, FusionChoice, PipelineError, Query, Roles, SearchHit, SearchMode, SearchRequest,
    SearchResult,
};

/// The wire request as the pipeline's; an enum value this server does not know is refused.
pub fn search_request(r: pb::SearchRequest) -> Result<SearchRequest, PipelineError> {
    let bad =
        |what: &str, v: i32| PipelineError::InvalidArgument(format!("unknown {what} value {v}"));
    let mode = match pb::SearchMode::try_from(r.mode).map_err(|_| bad("mode", r.mode))? {
        pb::SearchMode::Unspecified => None,
        pb::SearchMode::Vector => Some(SearchMode::Vector),
        pb::SearchMode::Lexical => Some(SearchMode::Lexical),
        pb::SearchMode::Hybrid => Some(SearchMode::Hybrid),
    };
    let fusion = match pb::FusionMethod::try_from(r.fusion).map_err(|_| bad("fusion", r.fusion))? {
        pb::FusionMethod::Unspecified => None,
        pb::FusionMethod::Rrf => Some(FusionChoice::Rrf),
        pb::FusionMethod::Convex => Some(FusionChoice::Convex),
    };
    let sort = match pb::SortBy::try_from(r.sort).map_err(|_| bad("sort", r.sort))? {
        pb::SortBy::Unspecified => None,
        pb::SortBy::Newest => Some(SortBy::Newest),
        pb::SortBy::PriceAsc => Some(SortBy::PriceAsc),
        pb::SortBy::PriceDesc => Some(SortBy::PriceDesc),
    };
    let query = r.query.map(|q| match q {
        pb::search_request::Query::Text(t) => Query::Text(t),
        pb::search_request::Query::Image(b) => Query::Image(b),
        pb::search_request::Query::Audio(b) => Query::Audio(b),
        pb::search_request::Query::ItemId(id) => Query::ItemId(id),
        pb::search_request::Query::Vector(v) => Query::Vector {
            space: v.space,
            values: v.values,
        },
        pb::search_request::Query::Video(b) => Query::Video(b),
    });
    let filter = r.filter.map(filter_spec).unwrap_or_default();
    Ok(SearchRequest {
        query,
        top_k: r.top_k,
        offset: r.offset,
        filter,
        min_score: if r.min_score == 0.0 {
            f32::NEG_INFINITY
        } else {
            r.min_score
        },
        space: (!r.space.is_empty()).then_some(r.space),
        ef: (r.ef > 0).then_some(r.ef),
        explain: r.explain,
        mode,
        fusion,
        lexical_weight: r.lexical_weight,
        sort,
        facets: r.facets.then_some(match r.facet_candidates {
            0 => crate::pipeline::search::DEFAULT_FACET_CANDIDATES,
            n => n,
        }),
        speech_language: (!r.speech_language.is_empty()).then_some(r.speech_language),
    })
}

fn filter_spec(f: pb::Filter) -> FilterSpec {
    let mut attributes: Vec<(String, String)> = f.attributes.into_iter().collect();
    attributes.sort();
    FilterSpec {
        categories: f.categories,
        price_min: f.price_min,
        price_max: f.price_max,
        attributes,
    }
}

pub fn search_response(r: SearchResult) -> pb::SearchResponse {
    pb::SearchResponse {
        hits: r.hits.into_iter().map(hit).collect(),
        transcript: r.transcript.unwrap_or_default(),
        timing: Some(pb::Timing {
            encode_us: r.timing.encode_us,
            search_us: r.timing.search_us,
            hydrate_us: r.timing.hydrate_us,
        }),
        exact: r.exact,
        total: r.total,
        facet_counted: r.facets.as_ref().map_or(0, |f| f.counted),
        categories: r.facets.as_ref().map_or_else(Vec::new, |f| {
            f.categories
                .iter()
                .map(|(value, count)| pb::FacetCount {
                    value: value.clone(),
                    count: *count,
                })
                .collect()
        }),
        price_ranges: r.facets.as_ref().map_or_else(Vec::new, |f| {
            f.price_ranges
                .iter()
                .map(|(min, max, count)| pb::PriceRange {
                    min: *min,
                    max: max.unwrap_or(0.0),
                    count: *count,
                })
                .collect()
        }),
    }
}

fn hit(h: SearchHit) -> pb::Hit {
    pb::Hit {
        id: h.id,
        score: h.score,
        item: Some(item(h.version)),
        explanation: h.explanation.map(explanation),
        snippet: h.snippet.unwrap_or_default(),
    }
}

fn explanation(e: Explanation) -> pb::Explanation {
    pb::Explanation {
        plan: e.plan,
        spaces: e
            .spaces
            .into_iter()
            .map(|s| pb::SpaceScore {
                space: s.space,
                role: s.role.to_string(),
                score: s.score,
                weight: s.weight,
                estimated: s.estimated,
                rank: s.rank,
            })
            .collect(),
        score: e.score,
        video: e.video.map(|v| pb::VideoQueryParts {
            frames: v.frames,
            frame_weight: v.frame_weight,
            speech_weight: v.speech_weight,
            seconds: v.seconds,
        }),
        offset: 0.0,
        parts: Vec::new(),
        lexical: e.lexical.map(|l| pb::LexicalScore {
            bm25: l.bm25,
            rank: l.rank,
            contribution: l.contribution,
        }),
        fusion: e.fusion.unwrap_or_default(),
        vector_contribution: e.vector_contribution,
    }
}

/// A stored version as an API item: never image bytes, never vectors.
pub fn item(v: Version) -> pb::Item {
    let i = v.item;
    pb::Item {
        id: i.id,
        title: i.title,
        description: i.description,
        category: i.category,
        price: i.price,
        attributes: i.attributes.into_iter().collect(),
        images: Vec::new(),
        image_uris: i.image_uris,
        vectors: Vec::new(),
        text_weight: i.text_weight,
        image_weight: i.image_weight,
        version: v.seq,
        videos: Vec::new(),
        video_uris: i.video_uris,
    }
}

/// A client's item: metadata, photos and vectors (the server-assigned `version` is ignored).
pub fn new_item(i: pb::Item) -> NewItem {
    let mut item = Item {
        id: i.id,
        title: i.title,
        description: i.description,
        category: i.category,
        price: i.price,
        attributes: i.attributes.into_iter().collect(),
        image_uris: i.image_uris,
        text_weight: i.text_weight,
        image_weight: i.image_weight,
        video_uris: i.video_uris,
    };
    item.sort_attributes();
    NewItem {
        item,
        images: i.images,
        videos: i.videos,
        vectors: i.vectors.into_iter().map(|v| (v.space, v.values)).collect(),
    }
}

pub fn progress(p: &RebuildProgress) -> pb::RebuildProgress {
    pb::RebuildProgress {
        phase: p.phase.as_str().to_string(),
        done: p.done,
        total: p.total,
        eta_seconds: p.eta_seconds,
        generation: p.generation,
        space: p.space.clone(),
    }
}

pub fn status(
    s: Stats,
    roles: &Roles,
    models: Vec<ModelInfo>,
    uptime_seconds: u64,
) -> pb::StatusResponse {
    pb::StatusResponse {
        items: s.items as u64,
        generation: s.generation,
        generations_on_disk: s.generations_on_disk,
        spaces: s
            .spaces
            .into_iter()
            .map(|sp| pb::SpaceStatus {
                role: roles
                    .role_of(&sp.spec.name)
                    .map_or("", |r| r.as_str())
                    .to_string(),
                name: sp.spec.name,
                dim: sp.spec.dim as u32,
                metric: sp.spec.metric.as_str().to_string(),
                base_vectors: sp.base_vectors as u64,
                fresh_vectors: sp.fresh_vectors as u64,
                tombstones: sp.tombstones as u64,
                layer_counts: sp.layer_counts.into_iter().map(|c| c as u64).collect(),
            })
            .collect(),
        models: models
            .into_iter()
            .map(|m| pb::ModelStatus {
                id: m.id,
                kind: format!("{:?}", m.kind).to_lowercase(),
                provider: format!("{:?}", m.provider_in_use).to_lowercase(),
                dim: m.dim as u32,
            })
            .collect(),
        uptime_seconds,
        rebuilding: s.rebuilding,
        last_version: s.last_seq,
        version: env!("CARGO_PKG_VERSION").to_string(),
        // Filled by the handler from the recommender (`recommend_status`).
        model_version: 0,
        model_trained_at: 0,
        interactions: 0,
    }
}

/// The recommendation model and the interactions stored, into a status response.
pub fn recommend_status(
    out: &mut pb::StatusResponse,
    model: Option<crate::pipeline::recommend::ModelInfo>,
    interactions: u64,
) {
    out.model_version = model.as_ref().map_or(0, |m| m.version);
    out.model_trained_at = model.as_ref().map_or(0, |m| m.trained_at);
    out.interactions = interactions;
}

pub fn snapshot(s: SnapshotInfo) -> pb::SnapshotResponse {
    pb::SnapshotResponse {
        directory: s.dir.to_string_lossy().into_owned(),
        last_version: s.manifest.last_seq,
        generation: s.manifest.generation,
        generation_version: s.manifest.generation_snapshot_seq,
        model_ids: s.manifest.models.into_iter().map(|m| m.id).collect(),
        bytes: s.bytes,
        linked_bytes: s.linked_bytes,
        files: s.manifest.files.len() as u32,
        seconds: s.seconds,
        name: s.name,
    }
}

// ---------------------------------------------------------------- recommend (#11)

pub fn interaction(i: pb::Interaction) -> Result<crate::model::Interaction, String> {
    use crate::model::InteractionKind as K;
    let kind = match pb::InteractionKind::try_from(i.kind) {
        Ok(pb::InteractionKind::View) => K::View,
        Ok(pb::InteractionKind::Click) => K::Click,
        Ok(pb::InteractionKind::Cart) => K::Cart,
        Ok(pb::InteractionKind::Purchase) => K::Purchase,
        Ok(pb::InteractionKind::Dwell) => K::Dwell,
        Ok(pb::InteractionKind::Unspecified) | Err(_) => {
            return Err(format!(
                "kind {} is not one of VIEW, CLICK, CART, PURCHASE, DWELL",
                i.kind
            ))
        }
    };
    Ok(crate::model::Interaction {
        user_id: i.user_id,
        item_id: i.item_id,
        kind,
        dwell_ms: i.dwell_ms,
        ts_ms: i.timestamp_ms,
        key: i.idempotency_key,
    })
}

pub fn interaction_out(i: crate::model::Interaction) -> pb::Interaction {
    use crate::model::InteractionKind as K;
    let kind = match i.kind {
        K::View => pb::InteractionKind::View,
        K::Click => pb::InteractionKind::Click,
        K::Cart => pb::InteractionKind::Cart,
        K::Purchase => pb::InteractionKind::Purchase,
        K::Dwell => pb::InteractionKind::Dwell,
    };
    pb::Interaction {
        user_id: i.user_id,
        item_id: i.item_id,
        kind: kind as i32,
        dwell_ms: i.dwell_ms,
        timestamp_ms: i.ts_ms,
        idempotency_key: i.key,
    }
}

pub fn for_user_request(
    r: pb::RecommendForUserRequest,
) -> crate::pipeline::recommend::ForUserRequest {
    crate::pipeline::recommend::ForUserRequest {
        user_id: r.user_id,
        top_k: r.top_k,
        offset: r.offset,
        filter: r.filter.map(filter_spec).unwrap_or_default(),
        exclude_seen: r.exclude_seen.unwrap_or(true),
    }
}

pub fn examples_request(
    r: pb::RecommendRequest,
) -> Result<crate::pipeline::recommend::ExamplesRequest, String> {
    use crate::pipeline::recommend::{Example, ExampleInput, ExamplesRequest, Strategy};
    let example = |e: pb::Example| -> Result<Example, String> {
        let input = match e.example {
            Some(pb::example::Example::ItemId(id)) if !id.is_empty() => ExampleInput::ItemId(id),
            Some(pb::example::Example::Vector(v)) => ExampleInput::Vector {
                space: v.space,
                values: v.values,
            },
            Some(pb::example::Example::Text(t)) => ExampleInput::Text(t),
            Some(pb::example::Example::Image(b)) if !b.is_empty() => ExampleInput::Image(b),
            Some(pb::example::Example::Audio(b)) if !b.is_empty() => ExampleInput::Audio(b),
            _ => {
                return Err(
                    "an example is empty: set one of item_id, vector, text, image, audio".into(),
                )
            }
        };
        Ok(Example {
            input,
            weight: e.weight.unwrap_or(1.0),
        })
    };
    let strategy = match pb::RecommendStrategy::try_from(r.strategy) {
        Ok(pb::RecommendStrategy::AverageVector) => Strategy::AverageVector,
        Ok(pb::RecommendStrategy::BestScore) => Strategy::BestScore,
        Ok(pb::RecommendStrategy::Collaborative) => Strategy::Collaborative,
        Err(_) => return Err(format!("unknown strategy {}", r.strategy)),
    };
    Ok(ExamplesRequest {
        positive: r
            .positive
            .into_iter()
            .map(example)
            .collect::<Result<_, _>>()?,
        negative: r
            .negative
            .into_iter()
            .map(example)
            .collect::<Result<_, _>>()?,
        strategy,
        filter: r.filter.map(filter_spec).unwrap_or_default(),
        top_k: r.top_k,
        offset: r.offset,
        min_score: r.min_score.unwrap_or(f32::NEG_INFINITY),
        exclude_inputs: r.exclude_inputs.unwrap_or(true),
        ignore_missing_ids: r.ignore_missing_ids,
    })
}

pub fn recommend_response(
    hits: Vec<crate::pipeline::recommend::RecommendHit>,
    model_version: u64,
) -> pb::RecommendResponse {
    let hits = hits
        .into_iter()
        .map(|h| pb::RecommendHit {
            id: h.recommended.item_id,
            score: h.recommended.score,
            item: Some(item(h.version)),
            reasons: h
                .recommended
                .reasons
                .into_iter()
                .map(|r| pb::Reason {
                    source: r.source.as_str().to_string(),
                    contribution: r.contribution,
                    because: r
                        .because
                        .into_iter()
                        .map(|c| pb::Contributor {
                            item_id: c.item_id,
                            share: c.share,
                            kind: c.kind.to_string(),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    pb::RecommendResponse {
        hits,
        model_version,
    }
}

/// A personalised search's response: every explained hit also gets its score's terms, which
/// add up to its score (offset 0).
pub fn personalised_response(
    r: SearchResult,
    parts: Vec<Option<crate::pipeline::recommend::PersonalParts>>,
) -> pb::SearchResponse {
    let mut out = search_response(r);
    for (h, p) in out.hits.iter_mut().zip(parts) {
        if let (Some(e), Some(p)) = (h.explanation.as_mut(), p) {
            e.offset = 0.0;
            e.parts = vec![
                pb::ScorePart {
                    name: "similarity".into(),
                    value: p.similarity,
                    weight: 1.0 - p.alpha,
                    contribution: (1.0 - p.alpha) * p.similarity,
                },
                pb::ScorePart {
                    name: "personal".into(),
                    value: p.personal,
                    weight: p.alpha,
                    contribution: p.alpha * p.personal,
                },
            ];
        }
    }
    out
}

pub fn train_progress(
    p: &crate::pipeline::recommend::TrainProgress,
    seconds: f64,
) -> pb::TrainProgress {
    let m = p.model.as_ref();
    pb::TrainProgress {
        phase: p.phase.to_string(),
        done: p.done,
        total: p.total,
        model_version: m.map_or(0, |m| m.version),
        algorithm: m.map_or(String::new(), |m| m.algorithm.clone()),
        interactions: m.map_or(0, |m| m.interactions),
        items: m.map_or(0, |m| m.items),
        users: m.map_or(0, |m| m.users),
        seconds,
    }
}
