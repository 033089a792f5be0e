//! Search modes compared (#12): any catalogue (the JSONL `mmsearch ingest` reads, photos
//! included) and any query sets (`[[target id, query], …]` JSON files, or `names`: each
//! product's title), each query run as VECTOR, LEXICAL and HYBRID (every fusion asked for) on
//! one embedded engine. R@k and MRR per set and per mode, and over the union of the sets.
//!
//!   mmsearch-eval modes --catalog ~/.cache/mmsearch/demo/catalog.jsonl \
//!       --queries names --queries benches/eval/queries/vendure_paraphrases.json \
//!       --queries benches/eval/queries/vendure_exact_tokens.json

use super::engine::Engine;
use super::metrics::{first_relevant_rank, rank_metrics};
use super::report::Section;
use super::EvalError;
use mmsearch::config::Config;
use mmsearch::encode::Encoders;
use mmsearch::model::{Item, NewItem};
use mmsearch::pipeline::{FusionChoice, Query, SearchMode, SearchRequest};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One way to run a query: a mode and, for HYBRID, the fusion.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: String,
    pub mode: SearchMode,
    pub fusion: Option<FusionChoice>,
    pub lexical_weight: Option<f32>,
}

impl Variant {
    /// "vector", "lexical", "hybrid" (the server's configured fusion), "rrf", "rrf:0.7",
    /// "convex", "convex:0.3" (HYBRID with that fusion and lexical weight).
    pub fn parse(s: &str) -> Result<Variant, String> {
        let (head, weight) = match s.split_once(':') {
            Some((h, w)) => (
                h,
                Some(
                    w.parse::<f32>()
                        .map_err(|_| format!("bad weight in {s:?}"))?,
                ),
            ),
            None => (s, None),
        };
        let (mode, fusion) = match head {
            "vector" => (SearchMode::Vector, None),
            "lexical" => (SearchMode::Lexical, None),
            "hybrid" => (SearchMode::Hybrid, None),
            "rrf" => (SearchMode::Hybrid, Some(FusionChoice::Rrf)),
            "convex" => (SearchMode::Hybrid, Some(FusionChoice::Convex)),
            other => {
                return Err(format!(
                    "unknown mode {other:?} (vector, lexical, hybrid, rrf[:w], convex[:w])"
                ))
            }
        };
        Ok(Variant {
            name: s.to_string(),
            mode,
            fusion,
            lexical_weight: weight,
        })
    }
}

/// A catalogue line (the `mmsearch ingest` format; other fields are ignored).
#[derive(Debug, Deserialize)]
struct Line {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    price: f64,
    #[serde(default)]
    attributes: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    images: Vec<PathBuf>,
}

