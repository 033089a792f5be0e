//! Conversions between the wire types (`pb`) and the domain types of each layer.

use crate::collection::{RebuildProgress, SnapshotInfo, Stats};
use crate::encode::ModelInfo;
use crate::model::{FilterSpec, Item, NewItem, SortBy, Version};
use crate::pb;
use crate::pipeline::{
    Explanation, FusionChoice, PipelineError, Query, Roles, SearchHit, SearchMode, SearchRequest, SearchResult,
};

/// The wire request as the pipeline's; an enum value this server does not know is refused.
pub fn search_request(r: pb::SearchRequest) -> Result<SearchRequest, PipelineError> {
    let bad = |what: &str, v: i32| PipelineError::InvalidArgument(format!("unknown {what} value {v}"));
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
        pb::search_request::Query::Vector(v) => Query::Vector { space: v.space, values: v.values },
    });
    let filter = r.filter.map(filter_spec).unwrap_or_default();
    Ok(SearchRequest {
        query,
        top_k: r.top_k,
        offset: r.offset,
        filter,
        min_score: if r.min_score == 0.0 { f32::NEG_INFINITY } else { r.min_score },
        space: (!r.space.is_empty()).then_some(r.space),
        ef: (r.ef > 0).then_some(r.ef),
        explain: r.explain,
        mode,
        fusion,
        lexical_weight: r.lexical_weight,
        sort,
    })
}

fn filter_spec(f: pb::Filter) -> FilterSpec {
    let mut attributes: Vec<(String, String)> = f.attributes.into_iter().collect();
    attributes.sort();
    FilterSpec { categories: f.categories, price_min: f.price_min, price_max: f.price_max, attributes }
}

pub fn search_response(r: SearchResult) -> pb::SearchResponse {
    pb::SearchResponse {
        hits: r.hits.into_iter().map(hit).collect(),
        transcript: r.transcript.unwrap_or_default(),
        timing: Some(pb::Timing { encode_us: r.timing.encode_us, search_us: r.timing.search_us, hydrate_us: r.timing.hydrate_us }),
        exact: r.exact,
        total: r.total,
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
        lexical: e.lexical.map(|l| pb::LexicalScore { bm25: l.bm25, rank: l.rank, contribution: l.contribution }),
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
    };
    item.sort_attributes();
    NewItem { item, images: i.images, vectors: i.vectors.into_iter().map(|v| (v.space, v.values)).collect() }
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

pub fn status(s: Stats, roles: &Roles, models: Vec<ModelInfo>, uptime_seconds: u64) -> pb::StatusResponse {
    pb::StatusResponse {
        items: s.items as u64,
        generation: s.generation,
        generations_on_disk: s.generations_on_disk,
        spaces: s
            .spaces
            .into_iter()
            .map(|sp| pb::SpaceStatus {
                role: roles.role_of(&sp.spec.name).map_or("", |r| r.as_str()).to_string(),
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
    }
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