/// Items with their photos (paths relative to the catalogue's folder).
pub fn load_catalog(path: &Path) -> Result<Vec<NewItem>, EvalError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| EvalError::Data(format!("{}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut items = Vec::new();
    for (n, l) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let line: Line = serde_json::from_str(l)
            .map_err(|e| EvalError::Data(format!("{}:{}: {e}", path.display(), n + 1)))?;
        let images = line
            .images
            .iter()
            .map(|p| super::data::read(&base.join(p)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut attributes: Vec<(String, String)> = line
            .attributes
            .into_iter()
            .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
            .collect();
        attributes.sort();
        items.push(NewItem {
            item: Item {
                id: line.id,
                title: line.title,
                description: line.description,
                category: line.category,
                price: line.price,
                attributes,
                ..Default::default()
            },
            images,
            ..Default::default()
        });
    }
    Ok(items)
}

/// `names` (every item's title) or a JSON file of `[target id, query]` pairs.
pub fn load_queries(
    spec: &str,
    items: &[NewItem],
) -> Result<(String, Vec<(String, String)>), EvalError> {
    if spec == "names" {
        return Ok((
            "names".into(),
            items
                .iter()
                .map(|i| (i.item.id.clone(), i.item.title.clone()))
                .collect(),
        ));
    }
    let path = Path::new(spec);
    let text =
        std::fs::read_to_string(path).map_err(|e| EvalError::Data(format!("{spec}: {e}")))?;
    let pairs: Vec<(String, String)> =
        serde_json::from_str(&text).map_err(|e| EvalError::Data(format!("{spec}: {e}")))?;
    let name = path
        .file_stem()
        .map_or_else(|| spec.to_string(), |s| s.to_string_lossy().into_owned());
    if let Some((id, _)) = pairs
        .iter()
        .find(|(id, _)| !items.iter().any(|i| &i.item.id == id))
    {
        return Err(EvalError::Data(format!(
            "{spec}: target {id:?} is not in the catalogue"
        )));
    }
    Ok((name, pairs))
}

/// Ranks of every query under every variant: `sections` named `<set>/<variant>` and
/// `union/<variant>`, plus a markdown table (rows: sets; columns: variants; MRR / R@1).
pub async fn run(
    config: &Config,
    encoders: Arc<Encoders>,
    items: Vec<NewItem>,
    sets: &[(String, Vec<(String, String)>)],
    variants: &[Variant],
    rebuild: bool,
    dump: Option<&Path>,
) -> Result<(Vec<Section>, String), EvalError> {
    let n = items.len();
    let engine = Engine::open(config, encoders).await?;
    engine.ingest(items).await?;
    if rebuild {
        engine.rebuild().await?;
    }
    if let Some(path) = dump {
        dump_lists(&engine, n, sets, path).await?;
    }
    let mut ranks: HashMap<(usize, usize), Vec<Option<usize>>> = HashMap::new();
    for (si, (_, queries)) in sets.iter().enumerate() {
        for (vi, v) in variants.iter().enumerate() {
            let mut out = Vec::with_capacity(queries.len());
            for (target, q) in queries {
                let req = SearchRequest {
                    mode: Some(v.mode),
                    fusion: v.fusion,
                    lexical_weight: v.lexical_weight,
                    ..SearchRequest::new(Query::Text(q.clone()), n as u32)
                };
                let r = engine
                    .request(req)
                    .await
                    .map_err(|e| EvalError::Search(format!("{q:?} ({}): {e}", v.name)))?;
                let ids: Vec<String> = r.hits.into_iter().map(|h| h.id).collect();
                out.push(first_relevant_rank(&ids, |id| id == target));
            }
            ranks.insert((si, vi), out);
        }
    }
    let mut sections = Vec::new();
    let mut table = String::new();
    let _ = write!(table, "| set (n) |");
    for v in variants {
        let _ = write!(table, " {} MRR / R@1 |", v.name);
    }
    let _ = write!(table, "\n|---|");
    for _ in variants {
        let _ = write!(table, "---|");
    }
    table.push('\n');
    let mut row = |name: &str, per_variant: Vec<Vec<Option<usize>>>| {
        let _ = write!(
            table,
            "| {name} ({}) |",
            per_variant.first().map_or(0, Vec::len)
        );
        for (v, r) in variants.iter().zip(per_variant) {
            let m = rank_metrics(&r);
            let _ = write!(table, " {:.3} / {:.3} |", m["MRR"], m["R@1"]);
            sections.push(Section {
                name: format!("{name}/{}", v.name),
                n: r.len(),
                metrics: m,
                note: String::new(),
            });
        }
        table.push('\n');
    };
    for (si, (name, _)) in sets.iter().enumerate() {
        row(
            name,
            (0..variants.len())
                .map(|vi| ranks[&(si, vi)].clone())
                .collect(),
        );
    }
    if sets.len() > 1 {
        row(
            "union",
            (0..variants.len())
                .map(|vi| {
                    (0..sets.len())
                        .flat_map(|si| ranks[&(si, vi)].clone())
                        .collect()
                })
                .collect(),
        );
    }
    Ok((sections, table))
}

/// Both lists of every query, unfused, one JSON object a line — `{set, target, query, vector:
/// [[id, cosine]…], lexical: [[id, bm25, share]…]}` (share = BM25 over a match of every query
/// word, clamped to 1) — so fusion rules can be compared offline on the same candidates.
async fn dump_lists(
    engine: &Engine,
    n: usize,
    sets: &[(String, Vec<(String, String)>)],
    path: &Path,
) -> Result<(), EvalError> {
    let mut out = String::new();
    for (set, queries) in sets {
        for (target, q) in queries {
            let ask = |mode, lexical_weight, explain| SearchRequest {
                mode: Some(mode),
                fusion: Some(FusionChoice::Convex),
                lexical_weight,
                explain,
                ..SearchRequest::new(Query::Text(q.clone()), n as u32)
            };
            let err =
                |e: mmsearch::pipeline::PipelineError| EvalError::Search(format!("{q:?}: {e}"));
            let vector = engine
                .request(ask(SearchMode::Vector, None, false))
                .await
                .map_err(err)?;
            // Convex with all weight on the lexical list: each hit's contribution is its
            // squared share.
            let shares: HashMap<String, f32> = engine
                .request(ask(SearchMode::Hybrid, Some(1.0), true))
                .await
                .map_err(err)?
                .hits
                .into_iter()
                .filter_map(|h| {
                    let l = h.explanation?.lexical?;
                    (l.rank > 0).then(|| (h.id, l.contribution.max(0.0).sqrt()))
                })
                .collect();
            let lexical = engine
                .request(ask(SearchMode::Lexical, None, false))
                .await
                .map_err(err)?;
            let line = serde_json::json!({
                "set": set,
                "target": target,
                "query": q,
                "vector": vector.hits.iter().map(|h| serde_json::json!([h.id, h.score])).collect::<Vec<_>>(),
                "lexical": lexical.hits.iter().map(|h| serde_json::json!([h.id, h.score, shares.get(&h.id).copied().unwrap_or(0.0)])).collect::<Vec<_>>(),
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
    }
    std::fs::write(path, out).map_err(|e| EvalError::Data(format!("{}: {e}", path.display())))
}
